"""Every tool sequence of ``tests/interop/sequences`` against ``simxen tpm serve``.

The sequences are shell scripts of tpm2-tools commands whose outputs they
check with openssl, cmp or cryptography (see ``sequences/run.sh``);
``scripts/tpm2-tools-side-by-side.py`` runs the same ones against swtpm for
comparison, which one test here does for a sample.
"""

import pytest

from tpm_serve_helpers import load_script, require_tool

side_by_side = load_script("tpm2-tools-side-by-side.py")

pytestmark = pytest.mark.interop


@pytest.mark.parametrize("path", side_by_side.sequences(), ids=lambda p: p.stem)
def test_sequence_against_simxen(path):
    require_tool("tpm2_startup")
    require_tool("openssl")
    ok, _, tail = side_by_side.run_sequence(path, side_by_side.Target("simxen"))
    assert ok, tail


def test_side_by_side_script_compares_with_swtpm(capsys):
    require_tool("tpm2_startup")
    require_tool("swtpm")
    status = side_by_side.main(["duplicate-import", "--jobs", "2"])
    out = capsys.readouterr().out
    assert status == 0
    assert "duplicate-import" in out and "swtpm 1/1, simxen 1/1" in out

"""simxen's TPM engine against swtpm (libtpms), one mutated command at a time.

``scripts/differential-swtpm.py`` sends the same command bytes to a swtpm
process and to a :class:`~simxen.tpm.engine.TpmEngine`, both in the same
state, and compares the response codes (and, for deterministic successes,
the response sizes).  Here hypothesis draws the mutants -- a well-formed seed
command with one field changed -- a few hundred per run, derandomized so a
run is repeatable; every mismatch must be one of the script's documented
``KNOWN_DIFFERENCES``.  The script's command line explores longer.
"""

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tpm_serve_helpers import load_script, require_tool

ROOT = Path(__file__).resolve().parents[2]
differential = load_script("differential-swtpm.py")

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def differ():
    require_tool("swtpm")
    d = differential.Differ()
    yield d
    d.close()


@settings(max_examples=400, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(seed=st.sampled_from(differential.SEEDS), rng=st.randoms(use_true_random=False))
def test_same_response_code_as_swtpm(differ, seed, rng):
    what, cmd = differential.mutate(seed, rng)
    result = differ.compare(f"{seed.name}: {what}", cmd)
    assert result.ok, result.describe()


def test_the_seeds_themselves_agree(differ):
    """Every unmutated seed gets the same answer from both (most succeed)."""
    results = [differ.compare(s.name, s.marshal()) for s in differential.SEEDS]
    bad = [r.describe() for r in results if not r.ok]
    assert not bad, "\n".join(bad)
    assert sum(r.rc_simxen == 0 for r in results) >= len(differential.build_seeds()) - 4


def test_known_differences_are_documented():
    page = (ROOT / "docs" / "tpm.rst").read_text()
    for name, _, _ in differential.KNOWN_DIFFERENCES:
        assert f"``{name}``" in page, f"docs/tpm.rst does not list known difference {name}"

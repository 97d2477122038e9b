"""Same scenario and seed, same bytes -- in any process.

A sweep runs its points in other processes (``--jobs``, or a Dask cluster), and
each Python process salts ``str`` hashes afresh (``PYTHONHASHSEED``), so the
order a ``set`` of names or paths is walked in differs from one process to the
next. A result that depended on such an order would differ between a sweep's
workers and a ``simxen run``. These runs pin two different salts and compare
the bytes of everything a run writes.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def _run(tmp_path, salt, scenario, *extra):
    trace = tmp_path / f"{salt}.jsonl"
    env = {**os.environ, "PYTHONHASHSEED": str(salt)}
    result = subprocess.run([sys.executable, "-m", "simxen.cli", "run", str(SCENARIOS / scenario),
                             *extra, "--json", "--trace", str(trace), "--no-progress"],
                            capture_output=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout, trace.read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("scenario, extra", [
    ("boot-attest.toml", ()),                       # XenStore, attestation, event logs
    ("fleet.toml", ("--set", "fleet.guest_count=4")),   # many domains, one manager
])
def test_a_run_is_the_same_bytes_under_any_hash_salt(tmp_path, scenario, extra):
    one, two = _run(tmp_path, 1, scenario, *extra), _run(tmp_path, 2, scenario, *extra)
    assert one[0] == two[0], "the --json results differ"
    assert one[1] == two[1], "the traces differ"

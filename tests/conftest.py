"""Settings for every test.

Hypothesis gives each example a deadline (200 ms) by default; on a busy
2-core CI machine a slow example then fails a test whose behaviour is right
(``test_cobham_conserves_the_mg1_mean`` did, at 292 ms). Tests here check
behaviour, never speed (speed is what ``benchmarks/`` measures), so no
example has a deadline.

``shipped_traces`` runs every shipped scenario once per session, for the
analysis tests (schema, exports) and the interoperability tests (Mermaid's own
parser, rsvg-convert) alike.
"""

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import settings

from simxen.analysis import trace_format

settings.register_profile("simxen", deadline=None)
settings.load_profile("simxen")

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
#: The queueing-validation scenarios run for a simulated hour of the same few
#: commands; their first seconds already hold every record kind they emit.
VALIDATION_UNTIL = 4.0


@pytest.fixture(scope="session")
def shipped_traces(tmp_path_factory):
    """``{scenario name: records as dicts}`` for every shipped scenario at its own seed
    (``scenarios/*.toml`` whole, ``scenarios/validation/*.toml`` for their first
    :data:`VALIDATION_UNTIL` seconds): ``simxen run --trace`` in as many processes as
    there are cores (two at most). The session shares them between the schema test and
    the export tests."""
    folder = tmp_path_factory.mktemp("shipped")
    jobs = [(p.stem, p, []) for p in sorted(SCENARIOS.glob("*.toml"))]
    jobs += [(f"validation/{p.stem}", p, ["--until", str(VALIDATION_UNTIL)])
             for p in sorted(SCENARIOS.glob("validation/*.toml"))]

    def run(job):
        name, path, extra = job
        out = folder / (name.replace("/", "-") + ".jsonl")
        done = subprocess.run([sys.executable, "-m", "simxen.cli", "run", str(path), "--trace",
                               str(out), "--no-progress", *extra], capture_output=True, text=True,
                              timeout=600)
        # 1: an expectation failed (a validation scenario cut short) -- the trace is written
        assert done.returncode in (0, 1), f"{name}: {done.stderr}"
        return name, trace_format.load(out)

    with ThreadPoolExecutor(max_workers=max(1, min(2, os.cpu_count() or 1))) as pool:
        return dict(pool.map(run, jobs))

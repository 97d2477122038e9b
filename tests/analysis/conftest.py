"""Fixtures for the analysis tests: the trace of every shipped scenario, run once."""

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from simxen.analysis import trace_format

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
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

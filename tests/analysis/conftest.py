"""Fixtures for the analysis tests: the trace of every shipped scenario, run once."""

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from simxen.analysis import trace_format

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
#: The queueing-validation scenarios run for a simulated hour of the same few
#: commands; their first seconds already hold every record kind they emit.
VALIDATION_UNTIL = 4.0


def _trace_of(path, until=None):
    """The JSON Lines trace of one run (in a worker process)."""
    from simxen.scenario import runner, scenario_file
    return runner.run(scenario_file.load(path), until=until).trace.dumps_jsonl()


@pytest.fixture(scope="session")
def shipped_traces():
    """``{scenario name: records as dicts}`` for every shipped scenario at its own seed
    (``scenarios/*.toml`` whole, ``scenarios/validation/*.toml`` for their first
    :data:`VALIDATION_UNTIL` seconds), run on as many processes as there are cores (two
    at most). The session shares them between the schema test and the export tests."""
    jobs = [(p.stem, str(p), None) for p in sorted(SCENARIOS.glob("*.toml"))]
    jobs += [(f"validation/{p.stem}", str(p), VALIDATION_UNTIL)
             for p in sorted(SCENARIOS.glob("validation/*.toml"))]
    with ProcessPoolExecutor(max_workers=max(1, min(2, os.cpu_count() or 1))) as pool:
        texts = pool.map(_trace_of, [j[1] for j in jobs], [j[2] for j in jobs])
        return {name: trace_format.loads(text, path=name) for (name, _, _), text in zip(jobs, texts)}

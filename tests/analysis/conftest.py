"""Fixtures for the analysis tests: the trace of every shipped scenario, run once."""

from pathlib import Path

import pytest

from simxen.analysis import trace_format
from simxen.scenario import runner, scenario_file

SCENARIOS = sorted((Path(__file__).resolve().parents[2] / "scenarios").glob("*.toml"))


@pytest.fixture(scope="session")
def shipped_traces():
    """``{scenario name: records as dicts}`` for every shipped scenario at its own seed.

    Each run costs about a second; the session shares them between the schema
    test and the export tests.
    """
    out = {}
    for path in SCENARIOS:
        result = runner.run(scenario_file.load(path))
        out[path.stem] = trace_format.from_trace(result.trace)
    return out

"""Fixtures for the analysis tests: the trace of every shipped scenario, run once."""

from pathlib import Path

import pytest

from simxen.analysis import trace_format
from simxen.scenario import runner, scenario_file

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
#: The queueing-validation scenarios run for a simulated hour of the same few
#: commands; their first seconds already hold every record kind they emit.
VALIDATION_UNTIL = 4.0


@pytest.fixture(scope="session")
def shipped_traces():
    """``{scenario name: records as dicts}`` for every shipped scenario at its own seed
    (``scenarios/*.toml`` whole, ``scenarios/validation/*.toml`` for their first
    :data:`VALIDATION_UNTIL` seconds). The session shares them between the schema
    test and the export tests."""
    out = {}
    for path in sorted(SCENARIOS.glob("*.toml")):
        out[path.stem] = trace_format.from_trace(runner.run(scenario_file.load(path)).trace)
    for path in sorted(SCENARIOS.glob("validation/*.toml")):
        result = runner.run(scenario_file.load(path), until=VALIDATION_UNTIL)
        out[f"validation/{path.stem}"] = trace_format.from_trace(result.trace)
    return out

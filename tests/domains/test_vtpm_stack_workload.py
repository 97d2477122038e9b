"""The vtpm-stack scenario: it runs, its expectations hold, and it is deterministic."""

from pathlib import Path

import pytest

from simxen.errors import InputError
from simxen.scenario import runner, scenario_file

SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "vtpm-stack.toml"


def test_the_scenario_holds_its_expectations_and_reports_every_hop():
    result = runner.run(scenario_file.load(SCENARIO))
    assert all(o.passed for o in result.report.outcomes), result.report.render()
    stack = result.results["stack"]
    assert set(stack["hops_by_command_ms"]) == {"pcr_extend", "pcr_read", "get_random", "nv_write"}
    text = result.report.render()
    assert "Per-hop breakdown" in text and "front->back" in text and "EPERM" in text


def test_op_counts_count_each_kind_with_the_kinds_under_it():
    """Host.op_counts takes the trace's counts once: each counted kind is what
    Trace.count of it gives (``xs`` with every ``xs.*`` kind under it)."""
    from simxen.domains.stack import COUNTED
    result = runner.run(scenario_file.load(SCENARIO), trace_level="commands")
    ops = result.results["stack"]["ops"]
    trace = result.trace
    assert ops == {kind.replace(".", "_"): trace.count(kind) for kind, _ in COUNTED}
    assert ops["xs"] > ops["xs_watch_fire"] > 0 and ops["page_read"] > 0


def test_same_seed_same_trace_bytes():
    a = runner.run(scenario_file.load(SCENARIO)).trace.dumps_jsonl()
    b = runner.run(scenario_file.load(SCENARIO)).trace.dumps_jsonl()
    assert a == b


def test_a_bad_xl_config_in_the_scenario_names_file_and_key(tmp_path):
    text = SCENARIO.read_text().replace('iomem=["fed40,5"]', 'iomem=["fed40"]')
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        scenario_file.load(path)
    assert "bad.toml" in str(err.value) and "workload.stack.configs" in str(err.value)
    assert "iomem[0]" in str(err.value)


def test_several_guests_and_round_robin(tmp_path):
    text = SCENARIO.read_text()
    head = text.split("[[workload]]")[0]
    path = tmp_path / "three.toml"
    path.write_text(head + '''
[[workload]]
type = "vtpm-stack"
name = "three"
guests = ["guest1", "guest2", "guest3"]
commands = ["nv_write", "pcr_read"]
iterations = 3
policy = "round-robin"
''')
    result = runner.run(scenario_file.load(path))
    three = result.results["three"]
    assert three["guests"] == ["guest1", "guest2", "guest3"]
    assert three["commands_completed"] == 18 and three["commands_failed"] == 0
    assert three["saves"] >= 9 + 3


def test_a_bad_boot_measurement_is_an_input_error(tmp_path):
    text = SCENARIO.read_text().replace('{ pcr = 2, component', '{ pcr = 24, component')
    path = tmp_path / "boot.toml"
    path.write_text(text)
    with pytest.raises(InputError, match=r"boot\[2\]\.pcr"):
        scenario_file.load(path)

"""Metrics as data: the registry a scenario publishes, `simxen metrics`, `simxen run --json`."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from simxen.scenario import metrics, runner, scenario_file

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((ROOT / "scenarios").glob("*.toml"))


def simxen(*args):
    return subprocess.run([sys.executable, "-m", "simxen.cli", *args], capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.name)
def test_registry_matches_what_every_shipped_scenario_produces(path):
    """Both ways: every published metric is produced, every scalar result is published --
    and the JSON of the run gives each as a number (or bool/str) with its unit."""
    sc = scenario_file.load(path)
    result = runner.run(sc)
    registry = metrics.of_scenario(sc)
    flat = metrics.scalars(result.results)
    assert [n for n in registry.names() if n not in flat] == []
    assert [k for k in flat if k not in registry] == []
    doc = json.loads(json.dumps(result.as_dict()))
    assert set(doc["metrics"]) == set(registry.names())
    for name, entry in doc["metrics"].items():
        m = registry.get(name)
        assert entry["unit"] == m.unit and entry["kind"] == m.kind
        if m.kind == "number":
            assert isinstance(entry["value"], (int, float)) and not isinstance(entry["value"], bool), name
        elif m.kind == "bool":
            assert isinstance(entry["value"], bool), name


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.name)
def test_metrics_command_on_every_shipped_scenario(path, capsys):
    from simxen import cli
    assert cli.main(["metrics", str(path), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed and all(m["name"].split(".")[0] for m in listed)
    assert all(m["kind"] in ("number", "bool", "text") for m in listed)


def test_run_json_gives_numbers_and_units(tmp_path):
    p = tmp_path / "pp.toml"
    p.write_text((ROOT / "scenarios" / "ring-pingpong.toml").read_text()
                 .replace("requests = 2000", "requests = 100").replace("equals = 2000", "equals = 100"))
    r = simxen("run", str(p), "--json", "--set", "scenario.seed=5")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["seed"] == 5 and doc["passed"] is True
    assert doc["metrics"]["pingpong.requests_completed"] == {"value": 100, "unit": "count",
                                                               "kind": "number"}
    lat = doc["metrics"]["pingpong.latency_us.p95"]
    assert lat["unit"] == "us" and isinstance(lat["value"], float) and lat["value"] > 0
    assert doc["expectations"] and doc["sections"]        # the report is still there


def test_metrics_command_lists_units_and_follows_overrides():
    r = simxen("metrics", str(ROOT / "scenarios" / "vtpm-stack.toml"),
               "--set", "stack.configs=[]", "--set", "stack.guest_count=3", "--numeric")
    assert r.returncode == 0, r.stderr
    lines = {line.split()[0]: line.split()[1] for line in r.stdout.splitlines()}
    assert lines["stack.latency_ms.nv_write.p99"] == "ms"
    assert lines["stack.guest.guest3.throughput_per_s"] == "1/s"
    assert "stack.guest.guest4.throughput_per_s" not in lines
    assert lines["stack.manager.queue_mean"] == "requests"
    assert "stack.manager_status" not in lines            # text: not for sweeps
    r = simxen("metrics", str(ROOT / "scenarios" / "boot-attest.toml"), "--json")
    names = {m["name"]: m for m in json.loads(r.stdout)}
    assert names["attest.verdict"]["kind"] == "text"
    assert names["attest.round.2.attest_ms"]["unit"] == "ms"


def test_vtpm_stack_per_guest_and_manager_figures():
    """Per-guest results add up to the whole, and the manager's queue is seen by Little's law."""
    sc = scenario_file.load(ROOT / "scenarios" / "vtpm-stack.toml",
                            ["stack.configs=[]", "stack.guest_count=3", "stack.iterations=5",
                             "stack.commands=['nv_write']", "expect[0].equals=15"])
    result = runner.run(sc)
    m = result.metrics
    assert result.results["stack"]["guests"] == ["guest1", "guest2", "guest3"]
    per_guest = [m[f"stack.guest.guest{i}.commands_completed"] for i in (1, 2, 3)]
    assert per_guest == [5, 5, 5] and m["stack.commands_completed"] == 15
    assert m["stack.throughput_per_s"] == pytest.approx(sum(
        m[f"stack.guest.guest{i}.throughput_per_s"] for i in (1, 2, 3)))
    assert m["stack.throughput_per_s"] == pytest.approx(15 / m["stack.workload_seconds"])
    # each guest's NV define and each of its NV writes saves through the manager: 3 + 15 waits
    n = m["stack.manager.wait_ms.count"]
    assert n == 18
    assert m["stack.manager.queue_max"] >= 1
    span_ms = m["stack.workload_seconds"] * 1e3
    assert m["stack.manager.queue_mean"] == pytest.approx(
        m["stack.manager.wait_ms.mean"] * n / span_ms)
    for i in (1, 2, 3):
        assert m[f"stack.guest.guest{i}.latency_ms.p50"] <= m[f"stack.guest.guest{i}.latency_ms.p95"] \
            <= m[f"stack.guest.guest{i}.latency_ms.p99"]


def test_metrics_refuses_what_run_and_validate_refuse(capsys):
    """`simxen metrics` listed the metrics of a scenario whose profile switch `run` would
    refuse; it now gives validate's one-line error and exit 2."""
    from simxen import cli
    args = [str(ROOT / "scenarios" / "ring-pingpong.toml"), "--set",
            'profile.switches."tis.wait"=bogus']
    assert cli.main(["validate", *args]) == 2
    said = capsys.readouterr().err
    assert cli.main(["metrics", *args]) == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err == said.replace("simxen validate:", "simxen metrics:")
    assert "expected one of ['poll', 'interrupt'], found 'bogus'" in out.err

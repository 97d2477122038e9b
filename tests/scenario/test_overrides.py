"""`--set KEY=VALUE`: overrides typed and checked by the file's own schema."""

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from simxen.errors import InputError
from simxen.scenario import overrides, runner, scenario_file

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "scenarios" / "vtpm-stack.toml"
PINGPONG = ROOT / "scenarios" / "ring-pingpong.toml"
MANY = ROOT / "scenarios" / "many-guests.toml"


def simxen(*args):
    return subprocess.run([sys.executable, "-m", "simxen.cli", *args], capture_output=True,
                          text=True, timeout=300)


def test_key_segments_and_values():
    o = overrides.parse('profile.switches."tpmfront.wait"=interrupt')
    assert o.segments == ("profile", "switches", "tpmfront.wait") and o.value == "interrupt"
    assert overrides.parse("stack.guest_count=32").value == 32
    assert overrides.parse("scenario.until=2.5").value == 2.5
    assert overrides.parse("stack.strong_persistence=false").value is False
    assert overrides.parse('stack.commands=["quote", "nv_read"]').value == ["quote", "nv_read"]
    assert overrides.parse("scenario.name=a=b").value == "a=b"


@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_seed_override_is_the_seed(seed):
    sc = scenario_file.load(PINGPONG, [f"scenario.seed={seed}"])
    assert sc.data["scenario"]["seed"] == seed
    assert sc.overrides == (f"scenario.seed={seed}",)


def test_overrides_reach_workloads_domains_and_profile():
    sc = scenario_file.load(PINGPONG, ["pingpong.window=8", "backend.vcpus=2",
                                        "workload[0].requests=10",
                                        'profile.switches."tpmfront.wait"=interrupt'])
    wl = sc.data["workload"][0]
    assert wl["window"] == 8 and wl["requests"] == 10
    assert [d["vcpus"] for d in sc.data["domain"]] == [1, 2]
    assert runner.load_profile(sc).switch("tpmfront.wait") == "interrupt"


def test_an_override_changes_the_run():
    base = runner.run(scenario_file.load(PINGPONG, ["pingpong.requests=50"]))
    seeded = runner.run(scenario_file.load(PINGPONG, ["pingpong.requests=50", "scenario.seed=9"]))
    assert base.results["pingpong"]["requests_completed"] == 50
    assert seeded.seed == 9
    assert seeded.metrics["pingpong.latency_us.mean"] != base.metrics["pingpong.latency_us.mean"]


def test_guest_count_names_the_guests():
    sc = scenario_file.load(STACK, ["stack.configs=[]", "stack.guest_count=4"])
    from simxen.scenario.workloads import vtpm_stack
    assert vtpm_stack.guest_names(sc.data["workload"][0]) == ["guest1", "guest2", "guest3", "guest4"]


@pytest.mark.parametrize("sets,words", [
    (["stack.iterations=abc"], "--set stack.iterations=abc: expected an integer >= 1, found 'abc'"),
    (["stack.guest_cont=3"], "did you mean 'guest_count'?"),
    (["stack.guest_count=3"], "--set stack.guest_count=3: give either `configs`"),
    (["stack.configs=[]", "stack.guests=['a']", "stack.guest_count=2"], "not both"),
    (["stack.guest_count=0", "stack.configs=[]"], "expected an integer >= 1, found 0"),
    (["nosuch.x=1"], "found 'nosuch'"),
    (["stack"], "expected KEY=VALUE"),
    (["workload[3].x=1"], "workload[3] is not one of them"),
    (['profile."a.b=1'], "expected KEY=VALUE"),
    (["scenario.seed=-1"], "expected an integer >= 0"),
])
def test_bad_override_is_one_line_naming_it(sets, words):
    with pytest.raises(InputError) as e:
        scenario_file.load(STACK, sets)
    assert words in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("sets,words", [
    # 0 guests is not a count the load workload can run (it once meant "use `guests`": the run
    # loaded guest1 while a sweep's CSV said 0)
    (["stack.guest_count=0"], "--set stack.guest_count=0: expected an integer >= 1, found 0"),
    (["stack.guests=['a', 'b']", "stack.guest_count=2"], "give either `guests` (names) or "
                                                         "`guest_count`"),
])
def test_load_guest_count_is_a_count_of_guests(sets, words):
    with pytest.raises(InputError) as e:
        scenario_file.load(MANY, sets)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_load_guests_by_count_or_by_name(tmp_path):
    from simxen.scenario.workloads import load
    counted = scenario_file.load(MANY, ["stack.guest_count=3"]).data["workload"][0]
    assert load.guest_names(counted) == ["guest1", "guest2", "guest3"]
    named = tmp_path / "named.toml"
    named.write_text(MANY.read_text().replace("guest_count = 4", 'guests = ["web", "db"]'))
    assert load.guest_names(scenario_file.load(named).data["workload"][0]) == ["web", "db"]

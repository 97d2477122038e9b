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


def test_the_report_says_what_the_run_set():
    """A report of a run with --set says so: the file's description was written for its own
    values, and the report alone must say how to run the same thing again."""
    sets = ["pingpong.requests=50", 'profile.switches."tpmfront.wait"=interrupt']
    def run_rows(sets):
        report = runner.run(scenario_file.load(PINGPONG, sets)).report
        return dict(next(s for s in report.sections if s.title == "Run").rows)

    rows = run_rows(sets)
    assert rows["--set"] == 'pingpong.requests=50, profile.switches."tpmfront.wait"=interrupt'
    assert "--set" not in run_rows([])


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
    # a whole [[table]] by position: was an internal error (IndexError), exit 3
    (["workload[0]=1"], "--set workload[0]=1: expected a key of workload[0] after it, "
     "e.g. workload[0].iterations=VALUE; found workload[0] with nothing after it"),
    (["expect[0]={metric='stack.guests'}"], "expected a key of expect[0] after it, "
     "e.g. expect[0].metric=VALUE"),
])
def test_bad_override_is_one_line_naming_it(sets, words):
    with pytest.raises(InputError) as e:
        scenario_file.load(STACK, sets)
    assert words in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("sets", [["pingpong.name=x.y"], ["workload[0].name=x.y"],
                                  ["pingpong.name= "]])
def test_a_bad_workload_name_set_is_blamed_on_the_set(sets):
    """The checks of names across tables (blank, holding a '.', used twice) name a workload
    by position, validation by name: the error named the file's workload[0].name, which
    the file has right, not the --set that made it wrong."""
    with pytest.raises(InputError) as e:
        scenario_file.load(PINGPONG, sets)
    assert str(e.value).startswith(f"{PINGPONG}: --set {sets[0]}: expected a name that is "
                                   "not blank"), str(e.value)


def test_cli_run_and_validate_exit_2_on_bad_set():
    for cmd in ("run", "validate"):
        r = simxen(cmd, str(STACK), "--set", "stack.iterations=-3")
        assert r.returncode == 2
        assert r.stderr.strip().endswith("--set stack.iterations=-3: expected an integer >= 1, "
                                         "found -3")
        assert "Traceback" not in r.stderr
    # validate checks the profile overrides exactly as run will read them
    r = simxen("validate", str(STACK), "--set", "profile.switchez.x=1")
    assert r.returncode == 2 and "switchez" in r.stderr


#: the profile's name-valued switches and the names their readers know
NAMED_SWITCHES = {"tpmfront.kernel": {"linux-3.12", "linux-4.4", "linux-6"},
                  "tpmfront.wait": {"era", "interrupt", "poll"},
                  "tis.wait": {"poll", "interrupt"}}
#: intervals, HZ and timeouts: a negative one stopped SimPy mid-run (ValueError: Negative
#: delay, an internal error), a zero poll interval never advanced simulated time
POSITIVE_SWITCHES = ["tpmfront.poll_interval", "tpmfront.hz", "tpmfront.tpm_timeout",
                     "tpmfront.timeout", "tpmfront.timeout_c", "tis.poll_interval", "tis.duration"]


def _prepare_with(setting):
    runner.prepare(scenario_file.load(PINGPONG, [setting]))


@given(st.sampled_from(sorted(NAMED_SWITCHES)),
       st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.-", max_size=12))
def test_a_switch_value_its_reader_does_not_know_is_refused_before_the_run(name, value):
    """`tpmfront.wait = "bogus"` was accepted and read as "interrupt" by the report's
    estimates but as "era" by tpmfront; `tpmfront.kernel = "bogus"` passed validate and
    failed run (a KeyError traceback in cpu-contention)."""
    setting = f'profile.switches."{name}"="{value}"'
    if value in NAMED_SWITCHES[name]:
        _prepare_with(setting)
        return
    with pytest.raises(InputError) as e:
        _prepare_with(setting)
    assert f"--set {setting}: expected one of" in str(e.value)
    assert str(e.value).endswith(f"found {value!r}")
    assert "\n" not in str(e.value)


@given(st.sampled_from(POSITIVE_SWITCHES),
       st.one_of(st.floats(max_value=0.0, allow_nan=False), st.integers(max_value=0),
                 st.just(float("inf"))))
def test_an_interval_hz_or_timeout_that_is_not_positive_is_refused(name, value):
    setting = f'profile.switches."{name}"={value!r}'
    with pytest.raises(InputError) as e:
        _prepare_with(setting)
    assert "expected a positive, finite number" in str(e.value)
    assert str(e.value).startswith(str(PINGPONG)) and f'"{name}"' in str(e.value)


def test_a_bad_switch_in_a_profile_file_is_blamed_on_that_file(tmp_path):
    profile = tmp_path / "p.toml"
    profile.write_text((ROOT / "simxen" / "profiles" / "default.toml").read_text()
                       .replace('"tis.wait" = "poll"', '"tis.wait" = "polling"'))
    scenario = tmp_path / "s.toml"
    scenario.write_text(PINGPONG.read_text().replace('[scenario]\n',
                                                     f'[scenario]\nprofile = "{profile}"\n', 1))
    with pytest.raises(InputError) as e:
        runner.prepare(scenario_file.load(scenario))
    assert str(e.value) == (f"{profile}: switches.tis.wait: expected one of "
                            "['poll', 'interrupt'], found 'polling'")
    r = simxen("validate", str(scenario))
    assert r.returncode == 2 and r.stderr.strip().endswith("found 'polling'")


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

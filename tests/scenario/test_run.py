"""`simxen run`: a report, exit status from the expectations, a deterministic trace."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from simxen.scenario import runner, scenario_file

ROOT = Path(__file__).resolve().parents[2]
PINGPONG = ROOT / "scenarios" / "ring-pingpong.toml"


def simxen(*args):
    return subprocess.run([sys.executable, "-m", "simxen.cli", *args], capture_output=True,
                          text=True, timeout=300)


def small(tmp_path, extra="", requests=200):
    text = PINGPONG.read_text().replace("requests = 2000", f"requests = {requests}")
    text = text.replace("equals = 2000", f"equals = {requests}") + extra
    p = tmp_path / "small.toml"
    p.write_text(text)
    return p


def test_run_prints_report_and_exits_0(tmp_path):
    r = simxen("run", str(small(tmp_path)))
    assert r.returncode == 0, r.stderr
    assert "Ring ping-pong (pingpong)" in r.stdout
    assert "PASS  pingpong.requests_completed equals 200" in r.stdout
    assert r.stderr == ""          # piped: no progress line


def test_failed_expectation_exits_1(tmp_path):
    p = small(tmp_path, extra='\n[[expect]]\nmetric = "pingpong.latency_us.p99"\nbelow = 0.001\n')
    r = simxen("run", str(p))
    assert r.returncode == 1
    assert "FAIL  pingpong.latency_us.p99 is below 0.001" in r.stdout
    assert "1 expectation(s) failed" in r.stderr


def test_unknown_metric_fails_expectation(tmp_path):
    p = small(tmp_path, extra='\n[[expect]]\nmetric = "pingpong.no_such"\nequals = 1\n')
    r = simxen("run", str(p))
    assert r.returncode == 1 and "<no such result>" in r.stdout


def test_same_seed_same_trace_bytes(tmp_path):
    a, b, c = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    p = small(tmp_path)
    for out, seed in ((a, "3"), (b, "3"), (c, "4")):
        r = simxen("run", str(p), "--seed", seed, "--trace", str(out))
        assert r.returncode == 0, r.stderr
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()
    # a different seed changes the times drawn from the profile; the story stays the same
    # (the same kinds of record, every request answered), though timing may change details
    # such as how many notifications were coalesced
    kinds = [{json.loads(line)["kind"] for line in f.read_text().splitlines()} for f in (a, c)]
    assert kinds[0] == kinds[1]
    for f in (a, c):
        sends = [json.loads(line) for line in f.read_text().splitlines()
                 if '"page.write"' in line]
        assert len(sends) >= 2 * 200


def test_json_report(tmp_path):
    r = simxen("run", str(small(tmp_path)), "--json")
    doc = json.loads(r.stdout)
    assert doc["expectations"] and all(e["passed"] for e in doc["expectations"])


def test_until_stops_an_unfinished_run(tmp_path):
    sc = scenario_file.load(small(tmp_path, requests=5000))
    result = runner.run(sc, until=0.401)
    assert result.results["pingpong"] == {"finished": False}
    assert not result.report.passed
    assert result.sim_time <= 0.401 + 1e-9


def test_trace_into_missing_folder_is_input_error(tmp_path):
    r = simxen("run", str(small(tmp_path)), "--trace", str(tmp_path / "no" / "t.jsonl"))
    assert r.returncode == 2 and "folder does not exist" in r.stderr


def test_a_trace_file_at_trace_level_off_is_refused_before_the_run(tmp_path):
    """It wrote an empty file and said nothing; now one line, exit 2, and no file."""
    out = tmp_path / "t.jsonl"
    r = simxen("run", str(small(tmp_path)), "--trace", str(out), "--trace-level", "off")
    assert r.returncode == 2 and r.stdout == "" and not out.exists()
    assert r.stderr.strip() == ("simxen run: --trace: --trace-level off keeps no record, so the "
                                "file would be empty: use --trace-level commands or full, or "
                                "leave out --trace")


def test_progress_line_on_a_terminal(tmp_path, simxen_on_a_terminal):
    """On a terminal, stderr carries a progress line; piped, it stays silent (above)."""
    proc, err = simxen_on_a_terminal("run", str(small(tmp_path)))
    assert proc.returncode == 0
    assert "simulated" in err and "of at most 10 s" in err


def test_an_output_that_is_the_scenario_or_the_trace_read_is_refused_and_kept(tmp_path, capsys):
    # was: exit 0, and the scenario (run --trace, trace -o) or the --from trace (trace -o,
    # cut to its first lines) overwritten by the output
    from simxen.cli import main
    scenario = small(tmp_path)
    text = scenario.read_bytes()
    (tmp_path / "link.toml").symlink_to(scenario)
    for argv, said in [
        (["run", scenario, "--trace", scenario, "--no-progress"], "--trace: is the scenario, "
         "which this command reads: "),
        (["run", tmp_path / "link.toml", "--trace", scenario, "--no-progress"],
         f"--trace: is the scenario ({tmp_path / 'link.toml'}), which this command reads"),
        (["trace", scenario, "-f", "text", "-o", scenario], "-o: is the scenario, which this "
         "command reads"),
    ]:
        assert main(list(map(str, argv))) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"simxen {argv[0]}: {scenario}: {said}"), err
        assert err.endswith("writing it would destroy it; give another file"), err
        assert scenario.read_bytes() == text
    trace = tmp_path / "t.jsonl"
    assert main(["run", str(scenario), "--trace", str(trace), "--no-progress"]) == 0
    recorded = trace.read_bytes()
    capsys.readouterr()
    assert main(["trace", "--from", str(trace), "-f", "text", "-o", str(trace)]) == 2
    assert "-o: is the trace, which this command reads" in capsys.readouterr().err
    assert trace.read_bytes() == recorded


@pytest.mark.parametrize("command, option", [("run", "--trace"), ("trace", "-o")])
def test_an_output_over_a_file_the_scenario_names_is_refused_and_the_file_kept(
        tmp_path, capsys, command, option):
    # was: exit 0, and the verifier's policy replaced by the run's trace or its export
    import shutil
    from simxen.cli import main
    shutil.copy(ROOT / "scenarios" / "boot-attest.toml", tmp_path)
    (tmp_path / "policies").mkdir()
    policy = tmp_path / "policies" / "web-guest.toml"
    shutil.copy(ROOT / "scenarios" / "policies" / "web-guest.toml", policy)
    before = policy.read_bytes()
    extra = ["--no-progress"] if command == "run" else ["-f", "text"]
    assert main([command, str(tmp_path / "boot-attest.toml"), option, str(policy),
                 *extra]) == 2
    assert capsys.readouterr().err.strip() == (
        f"simxen {command}: {policy}: {option}: is a file the scenario names, which this "
        "command reads: writing it would destroy it; give another file")
    assert policy.read_bytes() == before


@pytest.mark.parametrize("command", [["run"], ["trace", "--format", "text", "-o"]])
def test_an_empty_output_name_is_refused_not_taken_for_no_file(tmp_path, command):
    """``--trace "$OUT"`` with OUT unset: the run used to go ahead, silently writing no
    trace at all. An empty name is now a usage error (exit 2) before anything runs."""
    args = [*command, ""] if command[-1] == "-o" else [*command, "--trace", ""]
    r = simxen(*args[:1], str(small(tmp_path)), *args[1:])
    assert r.returncode == 2 and r.stdout == ""
    assert "expected a name, found an empty one" in r.stderr

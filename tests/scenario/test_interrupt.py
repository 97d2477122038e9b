"""Nothing is lost on ``simxen run``: a signal stops the run at the current
simulated time, the report of what was reached is printed (marked PARTIAL)
and the trace so far is written; ``--trace -`` streams to standard output.
The signals go to a real ``simxen run`` process."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from simxen import cli
from simxen.scenario import runner, scenario_file

ROOT = Path(__file__).resolve().parents[2]
PINGPONG = ROOT / "scenarios" / "ring-pingpong.toml"


def endless(tmp_path):
    """ring-pingpong with far more requests than a test waits for."""
    text = PINGPONG.read_text().replace("requests = 2000", "requests = 100000000")
    text = text.replace("until = 10.0", "until = 1000000.0")
    p = tmp_path / "endless.toml"
    p.write_text(text)
    return p


def start(*args):
    return subprocess.Popen([sys.executable, "-m", "simxen.cli", "run", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path, proc, timeout=60):
    """Until *path* holds bytes (the run has begun: the trace file is opened before it)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.3)                      # let it simulate for a while


@pytest.mark.parametrize("sig,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_the_run_and_keeps_report_and_trace(tmp_path, sig, status):
    trace = tmp_path / "t.jsonl"
    proc = start(str(endless(tmp_path)), "--trace", str(trace))
    wait_for(trace, proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == status, err
    assert "Traceback" not in err
    assert f"stopped by {sig.name}" in err and str(trace) in err
    assert "PARTIAL: stopped by " + sig.name in out
    assert "had not finished" in out
    assert "Trace so far (records by kind)" in out
    records = [json.loads(line) for line in trace.read_text().splitlines()]
    assert len(records) > 10                 # the trace so far, not an empty file
    stopped_at = float(err.split(f"stopped by {sig.name} at ")[1].split()[0])   # %.6g
    assert 0 < records[-1]["t"] <= stopped_at * (1 + 1e-5)


def test_trace_to_standard_output_report_to_standard_error(tmp_path):
    p = tmp_path / "small.toml"
    p.write_text(PINGPONG.read_text().replace("requests = 2000", "requests = 50")
                 .replace("equals = 2000", "equals = 50"))
    r = subprocess.run([sys.executable, "-m", "simxen.cli", "run", str(p), "--trace", "-"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    records = [json.loads(line) for line in r.stdout.splitlines()]
    assert records and all("kind" in rec for rec in records)
    assert "Ring ping-pong (pp" in r.stderr or "Ring ping-pong" in r.stderr
    assert "PASS" in r.stderr


def test_stop_between_events_gives_a_partial_report(tmp_path):
    """In process: :class:`runner.Stop` set while running ends the run cleanly."""
    sc = scenario_file.load(endless(tmp_path))
    sim = runner.prepare(sc)
    stop = runner.Stop()
    timer = threading.Timer(0.5, lambda: setattr(stop, "reason", "a test"))
    timer.start()
    sim_result = runner.execute(sim, stop=stop)
    timer.join()
    assert sim_result.report.partial.startswith("stopped by a test at")
    assert sim_result.results["pingpong"] == {"finished": False}
    assert 0 < sim_result.sim_time < sim.until
    assert "PARTIAL" in sim_result.report.render()
    assert sim_result.report.as_dict()["partial"] == sim_result.report.partial


def test_an_internal_error_is_one_line_exit_3_with_the_traceback_in_a_file(tmp_path, capsys,
                                                                           monkeypatch):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")
    monkeypatch.setattr(runner, "execute", broken)
    status = cli.main(["run", str(PINGPONG), "--no-progress"])
    out, err = capsys.readouterr()
    assert status == 3 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("simxen run: internal error (ZeroDivisionError: a bug); full traceback in ")
    saved = Path(err.split("full traceback in ")[1].split(" -- ")[0])
    try:
        text = saved.read_text()
        assert "Traceback (most recent call last)" in text and "ZeroDivisionError" in text
        assert f"command: simxen run {PINGPONG}" in text
    finally:
        os.unlink(saved)

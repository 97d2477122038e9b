"""``simxen run --trace FILE`` writes the trace as the run goes: a long run's
file grows while it runs, and a run stopped by Ctrl-C leaves the complete,
sorted trace so far. The signal goes to a real ``simxen run`` process."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from simxen import cli
from simxen.scenario import runner, scenario_file
from simxen.xen.trace import Trace

from tests.scenario.test_interrupt import PINGPONG, ROOT, endless


@pytest.mark.slow
def test_the_file_grows_during_the_run_and_ctrl_c_leaves_it_complete(tmp_path):
    trace = tmp_path / "t.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "simxen.cli", "run", str(endless(tmp_path)),
                             "--trace", str(trace), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sizes = []
    deadline = time.monotonic() + 240
    while len(set(sizes) - {0}) < 2:        # two buffers' worth written while running
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, sizes
        time.sleep(0.1)
        sizes.append(trace.stat().st_size if trace.exists() else 0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "PARTIAL" in out
    recorded = int(out.split("trace records")[1].split()[0].replace(",", ""))
    keys = [(r["t"], r["seq"]) for r in map(json.loads, trace.read_text().splitlines())]
    assert keys == sorted(keys)
    assert sorted(seq for _, seq in keys) == list(range(recorded))     # every record, once


def test_cli_file_is_the_export_of_the_run_kept_whole(tmp_path, monkeypatch, capsys):
    """With a small buffer (so that it streams many times) ``--trace`` writes
    the bytes of the whole trace's export, at level full and commands."""
    scenario = ROOT / "scenarios" / "vtpm-stack.toml"
    for level in ("full", "commands"):
        whole = runner.run(scenario_file.load(scenario), trace_level=level).trace.dumps_jsonl()
        monkeypatch.setattr(runner, "Trace", lambda level: Trace(level=level, buffer_rows=64))
        path = tmp_path / f"{level}.jsonl"
        assert cli.main(["run", "--no-progress", "--trace", str(path), "--trace-level", level,
                         str(scenario)]) == 0
        capsys.readouterr()
        assert path.read_text() == whole
        assert cli.main(["run", "--no-progress", "--trace", "-", "--trace-level", level,
                         str(scenario)]) == 0
        assert capsys.readouterr().out == whole       # the report went to standard error
        monkeypatch.undo()


#: halfway through ring-pingpong's requests (they run from 2.631 s to 2.640 s)
BUG_AT = 2.636


def test_after_an_internal_error_the_file_is_a_sorted_prefix_of_the_trace(tmp_path, monkeypatch,
                                                                          capsys):
    """A model bug halfway through the ping-pong (exit status 3): what was
    written while the run went is the start of the trace the run would have
    written, up to the bug."""
    whole = runner.run(scenario_file.load(PINGPONG)).trace.dumps_jsonl().splitlines(True)
    execute = runner.execute

    def broken(sim, **kwargs):
        def bug():
            yield sim.hv.env.timeout(BUG_AT)
            raise ZeroDivisionError("a bug")
        sim.hv.env.process(bug())
        return execute(sim, **kwargs)
    monkeypatch.setattr(runner, "execute", broken)
    monkeypatch.setattr(runner, "Trace", lambda level: Trace(level=level, buffer_rows=256))
    path = tmp_path / "t.jsonl"
    assert cli.main(["run", "--no-progress", "--trace", str(path), str(PINGPONG)]) == 3
    err = capsys.readouterr().err
    Path(err.split("full traceback in ")[1].split(" -- ")[0]).unlink()
    lines = path.read_text().splitlines(True)
    assert 1000 < len(lines) < len(whole)
    assert lines == whole[:len(lines)]
    assert json.loads(lines[-1])["t"] <= BUG_AT


def test_serve_streams_its_trace_from_the_boot_on(monkeypatch):
    """``simxen serve --trace FILE``: the session's trace goes to the file it was
    built with; write_trace finishes it with the export's bytes."""
    import io

    from simxen.server.cmd_serve import ServeSession
    class File(io.StringIO):
        def close(self):
            self.text = self.getvalue()
            super().close()

    monkeypatch.setattr(runner, "Trace", lambda level: Trace(level=level, buffer_rows=128))
    out = File()
    session = ServeSession.build(ROOT / "scenarios" / "vtpm-stack.toml", "guest1",
                                 trace_file=out)
    assert 0 < out.getvalue().count("\n") == session.hv.trace.streamed()  # during the boot
    whole = session.hv.trace.dumps_jsonl()
    session.write_trace("unused", out)
    assert out.closed and out.text == whole

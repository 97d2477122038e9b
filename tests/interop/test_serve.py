"""tpm2-tools through ``simxen serve``: every command crosses the full simulated path.

``simxen serve scenarios/vtpm-stack.toml --domain guest1`` runs the seed's
host (vtpmmgr, vtpm-guest1, guest1) and exposes guest1's vTPM on loopback.
The module-scoped server below is driven by the TPM engine's own interop
tests (imported from ``test_tpm2_tools``, so the command set is the same one
run against the bare engine), then by checks only the full path can make:
the per-hop lines, the trace written at SIGTERM, the exit codes of bad
invocations (these need no external tool).
"""

import hashlib
import inspect
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from simxen.analysis import hops
from simxen.server.loopback import free_port_pair
from simxen.tpm import client as tpm_client
from simxen.tpm.constants import TPM_ALG, TPM_CC, TPM_RC

from raw_clients import MssimClient
from tpm_serve_helpers import require_tool, run_tool
import test_tpm2_tools as engine_tests
from test_tpm2_tools import tool

# The TPM engine's interop tests, run here against the guest's vTPM: every one
# of them that uses the module's ``server`` fixture (tools against one running
# TPM) is collected again in this module, where ``server`` is simxen serve.
# New engine tests join automatically -- the same command set, through the
# full path.
for _name, _test in vars(engine_tests).items():
    if _name.startswith("test_") and "server" in inspect.signature(_test).parameters:
        globals()[_name] = pytest.mark.interop(_test)

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "scenarios" / "vtpm-stack.toml"

interop = pytest.mark.interop


class ServeProcess:
    """``python -m simxen.server.cmd_serve SCENARIO --domain NAME ...`` on a free port pair.

    A thread reads standard error into :attr:`lines` (so many ``--hops``
    lines never fill the pipe); :meth:`wait_for` waits for a line.
    """

    def __init__(self, *extra, scenario=SCENARIO, domain="guest1", protocol="mssim", port=None,
                 start_timeout=60.0):
        self.port = port or free_port_pair()
        self.args = [sys.executable, "-m", "simxen.server.cmd_serve", str(scenario),
                     "--domain", domain, "--port", str(self.port), "--protocol", protocol, *extra]
        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, cwd=ROOT)
        self.lines = []
        self._arrived = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.tcti = f"{protocol}:host=127.0.0.1,port={self.port}"
        self.listening = self.wait_for("listening", start_timeout) is not None

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            self._arrived.put(True)
        self._arrived.put(False)

    def mark(self):
        """A position in :attr:`lines`, for :meth:`wait_for`'s ``since``."""
        return len(self.lines)

    def wait_for(self, text, timeout=30.0, since=0):
        """The first line from ``since`` on (read already or arriving within
        ``timeout``) that contains ``text``, or None."""
        deadline = time.monotonic() + timeout
        while True:
            found = next((line for line in self.lines[since:] if text in line), None)
            if found is not None:
                return found
            try:
                more = self._arrived.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return None
            if not more:
                return next((line for line in self.lines[since:] if text in line), None)

    def stop(self, sig=signal.SIGTERM, timeout=60):
        """Signal the server and wait; its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=10)
        return self.proc.returncode

    @property
    def log(self):
        return "\n".join(self.lines)


def start(*extra, **kw):
    srv = ServeProcess(*extra, **kw)
    if not srv.listening:
        srv.stop()
        raise AssertionError(f"simxen serve did not start:\n{srv.log}")
    return srv


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_tool("tpm2_startup")
    workdir = tmp_path_factory.mktemp("serve")
    srv = start("--hops", "--trace", str(workdir / "trace.jsonl"))
    run_tool(srv.tcti, workdir, "tpm2_startup", "-c")
    yield srv, workdir
    srv.stop()


# -- what only the full path can show --------------------------------------------

@interop
def test_listening_line_names_the_guest_and_its_vtpm(server):
    srv, _ = server
    line = srv.wait_for("listening")
    assert f"127.0.0.1:{srv.port}" in line and "guest1's vTPM" in line and "vtpm-guest1" in line


def hop_split(line):
    """``(total, {hop label: ms})`` parsed from a ``--hops`` line."""
    total = float(line.split(" total ")[1].split(" ms")[0])
    parts = line.split(" = ")[1].split(" (")[0].split(" + ")
    return total, {p.rsplit(" ", 1)[0]: float(p.rsplit(" ", 1)[1]) for p in parts}


@interop
def test_each_command_prints_its_hops(server):
    srv, cwd = server
    since = srv.mark()
    tool(server, "tpm2_pcrextend", "16:sha256=" + hashlib.sha256(b"hops").hexdigest())
    line = srv.wait_for("] TPM2_PCR_Extend TPM_RC_SUCCESS", since=since)
    assert line is not None, srv.log
    total, split = hop_split(line)
    assert list(split) == ["front->back", "vtpm", "manager", "ptpm", "back->front"]
    assert sum(split.values()) == pytest.approx(total, abs=0.003)
    # strong persistence (save_on = "success", Xen's vTPM): even a PCR extend is saved,
    # and the save's SaveHashKey is one manager round trip
    assert split["manager"] > 0 and "1 manager request" in line
    assert total >= 4.6                      # linux-6 xen-tpmfront sees it after a 4.7-5.0 ms sleep


@interop
def test_a_command_that_changes_nv_waits_for_the_manager(server):
    srv, cwd = server
    since = srv.mark()
    tool(server, "tpm2_nvdefine", "0x1500050", "-C", "o", "-s", "8", "-a", "ownerread|ownerwrite")
    line = srv.wait_for("] TPM2_NV_DefineSpace TPM_RC_SUCCESS", since=since)
    assert line is not None, srv.log
    total, split = hop_split(line)
    assert "(1 manager request, 0 physical TPM commands)" in line   # SAVEHASHKEY, disk only
    assert split["manager"] > 0 and split["ptpm"] == 0
    tool(server, "tpm2_nvundefine", "0x1500050", "-C", "o")


@interop
def test_tpm_errors_come_back_through_the_path_unchanged(server):
    srv, cwd = server
    since = srv.mark()
    bad = tool(server, "tpm2_nvread", "0x1500099", "-C", "o", "-s", "8", check=False)
    assert bad.returncode != 0 and b"0x18B" in bad.stderr       # TPM_RC_HANDLE, handle 1
    assert srv.wait_for("] TPM2_NV_ReadPublic TPM_RC_HANDLE (handle 1)", since=since), srv.log


@interop
def test_sigterm_writes_the_trace_and_the_hop_table(tmp_path):
    require_tool("tpm2_startup")
    trace = tmp_path / "t.jsonl"
    srv = start("--hops", "--trace", str(trace), "--seed", "7")
    try:
        run_tool(srv.tcti, tmp_path, "tpm2_startup", "-c")
        run_tool(srv.tcti, tmp_path, "tpm2_pcrextend", "23:sha256=" + "ab" * 32)
        run_tool(srv.tcti, tmp_path, "tpm2_nvdefine", "0x1500060", "-C", "o", "-s", "8")
    finally:
        assert srv.stop() == 143, srv.log
    assert "trace written" in srv.log and "command(s) through the path, 0 failed" in srv.log
    assert any(line.startswith("back->front") for line in srv.lines)
    cmds = {c.cc: c for c in hops.command_hops(hops.load(trace))}
    # save_on = "success" (Xen's strong persistence): the extend is saved too, one
    # SaveHashKey round trip to the manager each
    assert cmds[TPM_CC.PCR_Extend].manager_requests == 1 and cmds[TPM_CC.PCR_Extend].rc == 0
    assert cmds[TPM_CC.NV_DefineSpace].manager_requests == 1


def test_ctrl_c_stops_cleanly_and_writes_the_trace(tmp_path):
    trace = tmp_path / "idle.jsonl"
    srv = start("--trace", str(trace))
    assert srv.stop(signal.SIGINT) == 130, srv.log
    assert "0 command(s) through the path, 0 failed" in srv.log and "Traceback" not in srv.log
    records = hops.load(trace)
    assert any(r.kind == "tpm.front.connect" for r in records)      # the boot is in it
    boot = hops.command_hops(records)            # the vTPM's own trips to the manager
    assert boot and not [c for c in boot if str(c.flow).startswith("guest1/")]


@interop
def test_swtpm_protocol_through_the_path(tmp_path):
    require_tool("tpm2_startup")
    srv = start(protocol="swtpm")
    try:
        run = lambda *a: run_tool(srv.tcti, tmp_path, *a)  # noqa: E731
        run("tpm2_startup", "-c")
        run("tpm2_pcrextend", "16:sha256=" + "01" * 32)
        out = run("tpm2_pcrread", "sha256:16").stdout.decode()
        want = hashlib.sha256(bytes(32) + bytes.fromhex("01" * 32)).hexdigest().upper()
        assert want in out.upper()
        for i in range(6):                       # flushed between tool runs
            run("tpm2_createprimary", "-C", "o", "-G", "ecc256", "-c", f"p{i}.ctx")
    finally:
        assert srv.stop() == 143, srv.log
    # without --hops: name, response code and simulated latency
    line = next(line for line in srv.lines if "] TPM2_PCR_Extend" in line)
    assert line.endswith("ms simulated)") and "TPM2_PCR_Extend -> TPM_RC_SUCCESS (" in line


# -- bad invocations: one line, exit status 2 (no external tool needed) --------------

def serve_cli(*argv, timeout=60):
    return subprocess.run([sys.executable, "-m", "simxen.server.cmd_serve", *map(str, argv)],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def assert_one_line_error(proc, *fragments):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("simxen serve: ")
    for f in fragments:
        assert f in lines[0], lines[0]


def test_unknown_domain_is_one_line_exit_2():
    proc = serve_cli(SCENARIO, "--domain", "guest9", "--port", free_port_pair())
    assert_one_line_error(proc, "--domain", "guest9", "guest1")


def serve_without_booting(monkeypatch, capsys, *argv):
    """``simxen serve ARGV`` in this process, with a boot that fails the test: a refusal
    that comes out of it was made before the boot. Returns (exit status, stderr lines)."""
    from simxen.server import cmd_serve

    def no_boot(*args, **kwargs):
        raise AssertionError("simxen serve booted the host before refusing the request")
    monkeypatch.setattr(cmd_serve, "build_host", no_boot)
    status = cmd_serve.run([str(a) for a in argv])
    return status, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("name, fragments", [
    ("gust1", ["no domain called 'gust1'", "; did you mean 'guest1'?",
               "guests with a vTPM: guest1"]),
    ("vtpm-guest1", ["'vtpm-guest1' is a vtpm without a vTPM frontend", "guest1"]),
])
def test_a_wrong_domain_is_refused_before_the_boot(monkeypatch, capsys, tmp_path, name, fragments):
    """Was: refused once the whole host had booted, its --trace file already written."""
    trace = tmp_path / "t.jsonl"
    status, err = serve_without_booting(monkeypatch, capsys, SCENARIO, "--domain", name,
                                        "--trace", trace, "--port", free_port_pair())
    assert status == 2 and len(err) == 1, err
    assert err[0].startswith(f"simxen serve: {SCENARIO}: --domain: "), err
    for fragment in fragments:
        assert fragment in err[0], err
    assert not trace.exists()                       # nothing written for a refused request


def test_the_guests_of_a_count_are_the_ones_the_boot_creates(monkeypatch, capsys):
    """guest_count = 3 is guest1..guest3 before the boot as after it: guest3 is served
    (test_set_overrides_the_scenario_as_for_run), guest4 refused up front -- past the
    count, so no "did you mean 'guest3'"."""
    status, err = serve_without_booting(monkeypatch, capsys, SCENARIO, "--set", "stack.configs=[]",
                                        "--set", "stack.guest_count=3", "--domain", "guest4",
                                        "--port", free_port_pair())
    assert status == 2 and len(err) == 1, err
    assert "no domain called 'guest4'" in err[0] and "guests with a vTPM: guest1 .. guest3" in err[0]
    assert "did you mean" not in err[0]


def test_an_event_log_without_pv_grub_is_refused_before_the_boot(monkeypatch, capsys, tmp_path):
    """vtpm-stack's guest boots its kernel directly: nothing measures it, so there is no
    event log to write (was: found after the boot)."""
    status, err = serve_without_booting(monkeypatch, capsys, SCENARIO, "--domain", "guest1",
                                        "--eventlog-out", tmp_path / "log",
                                        "--port", free_port_pair())
    assert status == 2 and len(err) == 1, err
    assert "--eventlog-out: guest1 has no event log" in err[0] and "pv-grub" in err[0]
    assert not (tmp_path / "log").exists()


def test_the_event_log_and_the_trace_in_one_file_are_refused(monkeypatch, capsys, tmp_path):
    """Was: the event log, written after the boot, was overwritten by the trace at exit."""
    same = tmp_path / "out"
    status, err = serve_without_booting(
        monkeypatch, capsys, ROOT / "scenarios" / "boot-attest.toml", "--domain", "guest1",
        "--trace", same, "--eventlog-out", tmp_path / "." / "out", "--port", free_port_pair())
    assert status == 2 and len(err) == 1, err
    assert "--eventlog-out: is also the --trace file" in err[0]
    assert not same.exists()


def test_validate_domain_makes_the_same_check(tmp_path):
    """``simxen validate --domain`` is serve's check without the boot: the same line."""
    def validate(*argv):
        return subprocess.run([sys.executable, "-m", "simxen.cli", "validate", *map(str, argv)],
                              capture_output=True, text=True, timeout=60, cwd=ROOT)
    ok = validate(SCENARIO, "--domain", "guest1")
    assert ok.returncode == 0, ok.stderr
    bad = validate(SCENARIO, "--domain", "gust1")
    served = serve_cli(SCENARIO, "--domain", "gust1", "--port", free_port_pair())
    assert bad.returncode == served.returncode == 2, (bad.stderr, served.stderr)
    assert (bad.stderr.replace("simxen validate: ", "", 1)
            == served.stderr.replace("simxen serve: ", "", 1)), (bad.stderr, served.stderr)
    ring = validate(ROOT / "scenarios" / "ring-pingpong.toml", "--domain", "guest1")
    assert ring.returncode == 2 and "no workload here builds a vTPM host" in ring.stderr
    many = ROOT / "scenarios" / "many-guests.toml"
    assert validate(many, "--domain", "guest4").returncode == 0
    past = validate(many, "--domain", "guest5")
    assert past.returncode == 2 and "guests with a vTPM: guest1 .. guest4" in past.stderr
    ring = validate(many, "--domain", "guest1", "--set", "stack.transport=multi-slot")
    assert ring.returncode == 2 and ring.stderr.startswith(
        f"simxen validate: {many}: --set stack.transport=multi-slot: simxen serve drives a "
        "guest's xen-tpmfront over Xen's single request page")


@interop
def test_a_guest_of_the_load_workloads_host_is_served(tmp_path):
    """many-guests.toml: the load's host -- four guests, their vTPMs, one manager -- served
    without the load: tpm2-tools reach guest3's own vTPM, whose NV write saves through the
    shared manager like any of its guests' commands."""
    require_tool("tpm2_nvdefine")
    srv = start("--hops", scenario=ROOT / "scenarios" / "many-guests.toml", domain="guest3")
    try:
        assert "guest3" in srv.wait_for("listening")
        (tmp_path / "data").write_bytes(b"12345678")
        run_tool(srv.tcti, tmp_path, "tpm2_startup", "-c")
        run_tool(srv.tcti, tmp_path, "tpm2_nvdefine", "0x1500010", "-C", "o", "-s", "8", "-a",
                 "ownerread|ownerwrite")
        since = srv.mark()
        run_tool(srv.tcti, tmp_path, "tpm2_nvwrite", "0x1500010", "-C", "o", "-i", "data")
        line = srv.wait_for("TPM2_NV_Write TPM_RC_SUCCESS", since=since)
        assert line is not None and "(1 manager request, " in line, srv.log
        assert run_tool(srv.tcti, tmp_path, "tpm2_nvread", "0x1500010", "-C", "o",
                        "-s", "8").stdout == b"12345678"
    finally:
        assert srv.stop() == 143, srv.log    # SIGTERM: 128 + 15, as a shell reports it


@pytest.mark.parametrize("name, role", [("vtpmmgr", "vtpmmgr"), ("vtpm-guest1", "vtpm")])
def test_a_domain_without_its_own_vtpm_is_refused(name, role):
    proc = serve_cli(SCENARIO, "--domain", name, "--port", free_port_pair())
    assert_one_line_error(proc, f"{name!r} is a {role}", "guest1")


def test_bad_scenario_file_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[scenario]\nname = 3\n")
    assert_one_line_error(serve_cli(bad, "--domain", "guest1"), "bad.toml", "scenario.name")
    assert_one_line_error(serve_cli(tmp_path / "none.toml", "--domain", "guest1"), "no such file")


def variant(tmp_path, old, new):
    """vtpm-stack.toml with ``old`` replaced by ``new`` (its profile path kept valid)."""
    text = SCENARIO.read_text()
    assert old in text
    path = tmp_path / "variant.toml"
    path.write_text(text.replace(old, new, 1))
    return path


def test_a_guest_without_a_vtpm_line_is_refused(tmp_path):
    path = variant(tmp_path, 'memory=512\nvtpm=["backend=vtpm-guest1"]', "memory=512")
    assert_one_line_error(serve_cli(path, "--domain", "guest1"),
                          "'guest1' is a guest without a vTPM", "guests with a vTPM: none")


def test_a_vtpm_not_up_before_scenario_until_is_one_line_exit_2(tmp_path):
    # xl create takes ~1 s per domain (the guest exists by ~3 s) and the vTPM sleeps 2 s first
    path = variant(tmp_path, "until = 120.0", "until = 3.5")
    assert_one_line_error(serve_cli(path, "--domain", "guest1"),
                          "guest1's vTPM did not connect within 3.5 simulated seconds",
                          "scenario.until")


def test_scenario_without_a_vtpm_host_is_refused():
    proc = serve_cli(ROOT / "scenarios" / "ring-pingpong.toml", "--domain", "guest1")
    assert_one_line_error(proc, "vtpm-stack")


def test_port_in_use_is_one_line_exit_2():
    port = free_port_pair()
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port + 1))
        s.listen(1)
        proc = serve_cli(SCENARIO, "--domain", "guest1", "--port", port)
    assert_one_line_error(proc, "cannot listen", str(port), "--port")


def test_a_trace_file_in_a_missing_folder_is_refused_before_the_boot(tmp_path):
    proc = serve_cli(SCENARIO, "--domain", "guest1", "--trace", tmp_path / "no" / "t.jsonl")
    assert_one_line_error(proc, "t.jsonl", "--trace", "folder does not exist")


def test_port_out_of_range_is_one_line_exit_2():
    assert_one_line_error(serve_cli(SCENARIO, "--domain", "guest1", "--port", 65535),
                          "--port")


def test_a_port_in_use_is_found_before_the_boot(tmp_path):
    # was: found only once the host had booted (its trace written, the boot's time lost)
    port = free_port_pair()
    trace = tmp_path / "t.jsonl"
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen(1)
        proc = serve_cli(SCENARIO, "--domain", "guest1", "--port", port, "--trace", trace)
    assert_one_line_error(proc, "--port: cannot listen", "Address already in use")
    assert not trace.exists()


@pytest.mark.parametrize("host", ["nosuchhost.invalid", "192.0.2.1", "bad..host"])
def test_an_address_that_is_not_this_machines_blames_host(host):
    # was: blamed on --port ("--port: cannot listen on 192.0.2.1:...: Cannot assign ...")
    proc = serve_cli(SCENARIO, "--domain", "guest1", "--host", host, "--port", free_port_pair())
    assert_one_line_error(proc, "--host: cannot listen on " + host)


def test_a_privileged_port_says_what_it_needs():
    """Only root (or CAP_NET_BIND_SERVICE) binds below 1024: CI runs as root, so the
    server is run as nobody there (setpriv); the message names the way out."""
    import os
    import shutil
    argv = [sys.executable, "-m", "simxen.cli", "tpm", "serve", "--port", "81"]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("root without setpriv: cannot drop privileges to try it")
        argv = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *argv]
    unprivileged = Path("/proc/sys/net/ipv4/ip_unprivileged_port_start")
    if unprivileged.exists() and int(unprivileged.read_text()) <= 81:
        pytest.skip("this kernel lets anyone bind port 81")
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd="/",
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == (
        "simxen tpm: --port: cannot listen on 127.0.0.1:81-82: Permission denied (a port below "
        "1024 needs root or CAP_NET_BIND_SERVICE; try --port 2321)")


def test_sigterm_or_ctrl_c_while_the_host_boots_writes_the_trace_and_exits_128_plus_n(
        tmp_path, monkeypatch, capsys):
    """The boot notes the signal and ends between two events: the trace so far is
    written whole (was: SIGTERM killed the process mid-write with no word, and Ctrl-C
    raised KeyboardInterrupt inside a model step)."""
    from simxen.analysis import trace_format
    from simxen.cli import main
    from simxen.server import cmd_serve
    for sig, status in ((signal.SIGTERM, 143), (signal.SIGINT, 130)):
        steps = []
        trace = tmp_path / f"{sig.name}.jsonl"
        monkeypatch.setattr(cmd_serve, "run_until",
                            _boot_signalled_after(cmd_serve.run_until, sig, steps))
        monkeypatch.setattr(cmd_serve.foreground, "wait_until_stopped", _booted_too_soon)
        capsys.readouterr()
        assert main(["serve", str(SCENARIO), "--domain", "guest1", "--port",
                     str(free_port_pair()), "--trace", str(trace)]) == status
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"simxen serve: stopped by {sig.name} while the host was booting, "
                              "at "), err
        assert err.endswith(f"s of simulated time; the trace so far is in {trace}")
        records = trace_format.load(trace)          # whole lines, in time order
        assert records and steps[0] >= 1
        keys = [(r["t"], r["seq"]) for r in records]
        assert keys == sorted(keys)
        monkeypatch.undo()


def _booted_too_soon(*args, **kwargs):
    raise AssertionError("the host booted before the signal: raise it earlier")


def _boot_signalled_after(boot, sig, steps, after=200):
    """The boot's ``run_until`` whose environment raises ``sig`` at this process after
    ``after`` events."""
    def signalled(env, end, stop):
        real = env.step

        def step():
            steps.append(1)
            if len(steps) == after:
                signal.raise_signal(sig)
            real()
        env.step = step
        try:
            return boot(env, end, stop)
        finally:
            del env.step
            steps[:] = [len(steps)]
    return signalled


def test_set_overrides_the_scenario_as_for_run(tmp_path):
    """``--set`` as ``simxen run`` takes it: three guests from the count, guest3 served
    (there was no --set: serving a host other than the file's meant editing a copy)."""
    require_tool("tpm2_getrandom")
    srv = start("--set", "stack.configs=[]", "--set", "stack.guest_count=3", domain="guest3")
    try:
        assert "guest3's vTPM" in srv.wait_for("listening")
        run_tool(srv.tcti, tmp_path, "tpm2_getrandom", "--hex", "8")
    finally:
        assert srv.stop() == 143, srv.log
    proc = serve_cli(SCENARIO, "--domain", "guest1", "--set", "stack.guest_count=0",
                     "--port", free_port_pair())
    assert_one_line_error(proc, "--set stack.guest_count=0")


@pytest.mark.parametrize("option", ["--trace", "--eventlog-out"])
def test_an_output_that_is_the_scenario_is_refused_before_the_boot_and_the_file_kept(
        tmp_path, option):
    # was: --trace truncated the scenario before the boot; --eventlog-out overwrote it after
    scenario = tmp_path / "stack.toml"
    scenario.write_bytes(SCENARIO.read_bytes())
    proc = serve_cli(scenario, "--domain", "guest1", "--port", free_port_pair(), option, scenario)
    assert_one_line_error(proc, f"{option}: is the scenario, which this command reads: writing it "
                          "would destroy it")
    assert scenario.read_bytes() == SCENARIO.read_bytes()


@pytest.mark.parametrize("option", ["--trace", "--eventlog-out"])
def test_an_output_that_is_a_file_the_scenario_names_is_refused_and_the_file_kept(
        tmp_path, option):
    # was: serve checked its outputs against the scenario only, so --trace on the policy
    # boot-attest names replaced the policy with the trace (run and trace -o refused it)
    scenario = tmp_path / "boot-attest.toml"
    scenario.write_bytes((ROOT / "scenarios" / "boot-attest.toml").read_bytes())
    (tmp_path / "policies").mkdir()
    policy = tmp_path / "policies" / "web-guest.toml"
    kept = (ROOT / "scenarios" / "policies" / "web-guest.toml").read_bytes()
    policy.write_bytes(kept)
    proc = serve_cli(scenario, "--domain", "guest1", "--port", free_port_pair(), option, policy)
    assert_one_line_error(proc, f"{option}: is a file the scenario names",
                          "writing it would destroy it")
    assert policy.read_bytes() == kept


@pytest.mark.parametrize("honour", [False, True], ids=["xen", "honour"])
def test_the_locality_a_client_sends_reaches_the_vtpm_only_when_honoured(honour):
    # mssim's TPM_SEND_COMMAND carries a locality; serve stores it in the guest's
    # shared page. Xen's vTPM ignores it, so PCR 17 (localities 2-4) stays closed
    extra = ("--set", 'stack.guest_locality="honour"') if honour else ()
    srv = start(*extra)
    try:
        mssim = MssimClient(srv.port, timeout=30)
        try:
            extend = tpm_client.pcr_extend_command(17, {TPM_ALG.SHA256: bytes(32)})
            rc = tpm_client.response_code(mssim.execute(extend, locality=3))
        finally:
            mssim.close()
    finally:
        srv.stop()
    assert rc == (TPM_RC.SUCCESS if honour else TPM_RC.LOCALITY)

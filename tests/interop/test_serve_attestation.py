"""``simxen serve`` on an attestation scenario: after pv-grub has measured the guest,
tpm2-tools read the same PCR 4/5 and event log the verifier of ``simxen run`` saw."""

import json
import re

import pytest

from simxen.cli import main

from tpm_serve_helpers import require_tool, run_tool
from test_serve import ROOT, start

pytestmark = pytest.mark.interop

SCENARIO = ROOT / "scenarios" / "boot-attest.toml"


@pytest.fixture(scope="module")
def verifier_saw():
    """PCR 4 and 5 (SHA-256) of guest1's vTPM in a run of the same scenario and seed."""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "simxen.cli", "run", str(SCENARIO), "--json",
                          "--no-progress"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    doc = json.loads(out.stdout)
    assert doc["metrics"]["attest.round.1.verdict"]["value"] == "trusted"
    return {4: doc["metrics"]["attest.pcr4"]["value"], 5: doc["metrics"]["attest.pcr5"]["value"]}


def test_pcrread_and_eventlog_show_what_the_verifier_saw(tmp_path, verifier_saw):
    require_tool("tpm2_pcrread")
    log = tmp_path / "binary_bios_measurements"
    srv = start("--eventlog-out", str(log), scenario=SCENARIO)
    try:
        out = run_tool(srv.tcti, tmp_path, "tpm2_pcrread", "sha256:4,5").stdout.decode()
    finally:
        assert srv.stop() == 143, srv.log
    read = {int(m.group(1)): m.group(2).lower()
            for m in re.finditer(r"^\s*(\d+)\s*:\s*0x([0-9A-Fa-f]{64})\s*$", out, re.M)}
    assert read == verifier_saw
    assert log.read_bytes()[:4] == b"\0\0\0\0"             # the Spec ID event sits in PCR 0
    replay = run_tool("none", tmp_path, "tpm2_eventlog", str(log)).stdout.decode()
    sha256 = replay.split("pcrs:")[1].split("sha256:")[1]
    replayed = {int(m.group(1)): m.group(2) for m in
                re.finditer(r"^\s*(\d+)\s*:\s*0x([0-9a-f]{64})\s*$", sha256, re.M)}
    assert replayed == verifier_saw
    assert "EV_EFI_BOOT_SERVICES_APPLICATION" in replay


def test_eventlog_out_needs_a_measured_boot(tmp_path, capsys):
    assert main(["serve", "scenarios/vtpm-stack.toml", "--domain", "guest1",
                 "--eventlog-out", str(tmp_path / "nope" / "log")]) == 2
    assert "folder does not exist" in capsys.readouterr().err


def test_a_fleet_guest_is_served_after_its_measured_boot(tmp_path):
    """fleet.toml: serve builds the fleet's host (every guest booted through pv-grub) without
    the verifier's rounds; guest7's PCR 4 and 5 are what tpm2_eventlog replays from its own
    event log, and the fleet's 2-level port limit is set for serve's boot as for a run."""
    require_tool("tpm2_pcrread")
    log = tmp_path / "binary_bios_measurements"
    srv = start("--eventlog-out", str(log), scenario=ROOT / "scenarios" / "fleet.toml",
                domain="guest7")
    try:
        assert "guest7's vTPM" in srv.wait_for("listening")
        out = run_tool(srv.tcti, tmp_path, "tpm2_pcrread", "sha256:4,5").stdout.decode()
    finally:
        assert srv.stop() == 143, srv.log
    read = {int(m.group(1)): m.group(2).lower()
            for m in re.finditer(r"^\s*(\d+)\s*:\s*0x([0-9A-Fa-f]{64})\s*$", out, re.M)}
    assert set(read) == {4, 5} and read[4] != "0" * 64
    replay = run_tool("none", tmp_path, "tpm2_eventlog", str(log)).stdout.decode()
    sha256 = replay.split("pcrs:")[1].split("sha256:")[1]
    replayed = {int(m.group(1)): m.group(2) for m in
                re.finditer(r"^\s*(\d+)\s*:\s*0x([0-9a-f]{64})\s*$", sha256, re.M)}
    assert {k: replayed[k] for k in (4, 5)} == read


def test_the_fleet_port_limit_reaches_serve_as_it_reaches_a_run():
    from simxen.scenario import runner, scenario_file, serve_host
    sc = scenario_file.load(ROOT / "scenarios" / "fleet.toml", ["fleet.evtchn_2l_ports=64"])
    sim = runner.prepare(sc)
    serve_host.plan(sim, "guest1")
    assert sim.hv.evtchn.nr_channels == 64


def test_eventlog_out_dash_is_standard_output(tmp_path):
    """``--eventlog-out -`` wrote a file named '-'; '-' is standard output for every other
    output file of simxen. The log comes out whole, and tpm2_eventlog reads it."""
    import os
    import signal
    import subprocess
    import sys

    from simxen.server.loopback import free_port_pair
    require_tool("tpm2_eventlog")
    proc = subprocess.Popen([sys.executable, "-m", "simxen.server.cmd_serve", str(SCENARIO),
                             "--domain", "guest1", "--port", str(free_port_pair()),
                             "--eventlog-out", "-", "--quiet"], cwd=tmp_path,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)),   # this checkout's
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for line in proc.stderr:                # the log is written before it listens
            if b"listening" in line:
                break
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 143 and not (tmp_path / "-").exists()
    assert out[:4] == b"\0\0\0\0"                       # the Spec ID event, in PCR 0
    log = tmp_path / "binary_bios_measurements"
    log.write_bytes(out)
    replay = run_tool("none", tmp_path, "tpm2_eventlog", str(log)).stdout.decode()
    assert "EV_EFI_BOOT_SERVICES_APPLICATION" in replay


def test_the_hop_table_counts_only_the_served_commands(tmp_path):
    """pv-grub's extends at boot cross the guest's tpmfront too (flows guest1/vtpm0/N), the
    first after waiting seconds for the vTPM; the exit table of ``--hops`` counted them as
    tools' commands: 4 rows for 1 command through the path, a 3.25 s maximum."""
    require_tool("tpm2_getrandom")
    srv = start("--hops", scenario=SCENARIO)
    try:
        run_tool(srv.tcti, tmp_path, "tpm2_getrandom", "--hex", "8")
    finally:
        assert srv.stop() == 143, srv.log
    served = int(srv.wait_for("command(s) through the path").split(": ")[1].split()[0])
    total = srv.wait_for("total ", since=srv.lines.index(srv.wait_for("hop ")))
    assert served >= 1 and int(total.split()[1]) == served, srv.log
    assert float(total.split()[-2]) < 100, srv.log          # max: no boot-time wait in it

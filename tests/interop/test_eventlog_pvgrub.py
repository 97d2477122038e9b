"""pv-grub's event log, read by the real ``tpm2_eventlog`` (tpm2-tools 5.4),
replays to the PCR 4/5 values the vTPM reports to the real ``tpm2_pcrread``.

The vTPM here is the engine pv-grub extended, served in-process over the
mssim protocol (:mod:`simxen.server.mssim`) so that ``tpm2_pcrread`` reads
it over TCP like any TPM. The scenario tests check the same equality through
the whole split-driver stack with the engine's own PCR_Read.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from simxen.domains import pvgrub
from simxen.domains.images import GuestImages, Image, initrd_bytes, kernel_bytes
from simxen.protocols import tcg_eventlog as tl
from simxen.server.loopback import free_port_pair
from simxen.server.mssim import MssimServer
from simxen.server.resource_manager import ResourceManager
from simxen.tpm import TpmEngine, client

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "attest"))
from attest_support import EngineFront, drive  # noqa: E402

pytestmark = pytest.mark.interop


def tool(name):
    path = shutil.which(name) or (f"/usr/bin/{name}" if os.path.exists(f"/usr/bin/{name}") else None)
    if path is None:
        if os.environ.get("SIMXEN_REQUIRE_TOOLS") == "1":
            pytest.fail(f"{name} is required (SIMXEN_REQUIRE_TOOLS=1) but not installed")
        pytest.skip(f"{name} not installed")
    return path


def booted(initrd=True, cmdline="root=/dev/xvda1 ro console=hvc0"):
    engine = TpmEngine(seed=b"interop vtpm", powered=True)
    client.check(engine.execute(client.startup_command()))
    images = GuestImages(Image("kernel", kernel_bytes("linux", "6.1.0-13"), "t"),
                         Image("initrd", initrd_bytes("initramfs", "6.1.0-13"), "t")
                         if initrd else None, cmdline)
    return engine, drive(pvgrub.measure(EngineFront(engine), images))


def eventlog(tmp_path, data):
    path = tmp_path / "binary_bios_measurements"
    path.write_bytes(data)
    proc = subprocess.run([tool("tpm2_eventlog"), str(path)], capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert b"WARN" not in proc.stderr and b"ERROR" not in proc.stderr, proc.stderr
    return yaml.safe_load(proc.stdout)


def as_bytes(printed, sizes={"sha1": 20, "sha256": 32}):
    return {bank: {pcr: v.to_bytes(sizes[bank], "big") for pcr, v in values.items()}
            for bank, values in printed["pcrs"].items()}


def pcrread(engine):
    port = free_port_pair()
    server = MssimServer(ResourceManager(engine), "127.0.0.1", port, platform=engine).start()
    try:
        proc = subprocess.run([tool("tpm2_pcrread"), "-T", f"mssim:host=127.0.0.1,port={port}",
                               "sha1:4,5+sha256:4,5"], capture_output=True, timeout=60)
    finally:
        server.stop()
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    printed = yaml.safe_load(proc.stdout)
    return as_bytes({"pcrs": printed})


@pytest.mark.parametrize("initrd", [True, False])
def test_log_parses_and_replays_to_what_tpm2_pcrread_reads(tmp_path, initrd):
    engine, boot = booted(initrd=initrd)
    printed = eventlog(tmp_path, boot.log_bytes)
    types = [e["EventType"] for e in printed["events"][1:]]
    assert types == ["EV_EFI_BOOT_SERVICES_APPLICATION", "EV_EVENT_TAG", "EV_EVENT_TAG"]
    assert printed["events"][1]["Event"]["ImageLengthInMemory"] == len(kernel_bytes("linux", "6.1.0-13"))
    replayed = as_bytes(printed)
    assert replayed == tl.replay(tl.parse(boot.log_bytes)[1])
    assert replayed == pcrread(engine)


def test_a_changed_cmdline_changes_only_pcr5(tmp_path):
    _, a = booted()
    _, b = booted(cmdline="root=/dev/xvda1 ro init=/bin/sh")
    pa, pb = as_bytes(eventlog(tmp_path, a.log_bytes)), as_bytes(eventlog(tmp_path, b.log_bytes))
    assert pa["sha256"][4] == pb["sha256"][4] and pa["sha256"][5] != pb["sha256"][5]


def test_through_the_whole_stack(tmp_path):
    """pv-grub in a simulated host; tpm2_pcrread reaches the guest's vTPM through
    guest tpmfront -> vTPM stub domain (SimulatedPath), the way a tool in the
    guest would."""
    from simxen.server.sim_backend import SimulatedPath
    from attest_support import booted_host
    hv, host, guest = booted_host()
    boot = guest.boot_measurement
    assert boot.measured and boot.commands == 3
    printed = eventlog(tmp_path, boot.log_bytes)
    path = SimulatedPath.for_guest(guest)
    assert as_bytes(printed) == pcrread(path)

"""Logs written by simxen, read by the real ``tpm2_eventlog`` (tpm2-tools 5.4).

The tool's replayed ``pcrs:`` must equal :func:`simxen.protocols.tcg_eventlog.replay`
and it must print no warning (so the event types used decode the way it expects).
"""

import hashlib
import os
import shutil
import subprocess

import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from simxen.protocols import tcg_eventlog as tl

pytestmark = pytest.mark.interop

TOOL = shutil.which("tpm2_eventlog") or ("/usr/bin/tpm2_eventlog" if os.path.exists("/usr/bin/tpm2_eventlog") else None)


@pytest.fixture(scope="module")
def tool():
    if TOOL is None:
        if os.environ.get("SIMXEN_REQUIRE_TOOLS") == "1":
            pytest.fail("tpm2_eventlog is required (SIMXEN_REQUIRE_TOOLS=1) but not installed")
        pytest.skip("tpm2_eventlog not installed")
    return TOOL


def run_tool(tool, tmp_path, data, allowed_warnings=()):
    path = tmp_path / "log.bin"
    path.write_bytes(data)
    proc = subprocess.run([tool, str(path)], capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    complaints = [line for line in proc.stderr.decode(errors="replace").splitlines()
                  if ("WARN" in line or "ERROR" in line) and not any(w in line for w in allowed_warnings)]
    assert not complaints, complaints
    return yaml.safe_load(proc.stdout)


def tool_pcrs(printed, sizes):
    return {bank: {pcr: value.to_bytes(sizes[bank], "big") for pcr, value in values.items()}
            for bank, values in printed["pcrs"].items()}


SIZES = {"sha1": 20, "sha256": 32, "sha384": 48, "sha512": 64}


def grub_cmd(log, text):
    """EV_IPL on PCR 8 as GRUB writes it: digests over the command after ``grub_cmd: ``."""
    data = f"grub_cmd: {text}\0".encode()
    command = text.encode()
    log.append(8, tl.EV_IPL, data, {a: hashlib.new(tl.alg_name(a), command).digest()
                                   for a in log.algorithms})


def boot_log(algs, kernel=b"\x7fELF kernel image", cmdline="root=/dev/xvda1 ro"):
    """A pv-grub-like boot: CRTM, separators, an EFI action, grub command, kernel."""
    log = tl.EventLog(algs)
    log.append(0, tl.EV_S_CRTM_VERSION, "SimXen 1.0\0".encode("utf-16-le"))
    log.append(0, tl.EV_POST_CODE, b"POST CODE")
    for pcr in range(8):
        log.append(pcr, tl.EV_SEPARATOR, bytes(4))
    log.append(4, tl.EV_EFI_ACTION, b"Calling EFI Application from Boot Option")
    grub_cmd(log, f"linux /boot/vmlinuz {cmdline}")
    log.append(9, tl.EV_IPL, b"/boot/vmlinuz\0",
               {a: hashlib.new(tl.alg_name(a), kernel).digest() for a in log.algorithms})
    return log


def test_boot_log_replays_the_same(tool, tmp_path):
    log = boot_log(["sha1", "sha256"])
    printed = run_tool(tool, tmp_path, log.to_bytes())
    assert tool_pcrs(printed, SIZES) == tl.replay(log.events)
    assert [e["EventType"] for e in printed["events"][1:]] == [e.type_name for e in log.events]


def test_startup_locality_needs_the_54_quirk(tool, tmp_path):
    log = tl.EventLog(["sha256"])
    log.events.append(tl.startup_locality_event(3, log.algorithms))
    log.append(0, tl.EV_POST_CODE, b"POST CODE")
    printed = tool_pcrs(run_tool(tool, tmp_path, log.to_bytes()), SIZES)
    assert printed == tl.replay(log.events, tpm2_tools_54_quirk=True)
    assert printed != tl.replay(log.events)  # what a real TPM holds differs


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(algs=st.lists(st.sampled_from(["sha1", "sha256", "sha384", "sha512"]), min_size=1, max_size=4,
                     unique=True),
       records=st.lists(st.tuples(st.integers(0, 7),
                                  st.sampled_from([tl.EV_POST_CODE, tl.EV_EFI_ACTION, tl.EV_SEPARATOR]),
                                  st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e),
                                          min_size=1, max_size=40)),
                        min_size=1, max_size=10),
       kernel=st.binary(max_size=64))
def test_generated_logs_replay_the_same(tool, tmp_path, algs, records, kernel):
    log = tl.EventLog(algs)
    for pcr, etype, text in records:
        log.append(pcr, etype, bytes(4) if etype == tl.EV_SEPARATOR else text.encode())
    log.append(9, tl.EV_IPL, b"/boot/vmlinuz\0",
               {a: hashlib.new(tl.alg_name(a), kernel).digest() for a in log.algorithms})
    assert tool_pcrs(run_tool(tool, tmp_path, log.to_bytes()), SIZES) == tl.replay(log.events)

"""The physical TPM chip: a TPM engine behind the TIS window, timed by the profile."""

import struct

import pytest

from simxen.hw.tis import TIS_COMPLETION, TIS_EXECUTION
from simxen.hw.tpm_chip import TIS_FIRST_MFN, TpmChip
from simxen.protocols import tis as reg
from simxen.tpm import TpmEngine, client
from simxen.tpm.constants import TPM_ALG
from simxen.xen import Hypervisor, errno
from simxen.xen.errors import IomemError


def fixed(value):
    return {"dist": "fixed", "value": value}


def make(ops=None, seed=1):
    hv = Hypervisor(seed=seed)
    if ops:
        hv.profile = hv.profile.with_overrides({"ops": ops})
    engine = TpmEngine(seed=b"host", random_bytes=hv.streams.random_bytes("ptpm"))
    chip = TpmChip(hv, engine)
    return hv, chip


def go(window, cmd, locality=0):
    """Request the locality, write the command, GO (no waiting: these are device tests)."""
    base = reg.tis_address(locality, 0)
    window.write(base + reg.TPM_ACCESS, bytes([reg.TPM_ACCESS_REQUEST_USE]))
    window.write(base + reg.TPM_STS, bytes([reg.TPM_STS_COMMAND_READY]))
    window.write(base + reg.TPM_DATA_FIFO, cmd)
    window.write(base + reg.TPM_STS, bytes([reg.TPM_STS_GO]))


def test_registered_at_fed40_five_frames_and_nobody_else_can_map_it_once_owned():
    hv, chip = make()
    mgr = hv.domain_create("vtpmmgr", iomem=[(TIS_FIRST_MFN, 5)])
    assert hv.iomem.map(mgr, 0xfed40, 5).size == 0x5000
    with pytest.raises(IomemError) as exc:
        hv.iomem.map(hv.dom0, 0xfed40, 5)
    assert exc.value.code == -errno.EPERM
    with pytest.raises(IomemError):
        hv.iomem.map(hv.dom0, 0xfed42, 1)  # not even locality 2's page alone


def test_latency_op_is_the_commands_own_else_default():
    hv, chip = make()
    assert chip.latency_op(client.pcr_read_command({TPM_ALG.SHA256: [0]})) == "tpm.ptpm.PCR_Read"
    assert chip.latency_op(client.get_random_command(8)) == "tpm.ptpm.GetRandom"
    assert chip.latency_op(client.startup_command()) == "tpm.ptpm.default"   # no op of its own
    assert chip.latency_op(b"\x80\x01") == "tpm.ptpm.default"


def test_key_creation_is_timed_by_the_templates_algorithm():
    from simxen.domains import ptpm_commands as ptpm
    from simxen.tpm.constants import TPM_RH
    hv, chip = make()
    rsa = client.create_primary_command(TPM_RH.OWNER, ptpm.SRK_RSA_TEMPLATE)
    ecc = client.create_primary_command(TPM_RH.OWNER, ptpm.SRK_TEMPLATE)
    assert chip.latency_op(rsa) == "tpm.ptpm.CreatePrimary.rsa"
    assert chip.latency_op(ecc) == "tpm.ptpm.CreatePrimary.ecc"
    assert chip.latency_op(client.create_command(0x80000000, ptpm.SK_RSA_TEMPLATE)) == \
        "tpm.ptpm.Create.rsa"
    # published: RSA-2048 key generation takes the SLB9670 seconds, ECC-256 a fifth of one
    assert hv.profile.op("tpm.ptpm.CreatePrimary.rsa").mean() > 2.0
    assert hv.profile.op("tpm.ptpm.CreatePrimary.ecc").mean() < 0.3


@pytest.mark.parametrize("op, latency", [("tpm.ptpm.default", 0.007), ("tpm.ptpm.PCR_Read", 0.003)])
def test_the_response_appears_after_the_profile_latency(op, latency):
    hv, chip = make({"tpm.ptpm.default": fixed(0.007), "tpm.ptpm.PCR_Read": fixed(0.003)})
    hv.iomem.permission(hv.dom0, 0, 0xfed40, 5)     # dom0 owns it: times count from its clock
    window = hv.iomem.map(hv.dom0, 0xfed40, 5)
    cmd = (client.get_capability_command(6) if op == "tpm.ptpm.default"   # TPM_CAP_TPM_PROPERTIES
           else client.pcr_read_command({TPM_ALG.SHA256: [0]}))
    go(window, client.startup_command())
    hv.env.run(until=1.0)
    window.write(reg.TPM_STS, bytes([reg.TPM_STS_COMMAND_READY]))
    window.write(reg.TPM_STS, bytes([reg.TPM_STS_COMMAND_READY]))
    start = hv.dom0.now
    window.write(reg.TPM_DATA_FIFO, cmd)
    window.write(reg.TPM_STS, bytes([reg.TPM_STS_GO]))
    go_at = hv.dom0.now
    assert chip.device.state == TIS_EXECUTION
    hv.env.run(until=go_at + latency * 0.999)
    assert chip.device.state == TIS_EXECUTION
    hv.env.run(until=go_at + latency * 1.001)
    assert chip.device.state == TIS_COMPLETION
    (rec,) = [r for r in hv.trace.select("tpm.exec") if r.t > start]
    assert rec.dom is None and rec.fields["duration"] == latency and rec.fields["rc"] == 0
    assert rec.t == pytest.approx(go_at + latency)


def test_latency_counts_from_the_drivers_clock_not_the_event_loop():
    hv, chip = make({"tpm.ptpm.default": fixed(0.010)})
    mgr = hv.domain_create("vtpmmgr", iomem=[(TIS_FIRST_MFN, 5)])
    window = hv.iomem.map(mgr, 0xfed40, 5)
    mgr.cursor = hv.env.now + 0.5                   # the manager has 0.5 s of work charged
    go(window, client.startup_command())
    go_at = mgr.now
    assert hv.env.now < 0.5 < go_at
    hv.env.run()
    (rec,) = hv.trace.select("tpm.exec")
    assert rec.t == pytest.approx(go_at + 0.010, abs=1e-9)


def test_interrupt_line_fires_when_data_is_available():
    hv, chip = make({"tpm.ptpm.default": fixed(0.004)})
    window = hv.iomem.map(hv.dom0, 0xfed40, 5)
    window.write(reg.TPM_ACCESS, bytes([reg.TPM_ACCESS_REQUEST_USE]))
    enable = reg.TPM_GLOBAL_INT_ENABLE | reg.TPM_INTF_DATA_AVAIL_INT
    window.write(reg.TPM_INT_ENABLE, enable.to_bytes(4, "little"))
    fired = chip.irq.event()
    window.write(reg.TPM_STS, bytes([reg.TPM_STS_COMMAND_READY]))
    window.write(reg.TPM_DATA_FIFO, client.startup_command())
    window.write(reg.TPM_STS, bytes([reg.TPM_STS_GO]))
    hv.env.run()
    assert fired.triggered and chip.irq.raised >= 1
    assert int.from_bytes(window.read(reg.TPM_INT_STATUS, 4), "little") & reg.TPM_INTF_DATA_AVAIL_INT


def test_same_seed_same_latencies_and_bytes():
    def run(seed):
        hv, chip = make(seed=seed)
        window = hv.iomem.map(hv.dom0, 0xfed40, 5)
        go(window, client.startup_command())
        hv.env.run()
        window.write(reg.TPM_STS, bytes([reg.TPM_STS_COMMAND_READY]))
        window.write(reg.TPM_STS, bytes([reg.TPM_STS_COMMAND_READY]))
        window.write(reg.TPM_DATA_FIFO, client.get_random_command(16))
        window.write(reg.TPM_STS, bytes([reg.TPM_STS_GO]))
        hv.env.run()
        rsp = window.read(reg.TPM_DATA_FIFO, 28)
        assert struct.unpack_from(">I", rsp, 6)[0] == 0
        return rsp, [r.fields["duration"] for r in hv.trace.select("tpm.exec")]
    assert run(5) == run(5)
    assert run(5) != run(6)

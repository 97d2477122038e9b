"""The vTPM manager's TIS driver against the physical TPM chip, register by register."""

import errno
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simxen.drivers.tis import TIMEOUT_A, TisDriver, TisError
from simxen.hw.tpm_chip import TIS_FIRST_MFN, TpmChip
from simxen.protocols import tis as reg
from simxen.tpm import TpmEngine, client
from simxen.tpm.constants import TPM_ALG, TPM_RC
from simxen.xen import errno as xen_errno
from simxen.xen.errors import IomemError

from test_tpmfront import hypervisor


def fixed(value):
    return {"dist": "fixed", "value": value}


class Host:
    """A host with a physical TPM and a manager domain owning the TIS window."""

    def __init__(self, *, seed=1, ops=None, switches=None, burst_count=64):
        self.hv = hv = hypervisor(seed, ops=ops, switches=switches)
        self.engine = TpmEngine(seed=b"host", random_bytes=hv.streams.random_bytes("ptpm"))
        self.chip = TpmChip(hv, self.engine, burst_count=burst_count)
        self.mgr = hv.domain_create("vtpmmgr", iomem=[(TIS_FIRST_MFN, 5)])

    def driver(self, locality=0, **kw):
        return TisDriver(self.hv, self.mgr, locality=locality, irq=self.chip.irq, **kw).open()

    def run(self, gen):
        proc = self.hv.env.process(gen)
        self.hv.env.run(until=proc)
        return proc.value

    def transmit_all(self, tis, commands, **kw):
        def go():
            out = []
            for cmd in commands:
                t = self.mgr.now
                rsp = yield from tis.transmit(cmd, **kw)
                out.append((rsp, self.mgr.now - t))
            return out
        return self.run(go())


def rc(rsp):
    return struct.unpack_from(">I", rsp, 6)[0]


def test_commands_reach_the_engine_and_come_back():
    host = Host()
    tis = host.driver()
    out = host.transmit_all(tis, [client.startup_command(), client.get_random_command(16),
                                  client.pcr_read_command({TPM_ALG.SHA256: [0, 16]})])
    assert [rc(r) for r, _ in out] == [0, 0, 0]
    assert len(client.parse_get_random(out[1][0])) == 16
    assert tis.did_vid == host.chip.device.did_vid and tis.commands == 3
    # the same bytes reached the engine: a second Startup is refused by the engine itself
    (again, _), = host.transmit_all(tis, [client.startup_command()])
    assert rc(again) == TPM_RC.INITIALIZE


def test_polling_rounds_the_tpm_up_to_the_5ms_grid_and_the_interrupt_does_not():
    ops = {"tpm.ptpm.default": fixed(0.012), "tpm.ptpm.GetRandom": fixed(0.012)}
    poll = Host(ops=ops)
    (_, t_poll), = poll.transmit_all(poll.driver(), [client.startup_command()])
    irq = Host(ops=ops, switches={"tis.wait": "interrupt"})
    (_, t_irq), = irq.transmit_all(irq.driver(), [client.startup_command()])
    assert 0.015 <= t_poll < 0.0152               # GO + 12 ms, seen at the 15 ms poll
    assert 0.012 <= t_irq < 0.0122
    assert irq.chip.irq.raised >= 1 and poll.chip.irq.raised == 0


def test_the_trace_shows_go_and_complete_with_the_flow_in_the_managers_domain():
    host = Host(ops={"tpm.ptpm.default": fixed(0.004), "tpm.ptpm.GetRandom": fixed(0.004)})
    host.transmit_all(host.driver(), [client.startup_command()], flow="cmd-7")
    go, done = host.hv.trace.select("tis.go")[0], host.hv.trace.select("tis.complete")[0]
    assert go.dom == done.dom == host.mgr.domid
    assert go.fields["flow"] == done.fields["flow"] == "cmd-7"
    assert done.fields["rc"] == 0 and done.t - go.t == pytest.approx(0.005, abs=1e-4)


def test_burst_count_chunks_with_expect_checked_after_each():
    host = Host(burst_count=16)
    tis = host.driver()
    cmd = client.startup_command()            # 12 bytes
    big = client.pcr_read_command({TPM_ALG.SHA256: list(range(24)), TPM_ALG.SHA1: [0]})
    host.transmit_all(tis, [cmd, big])
    fifo_writes = [r for r in host.hv.trace.select("mmio.write")
                   if r.fields["offset"] == reg.TPM_DATA_FIFO]
    sizes = [r.fields["size"] for r in fifo_writes]
    n = len(big)
    expect = [11, 1] + [16] * ((n - 1) // 16) + ([(n - 1) % 16] if (n - 1) % 16 else []) + [1]
    assert sizes == expect
    reads = [r.fields["size"] for r in host.hv.trace.select("mmio.read")
             if r.fields["offset"] == reg.TPM_DATA_FIFO]
    assert all(s <= 16 for s in reads)
    assert sum(reads) == sum(r.fields["length"] for r in host.hv.trace.select("tis.complete"))


def test_a_command_shorter_than_its_param_size_is_eio_and_cancelled():
    host = Host()
    tis = host.driver()
    cmd = bytearray(client.get_random_command(8))
    struct.pack_into(">I", cmd, 2, 30)                 # says 30, has 12: Expect stays 1
    with pytest.raises(TisError) as exc:
        host.transmit_all(tis, [bytes(cmd)])
    assert exc.value.errno == -errno.EIO
    assert host.chip.commands == 0
    cmd = bytearray(client.get_random_command(8))
    struct.pack_into(">I", cmd, 2, 10)                 # says 10, has 12: Expect drops early
    with pytest.raises(TisError) as exc:
        host.transmit_all(tis, [bytes(cmd)])
    assert exc.value.errno == -errno.EIO
    # the FIFO is usable again
    (ok, _), = host.transmit_all(tis, [client.startup_command()])
    assert rc(ok) == 0


def test_timeout_writes_command_ready_and_is_etime():
    host = Host(ops={"tpm.ptpm.default": fixed(5.0), "tpm.ptpm.GetRandom": fixed(5.0)})
    tis = host.driver()
    with pytest.raises(TisError) as exc:
        host.transmit_all(tis, [client.startup_command()], duration=0.1)
    assert exc.value.errno == -errno.ETIME
    assert host.chip.device.cancel_requested
    host.hv.env.run(until=host.hv.env.now + 6)
    # the TPM ran it anyway; its answer was discarded and the FIFO is Ready
    assert host.chip.commands == 1 and host.chip.device.state == "ready"
    (rsp, _), = host.transmit_all(tis, [client.get_random_command(4)])
    assert rc(rsp) == 0


def test_the_locality_is_kept_unless_another_is_pending():
    host = Host()
    tis = host.driver(locality=2)
    host.transmit_all(tis, [client.startup_command()])
    assert host.chip.device.active_locality == 2 and tis.releases == 0
    host.transmit_all(tis, [client.get_random_command(4)])
    assert tis.locality_requests == 1                       # still ours: not asked again
    # another locality asks (through the same window, as the manager's second driver)
    other = TisDriver(host.hv, host.mgr, locality=0).open()
    assert not other.request_locality_now()
    host.transmit_all(tis, [client.get_random_command(4)])
    assert tis.releases == 1 and host.chip.device.active_locality == 0
    (rsp, _), = host.transmit_all(other, [client.get_random_command(4)])
    assert rc(rsp) == 0 and other.releases == 0            # nobody waiting: kept
    assert not tis.request_locality_now()                  # locality 2 asks back ...
    host.transmit_all(other, [client.get_random_command(4)])
    assert other.releases == 1                             # ... and gets it after that command
    assert host.chip.device.active_locality == 2


def test_a_locality_never_granted_is_ebusy_after_timeout_a():
    host = Host()
    holder = host.driver(locality=3)
    host.transmit_all(holder, [client.startup_command()])
    waiter = host.driver(locality=1)
    start = host.mgr.now
    with pytest.raises(TisError) as exc:
        host.transmit_all(waiter, [client.get_random_command(4)])
    assert exc.value.errno == -errno.EBUSY
    waited = host.mgr.now - start
    assert TIMEOUT_A <= waited < TIMEOUT_A + 0.006
    access_reads = [r for r in host.hv.trace.select("mmio.read")
                    if r.t >= start and r.fields["offset"] == reg.tis_address(1, reg.TPM_ACCESS)]
    assert len(access_reads) == pytest.approx(TIMEOUT_A / 0.005, abs=3)   # the 5 ms grid


def test_without_permission_the_window_cannot_be_opened():
    host = Host()
    with pytest.raises(IomemError) as exc:
        TisDriver(host.hv, host.hv.dom0).open()
    assert exc.value.code == -xen_errno.EPERM
    intruder = host.hv.domain_create("intruder")
    with pytest.raises(IomemError) as exc:
        TisDriver(host.hv, intruder).open()
    assert exc.value.code == -xen_errno.EPERM


def test_interrupts_are_enabled_once_the_locality_is_held():
    host = Host(ops={"tpm.ptpm.default": fixed(0.012), "tpm.ptpm.GetRandom": fixed(0.012)}, switches={"tis.wait": "interrupt"})
    holder = host.driver(locality=0)
    host.transmit_all(holder, [client.startup_command()])
    waiter = host.driver(locality=2)            # opened while locality 0 is active
    assert not waiter.request_locality_now()
    host.transmit_all(holder, [client.get_random_command(4)])     # ... which then yields it
    (rsp, took), = host.transmit_all(waiter, [client.get_random_command(4)])
    assert rc(rsp) == 0 and 0.012 <= took < 0.0122                # woken by the IRQ
    assert host.chip.device.int_enable[2] & reg.TPM_GLOBAL_INT_ENABLE


class EchoTpm:
    """A stand-in engine: answers ``tag | size | rc 0 | command body reversed``."""

    def execute(self, command, locality):
        body = command[10:][::-1]
        return struct.pack(">HII", 0x8001, 10 + len(body), 0) + body


@settings(max_examples=40, deadline=None)
@given(burst=st.integers(1, 200), body=st.binary(max_size=3000))
def test_any_burst_count_moves_any_command_and_response_intact(burst, body):
    hv = hypervisor(3, ops={"tpm.ptpm.default": fixed(0.001), "tpm.ptpm.GetRandom": fixed(0.001)})
    chip = TpmChip(hv, EchoTpm(), burst_count=burst)
    mgr = hv.domain_create("vtpmmgr", iomem=[(TIS_FIRST_MFN, 5)])
    tis = TisDriver(hv, mgr).open()
    cmd = struct.pack(">HII", 0x8001, 10 + len(body), 0x17B) + body
    proc = hv.env.process(tis.transmit(cmd))
    hv.env.run(until=proc)
    assert proc.value == struct.pack(">HII", 0x8001, 10 + len(body), 0) + body[::-1]
    writes = [r.fields["size"] for r in hv.trace.select("mmio.write")
              if r.fields["offset"] == reg.TPM_DATA_FIFO]
    assert max(writes) <= burst and sum(writes) == len(cmd)
    assert chip.commands == 1

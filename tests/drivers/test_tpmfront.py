"""tpmfront against a real tpmback: round trips, waiting, extra pages, cancel, timeouts.

:class:`Rig` (also used by the tpmback and attack tests) builds one vTPM
backend domain and some guests, with the device directories the toolstack
would write, and a tiny responder that echoes what the backend copied.
"""

import errno

import pytest

from simxen.drivers.tpmback import TpmBack
from simxen.drivers.tpmfront import TpmFront, TpmFrontError
from simxen.drivers.tpmfront_ring import TpmRingFront
from simxen.drivers.xenbus import add_device
from simxen.protocols import tpmif
from simxen.protocols.xenbus import XenbusState
from simxen.xen import Hypervisor

ECHO = b"ECHO"


def uuid_of(n):
    return f"00000000-0000-4000-8000-{n:012x}"


#: The driver rigs create their domains directly and time their steps in absolute
#: seconds: they pin domain creation at 0.2 s (the default profile's xl create, ~1 s
#: lognormal, is the toolstack's cost, not what these driver tests are about).
RIG_OPS = {"domain.create": {"dist": "fixed", "value": 0.2}}


def hypervisor(seed=1, *, ops=None, switches=None):
    """A hypervisor whose default profile has ``ops``/``switches`` overridden."""
    hv = Hypervisor(seed=seed)
    ops = {**RIG_OPS, **(ops or {})}
    overrides = {k: v for k, v in (("ops", ops), ("switches", switches)) if v}
    if overrides:
        hv.profile = hv.profile.with_overrides(overrides)
    return hv


class Rig:
    """A vTPM backend domain ``vtpm`` serving ``guests`` guests over tpmback."""

    def __init__(self, seed=1, *, guests=1, policy="priority", switches=None, ops=None,
                 back_extra=None, start=True):
        self.hv = hv = hypervisor(seed, ops=ops, switches=switches)
        self.env = hv.env
        self.vtpm = hv.domain_create("vtpm")
        self.guests = [hv.domain_create(f"guest{i + 1}") for i in range(guests)]
        for i, g in enumerate(self.guests):
            extra = {"uuid": uuid_of(g.domid)}
            if back_extra is not None:
                extra = back_extra(g, extra)
            add_device(hv, hv.dom0, g.domid, self.vtpm.domid, "vtpm", back_extra=extra)
        self.opened, self.closed = [], []
        self.back = TpmBack(hv, self.vtpm, policy=policy, on_open=self.opened.append,
                            on_close=self.closed.append)
        self.served = []
        if start:
            self.back.start()

    @property
    def guest(self):
        return self.guests[0]

    def responder(self, hold=0.0, answer=None):
        """Serve forever: take, wait ``hold`` seconds, answer ``ECHO + command``."""
        def serve():
            while True:
                req = yield from self.back.next_request()
                self.served.append(req)
                self.vtpm.charge("tpm.vtpm.default")
                if hold:
                    yield self.vtpm.sleep(hold)
                self.back.respond(req, answer(req) if answer else ECHO + req.command)
        return self.env.process(serve())

    def run(self, gen, until=None):
        """Run the simulation until the process ``gen`` ends; return its value."""
        proc = self.env.process(gen)
        self.env.run(until=proc if until is None else until)
        return proc.value if proc.triggered else proc

    def front(self, guest=None, **kw):
        return TpmFront(self.hv, guest or self.guest, **kw)


def one_round_trip(rig, command, **kw):
    out = {}

    def guest():
        front = rig.front(**kw)
        yield from front.connect()
        t = rig.guest.now
        out["rsp"] = yield from front.transmit(command)
        out["latency"] = rig.guest.now - t
        out["front"] = front
    rig.run(guest())
    return out


def test_round_trip_carries_the_bytes_both_ways():
    rig = Rig()
    rig.responder()
    out = one_round_trip(rig, b"\x80\x01\x00\x00\x00\x0c\x00\x00\x01\x7b\x00\x08")
    assert out["rsp"] == ECHO + b"\x80\x01\x00\x00\x00\x0c\x00\x00\x01\x7b\x00\x08"
    req = rig.served[0]
    assert (req.domid, req.handle, req.uuid, req.locality) == (rig.guest.domid, 0, uuid_of(rig.guest.domid), 0)
    assert req.arrived <= req.taken
    front = out["front"]
    assert front.connected and front.backend_id == rig.vtpm.domid
    assert (front.commands, front.bytes_sent, front.bytes_received) == (1, 12, 16)


def test_every_hop_carries_the_same_flow():
    rig = Rig()
    rig.responder()
    one_round_trip(rig, b"abc")
    kinds = [r.kind for r in rig.hv.trace.select("tpm") if r.fields.get("flow") == "guest1/vtpm0/1"]
    for kind in ("tpm.front.submit", "tpm.back.take", "tpm.back.respond", "tpm.front.complete"):
        assert kind in kinds
    assert kinds.index("tpm.front.submit") < kinds.index("tpm.back.take") \
        < kinds.index("tpm.back.respond") < kinds.index("tpm.front.complete")


def test_linux_publishes_the_keys_and_goes_through_initialised():
    rig = Rig()
    rig.responder()
    one_round_trip(rig, b"x")
    fe = f"/local/domain/{rig.guest.domid}/device/vtpm/0"
    writes = {(r.fields["path"], r.fields.get("value")) for r in rig.hv.trace.select("xs.write")}
    assert (f"{fe}/state", "3") in writes and (f"{fe}/feature-protocol-v2", "1") in writes
    xs = rig.hv.xs
    assert xs.read(rig.hv.dom0, f"{fe}/state") == str(int(XenbusState.Connected))
    assert xs.read(rig.hv.dom0, f"{rig.back.base}/{rig.guest.domid}/0/ready") == "1"
    assert xs.read(rig.hv.dom0, f"{rig.back.base}/{rig.guest.domid}/0/feature-protocol-v2") == "1"


def test_minios_goes_connected_directly_and_waits_on_the_interrupt():
    rig = Rig()
    rig.responder()
    out = one_round_trip(rig, b"x", flavour="minios")
    fe = f"/local/domain/{rig.guest.domid}/device/vtpm/0"
    states = [r.fields.get("value") for r in rig.hv.trace.select("xs.write")
              if r.fields["path"] == f"{fe}/state" and r.dom == rig.guest.domid]
    assert states == ["4"]
    assert out["latency"] < 0.001          # no 5 ms grid: the poll switch does not apply


def test_polling_sleeps_one_usleep_range_and_interrupts_do_not():
    poll = one_round_trip(Rig_with_responder(), b"x")["latency"]
    irq = one_round_trip(Rig_with_responder(switches={"tpmfront.wait": "interrupt"}), b"x")["latency"]
    assert 0.0047 <= poll < 0.0051           # linux-6: one usleep_range(4700, 5000) sleep
    assert irq < 0.001
    assert poll - irq > 0.004


def test_a_fixed_poll_interval_comes_from_the_profile():
    lat = one_round_trip(Rig_with_responder(switches={"tpmfront.wait": "poll",
                                                      "tpmfront.poll_interval": 0.002}), b"x")
    assert 0.002 <= lat["latency"] < 0.0021


def test_a_slow_backend_is_seen_on_the_next_tick():
    rig = Rig()
    rig.responder(hold=0.012)
    lat = one_round_trip(rig, b"x")["latency"]
    assert 3 * 0.0047 <= lat <= 3 * 0.005 + 1e-4            # the third 4.7-5.0 ms sleep sees it


def Rig_with_responder(**kw):
    rig = Rig(**kw)
    rig.responder()
    return rig


@pytest.mark.parametrize("size", [tpmif.TPMIF_MAX_PAYLOAD, tpmif.TPMIF_MAX_PAYLOAD + 1, 9000])
def test_long_commands_need_extra_pages(size):
    command = bytes(i % 251 for i in range(size))
    rig = Rig()
    rig.responder(answer=lambda req: req.command[::-1])
    if size <= tpmif.TPMIF_MAX_PAYLOAD:
        assert one_round_trip(rig, command)["rsp"] == command[::-1]
        return
    with pytest.raises(TpmFrontError) as exc:
        one_round_trip(rig, command)
    assert exc.value.errno == -errno.EINVAL
    rig = Rig()
    rig.responder(answer=lambda req: req.command[::-1])
    out = one_round_trip(rig, command, extra_pages=2)
    assert out["rsp"] == command[::-1]
    maps = [r for r in rig.hv.trace.select("gnttab.map") if r.dom == rig.vtpm.domid]
    assert len(maps) == 1 + 2                 # the ring page, then the two extra pages
    assert not [m for m in rig.vtpm.maptrack.values() if m.gref != out["front"].grefs[0]]


def test_extra_pages_carry_a_response_longer_than_one_page():
    rig = Rig()
    rig.responder(answer=lambda req: req.command * 3)
    out = one_round_trip(rig, b"y" * 3000, extra_pages=2)
    assert out["rsp"] == b"y" * 9000


def test_timeout_stores_cancel_and_fails_with_etime():
    rig = Rig()
    rig.responder(hold=10.0)
    out = {}

    def guest():
        front = rig.front()
        yield from front.connect()
        try:
            yield from front.transmit(b"slow", timeout=0.05)
        except TpmFrontError as err:
            out["err"] = err
        out["front"] = front
    rig.run(guest())
    assert out["err"].errno == -errno.ETIME
    front = out["front"]
    assert front.page.data[tpmif.TPMIF_OFF_STATE] == tpmif.TPMIF_STATE_CANCEL
    assert (front.timeouts, front.cancels) == (1, 1)
    # the command was already taken: tpmback ignores the cancel and answers later
    rig.env.run(until=rig.env.now + 11)
    assert front.page.data[tpmif.TPMIF_OFF_STATE] == tpmif.TPMIF_STATE_FINISH
    assert rig.back.cancelled == 0
    assert rig.hv.trace.count("tpm.back.violation") == 0


def test_cancel_before_the_backend_takes_it_is_acknowledged_with_idle():
    rig = Rig()                                # no responder yet: nothing is taken
    out = {}

    def guest():
        front = rig.front()
        yield from front.connect()
        with pytest.raises(TpmFrontError) as exc:
            yield from front.transmit(b"never", timeout=0.02)
        out["first"] = exc.value.errno
        rig.responder()
        out["second"] = yield from front.transmit(b"again")
    rig.run(guest())
    assert out["first"] == -errno.ETIME
    assert out["second"] == ECHO + b"again"
    assert rig.hv.trace.count("tpm.back.violation") == 0     # an honest cancel is legal
    assert rig.back.cancelled == 1
    assert [r.command for r in rig.served] == [b"again"]


@pytest.mark.parametrize("flavour, expect", [("linux", -errno.ECANCELED), ("minios", b"")])
def test_backend_abort_is_ecanceled_for_linux_and_empty_for_minios(flavour, expect):
    rig = Rig()

    def aborter():
        req = yield from rig.back.next_request()
        assert rig.back.abort(req)
    rig.env.process(aborter())
    out = {}

    def guest():
        front = rig.front(flavour=flavour)
        yield from front.connect()
        try:
            out["v"] = yield from front.transmit(b"cmd")
        except TpmFrontError as err:
            out["v"] = err.errno
    rig.run(guest())
    assert out["v"] == expect


def test_transmit_before_connect_is_enodev():
    rig = Rig()

    def guest():
        yield from rig.front().transmit(b"x")
    with pytest.raises(TpmFrontError) as exc:
        rig.run(guest())
    assert exc.value.errno == -errno.ENODEV


def test_connect_to_a_backend_that_refuses_is_enodev():
    rig = Rig(back_extra=lambda g, extra: {})      # no uuid: mini-os refuses the device

    def guest():
        yield from rig.front().connect()
    with pytest.raises(TpmFrontError) as exc:
        rig.run(guest())
    assert exc.value.errno == -errno.ENODEV
    assert rig.back.refused == 1
    assert rig.hv.xs.read(rig.hv.dom0, f"{rig.back.base}/{rig.guest.domid}/0/state") == "6"


def test_close_returns_to_initialising_and_a_new_kernel_reconnects():
    """pv-grub -> kernel: mini-os closes, the backend goes back to InitWait, Linux connects."""
    rig = Rig()
    rig.responder()
    out = {}

    def guest():
        grub = rig.front(flavour="minios")
        yield from grub.connect()
        out["grub"] = yield from grub.transmit(b"measure kernel")
        old_gref, old_port = grub.grefs[0], grub.port
        yield from grub.close()
        out["closed_state"] = rig.hv.xs.read(rig.guest, "device/vtpm/0/state")
        out["old"] = (old_gref, old_port)
        kernel = rig.front()
        yield from kernel.connect()
        out["kernel"] = yield from kernel.transmit(b"hello from linux")
    rig.run(guest())
    assert out["grub"] == ECHO + b"measure kernel"
    assert out["kernel"] == ECHO + b"hello from linux"
    assert out["closed_state"] == str(int(XenbusState.Initialising))
    old_gref, old_port = out["old"]
    assert old_gref not in rig.guest.grant_table.entries or \
        rig.hv.gnttab.query(rig.guest, rig.guest.domid, old_gref).domid == rig.vtpm.domid
    assert rig.back.frontends[(rig.guest.domid, 0)].uuid == uuid_of(rig.guest.domid)
    assert len(rig.opened) == 1 and rig.closed == []     # same device: opened once


def test_same_seed_same_trace():
    def trace(seed):
        rig = Rig(seed)
        rig.responder()
        one_round_trip(rig, b"determinism")
        return rig.hv.trace.dumps_jsonl()
    assert trace(3) == trace(3)
    assert trace(3) != trace(4)


def test_connect_without_a_device_directory_is_enodev():
    rig = Rig()
    loner = rig.hv.domain_create("loner")

    def kernel():
        yield from rig.front(loner).connect()
    with pytest.raises(TpmFrontError) as exc:
        rig.run(kernel())
    assert exc.value.errno == -errno.ENODEV and "device/vtpm/0" in str(exc.value)


def test_a_backend_without_protocol_v2_is_refused_by_the_frontend():
    """The backend connects but its feature key is wrong: Linux requires v2."""
    rig = Rig()
    rig.responder()
    path = f"{rig.back.base}/{rig.guest.domid}/0/feature-protocol-v2"

    def kernel():
        front = rig.front()
        yield rig.guest.sleep(0.3)                      # the backend wrote "1" by now
        rig.hv.xs.write(rig.vtpm, path, "0")            # ... and takes it back
        yield from front.connect()
    with pytest.raises(TpmFrontError) as exc:
        rig.run(kernel())
    assert exc.value.errno == -errno.ENODEV and "protocol 2" in str(exc.value)


@pytest.mark.parametrize("front", [TpmFront, TpmRingFront], ids=["page", "multi-slot"])
def test_both_frontends_fail_to_connect_with_the_same_words(front):
    """The single-page and the multi-slot frontend share their connect's failures
    (:func:`~simxen.drivers.tpmfront.open_vtpm_device`,
    :func:`~simxen.drivers.tpmfront.backend_not_connected`): same errno, same message."""
    rig = Rig(back_extra=lambda g, extra: {})      # no uuid: mini-os refuses the device
    loner = rig.hv.domain_create("loner")
    failures = []

    def kernel(dom):
        try:
            yield from front(rig.hv, dom).connect()
        except TpmFrontError as err:
            failures.append((err.errno, str(err)))
    rig.run(kernel(loner))
    rig.run(kernel(rig.guest))
    back = f"/local/domain/{rig.vtpm.domid}/backend/vtpm/{rig.guest.domid}/0"
    assert failures == [
        (-errno.ENODEV, f"ENODEV: dom{loner.domid} has no usable device/vtpm/0 "
                        f"(ENOENT (-2): /local/domain/{loner.domid}/device/vtpm/0/backend "
                        "does not exist)"),
        (-errno.ENODEV, f"ENODEV: dom{rig.guest.domid} vtpm/0: backend {back} is Closed")]

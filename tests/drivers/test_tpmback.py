"""tpmback: device discovery and refusal, scheduling policies, teardown, header validation."""

import errno
import struct

import pytest
from hypothesis import given, settings, HealthCheck
from hypothesis import strategies as st

from simxen.drivers.tpmback import TpmBack
from simxen.drivers.tpmfront import TpmFrontError
from simxen.protocols import tpmif
from simxen.protocols.xenbus import XenbusState
from simxen.tpm.constants import TPM_RC
from simxen.xen import Hypervisor

from test_tpmfront import ECHO, Rig, uuid_of


def connect_all(rig, fronts):
    for front in fronts:
        yield from front.connect()


def test_policy_must_be_known():
    hv = Hypervisor(seed=1)
    with pytest.raises(ValueError):
        TpmBack(hv, hv.domain_create("vtpm"), policy="lottery")


def served_order(policy, submit_order):
    """Three guests submit (in ``submit_order``, 1 ms apart) before the server starts."""
    rig = Rig(guests=3, policy=policy, switches={"tpmfront.wait": "interrupt"})
    fronts = {g.domid: rig.front(g) for g in rig.guests}

    def guest(dom):
        yield from fronts[dom.domid].connect()
        yield dom.sleep(1.0 + 0.001 * submit_order.index(dom.domid) - dom.now)
        yield from fronts[dom.domid].transmit(b"from %d" % dom.domid)

    procs = [rig.env.process(guest(g)) for g in rig.guests]
    rig.env.run(until=1.5)                      # everything submitted, nobody served
    rig.responder()
    rig.env.run(until=rig.env.all_of(procs))
    return [r.domid for r in rig.served]


def test_priority_serves_the_lowest_domid_first_whatever_arrived_first():
    assert served_order("priority", [4, 3, 2]) == [2, 3, 4]


def test_fifo_serves_by_arrival():
    assert served_order("fifo", [4, 2, 3]) == [4, 2, 3]


@pytest.mark.parametrize("work", ["sleep", "charge"])
def test_priority_starves_the_highest_domid_and_round_robin_does_not(work):
    """Three guests resubmit as soon as they are answered (the manager's situation).

    While the server works for one guest, the one it just answered resubmits,
    so under static priority the two lowest domids take turns and the third
    is never chosen; round-robin gives each a third. Work that is only
    charged to the server's clock (no yield) must count the same as a sleep.
    """
    def run(policy):
        ops = {"tpm.vtpm.default": {"dist": "fixed", "value": 0.001}} if work == "charge" else None
        rig = Rig(guests=3, policy=policy, switches={"tpmfront.wait": "interrupt"}, ops=ops)

        def hammer(dom):
            front = rig.front(dom)
            yield from front.connect()
            while True:
                yield from front.transmit(b"x")

        for g in rig.guests:
            rig.env.process(hammer(g))
        rig.responder(hold=0.001 if work == "sleep" else 0.0)
        rig.env.run(until=2.0)                  # domains and handshakes take ~0.8 s
        return [r.domid for r in rig.served]

    rr = run("round-robin")
    counts = [rr.count(d) for d in (2, 3, 4)]
    assert max(counts) - min(counts) <= 1 and sum(counts) > 300
    prio = run("priority")
    assert prio.count(4) <= 1 and prio.count(2) > 200 and prio.count(3) > 200


@pytest.mark.parametrize("later", [False, True])
def test_a_server_ahead_of_the_event_loop_chooses_at_its_own_clock(later):
    """The server has worked 10 ms past ``env.now`` when it asks for a request.

    Both guests submit meanwhile, the higher domid first: by the server's own
    clock both are ready, so priority takes the lower domid first, at that
    clock -- not whichever became ready first. A request that becomes ready
    only after the server's clock is taken when it becomes ready.
    """
    rig = Rig(guests=2, policy="priority", switches={"tpmfront.wait": "interrupt"})
    low, high = rig.guests
    shift = 0.020 if later else 0.0            # both submit after the server's clock

    def guest(dom, at):
        front = rig.front(dom)
        yield from front.connect()
        yield dom.sleep(at + shift - dom.now)
        yield from front.transmit(b"from %d" % dom.domid)

    def server():
        yield rig.vtpm.sleep(1.0 - rig.vtpm.now)
        rig.vtpm.cursor = rig.env.now + 0.010          # 10 ms of work charged, not yet passed
        first = yield from rig.back.next_request()
        rig.served.append(first)
        rig.back.respond(first, ECHO)
        second = yield from rig.back.next_request()
        rig.served.append(second)
        rig.back.respond(second, ECHO)

    procs = [rig.env.process(guest(high, 1.002)), rig.env.process(guest(low, 1.005))]
    rig.env.process(server())
    rig.env.run(until=rig.env.all_of(procs))
    first, second = rig.served
    if later:
        assert first.domid == high.domid and first.taken == pytest.approx(first.arrived)
        assert first.taken > 1.020
    else:
        assert [first.domid, second.domid] == [low.domid, high.domid]
        assert first.taken == pytest.approx(1.010, abs=1e-5)


def test_open_and_close_callbacks_see_the_device():
    rig = Rig()
    rig.responder()

    def guest():
        front = rig.front()
        yield from front.connect()
        yield from front.transmit(b"x")
    rig.run(guest())
    (info,) = rig.opened
    assert (info.domid, info.handle, info.uuid) == (rig.guest.domid, 0, uuid_of(rig.guest.domid))
    assert info.backend_path == f"{rig.back.base}/{rig.guest.domid}/0"
    assert info.frontend_path == f"/local/domain/{rig.guest.domid}/device/vtpm/0"
    assert rig.closed == []
    rig.hv.domain_destroy(rig.guest.domid)
    rig.env.run(until=rig.env.now + 1)
    assert rig.closed == [info]
    assert not rig.hv.xs.exists(rig.hv.dom0, info.backend_path)
    assert rig.back.frontends == {}


@pytest.mark.parametrize("tamper, reason", [
    (lambda g, e: {**e, "frontend-id": "7"}, "frontend-id"),
    (lambda g, e: {**e, "frontend": "/local/domain/0/device/vtpm/0"}, "frontend path"),
    (lambda g, e: {**e, "uuid": "not-a-uuid"}, "uuid"),
    (lambda g, e: {}, "uuid"),
])
def test_a_device_naming_another_domain_or_without_uuid_is_refused(tamper, reason):
    rig = Rig(back_extra=tamper)

    def guest():
        try:
            yield from rig.front().connect(timeout=1.0)
        except TpmFrontError as err:
            return err.errno
    assert rig.run(guest()) < 0
    (refusal,) = rig.hv.trace.select("tpm.back.refuse")
    assert reason in refusal.fields["reason"]
    assert rig.opened == [] and rig.vtpm.maptrack == {}
    path = f"{rig.back.base}/{rig.guest.domid}/0"
    assert rig.hv.xs.read(rig.hv.dom0, f"{path}/state") == str(int(XenbusState.Closed))
    assert rig.hv.xs.read(rig.hv.dom0, f"{path}/error").startswith("refused")


def test_devices_created_before_start_are_found():
    rig = Rig(start=False)
    rig.env.run(until=0.5)
    rig.back.start()
    rig.responder()

    def guest():
        front = rig.front()
        yield from front.connect()
        return (yield from front.transmit(b"late"))
    assert rig.run(guest()) == ECHO + b"late"


def test_respond_after_the_frontend_went_away_is_dropped():
    rig = Rig()
    taken = []

    def server():
        taken.append((yield from rig.back.next_request()))

    def guest():
        front = rig.front()
        yield from front.connect()
        try:
            yield from front.transmit(b"x", timeout=10)
        except TpmFrontError as err:
            return err.errno
    rig.env.process(server())
    kernel = rig.env.process(guest())
    rig.env.run(until=1.0)
    rig.hv.domain_destroy(rig.guest.domid)
    rig.env.run(until=2.0)
    assert kernel.value == -errno.ENODEV        # its kernel saw the domain go
    assert not rig.back.respond(taken[0], b"late")
    assert rig.back.dropped == 1 and rig.hv.trace.count("tpm.back.drop") == 1


def submit_raw(rig, header, payload=b""):
    """A guest that connects, then writes a raw header (and payload) and notifies."""
    out = {}

    def guest():
        front = rig.front()
        yield from front.connect()
        page = front.page.data
        at = tpmif.data_offset(header[tpmif.TPMIF_OFF_NR_EXTRA_PAGES])
        page[at:at + len(payload)] = payload       # the grant list stays 0: reserved refs
        page[:tpmif.TPMIF_HEADER_SIZE] = header
        rig.hv.evtchn.send(rig.guest, front.port)
        yield rig.guest.sleep(0.5)
        out["page"] = bytes(page)
        out["front"] = front
    rig.run(guest())
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(length=st.integers(0, 2**32 - 1), state=st.integers(0, 255), locality=st.integers(0, 255),
       pad=st.integers(0, 255), nr_extra=st.integers(0, 255),
       payload=st.binary(max_size=64))
def test_any_header_gets_an_answer_or_is_ignored_never_a_crash(length, state, locality, pad,
                                                               nr_extra, payload):
    rig = Rig()
    rig.responder()
    header = struct.pack("<IBBBB", length, state, locality, pad, nr_extra)
    out = submit_raw(rig, header, payload)
    page = out["page"]
    rlength, rstate = struct.unpack_from("<IB", page)
    if state != tpmif.TPMIF_STATE_SUBMIT:
        # not a request: the handler ignores it (or acks a CANCEL); nothing is served
        assert rig.served == []
        if state == tpmif.TPMIF_STATE_CANCEL:
            assert rstate == tpmif.TPMIF_STATE_IDLE
        return
    assert rstate == tpmif.TPMIF_STATE_FINISH
    offset = tpmif.data_offset(nr_extra)
    rsp = page[offset:offset + rlength]
    if length > tpmif.payload_capacity(nr_extra):
        assert rsp == b"\x80\x01\x00\x00\x00\x0a" + struct.pack(">I", TPM_RC.COMMAND_SIZE)
    elif nr_extra:
        # bogus extra grant refs: the backend cannot map them
        assert rsp == b"\x80\x01\x00\x00\x00\x0a" + struct.pack(">I", TPM_RC.FAILURE)
    else:
        (req,) = rig.served
        assert req.locality == locality and len(req.command) == length
        assert req.command == (payload + bytes(tpmif.TPMIF_MAX_PAYLOAD))[:length]
        assert rsp == ECHO + req.command
    assert len(rig.vtpm.maptrack) == 1         # only the ring page stays mapped


def test_a_directory_not_named_domid_handle_is_refused_once():
    rig = Rig(guests=1)
    rig.responder()
    xs, dom0 = rig.hv.xs, rig.hv.dom0
    for key in ("frontend", "frontend-id", "state", "uuid"):
        xs.write(dom0, f"{rig.back.base}/evil/x/{key}", "1")
    rig.env.run(until=1.0)
    refusals = rig.hv.trace.select("tpm.back.refuse")
    assert [r.fields["reason"] for r in refusals] == ["not a <domid>/<handle> directory"]
    assert rig.back.refused == 1
    # the honest guest next to it is served
    front = rig.front()
    rig.run(front.connect())
    assert rig.run(front.transmit(b"ok")) == ECHO + b"ok"


@pytest.mark.parametrize("command", [b"x", b"\x80\x01\x00\x00\x00\x0c\x00\x00\x01\x82AB"])
def test_a_round_trips_records_carry_every_field_none_included(command):
    """The five records of a round trip, field by field: a packet shorter than a header
    has no code, and its records still *carry* ``cc``/``rc`` as None (a trace row made
    with ``Trace.row`` would drop them); the request's ``cc`` is read once, at take."""
    rig = Rig()
    rig.responder(answer=lambda req: req.command)       # the response is the command again

    def guest():
        front = rig.front()
        yield from front.connect()
        return front, (yield from front.transmit(command, flow="f1"))
    front, rsp = rig.run(guest())
    assert rsp == command
    short = len(command) < 10
    cc = None if short else 0x182
    name = None if short else "TPM2_PCR_Extend"
    fields = {r.kind: r.fields for r in rig.hv.trace.records() if r.kind.startswith("tpm.")}
    g, n = rig.guest.domid, len(command)
    assert fields["tpm.front.submit"] == {"flow": "f1", "devid": 0, "backend": rig.vtpm.domid,
                                          "length": n, "cc": cc, "cc_name": name, "locality": 0}
    assert fields["tpm.back.ready"] == {"backend": "tpmback", "domid": g, "handle": 0,
                                        "flow": "f1"}
    take = dict(fields["tpm.back.take"])
    assert take.pop("waited") >= 0
    assert take == {"backend": "tpmback", "domid": g, "handle": 0, "flow": "f1", "length": n,
                    "cc": cc, "cc_name": name, "locality": 0}
    respond = dict(fields["tpm.back.respond"])
    assert respond.pop("service") >= 0
    assert respond == {"backend": "tpmback", "domid": g, "handle": 0, "flow": "f1",
                       "length": n, "rc": cc}
    complete = dict(fields["tpm.front.complete"])
    assert complete.pop("latency") > 0
    assert complete == {"flow": "f1", "devid": 0, "length": n, "rc": cc}
    assert rig.served[0].cc == cc

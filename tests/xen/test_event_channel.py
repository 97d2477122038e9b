"""Event channels: Xen's semantics, quirks and error codes."""

import pytest

from simxen.protocols.event_channel import (
    DOMID_SELF,
    EVTCHNSTAT_closed,
    EVTCHNSTAT_interdomain,
    EVTCHNSTAT_unbound,
)
from simxen.xen import EvtchnError
from simxen.xen import errno


def connect(hv, a, b):
    pa = hv.evtchn.alloc_unbound(a, b.domid)
    pb = hv.evtchn.bind_interdomain(b, a.domid, pa)
    b.evtchn_clear(pb)          # the bind marks it pending; start clean
    return pa, pb


def test_alloc_bind_states_and_per_domain_ports(hv, pair):
    front, back = pair
    pa = hv.evtchn.alloc_unbound(front, back.domid)
    assert pa == 1
    st = hv.evtchn.status(front, pa)
    assert (st.state, st.remote_dom) == (EVTCHNSTAT_unbound, back.domid)
    pb = hv.evtchn.bind_interdomain(back, front.domid, pa)
    assert pb == 1                                   # per-domain numbering
    st = hv.evtchn.status(front, pa)
    assert (st.state, st.remote_dom, st.remote_port) == (EVTCHNSTAT_interdomain, back.domid, pb)
    assert hv.evtchn.status(back, 7).state == EVTCHNSTAT_closed
    assert hv.evtchn.alloc_unbound(front, back.domid) == 2


def test_bind_marks_the_new_port_pending(hv, pair):
    front, back = pair
    pa = hv.evtchn.alloc_unbound(front, back.domid)
    hv.evtchn.send(front, pa)                      # before the bind: dropped...
    assert hv.trace.select("evtchn.send")[-1].fields["dropped"] == "unbound"
    pb = hv.evtchn.bind_interdomain(back, front.domid, pa)
    assert back.evtchn_pending(pb)                 # ...but the bind covers it


def test_send_delivers_after_latency_and_wakes_blocked_peer(hv, pair, run):
    front, back = pair
    pa, pb = connect(hv, front, back)
    woke = []

    def backend():
        yield back.poll([pb])
        woke.append((hv.env.now, back.evtchn_clear(pb)))

    def frontend():
        yield front.sleep(1e-3)
        hv.evtchn.send(front, pa)
        sent_at = front.now
        yield front.elapse()
        return sent_at

    hv.env.process(backend())
    sent_at = run(frontend())
    (t, cleared), = woke
    assert cleared and t > sent_at
    send, = hv.trace.select("evtchn.send")
    deliver = [r for r in hv.trace.select("evtchn.deliver") if r.dom == back.domid][-1]
    assert deliver.t > send.t and deliver.fields["port"] == pb


def test_pending_bits_coalesce(hv, pair, run):
    front, back = pair
    pa, pb = connect(hv, front, back)
    for _ in range(3):
        hv.evtchn.send(front, pa)

    def backend():
        yield back.poll([pb])
        yield back.sleep(1e-3)
        return back.evtchn_take_pending()

    assert run(backend()) == [pb]
    delivers = [r for r in hv.trace.select("evtchn.deliver") if r.dom == back.domid and
                r.fields.get("remote_port") == pa]
    assert [bool(r.fields.get("coalesced")) for r in delivers] == [False, True, True]


def test_masked_port_does_not_wake_block_but_poll_sees_it(hv, pair, run):
    front, back = pair
    pa, pb = connect(hv, front, back)
    hv.evtchn.mask(back, pb)
    hv.evtchn.send(front, pa)

    def backend():
        start = back.now
        yield back.block(timeout=0.5)
        t_block = hv.env.now
        yield back.poll([pb], timeout=0.5)
        return start, t_block, hv.env.now

    start, t_block, t_poll = run(backend())
    assert t_block == pytest.approx(start + 0.5)    # the masked port did not wake it
    assert t_poll - t_block < 1e-3                  # already pending: poll returns at once
    assert back.evtchn_take_pending() == []         # masked ports are not taken
    hv.evtchn.unmask(back, pb)
    assert back.evtchn_take_pending() == [pb]


def test_close_reverts_peer_to_unbound_and_allows_rebind(hv, pair):
    front, back = pair
    pa, pb = connect(hv, front, back)
    hv.evtchn.close(back, pb)
    st = hv.evtchn.status(front, pa)
    assert (st.state, st.remote_dom) == (EVTCHNSTAT_unbound, back.domid)
    hv.evtchn.send(front, pa)                       # unbound again: silently dropped
    pb2 = hv.evtchn.bind_interdomain(back, front.domid, pa)
    assert hv.evtchn.status(back, pb2).state == EVTCHNSTAT_interdomain


def test_notification_to_a_closed_port_is_dropped_on_delivery(hv, pair, run):
    front, back = pair
    pa, pb = connect(hv, front, back)
    hv.evtchn.send(front, pa)
    hv.evtchn.close(back, pb)

    def backend():
        yield back.sleep(1e-3)
        return back.evtchn_take_pending()

    assert run(backend()) == []
    dropped = [r for r in hv.trace.select("evtchn.deliver") if r.fields.get("dropped")]
    assert [(r.dom, r.fields["port"], r.fields["dropped"]) for r in dropped] == [
        (back.domid, pb, "closed")]


@pytest.mark.parametrize("op", ["send", "close", "unmask"])
def test_ops_on_unallocated_port_are_einval(hv, pair, op):
    front, back = pair
    with pytest.raises(EvtchnError) as e:
        getattr(hv.evtchn, op)(front, 5)
    assert e.value.code == -errno.EINVAL
    assert "EINVAL" in str(e.value)


def test_bind_errors(hv, pair):
    front, back = pair
    third = hv.domain_create("third")
    pa = hv.evtchn.alloc_unbound(front, back.domid)
    with pytest.raises(EvtchnError) as e:               # reserved for someone else
        hv.evtchn.bind_interdomain(third, front.domid, pa)
    assert e.value.code == -errno.EINVAL
    with pytest.raises(EvtchnError) as e:               # no such port
        hv.evtchn.bind_interdomain(back, front.domid, 99)
    assert e.value.code == -errno.EINVAL
    with pytest.raises(EvtchnError) as e:               # no such domain
        hv.evtchn.bind_interdomain(back, 55, pa)
    assert e.value.code == -errno.ESRCH
    hv.evtchn.bind_interdomain(back, front.domid, pa)
    with pytest.raises(EvtchnError) as e:               # already bound
        hv.evtchn.bind_interdomain(back, front.domid, pa)
    assert e.value.code == -errno.EINVAL


def test_alloc_unbound_errors(hv, pair):
    front, back = pair
    with pytest.raises(EvtchnError) as e:               # unprivileged: DOMID_SELF only
        hv.evtchn.alloc_unbound(front, back.domid, dom=back.domid)
    assert e.value.code == -errno.EPERM
    with pytest.raises(EvtchnError) as e:
        hv.evtchn.alloc_unbound(front, 4242)
    assert e.value.code == -errno.ESRCH
    port = hv.evtchn.alloc_unbound(hv.dom0, front.domid, dom=back.domid)   # dom0 may
    assert hv.evtchn.status(hv.dom0, port, dom=back.domid).state == EVTCHNSTAT_unbound
    hv.evtchn.nr_channels = 4
    hv.evtchn.alloc_unbound(front, DOMID_SELF)
    hv.evtchn.alloc_unbound(front, back.domid)
    hv.evtchn.alloc_unbound(front, back.domid)
    with pytest.raises(EvtchnError) as e:
        hv.evtchn.alloc_unbound(front, back.domid)
    assert e.value.code == -errno.ENOSPC


def test_status_of_other_domain_needs_privilege(hv, pair):
    front, back = pair
    with pytest.raises(EvtchnError) as e:
        hv.evtchn.status(front, 1, dom=back.domid)
    assert e.value.code == -errno.EPERM


def test_destroy_closes_channels_peer_reverts(hv, pair):
    front, back = pair
    pa, pb = connect(hv, front, back)
    hv.domain_destroy(back.domid)
    st = hv.evtchn.status(front, pa)
    assert (st.state, st.remote_dom) == (EVTCHNSTAT_unbound, back.domid)
    hv.evtchn.send(front, pa)                           # dropped, no error


def test_earlier_notification_reschedules_a_later_wake(hv, pair, run):
    """A poll with a long timeout must still wake at the first notification."""
    front, back = pair
    pa, pb = connect(hv, front, back)

    start = max(front.now, back.now)       # domains are built one after the other

    def frontend():
        yield front.sleep(start - front.now + 0.01)
        hv.evtchn.send(front, pa)

    def backend():
        yield back.poll([pb], timeout=10.0)
        return hv.env.now - start

    hv.env.process(frontend())
    woke = run(backend())
    assert 0.01 < woke < 0.02


def test_unmask_by_one_thread_wakes_another_blocked_in_the_same_domain(hv, pair, run):
    front, back = pair
    pa, pb = connect(hv, front, back)
    hv.evtchn.mask(back, pb)
    hv.evtchn.send(front, pa)
    woke = []

    def sleeper():
        yield back.block()
        woke.append(back.evtchn_take_pending())

    def unmasker():
        yield back.sleep(0.5)
        hv.evtchn.unmask(back, pb)
        return back.now

    hv.env.process(sleeper())
    t_unmask = run(unmasker())
    assert woke == [[pb]]
    assert hv.trace.select("evtchn.unmask")[-1].fields["pending"] is True
    assert hv.env.now >= t_unmask

"""Ring front/back between domains, and the ring ping-pong built on them."""

import pytest

from simxen.domains.pingpong import PingPongStats, run_pingpong
from simxen.drivers.ring import RingBackend, RingFrontend
from simxen.xen import Hypervisor


def pingpong(seed=1, **kw):
    hv = Hypervisor(seed=seed)
    front, back = hv.domain_create("front"), hv.domain_create("back")
    proc = hv.env.process(run_pingpong(hv, front, back, **kw))
    hv.env.run()
    return hv, proc.value


def test_strict_pingpong_completes_and_notifies_every_time():
    hv, stats = pingpong(requests=50)
    assert isinstance(stats, PingPongStats)
    assert (stats.completed, stats.mismatches) == (50, 0)
    assert len(stats.latencies) == 50 and all(t > 0 for t in stats.latencies)
    # window 1: each side sleeps before the other pushes, so every push notifies
    assert stats.notifications_sent == 100 and stats.notifications_suppressed == 0
    assert stats.end > stats.start > stats.connect_start
    assert stats.throughput == pytest.approx(50 / stats.duration)
    assert stats.percentile(50) <= stats.percentile(99) <= max(stats.latencies)
    sends = [r for r in hv.trace.select("evtchn.send") if "dropped" not in r.fields]
    assert len(sends) == 100


def test_push_and_check_notify_suppresses_while_backend_is_busy():
    hv, stats = pingpong(requests=64, window=8)
    assert stats.completed == 64
    assert stats.notifications_suppressed > 0
    assert stats.notifications_sent < 2 * 64
    # each request push is one notify decision
    assert stats.front_notifications_sent + stats.front_notifications_suppressed == 64
    suppressed = hv.trace.select("ring.push")
    assert len(suppressed) == stats.notifications_suppressed
    assert all(r.fields["notify"] is False for r in suppressed)


def test_batched_push_notifies_once_per_window():
    _, stats = pingpong(requests=64, window=8, push_each=False)
    assert stats.completed == 64
    assert stats.front_notifications_sent + stats.front_notifications_suppressed == 8


def test_latency_tracks_the_profile():
    hv, fast = pingpong(requests=20)
    slow_profile = hv.profile.with_overrides(
        {"ops": {"evtchn.notify": {"dist": "fixed", "value": 1e-3}}})
    hv2 = Hypervisor(seed=1, profile=slow_profile)
    f, b = hv2.domain_create("front"), hv2.domain_create("back")
    proc = hv2.env.process(run_pingpong(hv2, f, b, requests=20))
    hv2.env.run()
    slow = proc.value
    # two notifications per round trip (the first request may be found by the
    # backend's final check right after the bind, before any notification)
    assert slow.percentile(10) >= 2e-3
    assert max(fast.latencies) < 1e-3


def test_service_op_is_charged_per_request():
    _, plain = pingpong(requests=10)
    _, served = pingpong(requests=10, service_op="tpm.vtpm.default")
    assert served.percentile(50) > plain.percentile(50) + 5e-5


def test_bad_parameters_are_refused():
    for kw in ({"requests": -1}, {"requests": 1, "request_size": 4},
               {"requests": 1, "request_size": 5000}, {"requests": 1, "window": 0}):
        with pytest.raises(ValueError):
            pingpong(**kw)


def test_everything_is_released_afterwards():
    hv, stats = pingpong(requests=5)
    front, back = hv.domains[1], hv.domains[2]
    assert not front.grant_table.entries and not back.maptrack
    assert not front.ports and not back.ports
    assert not hv.xs.exists(hv.dom0, "/local/domain/1/device/pingpong/0")
    assert not hv.xs.exists(hv.dom0, "/local/domain/2/backend/pingpong/1/0")
    assert stats.closed >= stats.end


def test_double_fetch_is_expressible():
    """A frontend may change a request after the backend first read it (TOCTOU)."""
    hv = Hypervisor(seed=1)
    front, back = hv.domain_create("front"), hv.domain_create("back")
    page = front.alloc_page()
    gref = hv.gnttab.grant_foreign_access(front, back.domid, page.gfn)
    port = hv.evtchn.alloc_unbound(front, back.domid)
    fring = RingFrontend(front, page, port, 16, init=True)
    mapping = hv.gnttab.map_grant_ref(back, front.domid, gref)
    bport = hv.evtchn.bind_interdomain(back, front.domid, port)
    bring = RingBackend(back, mapping, bport, 16)
    fring.put_request(b"size=0010")
    fring.push()
    offset = bring.ring.entry_offset(bring.ring.req_cons)
    first = back.page_read(mapping, offset, 9)                 # fetch one: the check
    page.data[offset:offset + 9] = b"size=9999"                # undeclared write by a malicious front
    second = back.page_read(mapping, offset, 9)                # fetch two: the use
    assert (first, second) == (b"size=0010", b"size=9999")
    copied = bring.get_request(9)                              # RING_COPY_REQUEST: one fetch
    assert copied == b"size=9999"


def test_wait_with_timeout_returns_none():
    hv = Hypervisor(seed=1)
    front, back = hv.domain_create("front"), hv.domain_create("back")
    page = front.alloc_page()
    port = hv.evtchn.alloc_unbound(front, back.domid)
    ring = RingFrontend(front, page, port, 16, init=True)
    out = []

    def waiter():
        start = front.now
        out.append((yield from ring.wait_response(timeout=0.1)))
        out.append(hv.env.now - start)

    hv.env.process(waiter())
    hv.env.run()
    assert out[0] is None and out[1] == pytest.approx(0.1, rel=1e-3)

"""Ring ping-pong: two domains connect through XenStore and exchange requests.

The smallest complete split driver. The toolstack (dom0) creates the device
directories; the frontend domain allocates a page, grants it, allocates an
event channel, initialises a ``ring.h`` ring in the page, publishes
``ring-ref`` and ``event-channel`` and goes Initialised; the backend maps the
grant, binds the channel and goes Connected; then the frontend sends
``requests`` requests, keeping up to ``window`` in flight, and the backend
answers each one. Both sides close and the toolstack removes the device::

    hv = Hypervisor(seed=1)
    front, back = hv.domain_create("front"), hv.domain_create("back")
    proc = hv.env.process(run_pingpong(hv, front, back, requests=1000))
    hv.env.run()
    stats = proc.value            # PingPongStats

Every request carries its number (8 bytes, little endian) and a payload
drawn from the stream ``pingpong/<front>/payload``; the backend answers
with the number and the payload's bytes reversed, and the frontend checks
the answer, so the bytes really travel through the shared page.
"""

import math
import struct
from dataclasses import dataclass, field

import simpy

from simxen.drivers.ring import RingBackend, RingFrontend
from simxen.drivers.xenbus import XenbusBackend, XenbusFrontend, add_device
from simxen.protocols.ring import ring_size

_ID = struct.Struct("<Q")


@dataclass
class PingPongStats:
    """What a ping-pong run measured (times are simulated seconds)."""

    requests: int                   #: requests asked for
    request_size: int               #: bytes per request and per response
    window: int                     #: most requests in flight
    ring_size: int                  #: entries in the ring
    completed: int = 0              #: responses received and checked
    mismatches: int = 0             #: responses whose bytes were wrong
    connect_start: float = 0.0      #: when the toolstack created the device
    start: float = 0.0              #: first request written (frontend Connected)
    end: float = 0.0                #: last response read
    closed: float = 0.0             #: both ends closed, device removed
    latencies: list = field(default_factory=list)   #: per request, write -> response read
    front_notifications_sent: int = 0
    front_notifications_suppressed: int = 0
    back_notifications_sent: int = 0
    back_notifications_suppressed: int = 0

    @property
    def notifications_sent(self):
        """Event-channel sends by both ends."""
        return self.front_notifications_sent + self.back_notifications_sent

    @property
    def notifications_suppressed(self):
        """Publishing pushes that push-and-check-notify decided need no event."""
        return self.front_notifications_suppressed + self.back_notifications_suppressed

    @property
    def duration(self):
        """Seconds from the first request to the last response."""
        return self.end - self.start

    @property
    def connect_time(self):
        """Seconds the xenbus handshake took (device creation to frontend Connected)."""
        return self.start - self.connect_start

    @property
    def throughput(self):
        """Completed requests per simulated second (0 if no time passed)."""
        return self.completed / self.duration if self.duration > 0 else 0.0

    def percentile(self, p):
        """The ``p``-th percentile latency (nearest rank), in seconds."""
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        rank = max(1, math.ceil(p / 100 * len(ordered)))
        return ordered[min(rank, len(ordered)) - 1]

    def summary(self):
        """A dict of the headline numbers (for reports)."""
        return {
            "requests": self.requests, "completed": self.completed,
            "mismatches": self.mismatches, "request_size": self.request_size,
            "window": self.window, "ring_size": self.ring_size,
            "connect_time": self.connect_time, "duration": self.duration,
            "throughput": self.throughput,
            "latency_p50": self.percentile(50), "latency_p90": self.percentile(90),
            "latency_p99": self.percentile(99),
            "latency_max": max(self.latencies) if self.latencies else math.nan,
            "notifications_sent": self.notifications_sent,
            "notifications_suppressed": self.notifications_suppressed,
        }


def _answer(request):
    return request[:8] + request[8:][::-1]


def run_pingpong(hv, front, back, *, requests, request_size=64, window=1, push_each=True,
                 devtype="pingpong", devid=0, service_op=None, toolstack=None):
    """Connect ``front`` to ``back`` over a ring and exchange ``requests`` requests.

    A generator to run as a SimPy process; its value is a
    :class:`PingPongStats`.

    :param hv: the :class:`~simxen.xen.hypervisor.Hypervisor`.
    :param front: the frontend :class:`~simxen.xen.domain.Domain` (grants the page).
    :param back: the backend domain (maps it).
    :param requests: how many request/response exchanges (>= 0).
    :param request_size: bytes per request and per response, 8 (the request
        number) up to 4032; the ring's entry size, so it also fixes the ring
        size (``ring_size(request_size)`` entries).
    :param window: most requests in flight (1 = strict ping-pong; larger
        batches requests and lets push-and-check-notify suppress events).
        Capped at the ring size.
    :param push_each: publish each request as soon as it is written (the
        second and later pushes before the backend wakes are then
        suppressed); ``False`` publishes a whole window with one push.
    :param devtype: the XenStore device type (``device/<devtype>/<devid>``).
    :param devid: the device number.
    :param service_op: a profile op charged to the backend per request
        (e.g. ``"tpm.vtpm.default"``); ``None`` = only the ring costs.
    :param toolstack: the domain creating the device directories (dom0).
    """
    if not isinstance(requests, int) or requests < 0:
        raise ValueError(f"requests must be a non-negative integer, not {requests!r}")
    size = ring_size(request_size)          # raises ValueError for impossible sizes
    if request_size < _ID.size:
        raise ValueError(f"request_size must be at least {_ID.size}, not {request_size}")
    if not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be a positive integer, not {window!r}")
    window = min(window, size)
    toolstack = toolstack or hv.dom0
    stats = PingPongStats(requests, request_size, window, size)
    stats.connect_start = toolstack.now
    fpath, bpath = add_device(hv, toolstack, front.domid, back.domid, devtype, devid)
    backend = hv.env.process(_backend(hv, back, front.domid, devtype, devid, request_size,
                                      service_op, stats))

    bus = XenbusFrontend(hv, front, devtype, devid)
    page = front.alloc_page()
    gref = hv.gnttab.grant_foreign_access(front, back.domid, page.gfn)
    port = hv.evtchn.alloc_unbound(front, back.domid)
    ring = RingFrontend(front, page, port, request_size, init=True)

    def publish(tx):
        bus.write("ring-ref", gref, tx=tx)
        bus.write("event-channel", port, tx=tx)

    yield from bus.connect(publish)

    payload = hv.streams.random_bytes(f"pingpong/{front.name}/payload")
    sent_at = {}
    pack_id = _ID.pack
    unpack_id = _ID.unpack_from
    latencies = stats.latencies
    stats.start = front.now
    sent = done = 0
    while done < requests:
        while sent < requests and sent - done < window:
            request = pack_id(sent) + payload(request_size - 8)
            ring.put_request(request)
            # the declared write just charged the cursor, so cursor == front.now
            sent_at[sent] = (front.cursor, request)
            sent += 1
            if push_each:
                ring.push()
        if not push_each:
            ring.push()
        yield from ring.wait_responses()
        response = ring.get_response()
        while response is not None:
            number = unpack_id(response)[0]
            t0, request = sent_at.pop(number, (None, None))
            # == (response != _answer(request)): the first 8 bytes are the number
            # both were found by, so only the payload (reversed) is left to check
            if request is None or response[8:] != request[:7:-1]:
                stats.mismatches += 1
            else:
                latencies.append(front.cursor - t0)     # == front.now after the read
                done += 1
            response = ring.get_response()
    stats.end = front.now
    stats.completed = done
    stats.front_notifications_sent = ring.notifications_sent
    stats.front_notifications_suppressed = ring.notifications_suppressed

    yield from bus.close(remove_keys=("ring-ref", "event-channel"))
    hv.evtchn.close(front, port)
    hv.gnttab.end_foreign_access(front, gref)
    hv.xs.rm(toolstack, fpath)
    yield backend
    hv.xs.rm(toolstack, bpath)
    yield toolstack.elapse()
    stats.closed = hv.env.now
    return stats


def _backend(hv, back, fe_domid, devtype, devid, request_size, service_op, stats):
    """The backend domain's driver: xenbus half plus a ring server process."""
    bus = XenbusBackend(hv, back, fe_domid, devtype, devid)
    live = {}

    def connect():
        gref = int(bus.read_otherend("ring-ref"))
        remote_port = int(bus.read_otherend("event-channel"))
        mapping = hv.gnttab.map_grant_ref(back, fe_domid, gref)
        port = hv.evtchn.bind_interdomain(back, fe_domid, remote_port)
        ring = RingBackend(back, mapping, port, request_size)
        live.update(mapping=mapping, port=port, ring=ring,
                    server=hv.env.process(_serve(back, ring, service_op)))

    def disconnect():
        server = live["server"]
        if server.is_alive:
            server.interrupt("disconnect")
        ring = live["ring"]
        stats.back_notifications_sent += ring.notifications_sent
        stats.back_notifications_suppressed += ring.notifications_suppressed
        hv.evtchn.close(back, live["port"])
        hv.gnttab.unmap_grant_ref(back, live["mapping"].handle)

    yield from bus.serve(connect, disconnect)


def _serve(dom, ring, service_op):
    """Answer requests until interrupted: the backend's ring loop."""
    try:
        while True:
            yield from ring.wait_requests()
            request = ring.get_request()
            while request is not None:
                if service_op is not None:
                    dom.charge(service_op)
                ring.put_response(_answer(request))
                request = ring.get_request()
            ring.push()
    except simpy.Interrupt:
        return

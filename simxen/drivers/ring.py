"""A ``ring.h`` ring between two domains: a granted page plus an event channel.

The frontend owns the page (it allocates, initialises and grants it), the
backend maps it; both hold one end of an event channel. Each side wraps the
pure index logic of :mod:`simxen.protocols.ring` with what a real driver
does around it: writes and reads of entries are declared page accesses
(traced and costed), publishing uses push-and-check-notify and sends a
notification only when the peer asked for one, and waiting uses the
final-check idiom so nothing published during the check is missed::

    ring = RingFrontend(front, page, port, entry_size=64, init=True)
    ring.put_request(b"ping")
    ring.push()                                   # notifies only if needed
    reply = yield from ring.wait_response()

Counters ``notifications_sent`` and ``notifications_suppressed`` count the
publishing pushes that did / did not send an event. A push that notifies is
recorded by its ``evtchn.send``; a suppressed one by a ``ring.push`` record
(``notify=False``, the new producer index and the peer's event index).
"""

from simxen.protocols.ring import BackRing, FrontRing


class _RingEnd:
    def __init__(self, dom, view, port, ring, side):
        self.dom = dom
        self.hv = dom.hv
        self.view = view
        self.port = port
        self.ring = ring
        self.side = side
        self.entry_size = ring.entry_size
        self.size = ring.size
        self.notifications_sent = 0
        self.notifications_suppressed = 0
        self._ports = frozenset((port,))
        self._send = dom.hv.evtchn.send

    def push(self):
        """Publish the entries written so far; notify the peer if it asked to be."""
        ring = self.ring
        published = ring.unpublished()
        if not published:
            return False
        notify = ring.push_and_check_notify()
        dom = self.dom
        if notify:
            self.notifications_sent += 1
            self._send(dom, self.port)
        else:
            # A notifying push shows up as its evtchn.send; a suppressed one
            # would leave no trace, so it gets its own record.
            self.notifications_suppressed += 1
            dom.hv.trace.emit("ring.push", dom.now, dom.domid, side=self.side, port=self.port,
                              published=published, prod=ring.prod_pvt, event=ring.peer_event,
                              notify=False)
        return notify

    def _wait(self, final_check, timeout):
        """Sleep on the event channel until ``final_check()`` finds work (ring.h's idiom)."""
        dom = self.dom
        port = self.port
        ports = self._ports
        if timeout is None:
            while not final_check():
                yield dom.poll(ports)
                dom.evtchn_clear(port)
            return True
        deadline = dom.now + timeout
        while not final_check():
            remaining = deadline - dom.now
            if remaining <= 0:
                return False
            yield dom.poll(ports, remaining)
            dom.evtchn_clear(port)
        return True


class RingFrontend(_RingEnd):
    """The frontend end: produces requests, consumes responses.

    ``view`` is the frontend's own :class:`~simxen.xen.domain.Page` (or a
    mapping); ``init=True`` initialises the shared header.
    """

    def __init__(self, dom, view, port, entry_size, *, init=False):
        super().__init__(dom, view, port, FrontRing(view.data, entry_size, init=init), "front")

    def free_requests(self):
        return self.ring.free_requests()

    def put_request(self, data, *, flow=None):
        """Write one request into the next slot (published by :meth:`push`)."""
        if len(data) > self.entry_size:
            raise ValueError(f"{len(data)}-byte request for {self.entry_size}-byte entries")
        offset = self.ring.produce_request()
        self.dom.page_write(self.view, offset, data, what="ring.request", flow=flow)

    def unconsumed_responses(self):
        return self.ring.unconsumed_responses()

    def get_response(self, length=None, *, flow=None):
        """The next response's bytes (``length`` of the entry), or ``None``."""
        offset = self.ring.next_response()
        if offset is None:
            return None
        return self.dom.page_read(self.view, offset, length or self.entry_size,
                                  what="ring.response", flow=flow)

    def wait_response(self, length=None, timeout=None):
        """Wait for a response and return it (``None`` on timeout). A generator."""
        ok = yield from self._wait(self.ring.final_check_for_responses, timeout)
        return self.get_response(length) if ok else None

    def wait_responses(self, timeout=None):
        """Wait until at least one response is unconsumed; ``False`` on timeout.

        Returns a generator: ``yield from ring.wait_responses()``.
        """
        return self._wait(self.ring.final_check_for_responses, timeout)


class RingBackend(_RingEnd):
    """The backend end over its mapping of the frontend's page."""

    def __init__(self, dom, view, port, entry_size):
        super().__init__(dom, view, port, BackRing(view.data, entry_size), "back")

    def unconsumed_requests(self):
        return self.ring.unconsumed_requests()

    def get_request(self, length=None, *, flow=None):
        """A private copy of the next request (``length`` bytes of it), or ``None``.

        Refuses a frontend that published more than a ring's worth
        (``RING_REQUEST_PROD_OVERFLOW``): raises ``ValueError``.
        """
        offset = self.ring.next_request()
        if offset is None:
            return None
        return self.dom.page_read(self.view, offset, length or self.entry_size,
                                  what="ring.request", flow=flow)

    def put_response(self, data, *, flow=None):
        """Write one response into the next slot (published by :meth:`push`)."""
        if len(data) > self.entry_size:
            raise ValueError(f"{len(data)}-byte response for {self.entry_size}-byte entries")
        offset = self.ring.produce_response()
        self.dom.page_write(self.view, offset, data, what="ring.response", flow=flow)

    def wait_requests(self, timeout=None):
        """Wait until at least one request is unconsumed; ``False`` on timeout.

        Returns a generator: ``yield from ring.wait_requests()``.
        """
        return self._wait(self.ring.final_check_for_requests, timeout)

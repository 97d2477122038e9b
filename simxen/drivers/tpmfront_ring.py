"""A multi-slot vTPM frontend: up to N TPM commands in flight over a ``ring.h`` ring.

The what-if beside Xen's :class:`~simxen.drivers.tpmfront.TpmFront` (one
command per shared page): the same xenbus handshake (``ring-ref``,
``event-channel``, ``feature-protocol-v2 = 1``) plus
``multi-slot-entry-size``, and the granted page laid out as a ring of
entries (:mod:`simxen.protocols.tpmif_ring`). Several processes of the
domain may call :meth:`TpmRingFront.transmit` at once; each takes a free
slot (or waits for one), writes its entry, publishes it with ring.h's
push-and-check-notify (a notification only if the backend went to sleep),
and waits for the response that carries its ``id`` back. One dispatcher
process per connection consumes responses with the final-check idiom::

    front = TpmRingFront(hv, guest, entry_size=256)      # 8 slots
    yield from front.connect()
    rsp = yield from front.transmit(command, flow="guest1/7")

Counters: ``commands``, ``notifications_sent``, ``notifications_suppressed``
(publishing pushes that did / did not notify, as :mod:`simxen.drivers.ring`
counts them), ``in_flight_max``.

The backend labels its trace records with the frontend's ``flow`` of each
entry and dates each entry by its submission, from a per-hypervisor side
table (:func:`ring_tags`) -- simulation metadata, never read by the peer's
logic, as :func:`simxen.drivers.tpmfront.page_tag` is for the single page.
"""

from __future__ import annotations

import errno
import weakref

import simpy

from simxen.drivers.command_names import cc_name
from simxen.drivers.ring import RingFrontend
from simxen.drivers.tpmfront import TpmFrontError, backend_not_connected, open_vtpm_device
from simxen.protocols import tpmif_ring
from simxen.protocols.xenbus import XenbusState
from simxen.tpm import header

__all__ = ["TpmRingFront", "ring_tags"]

_TAGS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def ring_tags(hv, mfn: int) -> dict:
    """``{id: (flow, submitted_at)}`` of the entries in flight on the ring page ``mfn``."""
    tags = _TAGS.get(hv)
    if tags is None:
        tags = _TAGS[hv] = {}
    return tags.setdefault(mfn, {})


class TpmRingFront:
    """The multi-slot frontend of vTPM device ``devid`` of domain ``dom``.

    :param entry_size: bytes per ring entry; sets the slot count
        (:func:`simxen.protocols.tpmif_ring.slots`) and the largest packet.
    """

    def __init__(self, hv, dom, devid=0, *, entry_size=256):
        self.hv = hv
        self.dom = dom
        self.devid = devid
        self.entry_size = entry_size
        self.slots = tpmif_ring.slots(entry_size)
        #: bytes a command or response may have
        self.capacity = tpmif_ring.capacity(entry_size)
        self.connected = False
        self.backend_id = None
        self.bus = None
        self.page = None
        self.gref = None
        self.port = None
        self.ring = None
        self._tags = None
        self._free = simpy.Resource(hv.env, capacity=self.slots)
        self._waiting = {}           # id -> event fired with the response packet
        self._next_id = 0
        self._seq = 0
        self.commands = 0
        self.in_flight_max = 0

    def __repr__(self):
        return (f"<TpmRingFront dom{self.dom.domid} vtpm/{self.devid} {self.slots} slots "
                f"{'connected' if self.connected else 'not connected'}>")

    @property
    def notifications_sent(self):
        return self.ring.notifications_sent if self.ring is not None else 0

    @property
    def notifications_suppressed(self):
        return self.ring.notifications_suppressed if self.ring is not None else 0

    def connect(self, timeout=None):
        """Grant the ring page, allocate the event channel, run the xenbus handshake."""
        hv, dom = self.hv, self.dom
        bus = self.bus = open_vtpm_device(hv, dom, self.devid)
        self.backend_id = bus.otherend_id
        self.page = dom.alloc_page()
        self.gref = hv.gnttab.grant_foreign_access(dom, self.backend_id, self.page.gfn)
        self.port = hv.evtchn.alloc_unbound(dom, self.backend_id)
        self.ring = RingFrontend(dom, self.page, self.port, self.entry_size, init=True)
        self._tags = ring_tags(hv, self.page.mfn)

        def publish(tx):
            bus.write("ring-ref", self.gref, tx=tx)
            bus.write("event-channel", self.port, tx=tx)
            bus.write("feature-protocol-v2", "1", tx=tx)
            bus.write(tpmif_ring.XS_ENTRY_SIZE, str(self.entry_size), tx=tx)

        S = XenbusState
        bus.watch_otherend()
        bus.publish(publish)
        bus.switch_state(S.Initialised)
        state = yield from bus.wait_otherend({S.Connected, S.Closing, S.Closed}, timeout)
        if state != S.Connected:
            raise backend_not_connected(bus, state)
        bus.switch_state(S.Connected)
        self.connected = True
        hv.env.process(self._dispatch())
        hv.trace.emit("tpm.front.connect", dom.now, dom.domid, devid=self.devid,
                      backend=self.backend_id, flavour="multi-slot", gref=self.gref,
                      port=self.port, extra_pages=0, slots=self.slots)

    def transmit(self, command: bytes, *, locality=0, flow=None, timeout=None):
        """Send ``command`` in a free slot and return its response. A generator.

        ``timeout`` bounds the wait for a free slot (None: wait as long as it takes).
        """
        hv, dom = self.hv, self.dom
        if not self.connected or not dom.alive:
            raise TpmFrontError(-errno.ENODEV, f"dom{dom.domid} vtpm/{self.devid} is not connected")
        command = bytes(command)
        if len(command) > self.capacity:
            raise TpmFrontError(-errno.EINVAL, f"{len(command)}-byte command exceeds the "
                                               f"{self.capacity} bytes of a slot")
        if flow is None:
            self._seq += 1
            flow = f"{dom.name}/vtpm{self.devid}/{self._seq}"
        with self._free.request() as turn:
            got = yield turn if timeout is None else (turn | hv.env.timeout(timeout))
            if timeout is not None and turn not in got:
                raise TpmFrontError(-errno.ETIME, "no free slot in time")
            ident = self._next_id
            self._next_id = (ident + 1) & 0xFFFF
            done = self._waiting[ident] = hv.env.event()
            start = dom.now
            self.ring.put_request(tpmif_ring.pack_entry(ident, command, locality=locality),
                                  flow=flow)
            self._tags[ident] = (flow, dom.now)
            cc = header.code(command)
            hv.trace.emit("tpm.front.submit", dom.now, dom.domid, flow=flow, devid=self.devid,
                          backend=self.backend_id, length=len(command), slot=ident, cc=cc,
                          cc_name=cc_name(cc), locality=locality)
            self.ring.push()
            self.in_flight_max = max(self.in_flight_max, len(self._waiting))
            response = yield done
        self.commands += 1
        now = dom.now
        hv.trace.emit("tpm.front.complete", now, dom.domid, flow=flow, devid=self.devid,
                      length=len(response), latency=now - start,
                      rc=header.code(response))
        return response

    def _dispatch(self):
        """Consume responses as they come and wake their senders (ring.h's final check)."""
        ring, dom = self.ring, self.dom
        while self.connected and dom.alive:
            yield from ring.wait_responses()
            while True:
                data = ring.get_response()
                if data is None:
                    break
                ident, _loc, status, packet = tpmif_ring.unpack_entry(data, self.entry_size)
                self._tags.pop(ident, None)
                waiter = self._waiting.pop(ident, None)
                if waiter is None:
                    self.hv.trace.emit("tpm.front.stray", dom.now, dom.domid, slot=ident)
                    continue
                if status != tpmif_ring.TPMIF_RING_OK:
                    self.hv.trace.emit("tpm.front.truncated", dom.now, dom.domid, slot=ident)
                waiter.succeed(packet)

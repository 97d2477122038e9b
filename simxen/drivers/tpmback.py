"""tpmback: the backend half of the vTPM, as mini-os runs it in the vTPM stub domains.

A vTPM stub domain (and the vTPM manager) serves every frontend that the
toolstack connects to it with one :class:`TpmBack`::

    back = TpmBack(hv, vtpm_dom, on_open=attach, on_close=detach)
    back.start()                               # xenbus watcher + per-frontend processes

    def main_loop():
        while True:
            req = yield from back.next_request()   # tpmback_req_any()
            rsp = engine.execute(req.command, req.locality)
            vtpm_dom.charge("tpm.vtpm.default")
            back.respond(req, rsp)                  # tpmback_resp()

What :meth:`TpmBack.start` runs (mini-os ``tpmback.c``, as the vTPM and manager stub domains run it):

* a **watch on** ``backend/vtpm`` in the backend domain's home. Each new
  ``backend/vtpm/<fe>/<handle>`` directory the toolstack creates gets its own
  process, which refuses the device unless ``frontend-id`` and the
  ``frontend`` path name the domain ``<fe>`` of the directory, and unless it
  carries a valid ``uuid`` (mandatory, as in mini-os); then goes InitWait,
  writes ``feature-protocol-v2 = 1``, calls ``on_open`` and runs the xenbus
  backend half;
* on the frontend's Initialised or Connected: read ``ring-ref`` and
  ``event-channel``, require the frontend's ``feature-protocol-v2`` to be
  exactly ``"1"``, map the grant, bind the event channel, write
  ``ready = 1``, go Connected. Any failure leaves the backend Closed (with an
  ``error`` key), never a traceback;
* an **event handler** per connection: SUBMIT marks the frontend ready;
  CANCEL is acknowledged with IDLE if the request has not been taken yet
  (ignored once it is being worked on: FINISH will overwrite it);
* when the frontend closes, unmap and unbind and return to InitWait (the
  pv-grub -> kernel handover); when it disappears (its domain destroyed),
  full teardown: unmap, unbind, Closed, ``on_close``, and the backend
  directory removed.

Taking a request (:meth:`TpmBack.next_request`) is where the untrusted bytes
are met, so it is careful in the order Xen's backends must be: read the
header once, check ``state`` is SUBMIT and that ``length`` fits the granted
pages (``8 + 4*nr_extra_pages + length``), map the extra pages if any, then
**copy the command out of the shared page exactly once**. Everything after
that (the TPM, the manager) sees only the copy, so a frontend rewriting the
page afterwards (a double-fetch attack) changes nothing. A malformed request
is answered with a 10-byte TPM error response (``TPM_RC_COMMAND_SIZE`` for a
length beyond the pages, ``TPM_RC_FAILURE`` for a wrong state or unmappable
extra pages) and a ``tpm.back.reject`` trace record.

Which ready frontend is served next is the ``policy``:

``"priority"`` (default)
    the lowest ``(domid, handle)``, as ``tpmback_req_any`` scans its list --
    a static priority under which a busy low domid starves the others;
``"fifo"``
    by arrival (when the SUBMIT notification was handled);
``"round-robin"``
    the next ready ``(domid, handle)`` after the last one served.

Each is a small strategy object (:class:`Priority`, :class:`Fifo`,
:class:`RoundRobin`, by name in :data:`SCHEDULERS`): ``choose(ready)`` picks
among two or more ready frontends, ``served(key)`` hears which one was taken.

Trace records: ``tpm.back.open``, ``tpm.back.connect``, ``tpm.back.ready``,
``tpm.back.take``, ``tpm.back.respond``, ``tpm.back.reject``,
``tpm.back.cancel``, ``tpm.back.violation``, ``tpm.back.drop``,
``tpm.back.refuse``, ``tpm.back.disconnect``, ``tpm.back.close``; each
command's records carry the ``flow`` its frontend gave it.
"""

from __future__ import annotations

import heapq
import uuid as uuidlib
from dataclasses import dataclass, field
from typing import Callable, Optional

import simpy

from simxen.drivers.command_names import cc_name
from simxen.drivers.ring import RingBackend
from simxen.drivers.tpmfront import page_tag
from simxen.drivers.tpmfront_ring import ring_tags
from simxen.drivers.xenbus import XenbusBackend
from simxen.protocols import tpmif, tpmif_ring
from simxen.protocols.xenbus import XenbusState
from simxen.tpm import header
from simxen.tpm.constants import TPM_RC
from simxen.tpm.engine import error_response
from simxen.xen import errno as xen_errno
from simxen.xen.errors import XenError

__all__ = ["TpmBack", "TpmRequest", "FrontendInfo", "POLICIES", "Priority", "Fifo",
           "RoundRobin"]

_OFF_STATE = tpmif.TPMIF_OFF_STATE
_SUBMIT = tpmif.TPMIF_STATE_SUBMIT
_CANCEL = tpmif.TPMIF_STATE_CANCEL
#: payload bytes of the first page without extra pages (the usual case)
_ONE_PAGE = tpmif.payload_capacity(0)
#: ``(old, new)`` state changes a frontend may make: those
#: ``tpmif.check_transition(FRONTEND, old, new)`` lets through
_FRONTEND_MOVES = frozenset(
    move for move, writer in tpmif.TPMIF_TRANSITIONS.items()
    if writer == tpmif.FRONTEND and move[1] in tpmif.TPMIF_WRITERS[tpmif.FRONTEND])


@dataclass(frozen=True)
class FrontendInfo:
    """Who is connected: what ``on_open``/``on_close`` receive."""

    domid: int                #: the frontend's domain
    handle: int               #: the device number (``vtpm/<handle>``)
    uuid: str                 #: the vTPM's UUID from the backend directory
    backend_path: str         #: ``/local/domain/<be>/backend/vtpm/<fe>/<handle>``
    frontend_path: str        #: ``/local/domain/<fe>/device/vtpm/<handle>``


@dataclass(slots=True)
class TpmRequest:
    """One command taken from a frontend: the backend's own copy of its bytes.

    Two are made per guest command of the vTPM stack (the guest's at the vTPM, the
    vTPM's state save at the manager): slots make each smaller and its fields, read
    by the backend and the domain serving it, quicker to reach."""

    domid: int
    handle: int
    uuid: str
    command: bytes            #: copied once out of the shared page
    locality: int
    flow: object              #: trace label of this command
    arrived: float            #: when its SUBMIT was seen
    taken: float = 0.0        #: when :meth:`TpmBack.next_request` returned it
    _iface: object = field(default=None, repr=False, compare=False)
    _extra: list = field(default_factory=list, repr=False, compare=False)
    _nr_extra: int = field(default=0, repr=False, compare=False)
    _slot: int = field(default=None, repr=False, compare=False)
    #: the command code (bytes 6..9), or None for a packet shorter than a header: read
    #: once, when the request is made (the vTPM and the manager dispatch on it)
    cc: object = field(init=False, compare=False)

    def __post_init__(self):
        self.cc = header.code(self.command)


class _Interface:
    """One connected (or connecting) frontend, as tpmback's list holds it."""

    __slots__ = ("key", "info", "bus", "mapping", "port", "connected", "ready", "arrived",
                 "seq", "busy", "handler", "tag", "last_state", "ring", "ring_tags")

    def __init__(self, key, info, bus):
        self.key = key
        self.info = info
        self.bus = bus
        self.mapping = None
        self.port = None
        self.connected = False
        self.ready = False
        self.arrived = 0.0
        self.seq = 0
        self.busy = None
        self.handler = None
        self.tag = None
        self.last_state = tpmif.TPMIF_STATE_IDLE   # as the backend last saw or wrote it
        self.ring = None              # multi-slot transport: a RingBackend over the page
        self.ring_tags = None


class Priority:
    """``"priority"``: the lowest ``(domid, handle)``, as mini-os ``tpmback_req_any``
    scans its list (a busy low domid starves the others)."""

    name = "priority"
    #: the choice is the lowest key among the ready: the backend may find it in its
    #: heap of ready keys instead of handing over every ready interface
    lowest_key = True

    def choose(self, ready):
        """The interface to serve among ``ready`` (two or more)."""
        return min(ready, key=_by_key)

    def served(self, key):
        """``key``'s request was taken (a policy with memory notes it)."""


class Fifo(Priority):
    """``"fifo"``: by arrival (when the SUBMIT notification was handled)."""

    name = "fifo"
    lowest_key = False

    def choose(self, ready):
        return min(ready, key=_by_arrival)


class RoundRobin(Priority):
    """``"round-robin"``: the next ready ``(domid, handle)`` after the last one served."""

    name = "round-robin"
    lowest_key = False

    def __init__(self):
        self.last = None            #: key served last

    def choose(self, ready):
        ready.sort(key=_by_key)
        if self.last is not None:
            for iface in ready:
                if iface.key > self.last:
                    return iface
        return ready[0]

    def served(self, key):
        self.last = key


def _by_key(iface):
    return iface.key


def _by_arrival(iface):
    return iface.arrived, iface.seq


#: The scheduling policies by name: what ``TpmBack(policy=...)`` accepts.
SCHEDULERS = {cls.name: cls for cls in (Priority, Fifo, RoundRobin)}
#: Accepted values of ``policy``.
POLICIES = tuple(SCHEDULERS)


class TpmBack:
    """mini-os tpmback in domain ``dom``.

    :param policy: ``"priority"``, ``"fifo"`` or ``"round-robin"`` (see module doc).
    :param name: names the trace records' ``backend`` field and the watch token.
    :param on_open: ``on_open(FrontendInfo)`` when a frontend's device appears.
    :param on_close: ``on_close(FrontendInfo)`` when it is torn down for good.
    """

    def __init__(self, hv, dom, *, policy="priority", name="tpmback",
                 on_open: Optional[Callable] = None, on_close: Optional[Callable] = None,
                 multi_slot=False):
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, not {policy!r}")
        self.hv = hv
        self.dom = dom
        self.policy = policy
        #: the strategy object choosing among ready frontends (see :data:`SCHEDULERS`)
        self.scheduler = SCHEDULERS[policy]()
        self.name = name
        self.on_open = on_open
        self.on_close = on_close
        #: also serve simxen's multi-slot what-if (simxen.protocols.tpmif_ring): look for
        #: ``multi-slot-entry-size`` at connect. Off, as in mini-os: no extra XenStore read.
        self.multi_slot = multi_slot
        self.base = f"/local/domain/{dom.domid}/backend/vtpm"
        self._token = f"{name}:backend/vtpm"
        self._ifaces: dict = {}           # (domid, handle) -> _Interface (None: refused)
        self._bad_names: set = set()      # directories not named <domid>/<handle>
        self._seq = 0
        self._ready = {}                  # key -> interface with ready set (what _choose picks from)
        #: the keys of _ready as a heap, for the priority policy: a manager serving
        #: thousands of vTPMs has hundreds ready at once, and a scan for the lowest per
        #: request grew with the fleet. Keys leave it lazily (when found on top and no
        #: longer ready); _in_heap says which keys it holds.
        self._ready_keys = []
        self._in_heap = set()
        self._wakeup = None
        self._watcher = None
        # counters
        self.requests = 0                 #: requests taken and handed out
        self.responses = 0                #: responses written
        self.rejected = 0                 #: malformed requests answered with an error
        self.cancelled = 0                #: cancels acknowledged with IDLE
        self.dropped = 0                  #: responses for frontends that went away
        self.refused = 0                  #: devices refused (wrong domain, no uuid, ...)

    def __repr__(self):
        return f"<TpmBack dom{self.dom.domid} {self.name} {len(self._ifaces)} frontend(s)>"

    # -- public view --------------------------------------------------------

    @property
    def frontends(self):
        """``{(domid, handle): FrontendInfo}`` of every device opened and not yet closed."""
        return {key: iface.info for key, iface in self._ifaces.items() if iface is not None}

    def connected(self, domid, handle=0):
        """Whether frontend ``(domid, handle)`` is connected now."""
        iface = self._ifaces.get((domid, handle))
        return iface is not None and iface.connected

    def start(self):
        """Start watching ``backend/vtpm`` (the SimPy processes); returns self."""
        if self._watcher is None:
            self._watcher = self.hv.env.process(self._watch())
        return self

    # -- xenbus -------------------------------------------------------------

    def _watch(self):
        hv, dom = self.hv, self.dom
        hv.xs.watch(dom, self.base, self._token)
        while dom.alive:
            yield dom.wait_watch(self._token)
            if not dom.alive:
                return
            while True:
                event = dom.xs_read_watch(self._token)
                if event is None:
                    break
                self._scan(event.path)

    def _scan(self, path):
        """Find device directories under ``path`` that have no process yet."""
        rel = path[len(self.base):].strip("/") if path.startswith(self.base) else None
        if rel is None:
            return
        parts = rel.split("/") if rel else []
        if len(parts) >= 2:
            candidates = [(parts[0], parts[1])]
        else:
            candidates = []
            fes = [parts[0]] if parts else self._children(self.base)
            for fe in fes:
                candidates += [(fe, h) for h in self._children(f"{self.base}/{fe}")]
        for fe, handle in candidates:
            if (fe, handle) in self._bad_names:
                continue
            if not (fe.isdigit() and handle.isdigit()):
                self._bad_names.add((fe, handle))
                self._refuse(None, f"{self.base}/{fe}/{handle}", "not a <domid>/<handle> directory")
                continue
            key = (int(fe), int(handle))
            if key in self._ifaces or not self.hv.xs.exists(self.dom, f"{self.base}/{fe}/{handle}"):
                continue
            self._ifaces[key] = None          # claimed; the process fills it in
            self.hv.env.process(self._device(key))

    def _children(self, path):
        try:
            return self.hv.xs.directory(self.dom, path)
        except XenError:
            return []

    def _refuse(self, bus, path, why):
        """Refuse a device: trace it and, if we have its directory, go Closed with ``error``."""
        self.refused += 1
        self.hv.trace.emit("tpm.back.refuse", self.dom.now, self.dom.domid, backend=self.name,
                           path=path, reason=why)
        if bus is not None:
            try:
                bus.write("error", f"refused: {why}")
                bus.switch_state(XenbusState.Closed)
            except XenError:
                pass

    def _device(self, key):
        """The life of one device directory: checks, open, xenbus backend, teardown."""
        hv, dom = self.hv, self.dom
        fe, handle = key
        path = f"{self.base}/{fe}/{handle}"
        try:
            bus = XenbusBackend(hv, dom, fe, "vtpm", handle)
        except (XenError, ValueError) as err:
            self._refuse(None, path, f"incomplete device directory ({err})")
            return
        why = self._check_names(bus, fe)
        uuid = None
        if why is None:
            try:
                uuid = str(uuidlib.UUID(bus.read("uuid")))
            except (XenError, ValueError) as err:
                why = f"no valid uuid ({err})"
        if why is not None:
            self._refuse(bus, path, why)
            return                                 # stays claimed: refused for good
        info = FrontendInfo(fe, handle, uuid, bus.nodename, bus.otherend)
        iface = self._ifaces[key] = _Interface(key, info, bus)
        bus.switch_state(XenbusState.InitWait)
        bus.write("feature-protocol-v2", "1")
        hv.trace.emit("tpm.back.open", dom.now, dom.domid, backend=self.name, domid=fe,
                      handle=handle, uuid=uuid)
        if self.on_open is not None:
            self.on_open(info)
        # A destroyed frontend domain's nodes vanish with it, and the backend
        # may not read them: @releaseDomain wakes the xenbus half to re-read
        # the frontend's state (Unknown once it is gone).
        hv.xs.watch(dom, "@releaseDomain", bus.token)
        yield from bus.serve(lambda: self._connect(iface), lambda: self._disconnect(iface))
        if dom.alive:
            hv.xs.unwatch(dom, "@releaseDomain", bus.token)
            try:
                hv.xs.rm(dom, bus.nodename)
            except XenError:
                pass                               # the toolstack removed it already
        del self._ifaces[key]
        self._ready.pop(key, None)
        hv.trace.emit("tpm.back.close", dom.now, dom.domid, backend=self.name, domid=fe,
                      handle=handle, uuid=uuid)
        if self.on_close is not None:
            self.on_close(info)

    @staticmethod
    def _check_names(bus, fe):
        """None if the directory's keys name the frontend domain it is filed under."""
        if bus.otherend_id != fe:
            return f"frontend-id {bus.otherend_id} is not the directory's domain {fe}"
        if not bus.otherend.startswith(f"/local/domain/{fe}/"):
            return f"frontend path {bus.otherend} is not in dom{fe}'s home"
        return None

    def _connect(self, iface):
        """``connect_fe``: map the page, bind the channel, ``ready = 1``."""
        hv, dom, bus = self.hv, self.dom, iface.bus
        fe = iface.info.domid
        gref = int(bus.read_otherend("ring-ref"))
        rport = int(bus.read_otherend("event-channel"))
        if bus.read_otherend("feature-protocol-v2") != "1":
            raise ValueError("frontend lacks feature-protocol-v2 = 1")
        entry_size = self._ring_entry_size(bus) if self.multi_slot else None
        mapping = hv.gnttab.map_grant_ref(dom, fe, gref)
        try:
            port = hv.evtchn.bind_interdomain(dom, fe, rport)
        except XenError:
            hv.gnttab.unmap_grant_ref(dom, mapping.handle)
            raise
        hv.evtchn.unmask(dom, port)
        iface.mapping, iface.port = mapping, port
        iface.tag = page_tag(hv, mapping.entry.page.mfn)
        iface.last_state = mapping.data[tpmif.TPMIF_OFF_STATE]
        if entry_size:
            iface.ring = RingBackend(dom, mapping, port, entry_size)
            iface.ring_tags = ring_tags(hv, mapping.entry.page.mfn)
        iface.connected = True
        iface.ready = False
        self._ready.pop(iface.key, None)
        iface.busy = None
        bus.write("ready", "1")
        iface.handler = hv.env.process(self._handler(iface))
        hv.trace.emit("tpm.back.connect", dom.now, dom.domid, backend=self.name, domid=fe,
                      handle=iface.info.handle, gref=gref, port=port)

    @staticmethod
    def _ring_entry_size(bus):
        """The multi-slot entry size the frontend asked for, or None (tpmif v2's single page)."""
        try:
            value = bus.read_otherend(tpmif_ring.XS_ENTRY_SIZE)
        except XenError:
            return None
        try:
            entry_size = int(value)
            tpmif_ring.slots(entry_size)
        except ValueError:
            raise ValueError(f"{tpmif_ring.XS_ENTRY_SIZE} = {value!r} is not a usable entry size")
        return entry_size

    def _disconnect(self, iface):
        """Unmap and unbind; a request in flight is dropped, a taken one answered nowhere."""
        hv, dom = self.hv, self.dom
        if not iface.connected:
            return
        iface.connected = False
        iface.ready = False
        self._ready.pop(iface.key, None)
        if iface.handler is not None and iface.handler.is_alive:
            iface.handler.interrupt("disconnect")
        iface.handler = None
        if dom.alive:
            hv.gnttab.unmap_grant_ref(dom, iface.mapping.handle)
            if iface.port in dom.ports:
                hv.evtchn.close(dom, iface.port)
        hv.trace.emit("tpm.back.disconnect", dom.now, dom.domid, backend=self.name,
                      domid=iface.info.domid, handle=iface.info.handle,
                      busy=iface.busy is not None)
        iface.mapping = iface.port = None

    # -- the event handler ------------------------------------------------------

    def _handler(self, iface):
        """What mini-os runs from the IRQ: SUBMIT -> ready, CANCEL -> IDLE if not taken."""
        dom = self.dom
        port = iface.port
        ports = frozenset((port,))
        try:
            while True:
                yield dom.poll(ports)
                if not (iface.connected and dom.alive):
                    return
                dom.evtchn_clear(port)
                if iface.ring is not None:
                    if iface.ring.unconsumed_requests():
                        self._ring_ready(iface)
                    continue
                state = iface.mapping.data[_OFF_STATE]    # a plain load, as mini-os
                if state == _SUBMIT and dom.now < iface.tag.submitted_at:
                    continue            # stored after our clock: its notification will come
                old = iface.last_state
                if state != old:
                    iface.last_state = state
                    if (old, state) not in _FRONTEND_MOVES:
                        self._illegal_transition(iface, old, state)
                if state == _SUBMIT:
                    self._mark_ready(iface)
                elif state == _CANCEL and iface.busy is None:
                    if iface.ready:
                        iface.ready = False
                        self._ready.pop(iface.key, None)
                    self._ack_cancel(iface)
        except simpy.Interrupt:
            return

    def _illegal_transition(self, iface, old, state):
        """Record (``tpm.back.violation``) a frontend store the tpmif rules forbid."""
        try:
            tpmif.check_transition(tpmif.FRONTEND, old, state)
        except tpmif.TpmifError as err:
            self._violation(iface, "illegal state change", detail=str(err))

    def _mark_ready(self, iface):
        dom = self.dom
        if iface.busy is not None:
            self._violation(iface, "SUBMIT while the previous command is being served")
            return
        if iface.ready:
            return
        iface.ready = True
        self._set_ready(iface)
        now = iface.arrived = dom.now
        self._seq += 1
        iface.seq = self._seq
        self.hv.trace.emit("tpm.back.ready", now, dom.domid, backend=self.name,
                           domid=iface.info.domid, handle=iface.info.handle, flow=iface.tag.flow)
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.triggered:
            wakeup.succeed()

    def _set_ready(self, iface):
        key = iface.key
        self._ready[key] = iface
        if key not in self._in_heap:
            self._in_heap.add(key)
            heapq.heappush(self._ready_keys, key)

    def _lowest_ready(self):
        """The ready interface with the lowest key, or None when none is ready; ``False``
        when that one cannot be served now (the caller then looks at all of them)."""
        heap, ready = self._ready_keys, self._ready
        while heap and heap[0] not in ready:
            self._in_heap.discard(heapq.heappop(heap))
        if not heap:
            return None
        i = ready[heap[0]]
        if i.connected and (i.ring is None or i.arrived <= self.dom.now):
            return i
        return False

    def _ring_head(self, iface):
        """``(flow, submitted_at)`` of the oldest unconsumed entry of a multi-slot ring."""
        back = iface.ring.ring
        off = back.entry_offset(back.cons)
        ident = int.from_bytes(iface.mapping.data[off:off + 2], "little")   # a plain load
        return iface.ring_tags.get(ident, (None, self.dom.now))

    def _ring_ready(self, iface):
        """A multi-slot frontend has unconsumed entries: ready, dated by the oldest one."""
        if iface.ready:
            return
        flow, submitted = self._ring_head(iface)
        iface.ready = True
        self._set_ready(iface)
        iface.arrived = submitted
        self._seq += 1
        iface.seq = self._seq
        self.hv.trace.emit("tpm.back.ready", self.dom.now, self.dom.domid, backend=self.name,
                           domid=iface.info.domid, handle=iface.info.handle, flow=flow)
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.triggered:
            wakeup.succeed()

    def _ack_cancel(self, iface):
        dom = self.dom
        self.cancelled += 1
        dom.page_write(iface.mapping, tpmif.TPMIF_OFF_STATE, bytes([tpmif.TPMIF_STATE_IDLE]),
                       what="tpmif.state", flow=iface.tag.flow)
        iface.last_state = tpmif.TPMIF_STATE_IDLE
        iface.tag.visible_at = dom.now
        self.hv.evtchn.send(dom, iface.port)
        self.hv.trace.emit("tpm.back.cancel", dom.now, dom.domid, backend=self.name,
                           domid=iface.info.domid, handle=iface.info.handle, flow=iface.tag.flow)

    def _violation(self, iface, what, **fields):
        self.hv.trace.emit("tpm.back.violation", self.dom.now, self.dom.domid, backend=self.name,
                           domid=iface.info.domid, handle=iface.info.handle, what=what,
                           flow=iface.tag.flow, **fields)

    # -- serving --------------------------------------------------------------

    def next_request(self):
        """Block until a frontend is ready; return its :class:`TpmRequest`.

        A generator (``req = yield from back.next_request()``), the
        ``tpmback_req_any`` of mini-os with the chosen ``policy``. Malformed
        requests are answered here with an error response and never returned.

        It first lets the domain's charged time pass (only when its clock is
        ahead of the event loop), so the event handlers run for every
        notification that reached it meanwhile: the policy then chooses among
        what is ready at the domain's own time, as ``tpmback_req_any`` does.
        When nothing is ready yet it waits for the first frontend to become
        ready instead, and lets the rest of its time pass only if that
        happened before its clock: one event instead of two, the same choice
        at the same time.
        """
        dom = self.dom
        env = self.hv.env
        if dom.cursor > env.now:
            if dom.alive and self._choose() is None:
                self._wakeup = env.event()
                yield self._wakeup
                self._wakeup = None
                if dom.cursor > env.now:        # ready before our clock: let it pass
                    yield dom.elapse()
            else:
                yield dom.elapse()
        while True:
            iface = self._choose()
            if iface is None:
                soonest = self._ring_soonest()
                if soonest is not None:         # a multi-slot entry stored after our clock
                    yield dom.sleep(soonest - dom.now)
                    continue
                if not self.dom.alive:
                    raise XenError(-xen_errno.ESRCH,
                                   f"dom{self.dom.domid} ({self.dom.name}) has been destroyed")
                self._wakeup = self.hv.env.event()
                yield self._wakeup
                self._wakeup = None
                continue
            request = self._take(iface)
            if request is not None:
                return request

    def _ring_soonest(self):
        """Earliest submission among ready multi-slot entries not yet visible, or None."""
        now = self.dom.now
        times = [i.arrived for i in self._ready.values()
                 if i.ring is not None and i.connected and i.arrived > now]
        return min(times) if times else None

    def _choose(self):
        ifaces = self._ifaces
        if len(ifaces) == 1:            # one frontend (the usual vTPM): it, if it is ready
            for i in ifaces.values():
                return i if (i is not None and i.ready and i.connected
                             and (i.ring is None or i.arrived <= self.dom.now)) else None
        if self.scheduler.lowest_key:
            i = self._lowest_ready()
            if i is not False:
                return i
        # only the interfaces with ready set, not every frontend (a manager has one per vTPM)
        now = self.dom.now
        ready = [i for i in self._ready.values() if i.connected
                 and (i.ring is None or i.arrived <= now)]
        if len(ready) < 2:
            return ready[0] if ready else None      # one ready: every policy picks it
        return self.scheduler.choose(ready)

    def _take(self, iface):
        """Validate the header, map extra pages, copy the command once."""
        hv, dom = self.hv, self.dom
        if iface.ring is not None:
            return self._take_ring(iface)
        iface.ready = False
        self._ready.pop(iface.key, None)
        self.scheduler.served(iface.key)
        mapping = iface.mapping
        flow = iface.tag.flow
        length, state, locality, _pad, nr_extra = tpmif.HEADER.unpack(
            dom.page_read(mapping, 0, tpmif.TPMIF_HEADER_SIZE, what="tpmif.header", flow=flow))
        if state == tpmif.TPMIF_STATE_CANCEL:
            self._ack_cancel(iface)
            return None
        if state != tpmif.TPMIF_STATE_SUBMIT:
            self._reject(iface, [], nr_extra, TPM_RC.FAILURE,
                         f"state {tpmif.TPMIF_STATE_NAMES.get(state, state)} is not SUBMIT", flow)
            return None
        capacity = tpmif.payload_capacity(nr_extra) if nr_extra else _ONE_PAGE
        if length > capacity:
            self._reject(iface, [], nr_extra, TPM_RC.COMMAND_SIZE,
                         f"length {length} exceeds the {capacity} bytes of {1 + nr_extra} page(s)",
                         flow)
            return None
        extra = []
        if nr_extra:
            refs = tpmif.unpack_extra_pages(dom.page_read(
                mapping, tpmif.TPMIF_OFF_EXTRA_PAGES, 4 * nr_extra, what="tpmif.extra_pages",
                flow=flow), nr_extra)
            try:
                for ref in refs:
                    extra.append(hv.gnttab.map_grant_ref(dom, iface.info.domid, ref))
            except XenError as err:
                self._reject(iface, extra, nr_extra, TPM_RC.FAILURE, f"extra page: {err}", flow)
                return None
        if nr_extra:
            views = [mapping] + extra
            command = b"".join(dom.page_read(views[i], a, b - a, what="tpmif.command", flow=flow)
                               for i, a, b, _ in tpmif.spans(nr_extra, length))
        else:                                   # the usual case: one read of one page
            command = dom.page_read(mapping, tpmif.TPMIF_HEADER_SIZE, length,
                                    what="tpmif.command", flow=flow)
        info = iface.info
        now = dom.cursor                        # == dom.now: the reads just charged the cursor
        request = TpmRequest(info.domid, info.handle, info.uuid, command, locality, flow,
                             iface.arrived, now, iface, extra, nr_extra)
        iface.busy = request
        self.requests += 1
        cc = request.cc
        hv.trace.emit("tpm.back.take", now, dom.domid, backend=self.name, domid=info.domid,
                      handle=info.handle, flow=flow, length=length, cc=cc, cc_name=cc_name(cc),
                      locality=locality, waited=now - iface.arrived)
        return request

    def _take_ring(self, iface):
        """The oldest entry of a multi-slot ring, copied once; still ready if more wait."""
        hv, dom = self.hv, self.dom
        self.scheduler.served(iface.key)
        ring = iface.ring
        flow, submitted = self._ring_head(iface)
        try:
            data = ring.get_request(flow=flow)
        except ValueError as err:                # more published than the ring holds
            iface.ready = False
            self._ready.pop(iface.key, None)
            self._violation(iface, str(err))
            return None
        if data is None:
            iface.ready = False
            self._ready.pop(iface.key, None)
            return None
        ident, locality, _status, command = tpmif_ring.unpack_entry(data, ring.entry_size)
        info = iface.info
        now = dom.now
        request = TpmRequest(info.domid, info.handle, info.uuid, command, locality, flow,
                             submitted, now, iface, _slot=ident)
        iface.busy = request
        # ring.h's RING_FINAL_CHECK_FOR_REQUESTS: re-arm the event index when none is left
        if ring.unconsumed_requests() or ring.ring.final_check_for_requests():
            iface.arrived = self._ring_head(iface)[1]
            self._seq += 1
            iface.seq = self._seq
        else:
            iface.ready = False
            self._ready.pop(iface.key, None)
        self.requests += 1
        cc = request.cc
        hv.trace.emit("tpm.back.take", now, dom.domid, backend=self.name, domid=info.domid,
                      handle=info.handle, flow=flow, length=len(command), cc=cc,
                      cc_name=cc_name(cc), locality=locality, waited=now - submitted,
                      slot=ident)
        return request

    def _reject(self, iface, extra, nr_extra, rc, why, flow):
        """Answer a malformed request with a 10-byte TPM error and trace why."""
        self.rejected += 1
        self.hv.trace.emit("tpm.back.reject", self.dom.now, self.dom.domid, backend=self.name,
                           domid=iface.info.domid, handle=iface.info.handle, flow=flow,
                           rc=rc, reason=why)
        request = TpmRequest(iface.info.domid, iface.info.handle, iface.info.uuid, b"", 0, flow,
                             iface.arrived, self.dom.now, iface, extra, nr_extra)
        iface.busy = request
        self._write_response(request, error_response(rc), rejected=True)

    def respond(self, request: TpmRequest, response: bytes) -> bool:
        """Write ``response`` and FINISH into the request's page and notify.

        A plain call (costs go to the domain's cursor). Returns False, and
        records ``tpm.back.drop``, when the frontend disconnected or went
        away meanwhile; a response too big for the pages becomes a 10-byte
        ``TPM_RC_FAILURE`` (mini-os would leave the frontend waiting).
        """
        if not self._still_served(request):
            return False
        iface = request._iface
        if iface.ring is not None and self.dom.cursor > self.hv.env.now:
            # A ring page is written by both sides at once; a response stored "in the
            # future" of the domain's charged work would date the frontend's next request
            # after it (shared pages are Lamport clocks). Store it when the work is done.
            # (a timeout scheduled now fires before the main loop's own wait for its
            # clock, so the response is stored before the next request is chosen)
            response = bytes(response)
            later = self.dom.elapse()
            later.callbacks.append(lambda _event: self._still_served(request)
                                   and self._write_response(request, response))
            return True
        self._write_response(request, bytes(response))
        return True

    def _still_served(self, request):
        """Whether ``request``'s frontend is still connected and waiting for it.

        If not, unmap its extra pages, count and trace ``tpm.back.drop``.
        """
        iface = request._iface
        if (iface is not None and self._ifaces.get(iface.key) is iface and iface.connected
                and iface.busy is request):
            return True
        self.dropped += 1
        self._unmap_extra(request)
        self.hv.trace.emit("tpm.back.drop", self.dom.now, self.dom.domid, backend=self.name,
                           domid=request.domid, handle=request.handle, flow=request.flow)
        return False

    def abort(self, request: TpmRequest) -> bool:
        """Give up a taken request: store IDLE (SUBMIT -> IDLE) and notify.

        The tpmif ABI lets a backend cancel "for its own reason"; the Linux
        frontend then fails with ``-ECANCELED`` and mini-os returns an empty
        response. Returns False (``tpm.back.drop``) if the frontend is gone.
        """
        if not self._still_served(request):
            return False
        self._unmap_extra(request)
        request._iface.busy = None
        self._ack_cancel(request._iface)
        return True

    def _write_response(self, request, response, rejected=False):
        """Response bytes, ``length``, then FINISH; notify. Offsets are the ones of the take."""
        hv, dom = self.hv, self.dom
        iface = request._iface
        flow = request.flow
        if iface.ring is not None:
            self._write_ring_response(request, response)
            return
        nr_extra = request._nr_extra
        extra = request._extra
        mapping = iface.mapping
        if not nr_extra:
            capacity = _ONE_PAGE
        elif len(extra) == nr_extra:
            capacity = tpmif.payload_capacity(nr_extra)
        else:                                   # extra pages not mapped: first page only
            capacity = tpmif.XEN_PAGE_SIZE - tpmif.data_offset(nr_extra)
        n = len(response)
        if n > capacity:
            hv.trace.emit("tpm.back.reject", dom.now, dom.domid, backend=self.name,
                          domid=request.domid, handle=request.handle, flow=flow,
                          rc=TPM_RC.FAILURE,
                          reason=f"{n}-byte response exceeds {capacity} bytes")
            response = error_response(TPM_RC.FAILURE)
            n = len(response)
        state = mapping.data[_OFF_STATE]           # a plain load
        if not rejected and state != _SUBMIT and state != _CANCEL:
            self._violation(iface, "state changed while the command was served",
                            state=tpmif.TPMIF_STATE_NAMES.get(state, state))
        if not nr_extra:                        # the usual case: one store in the first page
            if n:
                dom.page_write(mapping, tpmif.TPMIF_HEADER_SIZE, response,
                               what="tpmif.response", flow=flow)
        else:
            views = [mapping] + extra
            for i, a, b, pos in tpmif.spans(nr_extra, n):
                dom.page_write(views[i], a, response[pos:pos + b - a], what="tpmif.response",
                               flow=flow)
        # length and state = FINISH (bytes 0..4) in one store after the packet
        dom.page_write(mapping, tpmif.TPMIF_OFF_LENGTH,
                       tpmif.pack_finish(n),
                       what="tpmif.header", flow=flow)
        iface.last_state = tpmif.TPMIF_STATE_FINISH
        iface.tag.visible_at = dom.cursor       # == dom.now: the store just charged the cursor
        hv.evtchn.send(dom, iface.port)
        iface.busy = None
        if extra:
            self._unmap_extra(request)
        if not rejected:
            self.responses += 1
            now = dom.cursor                    # == dom.now: the send just charged the cursor
            hv.trace.emit("tpm.back.respond", now, dom.domid, backend=self.name,
                          domid=request.domid, handle=request.handle, flow=flow,
                          length=n, rc=header.code(response),
                          service=now - request.taken)

    def _write_ring_response(self, request, response):
        """The response in the request's slot, published with push-and-check-notify."""
        hv, dom = self.hv, self.dom
        iface = request._iface
        ring = iface.ring
        status = tpmif_ring.TPMIF_RING_OK
        if len(response) > tpmif_ring.capacity(ring.entry_size):
            hv.trace.emit("tpm.back.reject", dom.now, dom.domid, backend=self.name,
                          domid=request.domid, handle=request.handle, flow=request.flow,
                          rc=TPM_RC.FAILURE, reason=f"{len(response)}-byte response exceeds "
                          f"the {tpmif_ring.capacity(ring.entry_size)} bytes of a slot")
            response = error_response(TPM_RC.FAILURE)
            status = tpmif_ring.TPMIF_RING_TOO_BIG
        ring.put_response(tpmif_ring.pack_entry(request._slot, response, status=status),
                          flow=request.flow)
        ring.push()
        iface.busy = None
        self.responses += 1
        n = len(response)
        now = dom.now
        hv.trace.emit("tpm.back.respond", now, dom.domid, backend=self.name, domid=request.domid,
                      handle=request.handle, flow=request.flow, length=n,
                      rc=header.code(response),
                      service=now - request.taken)

    def _unmap_extra(self, request):
        """Unmap the extra pages a request mapped (nothing if its domain is gone)."""
        dom = self.dom
        extra, request._extra = request._extra, []
        for mapping in extra:
            if dom.alive and mapping.handle in dom.maptrack:
                self.hv.gnttab.unmap_grant_ref(dom, mapping.handle)


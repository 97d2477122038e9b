"""Event channels: Xen's virtual interrupts between domains.

A channel joins two ports, one in each domain. The usual dance, as a
frontend and its backend do it::

    port = hv.evtchn.alloc_unbound(front, back.domid)          # front: UNBOUND, for back
    # ... front publishes `port` in XenStore; back reads it ...
    bport = hv.evtchn.bind_interdomain(back, front.domid, port) # both INTERDOMAIN
    hv.evtchn.send(front, port)                                 # back's bport becomes pending

Xen's quirks are kept: a send on a port that is still UNBOUND is silently
dropped (returns normally); binding marks the new local port pending, so a
notification sent before the bind is not lost; closing one end reverts the
other to UNBOUND, reserved for the closer, so it can rebind. Pending bits
coalesce: a second notification before the receiver clears the bit is
merged into the first (traced with ``coalesced=True``). Errors are Xen's
negative errno in :class:`~simxen.xen.errors.EvtchnError`.

**ABIs and their limits.** Every domain starts on the 2-level ABI: a
64-bit domain has ports 1..4095 (port 0 is reserved), ``nr_channels``. A
domain that calls :meth:`EventChannels.init_control` (EVTCHNOP_init_control)
moves to the FIFO ABI and gets 2^17 = 131,072 (``fifo_nr_channels``). When
no port is free, allocating one -- ``alloc_unbound``, or the local end of
``bind_interdomain`` -- fails with ``-ENOSPC``, as Xen's ``get_free_port``
does. Ports are handed out lowest-free-first, as Xen does.
"""

from simxen.protocols.event_channel import (
    DOMID_SELF,
    EVTCHN_2L_NR_CHANNELS,
    EVTCHN_ABI_2L,
    EVTCHN_ABI_FIFO,
    EVTCHN_FIFO_NR_CHANNELS,
    EVTCHNSTAT_closed,
    EVTCHNSTAT_interdomain,
    EVTCHNSTAT_unbound,
    STATE_NAMES,
)
from simxen.xen import errno
from simxen.xen.errors import EvtchnError

class Port:
    """One allocated port of one domain."""

    __slots__ = ("dom", "port", "state", "remote_dom", "remote_port", "pending", "masked", "peer")

    def __init__(self, dom, port, remote_dom):
        self.dom = dom                  #: owning Domain
        self.port = port
        self.state = EVTCHNSTAT_unbound
        self.remote_dom = remote_dom    #: peer domid (reserved-for while unbound)
        self.remote_port = None
        self.pending = False
        self.masked = False
        #: the other end's Port while INTERDOMAIN (``None`` otherwise)
        self.peer = None


class EvtchnStatus:
    """What ``EVTCHNOP_status`` reports about a port."""

    __slots__ = ("port", "state", "remote_dom", "remote_port", "pending", "masked")

    def __init__(self, port, state, remote_dom=None, remote_port=None, pending=False, masked=False):
        self.port = port
        self.state = state
        self.remote_dom = remote_dom
        self.remote_port = remote_port
        self.pending = pending
        self.masked = masked

    @property
    def state_name(self):
        return STATE_NAMES[self.state]

    def __repr__(self):
        return (f"EvtchnStatus(port={self.port}, state={self.state_name}, "
                f"remote_dom={self.remote_dom}, remote_port={self.remote_port}, "
                f"pending={self.pending}, masked={self.masked})")


class EventChannels:
    """``HYPERVISOR_event_channel_op``: reached as ``hv.evtchn``."""

    def __init__(self, hv, nr_channels=EVTCHN_2L_NR_CHANNELS,
                 fifo_nr_channels=EVTCHN_FIFO_NR_CHANNELS):
        self.hv = hv
        #: ports of a domain on the 2-level ABI (lower it to meet the limit in a small test)
        self.nr_channels = nr_channels
        #: ports of a domain on the FIFO ABI
        self.fifo_nr_channels = fifo_nr_channels
        self._trace = hv.trace
        self._fifo = set()          # domids that moved to the FIFO ABI
        self._free_from = {}        # domid -> lowest port that may be free

    def abi(self, dom):
        """The ABI ``dom`` uses: ``"2-level"`` or ``"fifo"``."""
        return EVTCHN_ABI_FIFO if dom.domid in self._fifo else EVTCHN_ABI_2L

    def limit(self, dom):
        """How many ports ``dom`` has under its ABI (port 0 included, never handed out)."""
        return self.fifo_nr_channels if dom.domid in self._fifo else self.nr_channels

    def init_control(self, caller):
        """``EVTCHNOP_init_control``: move the caller to the FIFO ABI (its control
        block registered); a second call is ``-EINVAL``, as Xen answers."""
        caller.check_alive()
        caller.charge("hypercall")
        if caller.domid in self._fifo:
            raise EvtchnError(-errno.EINVAL, f"init_control: dom{caller.domid} already uses FIFO")
        self._fifo.add(caller.domid)
        self._trace.emit("evtchn.init_control", caller.cursor, caller.domid, abi=EVTCHN_ABI_FIFO,
                         ports=self.fifo_nr_channels)

    # -- helpers -----------------------------------------------------------

    def _port(self, dom, port, op):
        p = dom.ports.get(port)
        if p is None:
            raise EvtchnError(-errno.EINVAL, f"{op}: dom{dom.domid} port {port} is not allocated")
        return p

    def _new_port(self, dom, remote_dom):
        limit = self.limit(dom)
        ports = dom.ports
        for number in range(self._free_from.get(dom.domid, 1), limit):
            if number not in ports:
                p = ports[number] = Port(dom, number, remote_dom)
                self._free_from[dom.domid] = number + 1
                return p
        raise EvtchnError(-errno.ENOSPC, f"dom{dom.domid} has no free event-channel port "
                                         f"({self.abi(dom)} ABI: {limit} ports)")

    # -- operations --------------------------------------------------------

    def alloc_unbound(self, caller, remote_dom, dom=DOMID_SELF):
        """``EVTCHNOP_alloc_unbound``: a new UNBOUND port in ``dom`` for ``remote_dom``.

        Returns the port number. Only a privileged caller may allocate in
        another domain (``-EPERM``); an unknown domain is ``-ESRCH``; a
        full port space ``-ENOSPC``.
        """
        caller.check_alive()
        caller.charge("hypercall")
        if dom == DOMID_SELF or dom == caller.domid:
            target = caller
        elif not caller.privileged:
            raise EvtchnError(-errno.EPERM, f"dom{caller.domid} may only allocate with "
                                            "dom = DOMID_SELF")
        else:
            target = self.hv.live_domain(dom, EvtchnError, "alloc_unbound")
        if remote_dom == DOMID_SELF:
            remote_dom = target.domid
        else:
            self.hv.live_domain(remote_dom, EvtchnError, "alloc_unbound remote_dom")
        p = self._new_port(target, remote_dom)
        self._trace.emit("evtchn.alloc_unbound", caller.cursor, caller.domid, domid=target.domid,
                         port=p.port, remote_dom=remote_dom)
        return p.port

    def bind_interdomain(self, caller, remote_dom, remote_port):
        """``EVTCHNOP_bind_interdomain``: connect to a port UNBOUND for the caller.

        Returns the new local port, which is **marked pending** (Xen does,
        so nothing sent before the bind is lost).
        """
        caller.check_alive()
        caller.charge("hypercall")
        if remote_dom == DOMID_SELF:
            remote_dom = caller.domid
        rdom = self.hv.live_domain(remote_dom, EvtchnError, "bind_interdomain")
        rp = rdom.ports.get(remote_port)
        if rp is None or rp.state != EVTCHNSTAT_unbound or rp.remote_dom != caller.domid:
            why = ("not allocated" if rp is None else
                   f"{STATE_NAMES[rp.state]}" if rp.state != EVTCHNSTAT_unbound else
                   f"reserved for dom{rp.remote_dom}")
            raise EvtchnError(-errno.EINVAL, f"bind_interdomain: dom{remote_dom} port "
                                             f"{remote_port} is {why}, not unbound for "
                                             f"dom{caller.domid}")
        lp = self._new_port(caller, remote_dom)
        lp.state = rp.state = EVTCHNSTAT_interdomain
        lp.remote_port = remote_port
        rp.remote_port = lp.port
        rp.remote_dom = caller.domid
        lp.peer, rp.peer = rp, lp
        t = caller.cursor
        self._trace.emit("evtchn.bind", t, caller.domid, port=lp.port, remote_dom=remote_dom,
                         remote_port=remote_port)
        self._set_pending(caller, lp, t)
        return lp.port

    def send(self, caller, port):
        """``EVTCHNOP_send``: notify the other end of ``port``.

        INTERDOMAIN: the peer's port becomes pending at ``caller.now +
        evtchn.notify``. UNBOUND: dropped silently, as Xen does. A port that
        is not allocated: ``-EINVAL``.
        """
        p = caller.ports.get(port)
        if p is None:
            raise EvtchnError(-errno.EINVAL, f"send: dom{caller.domid} port {port} "
                                             "is not allocated")
        if p.state == EVTCHNSTAT_interdomain:
            caller.evtchn_send(p)       # charged, recorded, queued at the peer's port
        else:
            t = caller.charged("hypercall")
            caller.evtchn_sent += 1
            self._trace.emit("evtchn.send", t, caller.domid, port=port, dropped="unbound")

    def _set_pending(self, dom, port, t, **fields):
        if dom.set_pending(port):
            fields["coalesced"] = True
        if port.masked:
            fields["masked"] = True
        self._trace.emit("evtchn.deliver", t, dom.domid, port=port.port, **fields)

    def close(self, caller, port):
        """``EVTCHNOP_close``: free ``port``; an INTERDOMAIN peer reverts to UNBOUND."""
        caller.charge("hypercall")
        p = self._port(caller, port, "close")
        self._close(caller, p)

    def _close(self, dom, p):
        if p.state == EVTCHNSTAT_interdomain:
            peer = self.hv.domains.get(p.remote_dom)
            if peer is not None:
                rp = peer.ports.get(p.remote_port)
                if rp is not None:
                    rp.state = EVTCHNSTAT_unbound
                    rp.remote_dom = dom.domid
                    rp.remote_port = None
                    rp.peer = None
        del dom.ports[p.port]
        if p.port < self._free_from.get(dom.domid, 1):
            self._free_from[dom.domid] = p.port
        dom.forget_port(p.port)
        p.state = EVTCHNSTAT_closed
        p.peer = None
        self._trace.emit("evtchn.close", dom.now, dom.domid, port=p.port)

    def unmask(self, caller, port):
        """``EVTCHNOP_unmask``: clear the mask; a pending port then wakes the domain."""
        caller.charge("hypercall")
        p = self._port(caller, port, "unmask")
        p.masked = False
        self._trace.emit("evtchn.unmask", caller.cursor, caller.domid, port=port,
                         pending=p.pending)
        caller.wake_for(p)     # another thread blocked on it wakes

    def mask(self, caller, port):
        """Set the mask bit (a write to shared_info, not a hypercall: free)."""
        self._port(caller, port, "mask").masked = True

    def status(self, caller, port, dom=DOMID_SELF):
        """``EVTCHNOP_status``: an :class:`EvtchnStatus` for ``port`` of ``dom``.

        A port that is not allocated reports ``EVTCHNSTAT_closed``. Only a
        privileged caller may ask about another domain (``-EPERM``).
        """
        caller.charge("hypercall")
        if dom == DOMID_SELF or dom == caller.domid:
            target = caller
        elif not caller.privileged:
            raise EvtchnError(-errno.EPERM, f"dom{caller.domid} may only query DOMID_SELF")
        else:
            target = self.hv.live_domain(dom, EvtchnError, "status")
        if not 0 < port < self.limit(target):
            raise EvtchnError(-errno.EINVAL, f"status: port {port} out of range")
        target.deliver_due()
        p = target.ports.get(port)
        status = (EvtchnStatus(port, EVTCHNSTAT_closed) if p is None else
                  EvtchnStatus(port, p.state, p.remote_dom, p.remote_port, p.pending, p.masked))
        self._trace.emit("evtchn.status", caller.cursor, caller.domid, domid=target.domid,
                         port=port, state=status.state_name)
        return status

    def close_all(self, dom):
        """Close every port of ``dom`` (domain destruction)."""
        for p in sorted(dom.ports.values(), key=lambda p: p.port):
            self._close(dom, p)

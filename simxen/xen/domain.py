"""Domains: an id, a name, pages of real bytes, and a time cursor.

A domain's code is a SimPy process. It calls the hypervisor synchronously;
each call *charges* its cost to the domain's :attr:`Domain.cursor`, the
domain's own clock, which runs ahead of ``env.now`` by the work done since it
last blocked. Blocking (:meth:`Domain.block`, :meth:`Domain.poll`,
:meth:`Domain.sleep`) returns one SimPy event that fires no earlier than the
cursor -- so the charged time really passes -- and no earlier than whatever
wakes the domain::

    def guest(dom):
        port = hv.evtchn.alloc_unbound(dom, backend.domid)    # charged, no event
        ...
        yield dom.block()                                      # one event
        for p in dom.evtchn_take_pending():
            ...

Notifications and watch events addressed to a domain wait in its inbox
until the domain's clock reaches their delivery time; the domain sees them
when it next looks (``block``, ``poll``, ``evtchn_pending``,
``evtchn_take_pending``, ``xs_read_watch``).
"""

import itertools
from heapq import heappop, heappush

from simpy.events import Event

from simxen.protocols.event_channel import EVTCHNSTAT_interdomain
from simxen.xen import errno
from simxen.xen.errors import PageFault, XenError
from simxen.xen.memo import Memo
from simxen.xen.simpy_internals import now as env_now
from simxen.xen.simpy_internals import rearm, succeed_at

PAGE_SIZE = 4096
PAGE_SHIFT = 12

# field names of the hot trace rows (see simxen.xen.trace: a None value is an absent field)
_MAPPING_ACCESS = ("offset", "length", "granter", "gref", "data", "what", "flow")
_PAGE_ACCESS = ("offset", "length", "gfn", "data", "what", "flow")
_DELIVER = ("port", "remote_dom", "remote_port", "coalesced", "masked")
_SEND = ("port", "remote_dom", "remote_port")


class Page:
    """One 4 KiB page of a domain's memory: real bytes."""

    __slots__ = ("owner", "gfn", "mfn", "data", "mtime", "page")

    #: a page is not a grant mapping (pages and mappings are used alike)
    gref = None
    readonly = False

    def __init__(self, owner, gfn, mfn):
        self.owner = owner          #: domid of the owning domain
        self.gfn = gfn              #: guest frame number in the owner
        self.mfn = mfn              #: machine frame number
        self.data = bytearray(PAGE_SIZE)
        #: time of the latest declared write (a reader is never earlier)
        self.mtime = 0.0
        #: the page itself, so pages and grant mappings can be used alike
        self.page = self

    def __repr__(self):
        return f"<Page dom{self.owner} gfn={self.gfn:#x} mfn={self.mfn:#x}>"


class WatchEvent:
    """A XenStore watch firing, as the watching domain receives it."""

    __slots__ = ("path", "token")

    def __init__(self, path, token):
        self.path = path
        self.token = token

    def __iter__(self):
        return iter((self.path, self.token))

    def __repr__(self):
        return f"WatchEvent({self.path!r}, {self.token!r})"


#: the index key of processes blocked on any unmasked port (SCHEDOP_block)
_ANY = ("any",)

#: a process that waits again for what it waited for last time gets that wait's
#: event back, fired and processed, made pending again (:func:`~simxen.xen.
#: simpy_internals.rearm`), not a new one per wake-up; ``False`` makes a new event
#: every time (the tests compare both: same trace)
REUSE_WAIT_EVENTS = True


def _keys(ports, token):
    """Where a waiter is filed: ``("any",)`` for block, each polled port, or the token."""
    if ports is None:
        return (_ANY,)
    if token is not None:
        return (("token", token),)
    return ports


class _Wait(Event):
    """What a blocked process yields: an event plus what would wake it.

    ``ports`` is ``None`` for ``SCHEDOP_block`` (any unmasked port) or a
    frozenset for ``SCHEDOP_poll``; ``token`` is set when the process waits
    for one XenStore watch only (``ports`` is then empty). ``start`` is the
    domain's clock when it blocked; ``wake`` the time the event is scheduled
    for, or ``None`` while nothing is due.
    """

    def __init__(self, env, ports, token, start, keys):
        Event.__init__(self, env)
        self.ports = ports
        self.token = token
        self.start = start
        self.wake = None
        self.slot = None            # its place in the domain's order of waiters
        self.filing = 0             # the domain's count of filings when it was filed
        #: where the domain files it (:func:`_keys`)
        self.keys = keys


    def wants_port(self, port):
        if self.ports is None:
            return not port.masked
        return port.port in self.ports

    def wants_watch(self, event):
        if self.token is not None:
            return event.token == self.token
        return self.ports is None


class Domain:
    """A Xen domain.

    Created by :meth:`simxen.xen.hypervisor.Hypervisor.domain_create`; do not
    instantiate directly.
    """

    def __init__(self, hv, domid, name, *, privileged=False, vcpus=1):
        self.hv = hv
        self.env = hv.env
        self.domid = domid
        self.name = name
        self.privileged = privileged
        self.vcpus = vcpus
        self.alive = True
        self.dying = False
        #: the CPU scheduler (:mod:`simxen.xen.scheduler`), or ``None``: a pCPU of its own
        self.scheduler = hv.scheduler
        #: ``EVTCHNOP_send`` calls this domain has made (counted at every trace level)
        self.evtchn_sent = 0
        #: the domain's own clock (seconds); see :attr:`now`.
        self.cursor = hv.env.now
        #: guest frame number -> :class:`Page`.
        self.pages = {}
        self._next_gfn = 0
        self._samplers = Memo(self._new_sampler)   # {op: Sampler}, made on first use
        self._memcpy = None
        self._trace = trace = hv.trace
        # the rows this domain records on its hot paths, each kept or only counted as the
        # trace's level decides (a counted one is a call into C: no values are built)
        self._reads, self._writes = trace.recorder("page.read"), trace.recorder("page.write")
        self._sends, self._deliveries = trace.recorder("evtchn.send"), trace.recorder("evtchn.deliver")
        self._watch_arrivals = trace.recorder("xs.watch_event")
        # event channels: port number -> simxen.xen.event_channel.Port
        self.ports = {}
        self._inbox = []            # heap of (time, seq, Port)
        self._inbox_seq = itertools.count()     # seq: the order notifications were queued in
        # port number -> heap of the times queued for it: an index of the inbox, built
        # when a poll of a busy domain needs it (_index_inbox), dropped when it empties
        self._inbox_of = None
        self._pending = set()       # port numbers with the pending bit set
        self._watch_inbox = []      # heap of (time, seq, WatchEvent)
        self._watch_events = []
        # processes blocked in this domain: slot -> _Wait, in the order they blocked,
        # and the same waiters filed by what wakes them (port number, _ANY, or
        # ("token", token)), so that an arriving notification looks only at the
        # processes that wait for it -- a manager serving N vTPMs has N of them
        self._waiters = {}
        self._waiting_for = {}
        self._slots = itertools.count()
        self._last_slot = None
        self._last = None           # the waiter filed at _last_slot, if it still is
        self._filings = 0           # waiters filed so far (see _latest_filed)
        self._pruned_at = 8

    def __repr__(self):
        return f"<Domain {self.domid} {self.name!r}>"

    # -- time --------------------------------------------------------------

    @property
    def now(self):
        """The domain's current time: ``max(env.now, cursor)``."""
        c = self.cursor
        n = env_now(self.env)
        return c if c > n else n

    def sampler(self, op):
        """The zero-argument sampler of profile op ``op`` on this domain's own stream.

        The stream is ``xen/<domain name>/<op>``: each domain draws each op
        from its own stream, so one domain's activity never shifts another's.
        """
        return self._samplers[op]

    def _new_sampler(self, op):
        profile = self.hv.profile
        if profile.fixed_value(op) is not None:
            # a fixed op draws nothing: no stream is made for it (a numpy Generator costs
            # ~60 us to seed; three of a guest's twenty ops are fixed)
            return profile.sampler(op, None)
        return profile.sampler(op, self.hv.streams.rng(f"xen/{self.name}/{op}"))

    def sample(self, op):
        """One draw of profile op ``op`` from this domain's own stream for it."""
        sampler = self._samplers[op]
        buf = sampler.buf
        return buf.pop() if buf else sampler.refill()      # == sampler()

    def charge(self, op, n=1):
        """Charge ``n`` draws' worth of op ``op`` to the cursor; return the cost."""
        sampler = self._samplers[op]
        buf = sampler.buf
        cost = (buf.pop() if buf else sampler.refill()) * n
        self.cursor = self._work_starts() + cost
        return cost

    def charged(self, op):
        """Charge one draw of op ``op``; return the cursor after it (when the operation ends).

        ``charge(op)`` then ``cursor`` in one call: what a hypercall that
        records its time does first.
        """
        sampler = self._samplers[op]
        buf = sampler.buf
        c = self.cursor = self._work_starts() + (buf.pop() if buf else sampler.refill())
        return c

    def _work_starts(self):
        """When work charged now starts: at the cursor while the domain is still
        busy; otherwise a burst of work starts, at ``env.now`` on a pCPU of its
        own, or when the CPU scheduler has a pCPU free for it."""
        c = self.cursor
        now = env_now(self.env)
        if c < now:
            return now if self.scheduler is None else self.scheduler.start_burst(self, now)
        return c

    # -- memory ------------------------------------------------------------

    def alloc_page(self):
        """A fresh zeroed :class:`Page` of this domain."""
        self.check_alive()
        gfn = self._next_gfn
        self._next_gfn += 1
        page = self.pages[gfn] = Page(self.domid, gfn, self.hv.alloc_mfn())
        return page

    def page(self, gfn):
        """The page at guest frame ``gfn`` (``XenError(-EINVAL)`` if none)."""
        try:
            return self.pages[gfn]
        except KeyError:
            raise XenError(-errno.EINVAL, f"dom{self.domid} has no gfn {gfn:#x}") from None

    def page_read(self, view, offset, length, *, what=None, flow=None):
        """Read ``length`` bytes at ``offset`` of a page or mapping, declared and costed."""
        data = bytes(view.data[offset:offset + length])
        self._access(self._reads, view, offset, data, what, flow)
        return data

    def page_write(self, view, offset, data, *, what=None, flow=None):
        """Write ``data`` at ``offset`` of a page or mapping, declared and costed.

        Writing through a read-only mapping, or outside the page, is a page
        fault: :class:`~simxen.xen.errors.PageFault` (``-EFAULT``).
        """
        end = offset + len(data)
        if offset < 0 or end > PAGE_SIZE:
            raise PageFault(-errno.EFAULT, f"dom{self.domid} access [{offset}, {end}) "
                                           f"outside a {PAGE_SIZE}-byte page")
        try:
            view.data[offset:end] = data
        except TypeError:       # a read-only memoryview: a read-only grant mapping
            raise PageFault(-errno.EFAULT, f"dom{self.domid} wrote to a read-only mapping of "
                                           f"dom{view.domid} gref {view.gref}") from None
        self._access(self._writes, view, offset, data, what, flow)

    def _access(self, rec, view, offset, data, what, flow):
        # Shared memory is a causality channel the scheduler cannot see: a
        # reader is moved forward to the time of the latest declared write it
        # reads (a Lamport clock), and a writer stamps the page.
        n = len(data)
        per_byte = self._memcpy
        if per_byte.__class__ is not float:     # not (yet) known to be a fixed cost
            per_byte = self._memcpy_per_byte()
        page = view.page
        c = self._work_starts()
        mtime = page.mtime
        if mtime > c:
            c = mtime
        c = self.cursor = c + per_byte * n
        if rec is self._writes:
            page.mtime = c
        if not rec.keep:
            rec.count()
            return
        # the record emit() would make, as a row of values (None = absent)
        trace = self._trace
        small = data if n <= trace.small_access else None
        gref = view.gref
        if gref is not None:
            trace.keep_row(c, rec.kind, self.domid, _MAPPING_ACCESS,
                           (offset, n, view.domid, gref, small, what, flow))
        else:
            trace.keep_row(c, rec.kind, self.domid, _PAGE_ACCESS,
                           (offset, n, view.gfn, small, what, flow))

    def _memcpy_per_byte(self):
        """A draw of ``memcpy.per_byte``; a fixed cost is kept in ``_memcpy`` as a float."""
        memcpy = self._memcpy
        if memcpy is None:
            fixed = self.hv.profile.fixed_value("memcpy.per_byte")
            memcpy = self._memcpy = fixed if fixed is not None else self._samplers["memcpy.per_byte"]
        return memcpy if memcpy.__class__ is float else memcpy()

    # -- blocking ----------------------------------------------------------

    def block(self, timeout=None):
        """``SCHEDOP_block``: an event that fires when there is something to do.

        Something to do: an unmasked event-channel port is pending, or a
        XenStore watch event is queued. ``timeout`` (seconds) bounds the
        wait. The event fires no earlier than the domain's cursor. Code that
        shares the domain with other drivers should wait for its own things
        (:meth:`poll`, :meth:`wait_watch`) instead.
        """
        return self._wait(None, None, timeout)

    def poll(self, ports, timeout=None):
        """``SCHEDOP_poll``: fire when one of ``ports`` is pending (mask ignored)."""
        if type(ports) is not frozenset:
            ports = frozenset(ports)
        if timeout is None and not (self._inbox or self._pending or self._watch_inbox):
            # A driver's loop polling again, with nothing queued or pending: what
            # _wait() would do, without its general case (nothing to deliver, no
            # port ready, no queued time to wake at) -- the resumed wait of last
            # time, rearmed, when _wait() would reuse it; otherwise _wait() itself.
            last = self._last
            if (last is not None and last.callbacks is None and last.keys == ports
                    and REUSE_WAIT_EVENTS and self._latest_filed(last)):
                self._rearm(last, self.now)
                return last if self.scheduler is None else self.scheduler.hook(self, last)
        return self._wait(ports, None, timeout)

    def wait_watch(self, token, timeout=None):
        """Fire when a XenStore watch event with ``token`` is queued."""
        return self._wait(frozenset(), token, timeout)

    def sleep(self, seconds):
        """An event at ``now + seconds``."""
        event = self.env.timeout(self.now + seconds - self.env.now)
        return event if self.scheduler is None else self.scheduler.hook(self, event)

    def elapse(self):
        """An event at the domain's cursor: let the charged time pass."""
        event = self.env.timeout(self.now - self.env.now)
        return event if self.scheduler is None else self.scheduler.hook(self, event)

    def _ready(self, ports, token):
        """Whether a process about to wait for ``ports``/``token`` (see :class:`_Wait`)
        has something to do already."""
        pending = self._pending
        if pending:
            if ports is None:
                table = self.ports
                if any(not table[p].masked for p in pending):
                    return True
            elif not pending.isdisjoint(ports):
                return True
        if self._watch_events and (token is not None or ports is None):
            if token is not None:
                return any(e.token == token for e in self._watch_events)
            return True
        return False

    def _wait(self, ports, token, timeout):
        if self._inbox or self._watch_inbox:
            self.deliver_due()
        env = self.env
        c = self.cursor
        now = env_now(env)
        start = c if c > now else now
        # (queued watch events matter to block() and wait_watch(), not to poll())
        if (self._pending or (self._watch_events and (ports is None or token is not None))) \
                and self._ready(ports, token):
            event = env.timeout(start - now)
            return event if self.scheduler is None else self.scheduler.hook(self, event)
        keys = ports if token is None and ports is not None else _keys(ports, token)
        waiters = self._waiters
        last = self._last
        filed = False
        if last is not None and not last.callbacks and last.keys == keys:
            # The common case: a driver's loop waits again for what it waited for
            # last time. The new wait takes over the resumed one's slot and
            # places when that is what unfiling it and filing a new one would
            # give: its slot is the latest, so it must be the latest filed
            # under each of its keys too.
            filed = self._latest_filed(last)
            if filed:
                if last.callbacks is None and REUSE_WAIT_EVENTS:
                    waiter = self._rearm(last, start)
                else:   # handed over or abandoned, maybe still queued: a new one
                    waiter = _Wait(env, ports, token, start, keys)
                    self._file(waiter, last.slot)   # in the old one's places
        if not filed:
            waiter = _Wait(env, ports, token, start, keys)
            if waiters:
                if last is not None and not last.callbacks:
                    self._unfile(last)  # the last one to wait was resumed since (one thread)
                elif len(waiters) > self._pruned_at:
                    # forget processes that were resumed since (amortized: when the count doubles)
                    for w in [w for w in waiters.values() if not w.callbacks]:
                        self._unfile(w)
                    self._pruned_at = max(8, 2 * len(waiters))
            self._last_slot = slot = next(self._slots)
            self._file(waiter, slot)
        wake = None if timeout is None else start + (timeout if timeout > 0 else 0.0)
        inbox = self._inbox
        if inbox:
            upcall = self._samplers["evtchn.upcall"]
            if ports is not None and len(inbox) > 4:
                # a poll on a few ports of a busy domain (the manager's handler of one
                # vTPM): look up its ports' queued times, not every notification queued
                queued = self._inbox_of
                if queued is None:
                    queued = self._index_inbox()
                times = [queued[p] for p in ports if p in queued]
                if len(times) == 1 and len(times[0]) == 1:
                    t = times[0][0]
                    t = (t if t > start else start) + upcall()
                    if wake is None or t < wake:
                        wake = t
                    inbox = ()
                elif not times:
                    inbox = ()
            for t, _, port in inbox:     # one upcall draw per wanted notification, in heap order
                if waiter.wants_port(port):
                    t = (t if t > start else start) + upcall()
                    if wake is None or t < wake:
                        wake = t
        if self._watch_inbox:
            for t, _, watch in self._watch_inbox:
                if waiter.wants_watch(watch):
                    t = (t if t > start else start) + self._samplers["evtchn.upcall"]()
                    if wake is None or t < wake:
                        wake = t
        if wake is not None:
            self._schedule(waiter, wake)
        return waiter if self.scheduler is None else self.scheduler.hook(self, waiter)

    @staticmethod
    def _rearm(last, start):
        """The resumed wait ``last`` -- fired and processed -- made pending again as
        the new wait from ``start``: the same event, not a new one per wake-up."""
        rearm(last)
        last.start = start
        last.wake = None
        return last

    def _latest_filed(self, waiter):
        """Whether ``waiter`` is the latest filed under each of its keys.

        Filing puts a waiter last under each of its keys (:meth:`_file`), and
        unfiling another leaves it last: so a waiter filed after nothing else
        -- what a driver's loop waiting again finds -- is the latest without
        looking at its keys.
        """
        if waiter.filing == self._filings:
            return True
        slot = waiter.slot
        waiting_for = self._waiting_for
        for key in waiter.keys:
            if next(reversed(waiting_for[key])) != slot:
                return False
        return True

    def _index_inbox(self):
        """Build ``_inbox_of`` from the inbox (kept up to date until the inbox empties)."""
        index = self._inbox_of = {}
        for t, _, port in self._inbox:
            queued = index.get(port.port)
            if queued is None:
                index[port.port] = [t]
            else:
                heappush(queued, t)
        return index

    def _schedule(self, waiter, wake):
        env = self.env
        if waiter.wake is not None:
            # Already due later: SimPy cannot unschedule an event, so the
            # waiting process moves to a new, earlier event and the old one
            # fires with nobody listening.
            earlier = _Wait(env, waiter.ports, waiter.token, waiter.start, waiter.keys)
            self._unfile(waiter)
            self._file(earlier, waiter.slot)
            succeed_at(earlier, wake - env.now, instead_of=waiter)
            earlier.wake = wake
        else:
            succeed_at(waiter, wake - env.now)
            waiter.wake = wake

    def _offer(self, t, port=None, watch=None):
        """Something arrives at ``t``: wake blocked processes earlier if they care."""
        if not self._waiters:
            return
        upcall = self._samplers["evtchn.upcall"]
        draws = upcall.buf
        # the waiters that may care, in the order they blocked; _schedule() may
        # replace one (same slot), never adds or removes one
        gone = None
        for waiter in self._candidates(port, watch):
            if not waiter.callbacks:        # resumed already, or handed over
                if waiter.callbacks is None:
                    # resumed: it leaves the index now, not at the next pruning (when the
                    # waiters have doubled) -- a watch thread of a manager with N vTPMs
                    # would otherwise leave up to N behind it on its token, every later
                    # watch event stepping over them. Its thread's next wait then takes a
                    # new slot instead of this one's (rearmed): the latest either way.
                    if gone is None:
                        gone = [waiter]
                    else:
                        gone.append(waiter)
                continue
            if port is not None:
                ports = waiter.ports
                if (port.masked if ports is None else port.port not in ports):
                    continue
            elif not waiter.wants_watch(watch):
                continue
            start = waiter.start
            at = (t if t > start else start) + (draws.pop() if draws else upcall.refill())
            if waiter.wake is None or at < waiter.wake:
                self._schedule(waiter, at)
        if gone is not None:
            for waiter in gone:
                self._unfile(waiter)

    def _file(self, waiter, slot):
        """File ``waiter`` at ``slot``: a new slot goes last under each of its keys; a
        slot it takes over keeps its place there (the waiter it replaces was last)."""
        waiter.slot = slot
        self._filings = waiter.filing = self._filings + 1
        self._waiters[slot] = waiter
        if slot == self._last_slot:
            self._last = waiter
        waiting_for = self._waiting_for
        for key in waiter.keys:
            filed = waiting_for.get(key)
            if filed is None:
                waiting_for[key] = {slot: waiter}
            else:
                filed[slot] = waiter

    def _unfile(self, waiter):
        slot = waiter.slot
        del self._waiters[slot]
        if waiter is self._last:
            self._last = None
        waiting_for = self._waiting_for
        for key in waiter.keys:
            filed = waiting_for[key]
            del filed[slot]
            if not filed:
                del waiting_for[key]

    def _candidates(self, port, watch):
        """The waiters a notification of ``port`` (or the watch event) may wake, in slot order."""
        waiting_for = self._waiting_for
        anyone = waiting_for.get(_ANY)
        mine = waiting_for.get(port.port if port is not None else ("token", watch.token))
        if anyone is None:
            return list(mine.values()) if mine else ()
        if mine is None:
            return list(anyone.values())
        return [w for _, w in sorted({**anyone, **mine}.items())]

    # -- what woke us ------------------------------------------------------

    def post_watch(self, t, event):
        """Queue the :class:`WatchEvent` ``event`` for delivery at ``t`` (XenStore's call)."""
        heappush(self._watch_inbox, (t, next(self._inbox_seq), event))
        if self._waiters:
            self._offer(t, watch=event)

    def post_notification(self, t, port):
        """Queue a notification of the local :class:`~simxen.xen.event_channel.Port` ``port``.

        The event channels' call for a send: the pending bit is set when the
        domain's clock reaches ``t`` (:meth:`deliver_due`); a process blocked
        on the port is woken for it.
        """
        number = port.port
        heappush(self._inbox, (t, next(self._inbox_seq), port))
        index = self._inbox_of
        if index is not None:
            queued = index.get(number)
            if queued is None:
                index[number] = [t]
            else:
                heappush(queued, t)
        if not self._waiters:
            return
        # the usual case: at most one live process is blocked on this port (a
        # driver's poll) and none on every port -- what _offer() finds, without its search
        waiting_for = self._waiting_for
        if _ANY in waiting_for:
            self._offer(t, port=port)
            return
        mine = waiting_for.get(number)
        if mine is None:
            return
        waiter = None
        for filed in mine.values():
            if filed.callbacks:             # not resumed already
                if waiter is not None:
                    self._offer(t, port=port)
                    return
                waiter = filed
        if waiter is None:
            return
        start = waiter.start
        upcall = self._samplers["evtchn.upcall"]
        draws = upcall.buf
        at = (t if t > start else start) + (draws.pop() if draws else upcall.refill())
        wake = waiter.wake
        if wake is None:
            succeed_at(waiter, at - env_now(self.env))
            waiter.wake = at
        elif at < wake:
            self._schedule(waiter, at)

    def evtchn_send(self, port):
        """``EVTCHNOP_send`` on the local INTERDOMAIN ``port`` (the event channels' call,
        after their checks): charge the hypercall, record ``evtchn.send`` and queue the
        notification at the peer for ``evtchn.notify`` later."""
        t = self.charged("hypercall")
        self.evtchn_sent += 1
        at = t + self.sample("evtchn.notify")
        rec = self._sends
        if rec.keep:
            self._trace.keep_row(t, "evtchn.send", self.domid, _SEND,
                                 (port.port, port.remote_dom, port.remote_port))
        else:
            rec.count()
        peer = port.peer
        peer.dom.post_notification(at, peer)

    def earliest_queued(self):
        """The delivery time of the earliest notification or watch event still
        waiting in the inbox, or ``None``. Its trace record will carry that
        time however late the domain looks (:meth:`deliver_due`), so the trace
        cannot write records past it yet (:meth:`Hypervisor.low_water`)."""
        inbox, winbox = self._inbox, self._watch_inbox
        if inbox:
            t = inbox[0][0]
            return winbox[0][0] if winbox and winbox[0][0] < t else t
        return winbox[0][0] if winbox else None

    def set_pending(self, port):
        """Set the pending bit of the local ``port`` now; whether it was set already."""
        coalesced = port.pending
        port.pending = True
        self._pending.add(port.port)
        return coalesced

    def forget_port(self, number):
        """Drop a closed port's pending bit (the event channels' call on close)."""
        self._pending.discard(number)

    def wake_for(self, port):
        """A pending ``port`` was unmasked: wake a process blocked on it (at the cursor)."""
        if port.pending and self._waiters:
            self._offer(self.cursor, port=port)

    def deliver_due(self):
        """Deliver everything in the inbox that is due by the domain's clock."""
        inbox = self._inbox
        if inbox:
            c = self.cursor
            now = env_now(self.env)
            if c > now:
                now = c
            ports = self.ports
            trace = self._trace
            queued = self._inbox_of
            while inbox and inbox[0][0] <= now:
                t, _, port = heappop(inbox)
                number = port.port
                if queued is not None:
                    times = queued[number]
                    if len(times) == 1:
                        del queued[number]
                    else:
                        heappop(times)    # the earliest of its port's: t itself
                if ports.get(number) is not port or port.state != EVTCHNSTAT_interdomain:
                    trace.emit("evtchn.deliver", t, self.domid, port=number, dropped="closed")
                    continue
                # set the pending bit; a bit already set means the notification coalesced
                self._record_delivery(t, port)
                port.pending = True
                self._pending.add(number)
            if not inbox:
                self._inbox_of = None
        winbox = self._watch_inbox
        if winbox:
            now = self.now
            while winbox and winbox[0][0] <= now:
                t, _, event = heappop(winbox)
                self._watch_events.append(event)
                rec = self._watch_arrivals
                if rec.keep:
                    self._trace.emit("xs.watch_event", t, self.domid, path=event.path,
                                     token=event.token)
                else:
                    rec.count()

    def _record_delivery(self, t, port):
        """The ``evtchn.deliver`` record of a notification of ``port`` delivered at ``t``
        (made before its pending bit is set: ``coalesced`` when it was set already)."""
        rec = self._deliveries
        if rec.keep:
            self._trace.keep_row(t, "evtchn.deliver", self.domid, _DELIVER,
                                 (port.port, port.remote_dom, port.remote_port,
                                  True if port.pending else None, True if port.masked else None))
        else:
            rec.count()

    def evtchn_pending(self, port):
        """Whether ``port``'s pending bit is set."""
        self.deliver_due()
        return port in self._pending

    def evtchn_clear(self, port):
        """Test and clear ``port``'s pending bit (a handler's first step)."""
        inbox = self._inbox
        if inbox:
            if len(inbox) == 1 and not self._watch_inbox:
                # The usual wake-up: one notification queued, for this very port.
                # Delivered and cleared in one step: the record deliver_due() makes,
                # and the bit it sets is the one cleared here.
                t, _, p = inbox[0]
                if p.port == port and self.ports.get(port) is p \
                        and p.state == EVTCHNSTAT_interdomain:
                    if t <= self.cursor or t <= env_now(self.env):      # due by self.now
                        inbox.pop()
                        self._inbox_of = None
                        self._record_delivery(t, p)
                        if p.pending:       # set before (a bind, say): cleared here too
                            self._pending.discard(port)
                            p.pending = False
                        return True
            self.deliver_due()
        if port in self._pending:
            self._pending.discard(port)
            p = self.ports.get(port)
            if p is not None:
                p.pending = False
            return True
        return False

    def evtchn_take_pending(self):
        """Clear and return every pending, unmasked port, lowest first."""
        self.deliver_due()
        if not self._pending:
            return []
        table = self.ports
        ready = sorted(p for p in self._pending if not table[p].masked)
        for p in ready:
            self._pending.discard(p)
            table[p].pending = False
        return ready

    def xs_read_watch(self, token=None):
        """Pop the oldest queued :class:`WatchEvent` (with ``token``, if given), or ``None``."""
        self.deliver_due()
        for i, event in enumerate(self._watch_events):
            if token is None or event.token == token:
                return self._watch_events.pop(i)
        return None

    def check_alive(self):
        """Raise ``-ESRCH`` if the domain has been destroyed (every hypercall's first check)."""
        if not self.alive:
            raise XenError(-errno.ESRCH, f"dom{self.domid} ({self.name}) has been destroyed")

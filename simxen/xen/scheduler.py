"""Physical CPUs shared by the domains' vCPUs, under a credit2-like scheduler.

Without a scheduler (the default) every domain has a physical CPU of its own:
the work a domain charges (:meth:`simxen.xen.domain.Domain.charge`) runs at
once, and nothing one domain does delays another's code. With one,
``Hypervisor(scheduler=Credit2(pcpus=2))``, the domains share ``pcpus``
physical CPUs and a domain that becomes runnable may have to wait for one::

    hv = Hypervisor(scheduler=Credit2(pcpus=1))
    a, b = hv.domain_create("a"), hv.domain_create("b")
    hv.scheduler.domain_set(b.domid, weight=512)     # xl sched-credit2 -d b -w 512

How it fits the cursor model
----------------------------
A domain's code charges its work to the domain's clock (its *cursor*), which
runs ahead of ``env.now``; it blocks by yielding an event of
:meth:`~simxen.xen.domain.Domain.block`, ``poll``, ``wait_watch``, ``sleep``
or ``elapse``. The work charged between a wake-up and the next such yield is
one **burst** on a pCPU: it starts when the domain is dispatched and ends at
the domain's cursor, known the moment the code yields. So:

* when a domain's wait event fires and no pCPU is free, the wake-up is
  deferred: the waiting code is taken off the event
  (:func:`~simxen.xen.simpy_internals.defer_callbacks`) and the domain joins
  the runqueue; it resumes when a pCPU dispatches it;
* a pCPU looks again when its domain's burst ends (an event at the cursor,
  processed after everything else due at that time): if the domain is
  runnable again at once (``elapse``, or a wake already due) credit2 decides
  whether it keeps the pCPU; otherwise the pCPU takes the runnable vCPU with
  the most credit, or goes idle.

A domain has one clock, so it occupies at most one pCPU at a time, whatever
its ``vcpus``: its processes (a manager's handler per vTPM) share its vCPU.

Credit2, as in Xen (``xen/common/sched/credit2.c``)
---------------------------------------------------
Every vCPU starts with ``CSCHED2_CREDIT_INIT`` of credit and burns it while it
runs, at ``max_weight / weight`` credit per second of CPU (the vCPU with the
highest weight burns 1:1; ``t2c_update``). The runqueue is kept in credit
order; a pCPU that picks the next vCPU takes the one with the most credit
(``runq_candidate``). When the vCPU picked has credit at or below
``CSCHED2_CREDIT_RESET`` an epoch ends: every vCPU gets ``CSCHED2_CREDIT_INIT``
more, clipped to ``CSCHED2_CREDIT_INIT + CSCHED2_CARRYOVER_MAX`` (``reset_credit``;
its multiplier adds more only for a credit below ``CSCHED2_CREDIT_MIN``, which
``t2c_update``'s clamp never allows, so a vCPU picked at the floor resets to 0). So over an
epoch two CPU-bound vCPUs with weights 256 and 512 get CPU in the ratio 1:2.

A running vCPU is given a slice (``csched2_runtime``): until its credit falls
to that of the best waiting vCPU, at least ``CSCHED2_MIN_TIMER`` and the
ratelimit, at most ``CSCHED2_MAX_TIMER`` (and, if capped, its budget). A vCPU
that wakes while every pCPU is busy *tickles* the pCPU whose vCPU has the
least credit below its own, if that vCPU has run at least the ratelimit
(``sched_ratelimit_us``, less ``CSCHED2_RATELIMIT_TICKLE_TOLERANCE``;
``tickle_score``, ``is_preemptable``); a vCPU that has run for less than the
ratelimit keeps its pCPU when it is reconsidered (``runq_candidate``).

A cap (xl.cfg ``cap=``, percent of one pCPU) gives the domain a budget of
``cap/100 * CSCHED2_BDGT_REPL_PERIOD`` per period; its runs consume it; a
vCPU with no budget left is *parked* until the next replenishment, which adds
one period's budget (a debt from an overrun is carried) and keeps at most one
period's (``replenish_domain_budget``).

Where simxen departs from Xen
-----------------------------
* **Preemption happens at yield points.** Xen preempts a running vCPU when
  its slice timer fires or when a tickle arrives. simxen cannot stop a burst
  in the middle -- its effects are already stamped with their times -- so a
  preemption that Xen would make during a burst takes effect at the burst's
  end: when the slice has expired or a tickle is pending, the next yield point
  is a scheduling decision. Bursts in this model are microseconds to a few
  milliseconds (a TPM command's emulation is the longest), so a waiting vCPU
  may wait up to one burst longer than on Xen. The ratelimit therefore acts
  only where it does in Xen at a scheduling decision: a vCPU that has run for
  less than it is not preempted at a yield point, and a waking vCPU does not
  tickle it.
* **One runqueue.** Xen groups pCPUs into runqueues by topology (one per
  socket by default, ``opt_runqueue``) and balances load between them; simxen
  has one runqueue for all its pCPUs (one socket), so there is no migration
  and no ``CSCHED2_MIGRATE_RESIST``.
* **No soft affinity, no pinning, no cpupools, no SMT.** Every vCPU may run on
  every pCPU.
* **Wakes that are not hypercall waits.** Code resumed by something other
  than a domain's wait (a workload's think time, a SimPy resource) cannot be
  held back: if its domain holds no pCPU and none is free, its burst is
  placed behind the running burst that ends first, ahead of vCPUs waiting in
  the runqueue whatever their credit, and is counted as ``placed`` in the
  report. The driver and stub-domain code waits through the domain's calls.
* **Credit in seconds, not nanoseconds**: the same arithmetic in floats (no
  ``residual``).

The figures (``CSCHED2_*``, the ratelimit, the default weight) come from the
timing profile (``ops."sched.*"`` and the switch ``sched.credit2.default_weight``),
each with its source; ``docs/cpu-scheduling.rst`` is the user's page.
"""

from __future__ import annotations

import bisect
import math

from simxen.errors import InputError, found
from simxen.xen.simpy_internals import defer_callbacks, schedule_late

#: the schedulers a scenario may name (``[scenario] scheduler``)
SCHEDULERS = ("dedicated", "credit2")

#: profile ops holding credit2's figures (seconds)
OPS = {
    "credit_init": "sched.credit2.credit_init",
    "min_timer": "sched.credit2.min_timer",
    "max_timer": "sched.credit2.max_timer",
    "credit_reset": "sched.credit2.credit_reset",
    "carryover_max": "sched.credit2.carryover_max",
    "tickle_tolerance": "sched.credit2.ratelimit_tickle_tolerance",
    "cap_period": "sched.credit2.cap_period",
    "ratelimit": "sched.ratelimit",
}
#: the switch holding the weight a new domain gets (CSCHED2_DEFAULT_WEIGHT)
DEFAULT_WEIGHT_SWITCH = "sched.credit2.default_weight"
#: xl.cfg(5) cpu_weight=: "Legal weights range from 1 to 65535"
WEIGHT_RANGE = (1, 65535)


class VCpu:
    """What the scheduler knows of one domain's vCPU (``struct csched2_unit``)."""

    __slots__ = ("dom", "weight", "cap", "credit", "pcpu", "run_start", "accounted",
                 "state_entry", "slice_end", "gates", "queued", "queued_at", "parked",
                 "budget", "next_repl", "cpu_time", "dispatches", "waits", "placed",
                 "preempted", "repl_event", "seq")

    def __init__(self, dom, weight, credit):
        self.dom = dom
        self.weight = weight
        self.cap = 0                #: percent of one pCPU; 0 = no cap
        self.credit = credit
        self.pcpu = None            #: the PCpu it runs on (or is placed on), else None
        self.run_start = 0.0        #: when its current run began
        self.accounted = 0.0        #: CPU time up to here is burnt and counted
        self.state_entry = 0.0      #: when it last started running (for the ratelimit)
        self.slice_end = math.inf
        self.gates = []             #: deferred wake-ups: (gate event) each
        self.queued = False         #: in the runqueue
        self.queued_at = 0.0
        self.parked = False         #: out of budget (capped)
        self.budget = 0.0
        self.next_repl = math.inf
        self.cpu_time = 0.0
        self.dispatches = 0
        self.waits = []             #: runqueue waits, seconds
        self.placed = 0             #: bursts placed without a wait hook (see the module doc)
        self.preempted = 0
        self.repl_event = None
        self.seq = 0                #: FIFO order among equal credits


class PCpu:
    """One physical CPU: the vCPU on it, and what it must look at next."""

    __slots__ = ("index", "cur", "tickled", "check_at", "placed", "busy")

    def __init__(self, index):
        self.index = index
        self.cur = None             #: the VCpu running (its burst may have ended this instant)
        self.tickled = False        #: a waking vCPU with more credit asked for it
        self.check_at = None        #: time of the pending look at the end of the burst
        self.placed = []            #: VCpus whose bursts are placed after the current one
        self.busy = 0.0             #: CPU time of all runs on it


class Credit2:
    """A credit2-like scheduler over ``pcpus`` physical CPUs (see the module doc).

    The hypervisor attaches it (:meth:`attach`) and registers each domain as
    it is created; :class:`~simxen.xen.domain.Domain` calls :meth:`hook` on
    every event it hands a waiting process and :meth:`start_burst` when code
    starts charging work with the domain's clock behind the event loop.
    """

    name = "credit2"

    def __init__(self, pcpus=1):
        if isinstance(pcpus, bool) or not isinstance(pcpus, int) or pcpus < 1:
            raise InputError(f"expected a number of physical CPUs >= 1, found {found(pcpus)}",
                             key="scenario.pcpus")
        self.pcpus = [PCpu(i) for i in range(pcpus)]
        self.vcpus = {}             #: domid -> VCpu
        self.runq = []              #: sorted list of (-credit, seq, VCpu) -- rebuilt on change
        self._seq = 0
        self.resets = 0
        self.max_weight = 0         #: the highest weight of any vCPU (``rqd->max_weight``)
        self.env = None

    # -- set-up ------------------------------------------------------------

    def attach(self, hv):
        """Take the figures from ``hv.profile`` and the clock from ``hv.env``."""
        self.env = hv.env
        self.trace = hv.trace
        profile = hv.profile
        for attr, op in OPS.items():
            setattr(self, attr, profile.op(op).mean())
        self.credit_min = -self.credit_init          # CSCHED2_CREDIT_MIN
        weight = profile.switch(DEFAULT_WEIGHT_SWITCH, 256)
        if isinstance(weight, bool) or not isinstance(weight, int) \
                or not WEIGHT_RANGE[0] <= weight <= WEIGHT_RANGE[1]:
            raise InputError(f"expected a weight from {WEIGHT_RANGE[0]} to {WEIGHT_RANGE[1]}, "
                             f"found {found(weight)}", path=profile.path,
                             key=f"switches.{DEFAULT_WEIGHT_SWITCH}")
        self.default_weight = weight

    def add_domain(self, dom):
        """A new domain's vCPU, with the default weight and full credit (``csched2_alloc_udata``)."""
        v = self.vcpus[dom.domid] = VCpu(dom, self.default_weight, self.credit_init)
        v.accounted = v.run_start = self.env.now
        self.max_weight = max(self.max_weight, v.weight)
        return v

    def domain_set(self, domid, *, weight=None, cap=None):
        """``XEN_DOMCTL_SCHEDOP_putinfo``: set a domain's weight (1..65535) and/or cap (percent, 0 = none)."""
        v = self.vcpus[domid]
        if weight is not None:
            if not WEIGHT_RANGE[0] <= weight <= WEIGHT_RANGE[1]:
                raise ValueError(f"weight {weight} outside {WEIGHT_RANGE}")
            v.weight = weight
            self.max_weight = max(u.weight for u in self.vcpus.values())
        if cap is not None:
            if cap < 0:
                raise ValueError(f"cap {cap} < 0")
            v.cap = cap
            now = self.env.now
            v.budget = self._tot_budget(v)
            v.next_repl = now + self.cap_period if cap else math.inf

    def _tot_budget(self, v):
        return self.cap_period * v.cap / 100.0

    # -- the hooks the domains call ------------------------------------------

    def hook(self, dom, event):
        """Make ``event`` (one a process of ``dom`` is about to wait on) a scheduling point."""
        callbacks = event.callbacks
        v = self.vcpus[dom.domid]

        def woken(ev):
            self._wake(v, ev, callbacks, woken)
        callbacks.append(woken)
        return event

    def start_burst(self, dom, now):
        """``dom``'s code charges work at ``now`` with its clock behind: when the work starts.

        A domain dispatched by the scheduler, or holding a pCPU, starts now. One
        resumed by an event that is not one of its waits (see the module doc) takes
        a free pCPU, or is placed behind the burst that ends first.
        """
        v = self.vcpus[dom.domid]
        p = v.pcpu
        if p is not None:
            return now
        for p in self.pcpus:
            if p.cur is None:
                self._run(p, v, now)
                return now
        # every pCPU busy: place the burst behind the one that ends first
        p = min(self.pcpus, key=self._tail)
        start = max(now, self._tail(p))
        p.placed.append(v)
        v.pcpu = p
        v.placed += 1
        if not v.queued and not v.gates:
            v.queued_at = now
        self.trace.emit("sched.place", now, dom.domid, pcpu=p.index, start=start)
        return start

    def _tail(self, p):
        last = p.placed[-1] if p.placed else p.cur
        c = last.dom.cursor
        now = self.env.now
        return c if c > now else now

    # -- wake-ups --------------------------------------------------------------

    def _wake(self, v, event, callbacks, hook):
        now = self.env.now
        p = v.pcpu
        if p is not None:
            if p.cur is not v or v.dom.cursor > now:
                return                          # its burst goes on (or is placed): run now
            if self._keep(p, v, now):
                return
            self._defer(v, event, callbacks, hook)
            self._switch(p, now, v)
            return
        if v.parked or v.queued:
            self._defer(v, event, callbacks, hook)
            return
        for p in self.pcpus:
            if p.cur is None:
                self._run(p, v, now)
                return
        self._defer(v, event, callbacks, hook)
        self._enqueue(v, now)
        self._tickle(v, now)

    def _defer(self, v, event, callbacks, hook):
        if not v.gates and not v.queued:
            v.queued_at = self.env.now          # it waits for a pCPU from here
        gate = self.env.event()
        defer_callbacks(event, callbacks, hook, gate)
        v.gates.append(gate)

    def _enqueue(self, v, now):
        if not v.queued:
            v.queued = True
            self._seq += 1
            v.seq = self._seq
            bisect.insort(self.runq, (-v.credit, v.seq, v))
            self.trace.emit("sched.wait", now, v.dom.domid, credit=v.credit,
                            runq=len(self.runq))

    def _resort(self):
        self.runq = sorted((-v.credit, v.seq, v) for _, _, v in self.runq)

    def _tickle(self, v, now):
        """``runq_tickle``: ask the pCPU whose vCPU has the least credit below ``v``'s."""
        best, best_score = None, 0.0
        for p in self.pcpus:
            cur = p.cur
            if cur is None or p.tickled:
                continue
            if self.ratelimit > self.tickle_tolerance and \
                    now - cur.state_entry <= self.ratelimit - self.tickle_tolerance:
                continue                        # is_preemptable(): not yet
            self._account(cur, now)
            score = v.credit - cur.credit
            if score > best_score:
                best, best_score = p, score
        if best is not None:
            best.tickled = True
            self.trace.emit("sched.tickle", now, v.dom.domid, pcpu=best.index,
                            running=best.cur.dom.domid)

    # -- running -----------------------------------------------------------------

    def _run(self, p, v, now, placed=False):
        """Put ``v`` on the idle or just-vacated ``p`` at ``now``; release its deferred wake-ups."""
        p.cur = v
        p.tickled = False
        v.pcpu = p
        v.run_start = v.accounted = v.state_entry = now
        v.dispatches += 1
        if v.queued or v.gates or placed:
            v.waits.append(now - v.queued_at)
        if v.queued:
            v.queued = False
            self.runq = [e for e in self.runq if e[2] is not v]
        self._replenish(v, now)
        v.slice_end = now + self._runtime(v, now)
        self.trace.emit("sched.run", now, v.dom.domid, pcpu=p.index, credit=v.credit)
        gates, v.gates = v.gates, []
        for gate in gates:
            gate.succeed()
        self._look_later(p, now)

    def _look_later(self, p, at):
        if p.check_at is None or p.check_at > at:
            p.check_at = at
            event = self.env.event()
            event.callbacks.append(lambda _ev, p=p, at=at: self._check(p, at))
            schedule_late(event, at - self.env.now)

    def _check(self, p, at):
        """The end of ``p``'s burst (or later): go on, or switch."""
        if p.check_at != at:
            return                              # superseded by an earlier look
        p.check_at = None
        v = p.cur
        if v is None:
            return
        now = self.env.now
        c = v.dom.cursor
        if c > now:
            self._look_later(p, c)
            return
        self._switch(p, now, None)

    def _keep(self, p, v, now):
        """``v`` (on ``p``) is runnable again at the end of its burst: does it keep ``p``?"""
        self._account(v, now)
        if v.parked:
            return False
        if p.placed:
            return False
        if not self.runq:
            if now >= v.slice_end:
                self._maybe_reset(v)
                v.slice_end = now + self._runtime(v, now)
            return True
        if now - v.state_entry < self.ratelimit:
            return True                          # runq_candidate(): ratelimit
        if now < v.slice_end and not p.tickled:
            return True                          # no timer, no tickle: Xen would not look
        p.tickled = False
        best = self.runq[0][2]
        if best.credit > v.credit:
            return False
        self._maybe_reset(v)
        v.slice_end = now + self._runtime(v, now)
        return True

    def _switch(self, p, now, runnable):
        """``p``'s vCPU stops (``runnable``: it is, and waits in the runqueue); pick the next."""
        v = p.cur
        self._account(v, now)
        p.cur = None
        v.pcpu = None
        why = "blocked"
        if v.parked:
            why = "parked"
        elif runnable is v:
            why = "preempted"
            v.preempted += 1
            self._enqueue(v, now)
        self.trace.emit("sched.stop", now, v.dom.domid, pcpu=p.index, why=why,
                        ran=now - v.run_start, credit=v.credit)
        if p.placed:
            self._run(p, p.placed.pop(0), now, placed=True)
            return
        if self.runq:
            nxt = self.runq[0][2]
            self._maybe_reset(nxt)
            self._run(p, nxt, now)

    def _account(self, v, now):
        """Burn ``v``'s credit and budget for the CPU time it used since the last account."""
        end = v.dom.cursor
        if end > now:
            end = now
        ran = end - v.accounted
        if ran <= 0:
            return
        v.accounted = end
        v.cpu_time += ran
        v.pcpu.busy += ran
        credit = v.credit - ran * self.max_weight / v.weight
        v.credit = credit if credit > self.credit_min else self.credit_min
        if v.queued:
            self._resort()
        if v.cap:
            self._replenish(v, now)
            v.budget -= ran
            if v.budget <= 0 and not v.parked:
                self._park(v, now)

    def _runtime(self, v, now):
        """``csched2_runtime``: how long ``v`` may run before it is reconsidered."""
        rt_credit = v.credit
        if self.runq:
            head = self.runq[0][2]
            if head.credit > 0:
                rt_credit = v.credit - head.credit
        time = rt_credit * v.weight / self.max_weight if rt_credit > 0 else 0.0
        if v.cap:
            time = min(time, v.budget)
        min_time = max(self.min_timer, self.ratelimit)
        return min(max(time, min_time), self.max_timer)

    def _maybe_reset(self, snext):
        """``reset_credit`` when the best runnable vCPU is at or below CSCHED2_CREDIT_RESET."""
        top = snext.credit
        if self.runq:
            top = max(top, self.runq[0][2].credit)
        if top > self.credit_reset:
            return
        # reset_credit(): m = 1, plus one per CSCHED2_CREDIT_INIT that snext is *below*
        # -CSCHED2_CREDIT_INIT. t2c_update clamps every credit at CSCHED2_CREDIT_MIN
        # (= -CSCHED2_CREDIT_INIT), so m stays 1: a vCPU picked at the floor resets to 0
        m = 1
        if snext.credit < -self.credit_init:
            m += math.floor(-snext.credit / self.credit_init)
        reset = m * self.credit_init
        clip = self.credit_init + self.carryover_max
        for v in self.vcpus.values():
            v.credit = min(v.credit + reset, clip)
        self.resets += 1
        self._resort()
        self.trace.emit("sched.reset", self.env.now, snext.dom.domid, added=reset)

    # -- caps --------------------------------------------------------------------

    def _replenish(self, v, now):
        if not v.cap or v.next_repl > now:
            return
        tot = self._tot_budget(v)
        while v.next_repl <= now:               # do_replenish(), as often as periods passed
            v.budget += tot
            v.next_repl += self.cap_period
        if v.budget > 0:
            v.budget = min(v.budget, tot)

    def _park(self, v, now):
        v.parked = True
        self.trace.emit("sched.park", now, v.dom.domid, budget=v.budget)
        event = self.env.event()
        event.callbacks.append(lambda _ev: self._unpark(v))
        schedule_late(event, v.next_repl - now)

    def _unpark(self, v):
        now = self.env.now
        self._replenish(v, now)
        if v.budget <= 0:
            self._park(v, now)
            return
        v.parked = False
        self.trace.emit("sched.unpark", now, v.dom.domid, budget=v.budget)
        if v.gates and v.pcpu is None and not v.queued:
            for p in self.pcpus:
                if p.cur is None:
                    self._run(p, v, now)
                    return
            self._enqueue(v, now)
            self._tickle(v, now)

    # -- results -----------------------------------------------------------------

    def waits(self):
        """How many wake-ups (and placed bursts) had to wait for a pCPU so far."""
        return sum(len(v.waits) for v in self.vcpus.values())

    def summary(self, now):
        """Per-domain CPU time, utilisation and runqueue waits, and the pCPUs' utilisation."""
        for p in self.pcpus:
            if p.cur is not None:
                self._account(p.cur, now)
        out = {}
        for v in self.vcpus.values():
            out[v.dom.name] = {
                "domid": v.dom.domid, "weight": v.weight, "cap": v.cap,
                "cpu_time_s": v.cpu_time,
                "utilisation": v.cpu_time / now if now > 0 else 0.0,
                "dispatches": v.dispatches, "preempted": v.preempted, "placed": v.placed,
                "waits": list(v.waits),
            }
        busy = sum(p.busy for p in self.pcpus)
        return {"pcpus": len(self.pcpus), "resets": self.resets,
                "utilisation": busy / (now * len(self.pcpus)) if now > 0 else 0.0,
                "domains": out}

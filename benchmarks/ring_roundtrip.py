"""CPU cost of a ring round trip, against a bare-SimPy floor.

The floor is the least any SimPy model of a request/response can do per
round trip: one request event, one timeout (the service), one reply event.
A second reference, "ring logic only", runs the same ring.h protocol on the
pure :mod:`simxen.protocols.ring` classes between two SimPy processes with
fixed delays and nothing else (no domains, grants, costs, streams or trace):
it shows how much of the gap is the ring protocol itself. A third,
"essential work only", adds to that what every ring trip of simxen must do
and nothing else: each side's clock charged, request and response bytes
copied through the shared page (bounds checked, the page stamped, the
reader moved past the writer's stamp), the eight trace rows a trip records
(two page writes, two reads, two sends, two deliveries, each a numbered
tuple kept in a list), and an event channel that queues a notification for
its delivery time and wakes the one process polling it an upcall later. It
is the cost of the work itself, without the generality that simxen's domains
carry (any number of processes blocked per domain, masks, timeouts, watches,
trace levels, a CPU scheduler): what a ring trip could cost, and so how
much of the gap is that generality.
The ring ping-pong does the real thing: a request written into a granted
page, push-and-check-notify, an event-channel send, the backend woken, the
request read, a response written, pushed and notified, the frontend woken
and the response checked -- every step costed from the timing profile and
recorded in the trace. Both run in this process, one after the other, and
the script prints round trips per second for each and the ratio
(ring / floor cost per round trip; the target is at most 5).

Every figure is process CPU time (:func:`time.process_time`), not wall time:
on a machine other jobs share, wall time counts their turns too, CPU time
only this process's work. Each is the best of ``--repeat`` interleaved runs,
each run with the garbage collector set as ``simxen run`` sets it for a
scenario (:func:`simxen.scenario.runner.fewer_collections`): the ring is
timed as the product runs it, and the floor beside it the same way.

    python benchmarks/ring_roundtrip.py [--requests N] [--repeat R] [--no-trace]
        [--count [TRIPS]] [--instructions [TRIPS]]

``--instructions [TRIPS]`` prints machine instructions per round trip instead,
counted by valgrind (:mod:`instructions`): deterministic like ``--count``,
and it sees the work done in C and how dear each opcode is.

``--count`` prints, instead of timing, the *work* per round trip, which a
busy machine cannot blur: interpreted bytecode instructions ("opcodes") and
Python function calls (generator resumptions included), counted with
:func:`sys.settrace` opcode events. Each figure is the difference between a
run of ``2 * TRIPS`` and a run of ``TRIPS`` round trips, divided by ``TRIPS``,
so setup (domains, the xenbus handshake) cancels out. Work done in C (a dict
lookup, ``heappush``) counts as the one opcode that calls it.
"""

import argparse
import gc
import sys
import time

import simpy

from arguments import count

#: the clock every figure is read from: this process's CPU time (see above)
clock = time.process_time

from simxen.domains.pingpong import run_pingpong
from simxen.protocols.ring import BackRing, FrontRing
from simxen.scenario.runner import fewer_collections
from simxen.xen import Hypervisor
from simxen.xen.simpy_internals import now as env_now
from simxen.xen.simpy_internals import rearm, succeed_at

#: fixed delays of the ring-logic-only reference (a notification, a service)
_NOTIFY = 5e-6


def floor_roundtrips(n):
    """Bare SimPy ping-pong: CPU seconds for ``n`` round trips."""
    env = simpy.Environment()
    mailbox = []

    def server():
        while True:
            request = env.event()
            mailbox.append(request)
            reply = yield request
            yield env.timeout(1e-5)
            reply.succeed()

    def client():
        for _ in range(n):
            reply = env.event()
            mailbox.pop().succeed(reply)
            yield reply

    env.process(server())
    env.process(client())
    start = clock()
    env.run()
    return clock() - start


def ring_logic_roundtrips(n):
    """ring.h between two processes, nothing else: CPU seconds for ``n`` round trips."""
    env = simpy.Environment()
    page = bytearray(4096)
    front, back = FrontRing(page, 64, init=True), BackRing(page, 64)
    sleeping = {}

    def notify(side):
        event = sleeping.pop(side, None)
        if event is not None:
            env.schedule(event, delay=_NOTIFY)
            event._ok, event._value = True, None

    def sleep(side):
        event = sleeping[side] = env.event()
        return event

    def frontend():
        request = bytes(64)
        for _ in range(n):
            front.put_request(request)
            if front.push_requests_and_check_notify():
                notify("back")
            while not front.final_check_for_responses():
                yield sleep("front")
            front.get_response()

    def backend():
        while True:
            while not back.final_check_for_requests():
                yield sleep("back")
            back.put_response(back.get_request())
            if back.push_responses_and_check_notify():
                notify("front")

    env.process(backend())
    done = env.process(frontend())
    start = clock()
    env.run(until=done)
    return clock() - start


#: fixed costs of the essential-work reference: a hypercall, a byte copied, an upcall
_HYPERCALL, _PER_BYTE, _UPCALL = 1e-7, 1e-9, 1e-6


class _Side:
    """One domain of the essential-work reference: its clock, its one poller, its inbox."""

    __slots__ = ("domid", "cursor", "waiter", "start", "queued")

    def __init__(self, domid):
        self.domid = domid
        self.cursor = 0.0
        self.waiter = None      # the event its process polls on, while it sleeps
        self.start = 0.0        # when it went to sleep
        self.queued = None      # delivery time of a notification not yet seen


def essential_roundtrips(n, rows=None):
    """What every ring trip must do, and nothing else: CPU seconds for ``n`` round trips.

    ``rows``, a list, receives its trace rows, ``(t, seq, kind, dom, *values)``
    (``tests/test_benchmark_ring.py`` checks they are the kinds, and as many, as a
    ring trip of simxen records).
    """
    env = simpy.Environment()
    page = bytearray(4096)
    stamp = [0.0]                           # the page's latest write (a reader is never earlier)
    front, back = FrontRing(page, 64, init=True), BackRing(page, 64)
    rows = [] if rows is None else rows
    seq = iter(range(1 << 62))

    def record(t, kind, dom, *values):
        rows.append((t, next(seq), kind, dom, *values))

    def work(side, cost):
        c, now = side.cursor, env_now(env)
        side.cursor = c = (c if c > now else now) + cost
        return c

    def write(side, offset, data, what):
        end = offset + len(data)
        if offset < 0 or end > len(page):
            raise ValueError("outside the page")
        page[offset:end] = data
        stamp[0] = c = work(side, _PER_BYTE * len(data))
        record(c, "page.write", side.domid, offset, len(data), 0, data, what, None)

    def read(side, offset, length, what):
        data = bytes(page[offset:offset + length])
        if stamp[0] > side.cursor:
            side.cursor = stamp[0]
        c = work(side, _PER_BYTE * length)
        record(c, "page.read", side.domid, offset, length, 0, data, what, None)
        return data

    def send(side, peer):
        t = work(side, _HYPERCALL)
        record(t, "evtchn.send", side.domid, 1, peer.domid, 1)
        peer.queued = at = t + _NOTIFY
        waiter = peer.waiter
        if waiter is not None:
            peer.waiter = None
            start = peer.start
            succeed_at(waiter, (at if at > start else start) + _UPCALL - env_now(env))

    def sleep(side, event):
        c, now = side.cursor, env_now(env)
        side.start = c if c > now else now
        side.waiter = event
        return event

    def deliver(side):
        t = side.queued
        if t is not None:
            side.queued = None
            record(t, "evtchn.deliver", side.domid, 1, 3 - side.domid, 1, None, None)

    def frontend(me, peer):
        woken = env.event()
        request = bytes(64)
        for _ in range(n):
            write(me, front.produce_request(), request, "ring.request")
            if front.push_requests_and_check_notify():
                send(me, peer)
            while not front.final_check_for_responses():
                yield sleep(me, woken)
                rearm(woken)
                deliver(me)
            read(me, front.next_response(), 64, "ring.response")

    def backend(me, peer):
        woken = env.event()
        while True:
            while not back.final_check_for_requests():
                yield sleep(me, woken)
                rearm(woken)
                deliver(me)
            request = read(me, back.next_request(), 64, "ring.request")
            write(me, back.produce_response(), request, "ring.response")
            if back.push_responses_and_check_notify():
                send(me, peer)

    f, b = _Side(1), _Side(2)
    env.process(backend(b, f))
    done = env.process(frontend(f, b))
    start = clock()
    env.run(until=done)
    cpu = clock() - start
    return cpu


def ring_roundtrips(n, *, trace=True, seed=1):
    """Ring ping-pong between two domains: CPU seconds for ``n`` round trips."""
    hv = Hypervisor(seed=seed)
    if not trace:
        for kind in ("page", "ring", "evtchn"):
            hv.trace.disable(kind)
    front, back = hv.domain_create("front"), hv.domain_create("back")
    proc = hv.env.process(run_pingpong(hv, front, back, requests=n))
    start = clock()
    hv.env.run()
    cpu = clock() - start
    assert proc.value.completed == n and proc.value.mismatches == 0
    return cpu


class WorkCounter:
    """Counts interpreted opcodes and Python calls while it is installed (``with``)."""

    def __init__(self):
        self.opcodes = self.calls = 0

    def _trace(self, frame, event, arg):
        if event == "opcode":
            self.opcodes += 1
        elif event == "call":
            self.calls += 1
            frame.f_trace_opcodes = True
        return self._trace

    def __enter__(self):
        sys.settrace(self._trace)
        return self

    def __exit__(self, *exc):
        sys.settrace(None)


def work_per_trip(run, trips):
    """``(opcodes, calls)`` per round trip of ``run(n)``: the work of ``run(2 * trips)``
    less that of ``run(trips)``, over ``trips`` (what both runs do once cancels).
    An uncounted run first does what only a first run does (imports, caches)."""
    run(trips)
    counts = []
    for n in (trips, 2 * trips):
        gc.collect()
        with WorkCounter() as counter:
            run(n)
        counts.append((counter.opcodes, counter.calls))
    (o1, c1), (o2, c2) = counts
    return (o2 - o1) / trips, (c2 - c1) / trips


def print_work(name, work, floor):
    """One ``--count`` line: opcodes and calls per trip, and the opcodes' ratio to ``floor``."""
    opcodes, calls = work
    print(f"{name:<22}{opcodes:10,.1f} opcodes/trip {calls:8,.1f} calls/trip"
          f"  {opcodes / floor[0]:6.2f}x floor opcodes")


def print_instructions(trips, no_trace=False):
    """``--instructions``: valgrind's instruction counts per trip, and their ratios."""
    import instructions
    if not instructions.available():
        print(instructions.missing(), file=sys.stderr)
        return 2
    runs = [("ring logic only", "ring_roundtrip.ring_logic_roundtrips({n})"),
            ("essential work only", "ring_roundtrip.essential_roundtrips({n})"),
            ("ring ping-pong", "ring_roundtrip.ring_roundtrips({n})")]
    if no_trace:
        runs.append(("ring, fewer records", "ring_roundtrip.ring_roundtrips({n}, trace=False)"))
    print(f"machine instructions per round trip (valgrind, {trips} vs {2 * trips} trips)")
    floor = instructions.floor_per_trip("ring_roundtrip", trips)
    print(instructions.line("bare SimPy floor", floor, floor), flush=True)
    for name, expr in runs:
        value = instructions.per_trip("ring_roundtrip", expr, trips)
        print(instructions.line(name, value, floor), flush=True)
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=count, default=20000)
    parser.add_argument("--repeat", type=count, default=3,
                        help="runs of each, interleaved; the best of each is kept")
    parser.add_argument("--no-trace", action="store_true",
                        help="also time the ring with page/ring/evtchn records disabled")
    parser.add_argument("--count", type=count, nargs="?", const=200, metavar="TRIPS",
                        help="count opcodes and Python calls per round trip instead of "
                        "timing (deterministic; TRIPS round trips, default 200)")
    parser.add_argument("--instructions", type=count, nargs="?", const=1000, metavar="TRIPS",
                        help="count machine instructions per round trip with valgrind instead "
                        "of timing (deterministic; TRIPS round trips, default 1000)")
    args = parser.parse_args(argv)
    if args.instructions is not None:
        return print_instructions(args.instructions, args.no_trace)
    if args.count is not None:
        trips = args.count
        floor = work_per_trip(floor_roundtrips, trips)
        print(f"work per round trip (opcodes and Python calls, {trips} vs {2 * trips} trips)")
        print_work("bare SimPy floor", floor, floor)
        print_work("ring logic only", work_per_trip(ring_logic_roundtrips, trips), floor)
        print_work("essential work only", work_per_trip(essential_roundtrips, trips), floor)
        print_work("ring ping-pong", work_per_trip(ring_roundtrips, trips), floor)
        if args.no_trace:
            print_work("ring, fewer records",
                       work_per_trip(lambda n: ring_roundtrips(n, trace=False), trips), floor)
        return
    n = args.requests
    floors, logic, essential, rings, quiet = [], [], [], [], []
    def timed(run, *a, **kw):
        gc.collect()                    # each run starts without the last one's garbage
        with fewer_collections():       # as simxen run runs a scenario
            return run(*a, **kw)

    for _ in range(args.repeat):        # interleaved, so a busy moment hits all
        floors.append(timed(floor_roundtrips, n))
        logic.append(timed(ring_logic_roundtrips, n))
        essential.append(timed(essential_roundtrips, n))
        rings.append(timed(ring_roundtrips, n))
        if args.no_trace:
            quiet.append(timed(ring_roundtrips, n, trace=False))
    floor = min(floors)

    def line(name, cpu):
        print(f"{name:<22}{n / cpu:12,.0f} round trips/s  {cpu / n * 1e6:7.2f} us each"
              f"  {cpu / floor:6.2f}x floor")

    line("bare SimPy floor", floor)
    line("ring logic only", min(logic))
    line("essential work only", min(essential))
    line("ring ping-pong", min(rings))
    if quiet:
        line("ring, fewer records", min(quiet))
    print(f"ratio ring ping-pong / floor: {min(rings) / floor:.2f}x (target <= 5x)")


if __name__ == "__main__":
    sys.exit(main())

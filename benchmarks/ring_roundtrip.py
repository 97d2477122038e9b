"""CPU cost of a ring round trip, against a bare-SimPy floor.

The floor is the least any SimPy model of a request/response can do per
round trip: one request event, one timeout (the service), one reply event.
A second reference, "ring logic only", runs the same ring.h protocol on the
pure :mod:`simxen.protocols.ring` classes between two SimPy processes with
fixed delays and nothing else (no domains, grants, costs, streams or trace):
it shows how much of the gap is the ring protocol itself.
The ring ping-pong does the real thing: a request written into a granted
page, push-and-check-notify, an event-channel send, the backend woken, the
request read, a response written, pushed and notified, the frontend woken
and the response checked -- every step costed from the timing profile and
recorded in the trace. Both run in this process, one after the other, and
the script prints round trips per second for each and the ratio
(ring / floor cost per round trip; the target is at most 5).

Every figure is process CPU time (:func:`time.process_time`), not wall time:
on a machine other jobs share, wall time counts their turns too, CPU time
only this process's work. Each is the best of ``--repeat`` interleaved runs.

    python benchmarks/ring_roundtrip.py [--requests N] [--repeat R] [--no-trace]
"""

import argparse
import gc
import time

import simpy

#: the clock every figure is read from: this process's CPU time (see above)
clock = time.process_time

from simxen.domains.pingpong import run_pingpong
from simxen.protocols.ring import BackRing, FrontRing
from simxen.xen import Hypervisor

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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each, interleaved; the best of each is kept")
    parser.add_argument("--no-trace", action="store_true",
                        help="also time the ring with page/ring/evtchn records disabled")
    args = parser.parse_args(argv)
    n = args.requests
    floors, logic, rings, quiet = [], [], [], []
    def timed(run, *a, **kw):
        gc.collect()                    # each run starts without the last one's garbage
        return run(*a, **kw)

    for _ in range(args.repeat):        # interleaved, so a busy moment hits all
        floors.append(timed(floor_roundtrips, n))
        logic.append(timed(ring_logic_roundtrips, n))
        rings.append(timed(ring_roundtrips, n))
        if args.no_trace:
            quiet.append(timed(ring_roundtrips, n, trace=False))
    floor = min(floors)

    def line(name, cpu):
        print(f"{name:<22}{n / cpu:12,.0f} round trips/s  {cpu / n * 1e6:7.2f} us each"
              f"  {cpu / floor:6.2f}x floor")

    line("bare SimPy floor", floor)
    line("ring logic only", min(logic))
    line("ring ping-pong", min(rings))
    if quiet:
        line("ring, fewer records", min(quiet))
    print(f"ratio ring ping-pong / floor: {min(rings) / floor:.2f}x (target <= 5x)")


if __name__ == "__main__":
    main()

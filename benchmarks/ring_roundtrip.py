"""Wall-clock cost of a ring round trip, against a bare-SimPy floor.

The floor is the least any SimPy model of a request/response can do per
round trip: one request event, one timeout (the service), one reply event.
The ring ping-pong does the real thing: a request written into a granted
page, push-and-check-notify, an event-channel send, the backend woken, the
request read, a response written, pushed and notified, the frontend woken
and the response checked -- every step costed from the timing profile and
recorded in the trace. Both run in this process, one after the other, and
the script prints round trips per second for each and the ratio
(ring / floor wall cost per round trip; the target is at most 3).

    python benchmarks/ring_roundtrip.py [--requests N] [--repeat R] [--no-trace]
"""

import argparse
import time

import simpy

from simxen.domains.pingpong import run_pingpong
from simxen.xen import Hypervisor


def floor_roundtrips(n):
    """Bare SimPy ping-pong: wall seconds for ``n`` round trips."""
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
    start = time.perf_counter()
    env.run()
    return time.perf_counter() - start


def ring_roundtrips(n, *, trace=True, seed=1):
    """Ring ping-pong between two domains: wall seconds for ``n`` round trips."""
    hv = Hypervisor(seed=seed)
    if not trace:
        for kind in ("page", "ring", "evtchn"):
            hv.trace.disable(kind)
    front, back = hv.domain_create("front"), hv.domain_create("back")
    proc = hv.env.process(run_pingpong(hv, front, back, requests=n))
    start = time.perf_counter()
    hv.env.run()
    wall = time.perf_counter() - start
    assert proc.value.completed == n and proc.value.mismatches == 0
    return wall


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5,
                        help="runs of each, interleaved; the best of each is kept")
    parser.add_argument("--no-trace", action="store_true",
                        help="also time the ring with page/ring/evtchn records disabled")
    args = parser.parse_args(argv)
    n = args.requests
    floors, rings, quiet = [], [], []
    for _ in range(args.repeat):        # interleaved, so a busy moment hits both
        floors.append(floor_roundtrips(n))
        rings.append(ring_roundtrips(n))
        if args.no_trace:
            quiet.append(ring_roundtrips(n, trace=False))
    floor, ring = min(floors), min(rings)
    print(f"bare SimPy floor : {n / floor:12,.0f} round trips/s  ({floor / n * 1e6:6.2f} us each)")
    print(f"ring ping-pong   : {n / ring:12,.0f} round trips/s  ({ring / n * 1e6:6.2f} us each)")
    print(f"ratio ring/floor : {ring / floor:.2f}x  (target <= 3x)")
    if quiet:
        q = min(quiet)
        print(f"ring, no trace   : {n / q:12,.0f} round trips/s  ratio {q / floor:.2f}x")


if __name__ == "__main__":
    main()

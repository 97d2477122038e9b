"""``type = "ring-pingpong"``: two domains exchange requests over a shared ring.

The frontend domain grants a page to the backend, allocates an event channel,
and publishes both in XenStore; the backend maps the page and binds the
channel (the xenbus handshake); then the frontend sends ``requests`` requests
of ``request_size`` bytes, each answered by the backend, through Xen's
``ring.h`` ring and its notification suppression.  Results (for
``[[expect]]``, as ``<name>.<key>``):

``requests_completed``, ``sim_seconds``, ``throughput_per_s``,
``latency_us.{min,p50,p90,p99,max,mean}``, ``notifications_sent``,
``notifications_suppressed``.
"""

from __future__ import annotations

from simxen.scenario.schema import Field, Table

DOMAIN_KEYS = ("frontend", "backend")

SCHEMA = Table("workload", "two domains exchange requests over a ring.h shared ring", [
    Field("type", str, "workload type", choices=["ring-pingpong"]),
    Field("name", str, "name of the results in [[expect]] metrics", default="pingpong"),
    Field("frontend", str, "the [[domain]] that sends requests"),
    Field("backend", str, "the [[domain]] that answers them"),
    Field("requests", int, "number of request/response exchanges", default=1000, minimum=1),
    Field("request_size", int, "bytes per request and per response (the ring entry size, so it also sets the ring size; at most 4032)", default=64, minimum=8,
          check=lambda v: None if v <= 4032 else f"expected at most 4032 bytes (one entry must fit the 4 KiB page after the 64-byte ring header), found {v}"),
    Field("window", int, "requests the frontend keeps in flight (1 = strict ping-pong; "
          "capped at the ring size)", default=1, minimum=1),
    Field("push_each", bool, "publish each request as soon as it is written (true) or a whole "
          "window with one push (false)", default=True),
])


def metrics(params):
    """What a run publishes (see :mod:`simxen.scenario.metrics`)."""
    from simxen.scenario.metrics import Metrics
    m = Metrics()
    m.add("requests_completed", "count", "requests answered")
    m.add("mismatches", "count", "responses whose bytes were not the request's echo")
    m.add("ring_size", "entries", "ring.h ring size for this request size")
    m.add("sim_seconds", "s", "first request sent to last response seen")
    m.add("handshake_seconds", "s", "xenbus handshake, simulated")
    m.add("throughput_per_s", "1/s", "requests completed per simulated second")
    m.add("notifications_sent", "count", "event-channel notifications, both sides")
    m.add("notifications_suppressed", "count", "pushes whose notification ring.h suppressed, "
          "both sides")
    for side in ("frontend", "backend"):
        m.add(f"{side}.notifications_sent", "count", f"notifications the {side} sent")
        m.add(f"{side}.notifications_suppressed", "count", f"notifications the {side} suppressed")
    m.stats("latency_us", "us", "round-trip latency")
    from simxen.scenario.estimates import DOC
    m.add("unverified_share", "fraction", f"latency_us: {DOC}")
    return m


def run(sim, params):
    """SimPy process: the ping-pong itself, then a results dict."""
    from simxen.domains.pingpong import run_pingpong
    stats = yield from run_pingpong(sim.hv, sim.domains[params["frontend"]],
                                    sim.domains[params["backend"]],
                                    requests=params["requests"],
                                    request_size=params["request_size"],
                                    window=params["window"],
                                    push_each=params["push_each"])
    from simxen.analysis.hops import percentiles
    span = stats.end - stats.start
    result = {
        "requests_completed": stats.completed,
        "mismatches": stats.mismatches,
        "ring_size": stats.ring_size,
        "sim_seconds": span,
        "handshake_seconds": stats.start - stats.connect_start,
        "throughput_per_s": stats.completed / span if span > 0 else 0.0,
        "notifications_sent": stats.notifications_sent,
        "notifications_suppressed": stats.notifications_suppressed,
        "frontend": {"notifications_sent": stats.front_notifications_sent,
                     "notifications_suppressed": stats.front_notifications_suppressed},
        "backend": {"notifications_sent": stats.back_notifications_sent,
                    "notifications_suppressed": stats.back_notifications_suppressed},
        "latency_us": percentiles(t * 1e6 for t in stats.latencies),
        "unverified_share": _unverified(sim.hv.profile, params),
        "stats": stats,
    }
    return result


#: the ops one round trip is made of: each side's notify hypercall, the event reaching
#: the peer and the peer's upcall, and the request and response copied through the page
ROUND_TRIP = {"hypercall": 2, "evtchn.notify": 2, "evtchn.upcall": 2}


def _unverified(profile, params):
    """The round trip's share from U figures (simxen.analysis.certainty.ops_share): no TPM
    command to read hops from, so the ops it is made of, by their means."""
    from simxen.analysis.certainty import ops_share
    return ops_share(profile, {**ROUND_TRIP, "memcpy.per_byte": 2 * params["request_size"]})


def report(rep, result, params):
    n = result["requests_completed"]
    rep.say(f"{params['frontend']} and {params['backend']} connected through XenStore, shared "
            f"one page over a grant and one event channel, and exchanged {n:,} requests of "
            f"{params['request_size']} bytes ({params['window']} in flight at a time).")
    sent, supp = result["notifications_sent"], result["notifications_suppressed"]
    rep.say(f"The xenbus handshake took {result['handshake_seconds'] * 1e6:,.0f} µs of simulated "
            f"time. Of {sent + supp:,} times a side published new ring entries, {sent:,} needed "
            f"an event-channel "
            f"notification and {supp:,} were suppressed because the other side was still "
            f"working through the ring (ring.h's req_event/rsp_event).")
    s = rep.section(f"Ring ping-pong ({params['name']})")
    s.row("requests completed", n)
    s.row("responses with wrong bytes", result["mismatches"])
    s.row("ring size", result["ring_size"], "entries")
    s.row("xenbus handshake", result["handshake_seconds"] * 1e6, "µs")
    s.row("exchange duration", result["sim_seconds"] * 1e3, "ms")
    s.row("throughput", result["throughput_per_s"], "requests/s")
    f, b = result["frontend"], result["backend"]
    s.row("notifications sent", f"{sent:,} (frontend {f['notifications_sent']:,}, "
          f"backend {b['notifications_sent']:,})")
    s.row("notifications suppressed", f"{supp:,} (frontend {f['notifications_suppressed']:,}, "
          f"backend {b['notifications_suppressed']:,})")
    from simxen.scenario import estimates
    s.row("latency from unverified figures", estimates.cell(result["unverified_share"]))
    lat = rep.section("Round-trip latency (simulated)", headers=["", "µs"])
    for k in ("min", "p50", "p90", "p99", "max", "mean"):
        lat.table.append([k, result["latency_us"][k]])
    estimates.explain(rep, [result["unverified_share"]])

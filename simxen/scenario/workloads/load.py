"""``type = "load"``: guests put a steady load on the vTPM stack; latency, throughput, queues.

The host is the one ``vtpm-stack`` builds (host boot, then ``xl create`` of
the manager, one vTPM stub domain per guest and the guests), with
``guest_count`` guests (``guest1`` .. ``guestN``) or the names in
``guests``. Once every guest is up, each one runs a load generator
(:mod:`simxen.domains.load`): open loop (``arrivals = "poisson"`` or
``"deterministic"`` at ``rate`` commands per second per guest) or closed
loop (``arrivals = "closed"``: ``clients`` processes per guest, each
thinking ``think_time`` seconds between a response and its next command),
drawing each command from ``mix`` by weight. Commands queue in the guest
as Linux's do (one at a time per TPM chip) and cross the real tpmfront ->
vTPM -> manager -> physical-TPM path.

The first ``warmup`` seconds of load are not counted; statistics cover the
commands that *arrive* in the next ``duration`` seconds (each is followed
to its response, so none is cut off).

Results (as ``<name>.<key>``): ``guest_count``, ``commands``,
``commands_failed``, ``offered_per_s`` (arrivals in the window per second),
``throughput_per_s`` (commands *completed* in the window per second: the
departures, which past saturation stay at what the stack serves while the
offered load grows), ``latency_ms.{count,mean,p50,p95,
p99,max}`` (arrival to response), ``wait_ms.{...}`` (queued in the guest),
``guests.<guest>.{commands, offered_per_s, throughput_per_s, latency_ms.*,
wait_ms.*, notifications_sent}``, ``manager.{requests, utilisation, queue_length_mean,
wait_ms.*, service_ms.*}`` (``wait_ms`` = time a request waited ready in
the manager's tpmback before the manager took it), ``cpu.<domain>``
(fraction of the measured time each stub domain spent working), and
``notifications_sent`` (event-channel sends in the measured window; tpmif's
single page has no notification suppression, every SUBMIT and FINISH
notifies).

With ``theory = true`` and a Poisson load of ``host_random`` alone (every
command one manager request, served by one physical-TPM command), the
report compares each guest's mean wait -- in its own chip queue plus in the
manager's -- with the closed form for the manager's ``policy``
(:mod:`simxen.analysis.queueing`): Cobham's non-preemptive priority formula
for ``"priority"``, Pollaczek-Khinchine (M/M/1, M/D/1, M/G/1) for
``"fifo"`` and ``"round-robin"``. Results ``theory.<guest or
"all">.{simulated_ms, ci_ms, theory_ms, agrees}``.
"""

from __future__ import annotations

import math

from simxen.errors import finite, found
from simxen.scenario.schema import Field, Table
from simxen.scenario.workloads.vtpm_stack import (SAVE_AND_SCHEDULE, check_guest_count,
                                                  check_guest_names, counted_guests,
                                                  named_and_counted)

DOMAIN_KEYS = ()
ARRIVALS = ("poisson", "deterministic", "closed")


def _check_mix(value):
    from simxen.domains.load import COMMANDS
    bad = sorted(k for k in value if k not in COMMANDS)
    if bad:
        return f"unknown command(s) {bad}; expected some of {list(COMMANDS)}"
    for k, w in value.items():
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not finite(w) or w < 0:
            return f"{k}: expected a finite weight >= 0, found {found(w)}"
    if not any(w > 0 for w in value.values()):
        return "expected at least one command with a weight above 0"
    if not finite(sum(float(w) for w in value.values())):
        return ("expected weights whose sum is a finite number (each command's share is its "
                "weight over the sum), found a sum beyond a float's range")
    return None


def _check_guests(names):
    """``guests``'s check: at least one guest (no guest offers no load, and its run
    had nothing to measure), and no more than a host holds."""
    if not names:
        return "expected at least one guest name (a load of no guests offers no command)"
    return check_guest_names(names)


def _check_rates(value):
    if any(isinstance(r, bool) or not isinstance(r, (int, float)) or r <= 0 for r in value):
        return f"expected rates above 0 (commands per second), found {value!r}"
    return None


SCHEMA = Table("workload", "guests load the vTPM stack (open or closed loop over a command mix)", [
    Field("type", str, "workload type", choices=["load"]),
    Field("name", str, "name of the results in [[expect]] metrics", default="load"),
    Field("guests", list, "guest names (each gets vtpm-<guest> and one manager for all)",
          default=["guest1"], items=str, check=_check_guests),
    Field("guest_count", int, "instead of `guests`: this many guests, named guest1..guestN",
          default=None, minimum=1, check=check_guest_count),
    Field("arrivals", str, "'poisson' or 'deterministic' (open loop at `rate`) or 'closed' "
          "(`clients` per guest with `think_time`)", default="poisson", choices=list(ARRIVALS)),
    Field("rate", float, "open loop: commands per second per guest", default=20.0, minimum=0,
          check=lambda v: None if v > 0 else "expected a rate above 0"),
    Field("rates", list, "open loop: one rate per guest, in guest order (overrides `rate`)",
          default=[], items=float, check=_check_rates),
    Field("clients", int, "closed loop: client processes per guest", default=1, minimum=1),
    Field("think_time", float, "closed loop: mean seconds a client thinks between commands",
          default=0.0, minimum=0),
    Field("think", str, "closed loop: think-time distribution", default="exponential",
          choices=["exponential", "fixed"]),
    Field("mix", dict, "command -> weight (commands of simxen.domains.load.COMMANDS)",
          default={"pcr_extend": 5, "get_random": 2, "quote": 1, "nv_write": 1}, check=_check_mix),
    Field("duration", float, "simulated seconds of load that are measured", default=2.0,
          minimum=0, check=lambda v: None if v > 0 else "expected a duration above 0"),
    Field("warmup", float, "simulated seconds of load before measuring starts", default=0.5,
          minimum=0),
    Field("pcr", int, "PCR the extends, reads and quotes use (0..23)", default=16, minimum=0,
          check=lambda v: None if v <= 23 else f"a TPM has PCRs 0..23, found {v}"),
    *SAVE_AND_SCHEDULE,
    Field("transport", str, "guest -> vTPM transport: 'tpmif' (Xen's single request page) or "
          "'multi-slot' (simxen's what-if: a ring.h ring, several commands in flight)",
          default="tpmif", choices=["tpmif", "multi-slot"]),
    Field("ring_entry_size", int, "multi-slot: bytes per ring entry (256 -> 8 slots of "
          "248-byte packets)", default=256, minimum=18,
          check=lambda v: None if v <= 4032 else f"expected at most 4032 bytes, found {v}"),
    Field("shared_vtpm", bool, "all guests share ONE vTPM stub domain (vtpm-shared) instead of "
          "one each", default=False),
    Field("theory", bool, "compare the mean waits with queueing theory (see the workload doc)",
          default=False),
    Field("batches", int, "batch-means batches for the confidence intervals", default=10,
          minimum=2),
])


#: ``guests`` and ``guest_count`` together are refused, as by vtpm-stack
check = named_and_counted
#: ``guest1..guestN`` for ``guest_count = N``, else ``guests``
guest_names = counted_guests


_LOAD_STATS = ("count", "mean", "p50", "p95", "p99", "max")


def metrics(params):
    """What a run publishes (see :mod:`simxen.scenario.metrics`); statistics of an empty
    sample (a guest that sent nothing in the window) are published but left out of a run."""
    from simxen.scenario.metrics import Metrics
    m = Metrics()
    m.add("guest_count", "count", "guests loading the stack")
    m.add("commands", "count", "commands completed that arrived in the measured window")
    m.add("commands_failed", "count", "measured commands that failed")
    m.add("offered_per_s", "1/s", "commands arriving in the measured window per simulated "
          "second, all guests")
    m.add("throughput_per_s", "1/s", "commands completed in the measured window per simulated "
          "second, all guests (departures: at most what the stack serves)")
    m.stats("latency_ms", "ms", "arrival to response", keys=_LOAD_STATS)
    m.stats("wait_ms", "ms", "queued in the guest (chip lock)", keys=_LOAD_STATS)
    m.add("notifications_sent", "count", "event-channel sends in the measured window")
    from simxen.scenario.estimates import DOC
    m.add("unverified_share", "fraction", f"latency_ms: {DOC}")
    names = guest_names(params)
    for g in names:
        m.add(f"guests.{g}.commands", "count", f"{g}: commands completed")
        m.add(f"guests.{g}.offered_per_s", "1/s", f"{g}: commands arriving per second")
        m.add(f"guests.{g}.throughput_per_s", "1/s", f"{g}: commands completed in the window "
              "per second")
        m.stats(f"guests.{g}.latency_ms", "ms", f"{g}: arrival to response", keys=_LOAD_STATS)
        m.stats(f"guests.{g}.wait_ms", "ms", f"{g}: queued in the guest", keys=_LOAD_STATS)
        m.add(f"guests.{g}.notifications_sent", "count", f"{g}: event-channel sends")
        m.add(f"guests.{g}.unverified_share", "fraction", f"{g}: latency_ms: {DOC}")
        if params["transport"] == "multi-slot":
            m.add(f"guests.{g}.notifications_suppressed", "count", f"{g}: ring pushes that "
                  "needed no notification (the vTPM was awake)")
    m.add("manager.requests", "count", "manager requests in the measured window")
    m.add("manager.utilisation", "fraction", "fraction of the measured window the manager "
          "spent serving requests")
    m.add("manager.queue_length_mean", "requests", "requests ready and waiting at the manager, "
          "time average (Little's law)")
    if reaches_manager(params):
        m.stats("manager.wait_ms", "ms", "a request's wait in the manager's tpmback",
                keys=_LOAD_STATS)
        m.stats("manager.service_ms", "ms", "the manager's service of a request",
                keys=_LOAD_STATS)
        m.add("manager.unverified_share", "fraction", f"manager.service_ms and wait_ms: {DOC}")
    m.add("cpu.vtpmmgr", "fraction", "vtpmmgr: fraction of the measured time spent on the "
          "measured commands")
    for v in vtpm_names(params):
        m.add(f"cpu.{v}", "fraction", f"{v}: fraction of the measured time spent on "
              "the measured commands")
    for dom in ["vtpmmgr"] + vtpm_names(params) + names:
        m.add(f"domains.{dom}.notifications_sent", "count", f"{dom}: event-channel sends in the "
              "measured window")
    if params["theory"]:
        m.text("theory_note", "which closed form the waits were compared with, or why none applies")
        rows = ["all"] + (names if params["policy"] == "priority" and len(names) > 1 else [])
        for who in rows:
            m.add(f"theory.{who}.simulated_ms", "ms", f"{who}: simulated mean wait (guest + manager)")
            m.add(f"theory.{who}.ci_ms", "ms", f"{who}: 95 % batch-means half-width")
            m.add(f"theory.{who}.theory_ms", "ms", f"{who}: the closed form's mean wait")
            m.flag(f"theory.{who}.agrees", f"{who}: simulated agrees with theory")
            m.add(f"theory.{who}.count", "count", f"{who}: commands in the comparison")
    return m


def reaches_manager(params) -> bool:
    """Whether some command of the mix makes a request to the manager (so its wait and
    service statistics have a sample): a passthrough or deep quote, or a vTPM state save."""
    mix = {k for k, w in params["mix"].items() if w > 0}
    if mix & {"host_random", "deep_quote"}:
        return True
    if not params["strong_persistence"]:
        return False
    return params["save_on"] == "success" or "nv_write" in mix


#: the vTPM stub domain every guest uses with ``shared_vtpm = true``
SHARED_VTPM = "vtpm-shared"


def vtpm_names(params):
    """The vTPM stub domains the host runs."""
    return [SHARED_VTPM] if params["shared_vtpm"] else [f"vtpm-{g}" for g in guest_names(params)]


def domain_names(params):
    """Every domain dom0 creates for this workload (for per-domain CPU metrics)."""
    return ["vtpmmgr"] + vtpm_names(params) + guest_names(params)


def _host_spec(params):
    from simxen.domains.host_boot import DEFAULT_BOOT
    from simxen.domains.stack import HostSpec, guest_config, vtpm_config, vtpmmgr_config
    guests = guest_names(params)
    if params["shared_vtpm"]:
        spec = HostSpec([vtpmmgr_config(),
                         vtpm_config(SHARED_VTPM, "ac0a5b9e-cbe2-4c07-b43b-5a4a4ed0c0de")]
                        + [guest_config(g, SHARED_VTPM) for g in guests], boot=DEFAULT_BOOT)
    else:
        spec = HostSpec.standard(guests, boot=DEFAULT_BOOT)
    vtpm_opts = {"strong_persistence": params["strong_persistence"], "save_on": params["save_on"],
                 "policy": params["policy"], "multi_slot": params["transport"] == "multi-slot"}
    guest_opts = {"transport": params["transport"], "ring_entry_size": params["ring_entry_size"]}
    spec.options = {"vtpmmgr": {"policy": params["policy"]},
                    **{v: dict(vtpm_opts) for v in vtpm_names(params)},
                    **{g: dict(guest_opts) for g in guests}}
    return spec


#: most arrivals an open loop may expect in one run (rate x guests x (warmup + duration)).
#: Each arrival is a process and a :class:`~simxen.domains.load.Request` held until the run
#: ends -- about 1 KB and 17 us of CPU for one that never reaches the chip (measured:
#: 200,000 arrivals queued behind four guests' chips took 170 MB and 3.5 s), and some 370 us
#: for one that is served (benchmarks/sweep_point.py) -- so a million is a gigabyte, or
#: hours once served. A rate far past what a guest serves (a linux-6 guest, polling every
#: ~5 ms, about 200 commands/s) only queues them.
MAX_ARRIVALS = 1_000_000


def _check(params, n_guests, path=None):
    from simxen.errors import InputError
    if params["rates"] and len(params["rates"]) != n_guests:
        raise InputError(f"expected one rate per guest ({n_guests}), found {len(params['rates'])}",
                         path=path, key=f"workload.{params['name']}.rates")
    guests = f"{n_guests:,} guest{'s' if n_guests != 1 else ''}"
    if params["arrivals"] == "closed":
        # each client waits for its answer, so the chips bound the arrivals; the clients
        # themselves are processes held to the end, each with its arrivals' records
        clients = params["clients"] * n_guests
        if clients > MAX_ARRIVALS:
            raise InputError(
                f"{params['clients']:,} clients per guest x {guests} is {clients:,} client "
                f"processes; at most "
                f"{MAX_ARRIVALS:,} in one run (each waits its turn at its guest's chip, so all "
                "but one per guest only queue) -- lower clients or the number of guests",
                path=path, key=f"workload.{params['name']}.clients")
        return
    seconds = params["warmup"] + params["duration"]
    if params["rates"]:
        key, offered = "rates", f"rates adding up to {sum(params['rates']):g} commands/s"
        expected = sum(params["rates"]) * seconds
    else:
        key = "rate"
        offered = f"{params['rate']:g} commands/s per guest x {guests}"
        expected = params["rate"] * n_guests * seconds
    if expected > MAX_ARRIVALS:
        raise InputError(
            f"{offered} for {seconds:g} s (warmup + duration) is {expected:,.0f} arrivals; "
            f"at most {MAX_ARRIVALS:,} in one run (each is held until the run ends, and a "
            "guest serves a few hundred commands/s at most: the rest only queue) -- lower the "
            "rate, the duration or the number of guests",
            path=path, key=f"workload.{params['name']}.{key}")


def prepare(sim, params):
    """Every check before the run (``simxen validate`` runs it too): one rate
    per guest, and the host's configs and domain names as dom0's toolstack
    will take them. Returns the host spec."""
    from simxen.domains.stack import check_spec
    names = guest_names(params)
    _check(params, len(names), sim.scenario.path)
    spec = _host_spec(params)
    where = f"workload.{params['name']}"
    keys = ([f"{where} (its vTPM manager)"] + [f"{where} ({n}'s vTPM)" for n in names]
            + [f"{where} ({n})" for n in names])
    spec.sources = [f"{sim.scenario.path}: {k}" for k in keys]
    for cfg, key in zip(check_spec(spec), keys):
        sim.claim_domain(cfg.name, key)
    return spec


def serve_host_spec(sim, params):
    """The host ``simxen serve`` builds for this workload: its manager, its vTPMs and its
    guests, without the load -- the tools are the load. Only Xen's single request page is
    served: ``transport = "multi-slot"`` (a ring of several commands) has no tpmfront that
    the serve path drives."""
    from simxen.errors import InputError
    if params["transport"] == "multi-slot":
        raise InputError("simxen serve drives a guest's xen-tpmfront over Xen's single request "
                         "page; transport = 'multi-slot' (a ring) is not served: set it to "
                         "'tpmif' to serve this host", path=sim.scenario.path,
                         key=f"workload.{params['name']}.transport")
    return sim.prepared.get(params["name"]) or _host_spec(params)


def _stats_ms(values):
    """count, mean, p50, p95, p99, max of seconds, in milliseconds."""
    import numpy as np
    a = np.asarray(values, dtype=float)
    if a.size == 0:
        return {"count": 0}
    p = np.percentile(a, [50, 95, 99, 100]) * 1e3
    return {"count": int(a.size), "mean": float(a.mean()) * 1e3, "p50": float(p[0]),
            "p95": float(p[1]), "p99": float(p[2]), "max": float(p[3])}


def run(sim, params):
    """SimPy process: build the host, run the load, gather the results."""
    from simxen.domains.load import GuestLoad
    from simxen.domains.stack import build_host
    hv = sim.hv
    env = hv.env
    names = guest_names(params)
    spec = sim.prepared.get(params["name"]) or prepare(sim, params)
    host = build_host(hv, spec)
    sim.progress[params["name"]] = host.boot_progress
    yield host.ready
    loads = [GuestLoad(host.guest(g), params["mix"], hv.streams.rng(f"load/{g}"), index=i,
                       pcr=params["pcr"], in_flight=getattr(host.guest(g).front, "slots", 1))
             for i, g in enumerate(names)]
    yield env.all_of([env.process(ld.setup()) for ld in loads])
    sim.progress[params["name"]] = lambda: _progress(loads, env.now)
    t0 = env.now
    start = t0 + params["warmup"]
    end = start + params["duration"]
    procs = []
    for i, ld in enumerate(loads):
        if params["arrivals"] == "closed":
            procs += [env.process(ld.closed_loop(end, think_time=params["think_time"],
                                                 exponential_think=params["think"] == "exponential"))
                      for _ in range(params["clients"])]
        else:
            rate = params["rates"][i] if params["rates"] else params["rate"]
            procs.append(env.process(ld.open_loop(rate, end,
                                                  poisson=params["arrivals"] == "poisson")))
    window = env.process(_count_notifications(hv, loads, start, end))
    yield env.all_of(procs + [window])
    sends, suppressed = window.value
    from simxen.scenario.runner import END_OF_RUN_GC, fewer_collections
    with fewer_collections(END_OF_RUN_GC):     # all it builds stays alive till it ends
        return _results(hv, host, loads, params, start, end, sends, suppressed)


def _progress(loads, now):
    """How far the load got by ``now``: what the report says of a run stopped before it ended."""
    arrived = sum(len(ld.requests) for ld in loads)
    done = sum(1 for ld in loads for r in ld.requests if r.done is not None)
    queued = sum(1 for ld in loads for r in ld.requests if r.started is None)
    oldest = min((r.arrived for ld in loads for r in ld.requests if r.started is None),
                 default=None)
    said = f"Of {arrived:,} commands that had arrived, {done:,} had completed"
    if queued:
        said += (f" and {queued:,} were still queued in the guests (the oldest for "
                 f"{now - oldest:.3g} s; a queue that keeps growing means the guests are "
                 "offered more than they serve)")
    return said + "."


def _count_notifications(hv, loads, start, end):
    """Generator: ``({domid: EVTCHNOP_send calls}, {guest: suppressed pushes})`` made
    between ``start`` and ``end`` (a tpmif page notifies every time: nothing to suppress)."""
    env = hv.env
    fronts = {ld.name: ld.guest.front for ld in loads}
    yield env.timeout(start - env.now)
    before = {d: dom.evtchn_sent for d, dom in hv.domains.items()}
    quiet = {g: getattr(f, "notifications_suppressed", 0) for g, f in fronts.items()}
    yield env.timeout(end - start)
    return ({d: dom.evtchn_sent - before.get(d, 0) for d, dom in hv.domains.items()},
            {g: getattr(f, "notifications_suppressed", 0) - quiet[g] for g, f in fronts.items()})


#: the trace records the manager's figures, the stub domains' work and the server waits are
#: read from (their time stamps and durations are nowhere else)
TRACE_READS = ("tpm.back.take", "vtpmmgr.request", "tpm.exec")
NOT_KEPT = ("the manager's figures, the stub domains' work and the waits at the server are "
            "read from the trace's TPM command records, which this run's trace level did not "
            "keep (run with --trace-level commands or full)")


def _results(hv, host, loads, params, start, end, sends, suppressed):
    """The result dict: per guest, the manager, CPU, notifications (see the module doc)."""
    span = end - start
    # the window [start, end) with 1 ns of slack: arrivals on a float-summed grid that land
    # on its edges count the same whatever the boot took
    lo, hi = start - 1e-9, end - 1e-9
    measured = {ld.name: [r for r in ld.requests if lo <= r.arrived < hi] for ld in loads}
    every = [r for rs in measured.values() for r in rs]
    flows = {r.flow: r for r in every}
    mgr_dom = host.vtpmmgr.domid
    domains = {k.domid: k.name for k in host.kernels()}
    mgr_wait, mgr_service, work, vtpm_wait = {}, [], {}, {}
    shared = {k.domid for k in host.kernels("vtpm")} if params["shared_vtpm"] else set()
    last = end                       # time the last measured command finished
    for r in every:
        if r.done is not None and r.done > last:
            last = r.done
    # only the kinds read here (tpm.back.take, vtpmmgr.request, tpm.exec) and by the
    # certainty split (estimates.attribution, below): 10 of the 13 records a command keeps
    from simxen.analysis.certainty import READS
    records = list(hv.trace.iter_records(kinds=READS | {"vtpmmgr.request"}))
    # a level that does not keep them (--trace-level off) leaves the manager's figures, the
    # stub domains' work and the server waits of the theory check out, not at zero
    kept = all(hv.trace.keeps(kind) for kind in TRACE_READS)
    busy = 0.0          # the manager's service inside the window, whichever command it served
    for rec in records:
        kind, f = rec.kind, rec.fields
        if kind == "vtpmmgr.request" and rec.dom == mgr_dom:
            busy += max(0.0, min(rec.t, end) - max(rec.t - f["duration"], start))
        if kind == "tpm.back.take" and rec.dom == mgr_dom and f.get("flow") in flows:
            mgr_wait[f["flow"]] = f["waited"]
        elif kind == "tpm.back.take" and rec.dom in shared and f.get("flow") in flows:
            vtpm_wait[f["flow"]] = f["waited"]
        elif kind == "vtpmmgr.request" and f.get("flow") in flows:
            mgr_service.append((rec.t - f["duration"], f["duration"]))
            work[rec.dom] = work.get(rec.dom, 0.0) + f["duration"]
        elif kind == "tpm.exec" and rec.dom is not None and f.get("flow") in flows:
            work[rec.dom] = work.get(rec.dom, 0.0) + f["duration"]
    ok = [r for r in every if r.ok]
    # the throughput is the departures in the window, whenever the commands arrived: the
    # measured commands themselves complete at the rate they arrived however long that
    # takes, and past saturation it takes longer than the window
    departed = {ld.name: sum(1 for r in ld.requests if r.ok and lo <= r.done < hi)
                for ld in loads}
    result = {
        "guest_count": len(loads),
        "commands": len(ok),
        "commands_failed": len(every) - len(ok),
        "offered_per_s": len(every) / span,
        "throughput_per_s": sum(departed.values()) / span,
        "latency_ms": _stats_ms([r.latency for r in ok]),
        "wait_ms": _stats_ms([r.wait for r in every]),
        "guests": {},
        "notifications_sent": sum(sends.values()),
    }
    for ld in loads:
        rs = measured[ld.name]
        good = [r for r in rs if r.ok]
        result["guests"][ld.name] = {
            "commands": len(good),
            "offered_per_s": len(rs) / span,
            "throughput_per_s": departed[ld.name] / span,
            "latency_ms": _stats_ms([r.latency for r in good]),
            "wait_ms": _stats_ms([r.wait for r in rs]),
            "notifications_sent": sends.get(ld.guest.domid, 0),
        }
        if params["transport"] == "multi-slot":
            result["guests"][ld.name]["notifications_suppressed"] = suppressed[ld.name]
    result["domains"] = {name: {"notifications_sent": sends.get(domid, 0)}
                         for domid, name in sorted(domains.items())}
    if not kept:
        result["manager"], result["cpu"] = {}, {}
        if params["theory"]:
            result["theory"], result["theory_note"] = {}, "not checked: " + NOT_KEPT
        return result
    # the manager: how busy, how long requests queued there, how many waited on average
    waits = [mgr_wait[r.flow] for r in every if r.flow in mgr_wait]
    horizon = max(last - start, span)
    result["manager"] = {
        "requests": len(mgr_service),
        # the share of the window it was serving: 1 when saturated, however the queue grows
        "utilisation": busy / span,
        # Little's law on the manager's ready queue: mean number = arrival rate x mean wait
        "queue_length_mean": sum(waits) / horizon,
    }
    if reaches_manager(params):
        result["manager"]["wait_ms"] = _stats_ms(waits)
        result["manager"]["service_ms"] = _stats_ms([d for _, d in mgr_service])
    # fraction of the measured time each stub domain spent on the measured commands
    result["cpu"] = {k.name: work.get(k.domid, 0.0) / horizon
                     for k in host.kernels() if k.role in ("vtpmmgr", "vtpm")}
    _unverified(result, hv, host, records, measured, loads)
    if params["theory"]:
        server_wait = vtpm_wait if theory_server(params) == "vtpm" else mgr_wait
        result["theory"], result["theory_note"] = _theory(hv, loads, measured, server_wait, params)
    return result


def _unverified(result, hv, host, records, measured, loads):
    """Each latency's share from U figures (simxen.scenario.estimates): that of the measured
    commands' own hops, which their time queued in the guest is made of too."""
    from simxen.scenario import estimates
    attr = estimates.attribution(hv, host, records=records)
    if attr is None:
        return
    keys = {ld.name: [(r.flow, ld.guest.domid) for r in measured[ld.name] if r.ok] for ld in loads}
    every = attr.share([k for ks in keys.values() for k in ks])
    if every is not None:
        result["unverified_share"] = every
    for name, ks in keys.items():
        share = attr.share(ks)
        if share is not None:
            result["guests"][name]["unverified_share"] = share
    if "service_ms" in result["manager"]:
        flows = [r.flow for rs in measured.values() for r in rs]
        share = attr.service_share(host.vtpmmgr.domid, flows)
        if share is None or not result["manager"]["service_ms"].get("mean"):
            share = 0.0                 # no service time (Xen's store: SaveHashKey is free)
        result["manager"]["unverified_share"] = share


def theory_server(params):
    """The single server the theory check models: ``"manager"`` for a mix of host_random
    alone, ``"vtpm"`` for get_random alone on a shared vTPM that saves nothing, else None."""
    mix = {k for k, w in params["mix"].items() if w > 0}
    if mix == {"host_random"}:
        return "manager"
    if mix == {"get_random"} and params["shared_vtpm"] and not reaches_manager(params):
        return "vtpm"
    return None


def _theory_obstacles(hv, params):
    """Why the closed forms do not describe this run (empty: they do)."""
    why = []
    server = theory_server(params)
    if params["arrivals"] != "poisson":
        why.append(f"arrivals are {params['arrivals']!r}, not Poisson")
    if server is None:
        why.append("no single server serves every command: the check needs a mix of host_random "
                   "alone (the manager serves it, through the physical TPM) or get_random alone "
                   "on a shared vTPM that saves nothing (the vTPM serves it)")
    if server == "manager" and params["shared_vtpm"] and len(guest_names(params)) > 1:
        why.append("the guests share one vTPM, which forwards one request at a time, so the "
                   "manager never has two requests waiting: the queue is at the vTPM")
    switch = hv.profile.switch
    from simxen.drivers.kernel_eras import polls
    if params["transport"] == "tpmif" and polls(hv.profile):
        why.append("the guests' xen-tpmfront polls the shared page (after 4.7-5.0 ms sleeps in "
                   "the linux-6 era): a guest's next command reaches the server only after a "
                   "sleep, so the server idles while work waits, which no work-conserving "
                   "queue does")
    sched = hv.scheduler
    if sched is not None and sched.waits():
        why.append(f"the domains share {len(sched.pcpus)} physical CPU(s) (scheduler = "
                   f"'credit2') and {sched.waits():,} wake-ups waited for one: a command's "
                   "service includes waits for a CPU that depend on every other domain's "
                   "bursts, neither independent of the arrivals nor one server's service time")
    if server == "manager" and switch("tis.wait", "poll") == "poll":
        why.append("the manager's TIS driver polls the physical TPM on a 5 ms grid (tis.wait = "
                   "poll): service times are rounded up to the grid, not the profile's draws")
    return why


def _service_op(hv, server):
    """The profile op that times the server's TPM2_GetRandom."""
    if server == "vtpm":
        from simxen.domains.vtpm import vtpm_op
        from simxen.tpm.constants import TPM_CC
        return vtpm_op(hv.profile, TPM_CC.GetRandom)
    return "tpm.ptpm.GetRandom" if hv.profile.has("tpm.ptpm.GetRandom") else "tpm.ptpm.default"


def _theory(hv, loads, measured, server_wait, params):
    """Simulated mean waits (in the guest plus at the server) beside the closed forms."""
    from simxen.analysis import queueing as q
    why = _theory_obstacles(hv, params)
    if why:
        return {}, "queueing theory does not apply: " + "; ".join(why) + "."
    server = theory_server(params)
    where = "the manager" if server == "manager" else "the shared vTPM"
    op = hv.profile.op(_service_op(hv, server))
    es, es2 = q.service_moments(op.dist, op.params)
    rates = [params["rates"][i] if params["rates"] else params["rate"] for i in range(len(loads))]
    rho = q.utilisation(sum(rates), es)
    if rho >= 1:
        return {}, f"the offered load is {rho:.3f} of {where}'s capacity: no steady state."
    # Every order the server may use is work-conserving and blind to service
    # times, so the mean over all requests is Pollaczek-Khinchine's whatever the policy
    # (Kleinrock's conservation law); a single guest is a plain M/G/1 queue.
    expected = {"all": q.mg1_wait(sum(rates), es, es2)}
    model = {"exponential": "M/M/1", "fixed": "M/D/1"}.get(op.dist, "M/G/1") + \
        " (Pollaczek-Khinchine) for the mean over all requests"
    extra = ""
    if params["policy"] == "priority" and len(loads) > 1:
        # Xen's tpmback serves the lowest (domid, handle) first; the guests (and their
        # vTPM stub domains) were created in guest order, so guest order is priority order
        ws = q.priority_waits(rates, [es] * len(rates), [es2] * len(rates))
        expected.update({ld.name: w for ld, w in zip(loads, ws)})
        model += ", Cobham's non-preemptive priority formula per guest"
        if params["transport"] == "tpmif":
            extra = (". Cobham assumes each guest's whole queue waits at the server; here each "
                     f"guest reaches {where} through one tpmif page, so it never has two "
                     f"requests there: when {where} finishes a guest's request, that guest's "
                     "next one is still on its way back and a lower-priority guest is served "
                     "first. Expect high-priority guests to wait longer than Cobham's figure and "
                     "low-priority ones less; the mean over all still obeys the conservation law")
        else:
            extra = (f". With the multi-slot ring each guest's queue waits in its ring at {where},"
                     " as Cobham's model assumes")
    out = {}
    for name, w in expected.items():
        rs = [r for ld in loads for r in measured[ld.name]] if name == "all" else measured[name]
        rs = sorted(rs, key=lambda r: r.arrived)
        waits = [r.wait + server_wait.get(r.flow, 0.0) for r in rs if r.ok]
        mean, half = q.batch_means(waits, params["batches"])
        # no interval (too few waits for the batches): neither a width nor a verdict
        out[name] = {"simulated_ms": mean * 1e3,
                     "ci_ms": half * 1e3 if math.isfinite(half) else None,
                     "theory_ms": w * 1e3, "agrees": q.agrees(mean, half, w), "count": len(waits)}
    note = (f"{model} at {where}, utilisation {rho:.3f}: service = profile op {op.name} "
            f"({op.dist}, mean {es * 1e3:.4g} ms), Poisson arrivals of {sum(rates):.4g}/s in all"
            f"{extra}")
    return out, note


def report(rep, result, params):
    name = params["name"]
    loop = (f"a closed loop, {params['clients']} client(s) per guest thinking "
            f"{params['think_time']:g} s ({params['think']})" if params["arrivals"] == "closed"
            else f"an open loop, {params['arrivals']} arrivals at "
                 f"{'per-guest rates ' + str(params['rates']) if params['rates'] else str(params['rate']) + ' /s per guest'}")
    mix = ", ".join(f"{k} {v:g}" for k, v in params["mix"].items() if v > 0)
    rep.say(f"{result['guest_count']} guest(s), each with its own vTPM stub domain and one manager "
            f"({params['policy']}), ran {loop} over the mix {mix} for {params['duration']:g} s "
            f"after a {params['warmup']:g} s warm-up. Each guest queues its commands on its "
            f"chip lock (one command at a time, as Linux does).")
    measured = (f"Measured: {result['commands']} commands completed "
                f"({result['commands_failed']} failed); {result['offered_per_s']:.1f} per "
                f"second offered, {result['throughput_per_s']:.1f} per second completed in the "
                f"window, with {result['notifications_sent']} event-channel notifications "
                "sent by all domains")
    if "utilisation" not in result["manager"]:
        rep.say(measured + ". " + NOT_KEPT[0].upper() + NOT_KEPT[1:] + ".")
    else:
        rep.say(measured + f"; the manager was busy {100 * result['manager']['utilisation']:.1f} "
                f"% of the time with on average {result['manager']['queue_length_mean']:.2f} "
                "requests ready and waiting.")
    from simxen.scenario import estimates
    g = rep.section(f"Per guest ({name}), ms simulated",
                    headers=["guest", "commands", "per s", "wait mean", "lat mean", "p50", "p95",
                             "p99", "latency"])
    for guest, s in result["guests"].items():
        lat = s["latency_ms"]
        g.table.append([guest, s["commands"], s["throughput_per_s"], s["wait_ms"].get("mean", 0.0),
                        lat.get("mean", 0.0), lat.get("p50", 0.0), lat.get("p95", 0.0),
                        lat.get("p99", 0.0), estimates.cell(s.get("unverified_share"))])
    estimates.explain(rep, [s.get("unverified_share") for s in result["guests"].values()]
                      + [result["manager"].get("unverified_share")])
    m = rep.section("The manager")
    if "requests" in result["manager"]:
        m.row("requests in the measured window", result["manager"]["requests"])
        m.row("utilisation", result["manager"]["utilisation"])
        m.row("mean ready queue length", result["manager"]["queue_length_mean"])
    if "wait_ms" in result["manager"]:
        tag = estimates.tag(result["manager"].get("unverified_share"))
        m.row("mean wait in its tpmback", result["manager"]["wait_ms"].get("mean", 0.0), "ms" + tag)
        m.row("mean service", result["manager"]["service_ms"].get("mean", 0.0), "ms" + tag)
    m.row("event-channel notifications it sent", result["domains"]["vtpmmgr"]["notifications_sent"])
    if result["cpu"]:
        c = rep.section("Work per stub domain (fraction of the measured time)")
        for dom, frac in result["cpu"].items():
            c.row(dom, frac)
    if params["theory"]:
        if result["theory"]:
            rep.say("Theory check: " + result["theory_note"] + ". A simulated mean agrees when it "
                    "lies within its own 95 % batch-means confidence interval of the closed form, "
                    "or within 3 %.")
            t = rep.section("Mean wait: simulated vs theory, ms",
                            headers=["guest", "n", "simulated", "+/- 95 %", "theory", "agrees"])
            few = []
            for guest, s in result["theory"].items():
                if s["agrees"] is None:
                    few.append(f"{guest} ({s['count']:,})")
                t.table.append([guest, s["count"], s["simulated_ms"],
                                "none" if s["ci_ms"] is None else s["ci_ms"], s["theory_ms"],
                                "cannot tell" if s["agrees"] is None
                                else "yes" if s["agrees"] else "NO"])
            if few:
                rep.say(f"No confidence interval for {', '.join(few)}: batch means need at least "
                        f"2 waits in each of the {params['batches']:,} batches (`batches`). Lower "
                        "`batches` or lengthen `duration`; until then agreement cannot be told.")
        else:
            rep.say("Theory check: " + result["theory_note"])

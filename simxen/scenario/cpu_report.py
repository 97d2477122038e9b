"""What a scenario with a CPU scheduler reports about the CPUs.

Only a scenario with ``[scenario] scheduler = "credit2"`` has this part (the
default, a physical CPU per domain, has nothing to report and reports
nothing). The run's results get a ``cpu`` entry -- metrics named ``cpu.*``,
usable in ``[[expect]]``, ``simxen sweep`` and ``--json`` -- and the report
a section with one row per domain: its weight and cap, the CPU time it used,
its share of one pCPU, how often it was dispatched and preempted, and how
long its wake-ups waited in the runqueue for a pCPU.
"""

from __future__ import annotations

from simxen.scenario.metrics import Metrics

#: the results key and metric prefix
NAME = "cpu"

#: the order statistics of the runqueue waits
_WAIT_STATS = ("count", "mean", "p50", "p95", "p99", "max")


def known_domains(scenario) -> list:
    """The domains whose CPU figures are metrics: those a scenario names before it runs --
    Domain-0, its ``[[domain]]`` tables, and the domains of workloads that say which they
    create (``domain_names(params)``: vtpm-stack, load). Names with a dot are left out
    (a metric's path is dotted)."""
    from simxen.errors import InputError
    from simxen.scenario import workloads
    names = ["Domain-0"] + [d["name"] for d in scenario.data["domain"]]
    for params in scenario.data["workload"]:
        module = workloads.module(params["type"])
        if hasattr(module, "domain_names"):
            try:
                names += module.domain_names(params)
            except InputError:          # a config `validate` refuses: no metrics from it
                pass
    out = []
    for n in names:
        if "." not in n and n not in out:
            out.append(n)
    return out


def metrics(domains=()) -> Metrics:
    """The ``cpu.*`` metrics (named without the prefix), with those of each of ``domains``."""
    m = Metrics()
    m.add("pcpus", "count", "physical CPUs the domains share")
    m.add("utilisation", "fraction", "busy time of all pCPUs over pCPUs x simulated time")
    m.stats("runq_wait_ms", "ms", "wake-ups that found no free pCPU: wait until dispatched",
            keys=_WAIT_STATS)
    m.add("dispatches", "count", "times a pCPU started running a vCPU")
    m.add("preemptions", "count", "times a runnable vCPU gave its pCPU to one with more credit")
    m.add("placed", "count", "bursts started by a wake that is not a domain's wait, placed "
          "behind a running burst (docs/cpu-scheduling.rst)")
    m.add("credit_resets", "count", "credit2 epochs: times every vCPU's credit was reset")
    for name in domains:
        d = f"domain.{name}"
        m.add(f"{d}.cpu_ms", "ms", f"{name}: CPU time used")
        m.add(f"{d}.utilisation", "fraction", f"{name}: CPU time over simulated time (of one pCPU)")
        m.add(f"{d}.dispatches", "count", f"{name}: times a pCPU started running it")
        m.add(f"{d}.preempted", "count", f"{name}: times it gave its pCPU to a vCPU with more credit")
        m.stats(f"{d}.runq_wait_ms", "ms", f"{name}: its wake-ups' waits for a pCPU",
                keys=_WAIT_STATS)
    return m


def _stats(waits_s):
    if not waits_s:
        return {k: 0 if k == "count" else 0.0 for k in _WAIT_STATS}
    ms = sorted(w * 1e3 for w in waits_s)
    n = len(ms)

    def q(p):       # linear interpolation between closest ranks (numpy's default)
        x = (n - 1) * p
        lo = int(x)
        hi = min(lo + 1, n - 1)
        return ms[lo] + (ms[hi] - ms[lo]) * (x - lo)
    return {"count": n, "mean": sum(ms) / n, "p50": q(0.50), "p95": q(0.95), "p99": q(0.99),
            "max": ms[-1]}


def report(rep, scheduler, now, domains=()) -> dict:
    """Add the CPU section to report ``rep``; return the ``cpu`` results (with the
    per-domain figures of ``domains`` that ran: see :func:`known_domains`)."""
    s = scheduler.summary(now)
    domains_ran = s["domains"]
    waits = [w for d in domains_ran.values() for w in d["waits"]]
    out = {"pcpus": s["pcpus"], "utilisation": s["utilisation"],
           "runq_wait_ms": _stats(waits),
           "dispatches": sum(d["dispatches"] for d in domains_ran.values()),
           "preemptions": sum(d["preempted"] for d in domains_ran.values()),
           "placed": sum(d["placed"] for d in domains_ran.values()),
           "credit_resets": s["resets"]}
    per = {}
    for name in domains:
        d = domains_ran.get(name)
        if d is None:
            continue
        per[name] = {"cpu_ms": d["cpu_time_s"] * 1e3, "utilisation": d["utilisation"],
                     "dispatches": d["dispatches"], "preempted": d["preempted"],
                     "runq_wait_ms": _stats(d["waits"])}
    if per:
        out["domain"] = per
    rep.say(f"The domains share {s['pcpus']} physical CPU{'s' if s['pcpus'] != 1 else ''} under "
            f"a credit2-like scheduler (docs/cpu-scheduling.rst): a domain that wakes while "
            f"every pCPU is busy waits in the runqueue, and the queueing formulas of a "
            f"single server do not apply to latencies measured here -- service now includes "
            f"waits for a CPU that depend on every other domain's bursts.")
    sec = rep.section(f"CPU scheduling (credit2, {s['pcpus']} pCPU{'s' if s['pcpus'] != 1 else ''}, "
                      f"utilisation {100 * s['utilisation']:.1f} %)",
                      headers=["domain", "weight", "cap %", "CPU ms", "of one pCPU %",
                               "dispatches", "preempted", "waits", "wait mean ms",
                               "wait p95 ms", "wait max ms"])
    for name, d in domains_ran.items():
        w = _stats(d["waits"])
        sec.table.append([name, d["weight"], d["cap"] or "-", f"{d['cpu_time_s'] * 1e3:.3f}",
                          f"{100 * d['utilisation']:.2f}", d["dispatches"], d["preempted"],
                          w["count"], f"{w['mean']:.3f}", f"{w['p95']:.3f}", f"{w['max']:.3f}"])
    return out

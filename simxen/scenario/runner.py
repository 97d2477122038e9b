"""Running a scenario: build the host, start the workloads, check expectations.

Two steps, so that ``simxen validate`` can take the first alone:

* :func:`prepare` does everything before the first simulated event -- the
  profile with its overrides, the domains of ``[[domain]]``, and each
  workload's ``prepare(sim, params)``, which reads and checks every file it
  refers to (images, policies), its xl configs as dom0's toolstack would, and
  the names of the domains it will create. Any problem is one
  :class:`~simxen.errors.InputError` naming the file and the key.
  ``simxen validate`` calls exactly this, so what it accepts, ``run`` accepts.
* :func:`execute` runs the simulation to the end (or until ``stop.reason`` is
  set, e.g. by a signal handler: the report is then marked PARTIAL) and
  checks the expectations.

:func:`run` is both, and is what ``simxen run`` calls::

    from simxen.scenario import scenario_file, runner
    result = runner.run(scenario_file.load("scenarios/ring-pingpong.toml"))
    print(result.report.render())
    result.trace.to_jsonl(open("trace.jsonl", "w"))

It is deterministic: the same scenario and seed give the same report and the
same trace, byte for byte.
"""

from __future__ import annotations

import gc
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from simpy.core import StopSimulation

from simxen.domains.stack import one_of
from simxen.drivers import kernel_eras
from simxen.drivers import tis as tis_driver
from simxen.errors import InputError
from simxen.scenario import expect, metrics, workloads
from simxen.scenario.report import Report
from simxen.xen import Hypervisor
from simxen.xen.profile import Profile
from simxen.xen.trace import Trace

#: simulated seconds between two progress updates, as a fraction of ``until``
_PROGRESS_STEPS = 200

#: Python's cyclic garbage collector during a run: collect the young objects after
#: this many allocations (CPython's default is 700), the middle generation after 20
#: young collections, the old one after 10 middle ones. See :func:`fewer_collections`.
GC_THRESHOLDS = (500_000, 20, 10)
#: Thresholds for a workload's end-of-run pass (reading the trace back, matching its
#: requests): no automatic collection -- what the pass allocates stays alive until it
#: returns (a vtpm-stack point's hundreds of thousands of records), so a collection
#: would walk it all to free nothing. Used as ``fewer_collections(END_OF_RUN_GC)``.
END_OF_RUN_GC = (0, 20, 10)


@contextmanager
def fewer_collections(thresholds=GC_THRESHOLDS):
    """Run the body with the cyclic garbage collector looking less often.

    A run builds a large, long-lived graph (domains, XenStore nodes, vTPM
    states, SimPy processes) and churns through short-lived objects (events,
    commands, trace rows). With CPython's default thresholds every 700
    allocations start a young collection, a share of the survivors is
    re-examined by middle collections, and full collections -- which walk every
    tracked object -- come each time the survivors reach a quarter of the old
    generation: a 1,000-guest fleet spent 12 s of its 63 s of CPU in the
    collector, 8 s of that in 21 full collections of a heap that grows with the
    fleet. With a young generation of 50,000 allocations most short-lived objects
    are freed by their reference counts before any collection sees them, and the
    same run makes no full collection at all.

    That was not enough for 10,000 guests, and the young generation is now 500,000
    allocations, so that the trace's buffer lives and dies inside it: the trace
    keeps up to 65,536 rows (``trace.BUFFER_ROWS``, and as many counted kinds)
    before it spills them to its file, and with a young generation smaller than
    that, the rows of every buffer survived a young collection, were walked again
    by middle ones, and, moved to the old generation, brought on full collections
    of the whole fleet. At 10,000 guests (``benchmarks/scale.py --sizes 10000``, 4
    GB of heap) the collector took 44.7 s of a 545 s run with 50,000 (509 young,
    33 middle and 3 full collections, none of which found garbage made during the
    run) and 5.5 s with 500,000, back to back; the run's CPU went to 442 s (the
    rest of the difference is this machine's noise and caches that walks of a 4 GB
    heap no longer flush). Garbage in reference cycles is still collected, only
    later; nothing the model computes depends on when, so results and traces are
    unchanged. The thresholds in force before are restored on the way out.

    **On the way out** every tracked object is handed to the oldest generation
    first (``gc.freeze()`` then ``gc.unfreeze()``: two list splices, no walk).
    Otherwise the thresholds restored would meet a young and a middle generation
    holding most of what the body built -- everything since its last collection
    -- and the next allocation would start a collection that walks it all: 0.9 s
    of a 1,000-guest fleet's CPU, finding 322 objects to free (measured with
    ``gc.callbacks``), about ten times that at 10,000. In the oldest generation
    they wait for a full collection, which comes when the heap has grown by a
    quarter, as for anything long-lived.
    """
    before = gc.get_threshold()
    gc.set_threshold(*thresholds)
    try:
        yield
    finally:
        gc.freeze()
        gc.unfreeze()
        gc.set_threshold(*before)


@dataclass
class Simulation:
    """Everything a workload needs: the hypervisor (and through it the SimPy
    environment, profile, trace and random streams), the domains the
    scenario created by name, and the scenario itself."""

    hv: Hypervisor
    scenario: object
    domains: dict = field(default_factory=dict)
    seed: int = 1
    until: float = 3600.0
    #: workload name -> what its ``prepare(sim, params)`` returned
    prepared: dict = field(default_factory=dict)
    #: domain name -> the scenario key that creates it (see :meth:`claim_domain`)
    claimed: dict = field(default_factory=dict)
    #: workload name -> a zero-argument callable saying how far the workload got (a
    #: sentence), which the report quotes if the run stops before the workload finishes
    progress: dict = field(default_factory=dict)

    def claim_domain(self, name, key, *, how="xl create"):
        """Reserve domain *name* for the scenario key *key* that will create it.

        Xen refuses a second live domain of the same name (``-EEXIST``); this
        refuses it before the run, naming both keys -- or, for a domain the host
        has from boot (dom0 is ``Domain-0``), saying so.
        """
        if name in self.claimed:
            raise InputError(f"a domain named {name!r} is already created by "
                             f"{self.claimed[name]} ({how} would fail with EEXIST)",
                             path=self.scenario.path, key=key)
        if self.hv.domain_named(name) is not None:
            raise InputError(f"a domain named {name!r} exists from the host's boot (dom0 is "
                             f"{self.hv.dom0.name!r}); {how} would fail with EEXIST",
                             path=self.scenario.path, key=key)
        self.claimed[name] = key

    @property
    def env(self):
        return self.hv.env

    @property
    def trace(self):
        return self.hv.trace

    @property
    def profile(self):
        return self.hv.profile

    @property
    def streams(self):
        return self.hv.streams


@dataclass
class RunResult:
    report: Report
    results: dict
    trace: object
    seed: int
    sim_time: float
    #: what the scenario publishes (:func:`simxen.scenario.metrics.of_scenario`)
    registry: metrics.Metrics = field(default_factory=metrics.Metrics)

    @property
    def metrics(self) -> dict:
        """``{metric name: value}``: every published metric the run produced, numbers as numbers."""
        return metrics.values(self.registry, self.results)

    def as_dict(self) -> dict:
        """The run as data (``simxen run --json``): the report, plus every metric with its unit.

        JSON has no infinity or NaN: a number that is not finite (the maximum of an empty
        sample, say) is ``None`` (``null``), as a sweep's CSV leaves its cell empty."""
        values = self.metrics
        return _finite({**self.report.as_dict(),
                        "scenario": self.report.title.removeprefix("simxen: "),
                        "seed": self.seed, "sim_time": self.sim_time, "passed": self.report.passed,
                        "metrics": {m.name: {"value": values[m.name], "unit": m.unit,
                                             "kind": m.kind}
                                    for m in self.registry if m.name in values}})


def _finite(value):
    """``value`` with every float that is not finite, at any depth of its dicts and lists,
    made ``None``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


class TerminalProgress:
    """A one-line progress display on a terminal (stderr)."""

    def __init__(self, stream, min_interval=0.2):
        self.stream = stream
        self.min_interval = min_interval
        self._last = 0.0
        self._start = time.monotonic()

    def __call__(self, now, until, done=False):
        wall = time.monotonic()
        if not done and wall - self._last < self.min_interval:
            return
        self._last = wall
        pct = 100.0 * now / until if until else 100.0
        self.stream.write(f"\rsimulated {now:.6g} s of at most {until:.6g} s ({pct:5.1f} %), "
                          f"wall {wall - self._start:.1f} s")
        if done:
            self.stream.write("\n")
        self.stream.flush()


def _model_op(profile):
    """Ops the model asks for beyond those *profile* defines: ``<prefix>.<Command>``
    for a TPM 2.0 command name wherever the profile has ``<prefix>.default``
    (the per-command latencies of :func:`simxen.domains.vtpm.vtpm_op` and
    :class:`simxen.hw.tpm_chip.TpmChip`)."""
    from simxen.tpm.constants import COMMAND_NAMES
    commands = {name[5:] for name in COMMAND_NAMES.values() if name.startswith("TPM2_")}

    def known(op_name):
        prefix, _, command = op_name.rpartition(".")
        return command in commands and profile.has(f"{prefix}.default")
    return known


def _is_number(value) -> bool:
    """Whether ``value`` is a finite number (not a bool)."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _is_positive(value) -> bool:
    """Whether ``value`` is a number (not a bool), finite and above zero."""
    return _is_number(value) and value > 0


def _positive(value):
    return None if _is_positive(value) else f"expected a positive, finite number, found {value!r}"


#: What each profile switch the model reads may hold, checked before a run (and by
#: ``simxen validate``) rather than found -- or silently misread -- by the code that reads
#: it mid-run: a name the reader does not know, or an interval, HZ or timeout that is not
#: positive (a negative sleep stops SimPy, a zero poll interval never advances time).
#: The readers: drivers/kernel_eras.py and drivers/tpmfront.py (``tpmfront.*``),
#: drivers/tis.py (``tis.*``); ``sched.credit2.*`` is checked by the scheduler itself.
SWITCH_CHECKS = {
    "tpmfront.kernel": kernel_eras.check_era,
    "tpmfront.wait": one_of(*kernel_eras.WAITS),
    "tpmfront.poll_interval": _positive,
    "tpmfront.hz": _positive,
    "tpmfront.tpm_timeout": _positive,
    "tpmfront.timeout": _positive,
    "tpmfront.timeout_c": _positive,
    "tis.wait": one_of(*tis_driver.WAITS),
    "tis.poll_interval": _positive,
    "tis.duration": _positive,
}


def _check_switches(profile, scenario):
    """Each switch's value against :data:`SWITCH_CHECKS`, blamed on the scenario's
    ``[profile.switches]`` (or ``--set``) when it set it, else on the profile file."""
    overridden = scenario.data["profile"].get("switches", {})
    for name, value in profile.switches.items():
        check = SWITCH_CHECKS.get(name)
        problem = check(value) if check is not None else None
        if problem:
            if name in overridden:
                raise InputError(problem, path=scenario.path, key=f"profile.switches.{name}")
            raise InputError(problem, path=profile.path, key=f"switches.{name}")


def load_profile(scenario) -> Profile:
    """The scenario's profile with its ``[profile]`` overrides (every op name checked)."""
    spec = scenario.data["scenario"]["profile"]
    if spec.endswith(".toml") or "/" in spec:
        spec = str(scenario.resolve(spec))
    try:
        profile = Profile.load(spec)
    except InputError as err:
        if err.path is None:                     # a name, not a file: say which key holds it
            raise InputError(err.message, path=scenario.path, key="scenario.profile") from None
        raise
    chip = scenario.data["scenario"].get("chip")
    if chip:
        try:
            profile = profile.with_chip(chip)
        except InputError as err:
            raise InputError(err.message, path=scenario.path, key="scenario.chip") from None
    overrides = scenario.data["profile"]
    if overrides:
        try:
            profile = profile.with_overrides(overrides, path=scenario.path,
                                             known_op=_model_op(profile))
        except InputError as err:                # keys as the scenario spells them
            raise InputError(err.message, path=scenario.path,
                             key=f"profile.{err.key}" if err.key else "profile") from None
    _check_switches(profile, scenario)
    return profile


def prepare(scenario, *, seed=None, until=None, trace_level="full",
            trace_buffer=None) -> Simulation:
    """Everything :func:`run` does before the first simulated event (see the module doc).

    ``seed`` and ``until`` override the file's (``--seed``, ``--until``);
    ``trace_level`` is what the trace keeps (:data:`simxen.xen.trace.LEVELS`),
    ``trace_buffer`` how many of its records it holds in memory (default
    :class:`~simxen.xen.trace.Trace`'s). Returns the :class:`Simulation`,
    ready for :func:`execute`.
    """
    try:
        return _prepare(scenario, seed, until, trace_level, trace_buffer)
    except InputError as err:
        from simxen.scenario.overrides import blame_scenario
        raise blame_scenario(err, scenario) from None


def _prepare(scenario, seed, until, trace_level, trace_buffer=None):
    meta = scenario.data["scenario"]
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise InputError(f"expected an integer >= 0, found {seed!r}", key="--seed")
    if until is not None and not (_is_number(until) and until >= 0):
        # >= 0, as the file's scenario.until (0: nothing runs, the report says how far
        # each workload got -- nowhere)
        raise InputError(f"expected a finite number of seconds >= 0, found {until!r}",
                         key="--until")
    seed = meta["seed"] if seed is None else seed
    until = meta["until"] if until is None else until
    trace = (Trace(level=trace_level) if trace_buffer is None
             else Trace(level=trace_level, buffer_rows=trace_buffer))
    scheduler = None
    if meta.get("scheduler", "dedicated") == "credit2":
        from simxen.xen.scheduler import Credit2
        scheduler = Credit2(pcpus=meta["pcpus"])
    hv = Hypervisor(profile=load_profile(scenario), seed=seed, trace=trace, scheduler=scheduler)
    sim = Simulation(hv, scenario, seed=seed, until=until)
    for i, d in enumerate(scenario.data["domain"]):
        sim.claim_domain(d["name"], f"domain[{i}].name", how="creating it")
        dom = sim.domains[d["name"]] = hv.domain_create(d["name"], vcpus=d["vcpus"])
        if scheduler is not None and (d.get("cpu_weight") is not None or d.get("cap")):
            scheduler.domain_set(dom.domid, weight=d.get("cpu_weight"), cap=d.get("cap") or None)
    for params in scenario.data["workload"]:
        module = workloads.module(params["type"])
        if hasattr(module, "prepare"):
            sim.prepared[params["name"]] = module.prepare(sim, params)
    return sim


class Stop:
    """Asks a running :func:`execute` to stop: set :attr:`reason` (from a signal
    handler, say) and the simulation ends after the event being processed --
    at a consistent simulated time, never inside a model step."""

    reason = None


def run(scenario, *, seed=None, until=None, progress=None, trace_level="full",
        stop=None) -> RunResult:
    """Run *scenario* (a :class:`simxen.scenario.scenario_file.Scenario`):
    :func:`prepare`, then :func:`execute`.

    ``trace_level`` is what the trace keeps (:data:`simxen.xen.trace.LEVELS`);
    every level counts every record, so the report's figures do not depend on it,
    only what can be read back (per-hop analysis needs ``commands`` or ``full``).
    """
    return execute(prepare(scenario, seed=seed, until=until, trace_level=trace_level),
                   progress=progress, stop=stop)


def execute(sim, *, progress=None, stop=None) -> RunResult:
    """Run a prepared :class:`Simulation`; the report, results and trace.

    With ``stop`` (a :class:`Stop`), the run ends early once ``stop.reason``
    is set; the report then says so (``report.partial``) and holds what was
    reached: the workloads that finished, the simulated time, the trace so far.
    """
    scenario, hv, seed, until = sim.scenario, sim.hv, sim.seed, sim.until
    meta = scenario.data["scenario"]
    env = hv.env
    procs = []
    for params in scenario.data["workload"]:
        module = workloads.module(params["type"])
        procs.append((params, module, env.process(module.run(sim, params))))
    all_done = env.all_of([p for _, _, p in procs])

    end = env.any_of([all_done, env.timeout(until)])
    if progress:
        env.process(_ticker(env, until, progress))
    with fewer_collections():
        run_until(env, end, stop)
    if progress:
        progress(env.now, until, done=True)

    report = Report(f"simxen: {scenario.name}")
    if stop is not None and stop.reason is not None:
        report.partial = (f"stopped by {stop.reason} at {env.now:.6g} s of simulated time; "
                          "what follows is what the run had reached")
    if meta["description"]:
        report.say(meta["description"].strip())
    results = {}
    for params, module, proc in procs:
        if proc.triggered and proc.ok:
            result = proc.value
            result.setdefault("finished", True)
        elif proc.triggered:
            raise proc.value                        # a model bug: let it surface
        else:
            result = {"finished": False}
            why = (f"it was {stop.reason}" if stop is not None and stop.reason is not None
                   else f"scenario.until = {until:g} s")
            said = sim.progress.get(params["name"])
            report.say(f"Workload {params['name']!r} had not finished when the simulation "
                       f"stopped at {env.now:.6g} s ({why})."
                       + (f" {said()}" if said is not None else ""))
        results[params["name"]] = result
        if result["finished"]:
            module.report(report, result, params)
    if hv.scheduler is not None:
        from simxen.scenario import cpu_report
        results[cpu_report.NAME] = cpu_report.report(report, hv.scheduler, env.now,
                                                     cpu_report.known_domains(scenario))
    registry = metrics.of_scenario(scenario)
    report.outcomes = expect.evaluate(scenario.data["expect"], results,
                                      absent=_why_absent(registry, hv.trace.level, results))
    run_section = report.section("Run")
    run_section.row("seed", seed)
    if scenario.overrides:
        # the file's description and defaults say what it was written for; these say
        # what this run changed (a description's "ten guests" under guest_count=5000)
        run_section.row("--set", ", ".join(scenario.overrides))
    profile = hv.profile
    run_section.row("timing profile", profile.name)
    if profile.chip:
        run_section.row("physical TPM chip", f"{profile.chip} ({profile.chip_description})")
    from simxen.drivers.kernel_eras import describe, profile_era
    run_section.row("guest kernel era", describe(profile_era(profile),
                                                  profile.switch("tpmfront.hz", None))
                    + " unless a workload names one")
    run_section.row("simulated time", env.now, "s")
    run_section.row("trace records", len(hv.trace))
    if hv.trace.level != "full":
        run_section.row("trace level", f"{hv.trace.level} ({hv.trace.kept():,} records kept)")
    if report.partial:
        kinds = report.section("Trace so far (records by kind)", headers=["kind", "records"])
        kinds.table.extend(sorted(hv.trace.counts().items()))
    return RunResult(report, results, hv.trace, seed, env.now, registry)


def _why_absent(registry, level, results):
    """Why a metric the scenario publishes is missing: every metric of a workload that had
    not finished is; at ``--trace-level off`` the ones read from trace records are
    (``commands`` keeps every record a result is read from)."""
    def why(metric):
        workload = metric.split(".", 1)[0]
        if not results.get(workload, {}).get("finished", True):
            return f"workload {workload} had not finished"
        if level == "off" and metric in registry:
            return "--trace-level off keeps none of the records it is read from"
        return None
    return why


def run_until(env, end, stop=None):
    """``env.run(until=end)``; with ``stop`` (a :class:`Stop`), also ending once
    ``stop.reason`` is set (by a signal handler), between two events -- never inside
    a model step. A run's simulation and ``simxen serve``'s boot both end this way."""
    if stop is None:
        env.run(until=end)
        return

    def finish(event):
        raise StopSimulation(None)
    if end.triggered:
        return
    end.callbacks.append(finish)
    step = env.step
    try:
        while stop.reason is None:
            step()
    except StopSimulation:
        pass


def _ticker(env, until, progress):
    """Report progress every 1/200 of the simulated horizon (touches no model state)."""
    step = until / _PROGRESS_STEPS
    while env.now + step < until:
        yield env.timeout(step)
        progress(env.now, until)

"""Running a scenario: build the host, start the workloads, check expectations.

:func:`run` is what ``simxen run`` calls::

    from simxen.scenario import scenario_file, runner
    result = runner.run(scenario_file.load("scenarios/ring-pingpong.toml"))
    print(result.report.render())
    result.trace.to_jsonl(open("trace.jsonl", "w"))

It is deterministic: the same scenario and seed give the same report and the
same trace, byte for byte.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from simxen.scenario import expect, metrics, workloads
from simxen.scenario.report import Report
from simxen.xen import Hypervisor
from simxen.xen.profile import Profile
from simxen.xen.trace import Trace

#: simulated seconds between two progress updates, as a fraction of ``until``
_PROGRESS_STEPS = 200


@dataclass
class Simulation:
    """Everything a workload needs: the hypervisor (and through it the SimPy
    environment, profile, trace and random streams), the domains the
    scenario created by name, and the scenario itself."""

    hv: Hypervisor
    scenario: object
    domains: dict = field(default_factory=dict)

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
        """The run as data (``simxen run --json``): the report, plus every metric with its unit."""
        values = self.metrics
        return {**self.report.as_dict(),
                "scenario": self.report.title.removeprefix("simxen: "),
                "seed": self.seed, "sim_time": self.sim_time, "passed": self.report.passed,
                "metrics": {m.name: {"value": values[m.name], "unit": m.unit, "kind": m.kind}
                            for m in self.registry if m.name in values}}


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


def load_profile(scenario) -> Profile:
    spec = scenario.data["scenario"]["profile"]
    if spec.endswith(".toml") or "/" in spec:
        spec = str(scenario.resolve(spec))
    profile = Profile.load(spec)
    overrides = scenario.data["profile"]
    if overrides:
        profile = profile.with_overrides(overrides, path=f"{scenario.path} [profile]")
    return profile


def run(scenario, *, seed=None, until=None, progress=None, trace_level="full") -> RunResult:
    """Run *scenario* (a :class:`simxen.scenario.scenario_file.Scenario`).

    ``trace_level`` is what the trace keeps (:data:`simxen.xen.trace.LEVELS`);
    every level counts every record, so the report's figures do not depend on it,
    only what can be read back (per-hop analysis needs ``commands`` or ``full``).
    """
    meta = scenario.data["scenario"]
    seed = meta["seed"] if seed is None else seed
    until = meta["until"] if until is None else until
    hv = Hypervisor(profile=load_profile(scenario), seed=seed, trace=Trace(level=trace_level))
    sim = Simulation(hv, scenario)
    for d in scenario.data["domain"]:
        sim.domains[d["name"]] = hv.domain_create(d["name"], vcpus=d["vcpus"])

    env = hv.env
    procs = []
    for params in scenario.data["workload"]:
        module = workloads.module(params["type"])
        procs.append((params, module, env.process(module.run(sim, params))))
    all_done = env.all_of([p for _, _, p in procs])

    stop = env.any_of([all_done, env.timeout(until)])
    if progress:
        env.process(_ticker(env, until, progress))
    env.run(until=stop)
    if progress:
        progress(env.now, until, done=True)

    report = Report(f"simxen: {scenario.name}")
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
            report.say(f"Workload {params['name']!r} had not finished when the simulation "
                       f"stopped at {env.now:.6g} s (scenario.until = {until:g} s).")
        results[params["name"]] = result
        if result["finished"]:
            module.report(report, result, params)
    report.outcomes = expect.evaluate(scenario.data["expect"], results)
    run_section = report.section("Run")
    run_section.row("seed", seed)
    run_section.row("simulated time", env.now, "s")
    run_section.row("trace records", len(hv.trace))
    if hv.trace.level != "full":
        run_section.row("trace level", f"{hv.trace.level} ({hv.trace.kept():,} records kept)")
    return RunResult(report, results, hv.trace, seed, env.now, metrics.of_scenario(scenario))


def _ticker(env, until, progress):
    """Report progress every 1/200 of the simulated horizon (touches no model state)."""
    step = until / _PROGRESS_STEPS
    while env.now + step < until:
        yield env.timeout(step)
        progress(env.now, until)

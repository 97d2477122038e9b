"""Metrics: the results a scenario publishes, by name, with their units.

A workload's ``run`` returns a nested dict of results; the scalar leaves of
that dict are its *metrics*, named by their dotted path under the
workload's ``name`` (``stack.latency_ms.pcr_extend.p50``). This module is
the registry that says, *before* anything runs, which metrics a scenario
will produce and what unit each has, so that

* ``simxen metrics SCENARIO`` can list them (to write an ``[[expect]]`` or
  pick a ``--y`` for a plot),
* ``simxen run --json`` can give every value as a number with its unit,
* an experiment (``simxen sweep``) knows the columns of its CSV before its
  first run finishes.

A workload module publishes by defining ``metrics(params) -> Metrics``,
computed from its (validated) parameters alone -- the same parameters the
run gets, so a per-guest metric exists for every guest the run will have::

    from simxen.scenario.metrics import Metrics

    def metrics(params):
        m = Metrics()
        m.add("commands_completed", "count", "commands that came back with a success")
        m.stats("latency_ms.total", "ms", "command latency, submit to complete")
        for g in params["guests"]:
            m.add(f"guest.{g}.throughput_per_s", "1/s", f"{g}'s completed commands per second")
        return m

``tests/scenario/test_metrics.py`` runs every shipped scenario and checks the
registry against what the run really produced, both ways: every published
metric appears in the results, and every scalar result is published.

Units are short strings a plot can print on an axis: ``ms``, ``us``, ``s``,
``1/s``, ``count``, ``bytes``, ``fraction`` (0..1), ``requests``; a
``bool`` metric is a yes/no (a sweep averages it into a fraction); a
``text`` metric is a word or sentence (for ``[[expect]]`` only, never
averaged).
"""

from __future__ import annotations

from dataclasses import dataclass

#: the order statistics :meth:`Metrics.stats` publishes; ``count`` is a count,
#: the rest carry the unit given (what :func:`simxen.analysis.hops.percentiles` returns)
STATS = ("count", "min", "p50", "p90", "p95", "p99", "max", "mean")

KINDS = ("number", "bool", "text")


@dataclass(frozen=True)
class Metric:
    """One published result.

    :param name: dotted path under the workload's results
        (``latency_ms.pcr_extend.p50``); the scenario-wide name prefixes the
        workload's ``name`` (``stack.latency_ms.pcr_extend.p50``)
    :param unit: what a number of it means (``ms``, ``1/s``, ``count``...)
    :param doc: one line for ``simxen metrics``
    :param kind: ``number``, ``bool`` or ``text``
    """

    name: str
    unit: str
    doc: str
    kind: str = "number"

    @property
    def numeric(self) -> bool:
        """Whether a sweep can average it (numbers and booleans)."""
        return self.kind != "text"


class Metrics:
    """An ordered set of :class:`Metric`, as one workload (or one scenario) publishes them."""

    def __init__(self, items=()):
        self._by_name = {}
        for m in items:
            self._put(m)

    def _put(self, metric):
        if metric.kind not in KINDS:
            raise ValueError(f"metric {metric.name}: kind must be one of {KINDS}")
        self._by_name[metric.name] = metric
        return metric

    def add(self, name, unit, doc, kind="number") -> Metric:
        """Publish one metric (a later one with the same name replaces it)."""
        return self._put(Metric(name, unit, doc, kind))

    def flag(self, name, doc) -> Metric:
        """Publish a yes/no result."""
        return self.add(name, "bool", doc, kind="bool")

    def text(self, name, doc) -> Metric:
        """Publish a result that is a word or sentence (for ``[[expect]]``, not for sweeps)."""
        return self.add(name, "", doc, kind="text")

    def stats(self, prefix, unit, doc, keys=STATS):
        """Publish the order statistics of a sample: ``prefix.count``, ``prefix.p50``..."""
        for k in keys:
            if k == "count":
                self.add(f"{prefix}.count", "count", f"{doc}: sample size")
            else:
                self.add(f"{prefix}.{k}", unit, f"{doc}: {k}")

    def update(self, other, prefix=""):
        """Add every metric of *other*, its names under ``prefix.`` if given."""
        for m in other:
            self._put(Metric(f"{prefix}.{m.name}" if prefix else m.name, m.unit, m.doc, m.kind))

    def get(self, name):
        return self._by_name.get(name)

    def __contains__(self, name):
        return name in self._by_name

    def __iter__(self):
        return iter(self._by_name.values())

    def __len__(self):
        return len(self._by_name)

    def names(self):
        return list(self._by_name)


def of_scenario(scenario) -> Metrics:
    """Every metric *scenario* (a validated :class:`~simxen.scenario.scenario_file.Scenario`)
    publishes, named ``<workload name>.<metric>``, in workload order."""
    from simxen.scenario import workloads
    out = Metrics()
    for params in scenario.data["workload"]:
        module = workloads.module(params["type"])
        published = module.metrics(params) if hasattr(module, "metrics") else Metrics()
        published.add("finished", "bool", "the workload ran to its end before scenario.until",
                      kind="bool")
        out.update(published, prefix=params["name"])
    if scenario.data["scenario"].get("scheduler", "dedicated") != "dedicated":
        from simxen.scenario import cpu_report
        out.update(cpu_report.metrics(cpu_report.known_domains(scenario)), prefix=cpu_report.NAME)
    return out


def scalars(results, prefix=""):
    """``{dotted path: value}`` for every scalar leaf (number, bool, string, None) of a
    nested results dict; objects a workload keeps for its report are skipped."""
    out = {}
    for key, value in results.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            out.update(scalars(value, path))
        elif value is None or isinstance(value, (bool, int, float, str)):
            out[path] = value
    return out


def values(registry: Metrics, results: dict) -> dict:
    """``{metric name: value}`` of every metric in *registry* that *results* holds.

    Numbers stay numbers (``int`` or ``float``), booleans booleans; a metric
    the run did not produce (a workload that did not finish) is absent.
    """
    flat = scalars(results)
    return {m.name: flat[m.name] for m in registry if m.name in flat}

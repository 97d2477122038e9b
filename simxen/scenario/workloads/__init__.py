"""Workloads: what a scenario makes its domains do.

Each module here defines one workload ``type`` with

* ``SCHEMA`` — a :class:`simxen.scenario.schema.Table` of its keys
  (including ``type`` and ``name``);
* ``run(sim, params)`` — a SimPy process generator that drives the domains
  and returns a dict of results (reachable from ``[[expect]]`` as
  ``<name>.<key>``);
* ``metrics(params)`` -- the results it publishes, with units, as a
  :class:`simxen.scenario.metrics.Metrics` (``simxen metrics`` lists them;
  ``simxen run --json`` and ``simxen sweep`` read them);
* optionally ``check(params)`` -- ``(key, problem)`` when keys that are each
  valid do not go together, else ``None``;
* ``report(report, result, params)`` — tells the story of the run and adds
  its figures to a :class:`simxen.scenario.report.Report` (called only for a
  workload that finished; the runner says so for one that did not).
"""

from importlib import import_module

#: workload type -> module name (relative to this package)
_MODULES = {
    "ring-pingpong": "ring_pingpong",
    "vtpm-stack": "vtpm_stack",
    "attestation": "attestation",
    "load": "load",
    "fleet": "fleet",
}


def available():
    return list(_MODULES)


def module(kind: str):
    return import_module(f"{__name__}.{_MODULES[kind]}")


def schemas() -> dict:
    """type -> Table, for the scenario schema."""
    return {kind: module(kind).SCHEMA for kind in _MODULES}

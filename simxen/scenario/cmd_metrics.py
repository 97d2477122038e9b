"""List every metric a scenario publishes, with its unit.

Each line is one result a run of SCENARIO produces, by the dotted name an
``[[expect]]`` table, ``simxen sweep`` and ``simxen plot --y`` use::

    stack.latency_ms.pcr_extend.p50    ms     pcr_extend latency, submit to complete: p50
    stack.guest.guest1.throughput_per_s  1/s  guest1: completed commands per simulated second

Nothing is run: the list comes from the workloads' published metrics (see
``simxen.scenario.metrics``), for the file as it is, or with ``--set``
overrides (``--set stack.guest_count=4`` lists four guests' metrics). A
scenario that ``simxen run`` would refuse (a bad profile switch, say) is
refused here with the same one-line error, as ``simxen validate`` refuses it.
``--json`` prints the same as a JSON array of {name, unit, kind, doc}.
"""

import json

from simxen.scenario import metrics, runner, scenario_file


def add_arguments(parser):
    parser.add_argument("scenario", metavar="SCENARIO", help="scenario file (.toml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="an override, as for `simxen run --set` (repeatable)")
    parser.add_argument("--numeric", action="store_true",
                        help="only metrics a sweep can average (numbers and yes/no)")
    parser.add_argument("--json", action="store_true", help="print a JSON array")


def main(args) -> int:
    sc = scenario_file.load(args.scenario, args.set)
    runner.prepare(sc, trace_level="off")          # what run checks before it starts
    listed = [m for m in metrics.of_scenario(sc) if m.numeric or not args.numeric]
    if args.json:
        print(json.dumps([{"name": m.name, "unit": m.unit, "kind": m.kind, "doc": m.doc}
                          for m in listed], indent=2))
        return 0
    width = max((len(m.name) for m in listed), default=0)
    unit_width = max((len(m.unit or "-") for m in listed), default=0)
    for m in listed:
        unit = m.unit or ("text" if m.kind == "text" else "-")
        print(f"{m.name:<{width}}  {unit:<{unit_width}}  {m.doc}")
    return 0

"""Check a scenario file without running it.

Does everything ``simxen run`` does before the first simulated event -- the
same code (:func:`simxen.scenario.runner.prepare`): the file's keys and
values, the timing profile and its overrides (every op name), every file the
scenario refers to (images, policies), the xl configs as dom0's toolstack
would take them, the names of every domain the run would create.  Prints
``SCENARIO: ok (<name>...)`` and exits 0, or prints one line naming the file,
the key and what was expected, and exits 2.  ``--set KEY=VALUE`` checks an
override exactly as ``simxen run`` would apply it.  ``--domain NAME`` also
checks what ``simxen serve SCENARIO --domain NAME`` checks before its boot
(:func:`simxen.scenario.serve_host.plan`: a workload that builds a vTPM host,
NAME one of its guests with a vTPM).  With ``--keys`` it prints the reference
of every key a scenario file may hold.
"""

import sys

from simxen.errors import InputError, did_you_mean
from simxen.scenario import metrics, runner, scenario_file, serve_host


def add_arguments(parser):
    parser.add_argument("scenario", nargs="?", metavar="SCENARIO", help="scenario file (.toml)")
    parser.add_argument("--keys", action="store_true",
                        help="print every key a scenario file may hold, with types and defaults")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="an override, as for `simxen run --set` (repeatable)")
    parser.add_argument("--domain", metavar="NAME",
                        help="also check that `simxen serve SCENARIO --domain NAME` can serve "
                        "NAME's vTPM (a guest of the scenario's vTPM host with a vtpm= line)")


def main(args) -> int:
    if args.scenario is None:       # an option that checks a scenario, with none to check
        for option, given in (("--set", bool(args.set)), ("--domain", args.domain is not None)):
            if given:
                raise InputError("checks a SCENARIO: give the scenario file too", key=option)
    if args.keys:
        print(scenario_file.reference())
        if args.scenario is None:
            return 0
    if args.scenario is None:
        raise InputError("missing SCENARIO (a .toml file); see `simxen validate --help`")
    sc = scenario_file.load(args.scenario, args.set)
    sim = runner.prepare(sc)
    if args.domain is not None:
        serve_host.plan(sim, args.domain)
    kinds = ", ".join(w["type"] for w in sc.data["workload"])
    # every domain the run will create besides dom0: the [[domain]] tables' and the ones
    # the workloads' hosts create (each claimed by name in prepare)
    print(f"{args.scenario}: ok ({sc.name}: {len(sim.claimed)} domain(s) besides dom0, "
          f"workload {kinds}, {len(sc.data['expect'])} expectation(s))")
    for note in unpublished_expectations(sc):
        print(f"simxen validate: note: {note}", file=sys.stderr)
    return 0


def unpublished_expectations(sc) -> list:
    """A line for each ``[[expect]]`` (and ``[[plot]]``) whose metric this scenario, as it
    stands, does not publish (``simxen metrics`` lists what it does): ``run`` will find
    ``<no such result>`` and fail it (a sweep skips the plot). Not an error -- a sweep may vary the key that makes it
    exist (a guest count, the scheduler) -- but almost always a typo, so said here,
    with the closest published name."""
    published = [m.name for m in metrics.of_scenario(sc)]
    known = set(published)
    notes = []
    wanted = [(f"expect[{i}].metric", e["metric"], "run will find <no such result>")
              for i, e in enumerate(sc.data["expect"])]
    wanted += [(where, y, "a sweep will skip the plot")
               for i, p in enumerate(sc.data["plot"])
               for where, y in scenario_file.plot_metrics(p, i)]
    for where, name, then in wanted:
        if name in known:
            continue
        head, _, tail = name.partition(".")         # alike after the shared workload name
        tails = {p.partition(".")[2]: p for p in published if p.partition(".")[0] == head}
        hint = (did_you_mean(tail, tails, show=tails, cutoff=0.75)
                or " (simxen metrics lists them)")
        notes.append(f"{sc.path}: {where}: this scenario publishes no metric {name!r}, so "
                     f"{then}{hint}")
    return notes

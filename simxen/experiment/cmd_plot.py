"""Draw a sweep's summary: a metric against a varied key, with 95 % confidence intervals.

::

    simxen plot /tmp/mg --x stack.guest_count --y stack.latency_ms.p95

reads DIR/summary.csv (written by ``simxen sweep``) and writes
DIR/plots/<y>--<x>.png and .svg. ``--y`` again draws more metrics of the
same unit on the same axis (``--y stack.offered_per_s --y
stack.throughput_per_s``: the load offered and carried, one picture, in
``<y1>_<y2>--<x>``). Without ``--y`` it draws the same default
pictures as ``simxen sweep`` (the scenario's ``[[plot]]`` tables, else
throughput and p95 latency where the scenario publishes them). ``--hue KEY``
draws one line per value of another varied key.
"""


from simxen.errors import InputError


def add_arguments(parser):
    parser.add_argument("folder", metavar="DIR", help="the --out folder of a `simxen sweep`")
    parser.add_argument("--x", metavar="KEY", help="varied key on the horizontal axis "
                        "(default: the first --vary of the sweep)")
    parser.add_argument("--y", metavar="METRIC", action="append",
                        help="metric on the vertical axis (`simxen metrics SCENARIO` lists "
                        "them); repeat it to draw metrics of one unit together (default: the "
                        "pictures `simxen sweep` draws, the scenario's [[plot]] tables)")
    parser.add_argument("--hue", metavar="KEY", help="varied key drawn as one line per value "
                        "(default: none; every other varied key splits the lines anyway)")
    parser.add_argument("--title", help="the picture's title (default: the [[plot]] "
                        "table's, else '<y> vs <x>')")
    parser.add_argument("--out", metavar="DIR", help="where the pictures go (default DIR/plots)")


def _declared(folder):
    """The scenario's ``[[plot]]`` tables, as the sweep recorded them in sweep.json:
    none when the sweep wrote no sweep.json; checked by the schema that checked
    them in the scenario (:data:`simxen.scenario.scenario_file.PLOT`) when it did, so
    an edited or damaged file is one line naming it and the key, not a traceback."""
    import json
    from pathlib import Path

    from simxen.scenario.schema import TableArray
    from simxen.scenario.scenario_file import PLOT
    path = Path(folder) / "sweep.json"
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", path=path) from None
    except ValueError as exc:           # not JSON, or not UTF-8
        raise InputError(f"not the JSON `simxen sweep` wrote ({exc})", path=path) from None
    if not isinstance(spec, dict):
        raise InputError("expected a JSON object, as `simxen sweep` writes it", path=path)
    return TableArray("plots", "", table=PLOT).validate(spec.get("plots", []), path)


def main(args) -> int:
    from simxen.experiment import need
    need("matplotlib")
    from simxen.experiment import plot
    if args.y:
        specs = [{"x": args.x, "y": args.y, "hue": args.hue, "title": args.title}]
    else:
        keys, rows = plot.read_summary(args.folder)
        specs = plot.default_plots(keys, rows, _declared(args.folder))
        for s in specs:         # the [[plot]]'s own hue and title unless given here
            x = args.x or s["x"]
            s.update(x=x, hue=args.hue or (s["hue"] if s["hue"] != x else None),
                     title=args.title or s["title"])
    for spec in specs:
        for f in plot.draw(args.folder, out=args.out, **spec):
            print(f)
    return 0

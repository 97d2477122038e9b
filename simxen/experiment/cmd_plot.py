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


def add_arguments(parser):
    parser.add_argument("folder", metavar="DIR", help="the --out folder of a `simxen sweep`")
    parser.add_argument("--x", metavar="KEY", help="varied key on the horizontal axis "
                        "(default: the first)")
    parser.add_argument("--y", metavar="METRIC", action="append",
                        help="metric on the vertical axis (`simxen metrics SCENARIO` lists "
                        "them); repeat it to draw metrics of one unit together")
    parser.add_argument("--hue", metavar="KEY", help="varied key drawn as one line per value")
    parser.add_argument("--title", help="the picture's title")
    parser.add_argument("--out", metavar="DIR", help="where the pictures go (default DIR/plots)")


def _declared(folder):
    """The scenario's ``[[plot]]`` tables, as the sweep recorded them in sweep.json."""
    import json
    from pathlib import Path
    try:
        return json.loads((Path(folder) / "sweep.json").read_text(encoding="utf-8")).get("plots", [])
    except (OSError, ValueError, AttributeError):
        return []


def main(args) -> int:
    from simxen.experiment import need
    need("matplotlib")
    from simxen.experiment import plot
    if args.y:
        specs = [{"x": args.x, "y": args.y, "hue": args.hue, "title": args.title}]
    else:
        keys, rows = plot.read_summary(args.folder)
        specs = plot.default_plots(keys, rows, _declared(args.folder))
        for s in specs:
            s.update(x=args.x or s["x"], hue=args.hue, title=args.title)
    for spec in specs:
        for f in plot.draw(args.folder, out=args.out, **spec):
            print(f)
    return 0

"""Run a scenario over a grid of parameter values, with replications, into CSVs and plots.

::

    simxen sweep scenarios/many-guests.toml --vary stack.guest_count=1,2,4,8,16,32 \\
        --replications 3 --jobs 2 --out /tmp/mg

runs every combination of the ``--vary`` values (each KEY as ``--set`` takes
it), each ``--replications`` times with seeds derived from the scenario's
seed, on ``--jobs`` local processes or on a Dask cluster (``--scheduler
tcp://HOST:PORT``), and writes OUT/runs.csv (one row per run), OUT/summary.csv
(mean and 95 % confidence interval per point and metric) and the scenario's
default plots in OUT/plots/. An interrupted sweep keeps every finished run;
``--resume`` runs only the missing ones. docs/throughput-lab.rst explains
how to design a sweep and read its output.
"""

import sys

from simxen.errors import InputError
from simxen.scenario import output
from simxen.xen.trace import LEVELS


def add_arguments(parser):
    parser.add_argument("scenario", metavar="SCENARIO", help="scenario file (.toml)")
    parser.add_argument("--vary", action="append", default=[], metavar="KEY=V1,V2,...",
                        help="a key and its values (repeatable: the cross product is swept)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="an override for every run, as for `simxen run --set`")
    parser.add_argument("--replications", type=int, default=1, metavar="R",
                        help="runs per point, with seeds derived from scenario.seed (default 1)")
    parser.add_argument("--jobs", type=int, default=1, metavar="J",
                        help="local worker processes (default 1)")
    parser.add_argument("--out", metavar="DIR", type=output.file_name,
                        help="output folder (default: sweep-<SCENARIO's file name without "
                        ".toml>, in the current folder)")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="run on an existing Dask distributed cluster (tcp://HOST:PORT) "
                        "instead of local processes; needs pip install 'simxen[dask]'")
    parser.add_argument("--resume", action="store_true",
                        help="finish the sweep already in DIR: run only the missing runs")
    parser.add_argument("--trace-level", choices=LEVELS, default="commands", metavar="LEVEL",
                        help="what each run's trace keeps: full, commands or off (as `simxen "
                        "run --trace-level`; default commands, as a plain `simxen run`; at off "
                        "the metrics read from TPM command records are empty)")
    parser.add_argument("--no-plots", action="store_true", help="write the CSVs only")
    parser.add_argument("--no-progress", action="store_true",
                        help="never show the progress bar, even on a terminal")


class _Bar:
    """A tqdm progress bar on stderr, only on a terminal."""

    def __init__(self, enabled):
        self.bar = None
        self.enabled = enabled

    def __call__(self, done, total):
        if not self.enabled:
            return
        if self.bar is None:
            import shutil

            from tqdm import tqdm
            # the size shutil reports falls back to 80x24 where the terminal says 0x0 (a
            # fresh pty), which tqdm would take as "no room" and draw nothing
            size = shutil.get_terminal_size()
            self.bar = tqdm(total=total, initial=done, unit="run", desc="sweep", file=sys.stderr,
                            ncols=min(100, size.columns), nrows=size.lines)
        else:
            self.bar.update(done - self.bar.n)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def main(args) -> int:
    from pathlib import Path

    from simxen.experiment import need
    need("scipy", "tqdm") if args.no_plots else need("scipy", "tqdm", "matplotlib")
    from simxen.experiment import sweep
    axes = [sweep.parse_axis(v) for v in args.vary]
    plan = sweep.Plan(args.scenario, axes, args.replications, args.set)
    out = Path(args.out) if args.out else Path(f"sweep-{Path(args.scenario).stem}")
    if args.scheduler:
        executor = sweep.DaskExecutor(args.scheduler)
    else:
        # a worker beyond the sweep's runs would only start and wait: --jobs 100000 on a
        # sweep of 4 runs is 4 processes, not a hundred thousand forked at once
        executor = sweep.LocalExecutor(min(args.jobs, len(plan.runs)))
    if not (out.exists() and not out.is_dir()):     # that one sweep.execute names itself
        output.make_folder(out, "--out")
    bar = _Bar(sys.stderr.isatty() and not args.no_progress)
    try:
        counts = sweep.execute(plan, out, executor=executor, resume=args.resume, progress=bar,
                               trace_level=args.trace_level)
    except KeyboardInterrupt:
        bar.close()
        print(f"simxen sweep: interrupted; the finished runs are kept in {out / 'runs.csv'}: "
              "run the same command with --resume to finish", file=sys.stderr)
        return 130
    finally:
        bar.close()
        if hasattr(executor, "close"):
            executor.close()
    print(f"{out}: {_count(counts['total'], 'run')} ({_count(len(plan.points), 'point')} x "
          f"{_count(plan.replications, 'replication')}; {counts['ran']} run now, "
          f"{counts['kept']} kept); runs.csv, summary.csv")
    if not args.no_plots:
        from simxen.experiment import plot
        keys, rows = plot.read_summary(out)
        for spec in plot.default_plots(keys, rows, plan.default_plots):
            try:
                files = plot.draw(out, **spec)
            except InputError as err:      # a [[plot]] about a key this sweep does not vary
                print(f"simxen sweep: plot of {spec['y']} skipped: {err}", file=sys.stderr)
                continue
            for f in files:
                print(f)
    return 0


def _count(n, noun):
    """``1 run``, ``2 runs``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"

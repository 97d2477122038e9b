"""CPU cost of an interruptible run: ``simxen run`` checks, between two
SimPy events, whether a signal asked it to stop (:class:`runner.Stop`), so a
Ctrl-C keeps the report and the trace. This compares that loop
(:func:`runner.execute` with a ``stop``) with SimPy's own ``env.run`` (the
same function without one) on the same scenario, in this process, and prints
both times and their ratio (the check should cost at most a few per cent).

Every figure is process CPU time, the best of ``--repeat`` interleaved runs.

    python benchmarks/interruptible_run.py [--scenario FILE] [--repeat R]
"""

import argparse
import time
from pathlib import Path

from arguments import count

from simxen.errors import InputError
from simxen.scenario import runner, scenario_file

ROOT = Path(__file__).resolve().parents[1]


def once(sc, stop):
    sim = runner.prepare(sc, trace_level="commands")
    start = time.process_time()
    result = runner.execute(sim, stop=runner.Stop() if stop else None)
    return time.process_time() - start, len(result.trace)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenario", default=str(ROOT / "scenarios" / "ring-pingpong.toml"))
    ap.add_argument("--repeat", type=count, default=5)
    args = ap.parse_args(argv)
    try:
        sc = scenario_file.load(args.scenario)
    except InputError as exc:
        ap.error(str(exc))
    once(sc, False), once(sc, True)                  # warm-up: imports, caches
    best = {False: float("inf"), True: float("inf")}
    for _ in range(args.repeat):
        for stop in (False, True):
            seconds, records = once(sc, stop)
            best[stop] = min(best[stop], seconds)
    print(f"scenario {Path(args.scenario).name}: {records:,} trace records per run")
    print(f"env.run (not interruptible):   {best[False] * 1e3:8.1f} ms CPU")
    print(f"execute with a Stop (simxen run): {best[True] * 1e3:8.1f} ms CPU")
    print(f"ratio interruptible / plain:   {best[True] / best[False]:8.3f}")


if __name__ == "__main__":
    main()

"""Run a scenario file and print its report.

The report tells what happened, gives the figures (latencies in simulated
time, operation counts) and checks every ``[[expect]]`` of the file.  Exit
status: 0 when every expectation held, 1 when one failed, 2 when the file is
wrong.  On a terminal a progress line shows simulated time; piped output
stays quiet.
"""

import json
import sys
from pathlib import Path

from simxen.errors import ExpectationFailed, InputError
from simxen.scenario import runner, scenario_file
from simxen.xen.trace import LEVELS


def add_arguments(parser):
    parser.add_argument("scenario", metavar="SCENARIO", help="scenario file (.toml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one key of the file by its dotted path, checked by the "
                        "file's schema (repeatable): scenario.seed=4, stack.guest_count=32, "
                        "'profile.switches.\"tpmfront.wait\"=interrupt'")
    parser.add_argument("--seed", type=int, help="seed of every random stream "
                        "(default: the file's scenario.seed)")
    parser.add_argument("--until", type=float, metavar="SECONDS",
                        help="stop at this simulated time (default: the file's scenario.until)")
    parser.add_argument("--trace", metavar="FILE",
                        help="write every trace record as JSON Lines to FILE")
    parser.add_argument("--trace-level", choices=LEVELS, metavar="LEVEL",
                        help="what the trace keeps: full (every record), commands (TPM commands "
                        "and their hops, no page/event-channel/grant/XenStore plumbing) or off; "
                        "every level still counts every record. Default: full with --trace, "
                        "commands without")
    parser.add_argument("--json", action="store_true",
                        help="print the run as JSON: the report, and under 'metrics' every "
                        "published result as {value, unit, kind}, numbers as numbers")
    parser.add_argument("--no-progress", action="store_true",
                        help="never show the progress line, even on a terminal")


def main(args) -> int:
    sc = scenario_file.load(args.scenario, args.set)
    if args.seed is not None and args.seed < 0:
        raise InputError(f"--seed: expected an integer >= 0, found {args.seed}")
    if args.until is not None and args.until <= 0:
        raise InputError(f"--until: expected a positive number of seconds, found {args.until}")
    trace_path = Path(args.trace) if args.trace else None
    if trace_path is not None and not trace_path.parent.exists():
        raise InputError("folder does not exist", path=trace_path.parent)
    show = sys.stderr.isatty() and not args.no_progress
    level = args.trace_level or ("full" if trace_path is not None else "commands")
    result = runner.run(sc, seed=args.seed, until=args.until, trace_level=level,
                        progress=runner.TerminalProgress(sys.stderr) if show else None)
    if trace_path is not None:
        with open(trace_path, "w", encoding="utf-8") as fp:
            result.trace.to_jsonl(fp)
    if args.json:
        print(json.dumps(result.as_dict(), indent=2, default=str))
    else:
        sys.stdout.write(result.report.render())
    if not result.report.passed:
        raise ExpectationFailed(f"{sum(not o.passed for o in result.report.outcomes)} "
                                f"expectation(s) failed")
    return 0

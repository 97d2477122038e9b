"""Run a scenario file and print its report.

The report tells what happened, gives the figures (latencies in simulated
time, operation counts) and checks every ``[[expect]]`` of the file.  Exit
status: 0 when every expectation held, 1 when one failed, 2 when the file or
an argument is wrong (found before anything is simulated: the same checks as
``simxen validate``, and ``--trace`` must be a writable file), 3 on an
internal error.  On a terminal a progress line shows simulated time; piped
output stays quiet.

``--trace FILE`` is written as the run goes (each time the trace's buffer
fills, the records no later record can precede), so memory does not grow
with the run; the file is complete when ``simxen run`` exits.

Ctrl-C (SIGINT) or SIGTERM stops the run at the current simulated time: the
report of what was reached is printed, marked PARTIAL, the rest of the trace
so far is written, and the exit status is 130 (SIGINT) or 143 (SIGTERM).
After an internal error (status 3) the file holds what was written while
the run went: every record up to some time, sorted (docs/trace.rst).
``--trace -`` writes the trace to standard output; the report then goes to
standard error.
"""

import json
import signal
import sys

from simxen.errors import ExpectationFailed, InputError
from simxen.scenario import runner, scenario_file
from simxen.scenario import output
from simxen.xen.trace import LEVELS

#: signal -> exit status of a run it stopped (the shell's 128 + N)
_STOPPED_BY = {signal.SIGINT: 130, signal.SIGTERM: 143}


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
    parser.add_argument("--trace", metavar="FILE", type=output.file_name,
                        help="write every trace record as JSON Lines to FILE ('-': standard "
                        "output, the report then goes to standard error)")
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


def open_output(name, what="--trace", *, reads=()):
    """:func:`simxen.scenario.output.open_output` of ``--trace``."""
    return output.open_output(name, what, reads=reads)


def _write_trace(trace, fp, name):
    """Write the rest of the streamed trace and flush it; a failing device (full
    disk...) is one line, exit 2."""
    try:
        trace.finish_stream()
        fp.flush()
    except OSError as exc:
        raise InputError(f"cannot write the trace: {exc.strerror}", path=name,
                         key="--trace") from None


class _Signals:
    """SIGINT and SIGTERM set ``stop.reason`` while the run lasts (then the old handlers return)."""

    def __init__(self, stop):
        self.stop = stop
        self.signal = None
        self._old = {}

    def _handle(self, signum, frame):
        self.signal = signal.Signals(signum)
        self.stop.reason = self.signal.name

    def __enter__(self):
        for sig in _STOPPED_BY:
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False


def main(args) -> int:
    sc = scenario_file.load(args.scenario, args.set)
    stop = runner.Stop()
    with _Signals(stop) as signals:
        level = args.trace_level or ("full" if args.trace else "commands")
        if args.trace and level == "off":
            raise InputError("--trace-level off keeps no record, so the file would be empty: "
                             "use --trace-level commands or full, or leave out --trace",
                             key="--trace")
        sim = runner.prepare(sc, seed=args.seed, until=args.until, trace_level=level)
        trace_fp = None
        if args.trace:      # it may not overwrite what the run reads
            trace_fp = open_output(args.trace, reads=sc.reads(args.scenario))
        if trace_fp is not None:        # written as the run goes (Trace.stream_to)
            sim.hv.trace.stream_to(trace_fp, sim.hv.low_water)
        report_fp = sys.stderr if trace_fp is sys.stdout else sys.stdout
        show = sys.stderr.isatty() and not args.no_progress and trace_fp is not sys.stdout
        try:
            result = runner.execute(sim, stop=stop, progress=runner.TerminalProgress(sys.stderr)
                                    if show else None)
            if args.json:
                print(json.dumps(result.as_dict(), indent=2, default=str, allow_nan=False),
                      file=report_fp)
            else:
                report_fp.write(result.report.render())
            report_fp.flush()
            if trace_fp is not None:
                _write_trace(result.trace, trace_fp, args.trace)
        finally:
            if trace_fp is not None and trace_fp is not sys.stdout:
                trace_fp.close()
    if signals.signal is not None:
        print(f"simxen run: stopped by {signals.signal.name} at {result.sim_time:.6g} s of "
              "simulated time; the report above is PARTIAL"
              + (f", the trace so far is in {args.trace}" if args.trace not in (None, "-")
                 else ""), file=sys.stderr)
        return _STOPPED_BY[signals.signal]
    if not result.report.passed:
        raise ExpectationFailed(f"{sum(not o.passed for o in result.report.outcomes)} "
                                f"expectation(s) failed")
    return 0

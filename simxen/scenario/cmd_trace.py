"""Export a run's trace as something to look at.

Runs SCENARIO (or reads a trace file written by ``simxen run --trace``, with
``--from``) and writes one of:

``perfetto``
    Chrome/Perfetto trace-event JSON: open it in ui.perfetto.dev or
    chrome://tracing. A process per domain, slices for TPM commands, arrows for
    notifications and grant maps, counters for queue occupancy.
``sequence``
    a sequence diagram: SVG, or Mermaid text when FILE ends in .mmd or .md
    (cut, with a note saying so, where a viewer would refuse it: an SVG at
    32,767 pixels high or wide, librsvg's limit; Mermaid at 50,000 characters).
    Filter it with --domain, --start/--end, or --command (one TPM command's
    journey).
``pcap``
    the command/response stream one TPM saw (--tpm: a guest, its vTPM domain,
    or 'physical'), as a capture tshark and Wireshark decode.
``text``
    the run narrated, one line per event (--verbose adds the plumbing).

Examples::

    simxen trace scenarios/boot-attest.toml --format perfetto -o boot.json
    simxen trace scenarios/boot-attest.toml --format sequence --command TPM2_PCR_Extend -o one.svg
    simxen trace scenarios/boot-attest.toml --format pcap --tpm guest1 -o guest1.pcap
    simxen trace --from trace.jsonl --format text --start 7.9 --end 8.0
"""

import contextlib
import sys
from pathlib import Path

from simxen.analysis import narrate, pcap, perfetto, sequence, trace_format
from simxen.errors import InputError, did_you_mean
from simxen.scenario import runner, scenario_file
from simxen.scenario.output import check_file, file_name
from simxen.xen.trace import PLUMBING

FORMATS = ("perfetto", "sequence", "pcap", "text")


def add_arguments(parser):
    parser.add_argument("scenario", metavar="SCENARIO", nargs="?",
                        help="scenario file (.toml) to run; or give --from")
    parser.add_argument("--from", dest="from_trace", metavar="TRACE",
                        help="read this trace file (simxen run --trace) instead of running")
    parser.add_argument("--format", "-f", required=True, choices=FORMATS)
    parser.add_argument("-o", "--output", metavar="FILE", type=file_name,
                        help="where to write (text: default standard output)")
    parser.add_argument("--seed", type=int, help="seed (default: the file's scenario.seed)")
    parser.add_argument("--until", type=float, metavar="SECONDS", help="stop at this simulated time")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one key of the scenario (repeatable), as simxen run")
    f = parser.add_argument_group("filters (sequence and text)")
    f.add_argument("--domain", action="append", default=[], metavar="NAME",
                   help="keep only messages between these lifelines (repeatable; "
                   "'XenStore' and 'physical TPM' are lifelines too)")
    f.add_argument("--start", type=float, metavar="SECONDS", help="from this simulated time")
    f.add_argument("--end", type=float, metavar="SECONDS", help="up to this simulated time")
    f.add_argument("--command", dest="tpm_command", metavar="NAME",
                   help="one TPM command's journey, e.g. TPM2_PCR_Extend (sequence)")
    f.add_argument("--nth", type=int, default=1, metavar="N",
                   help="with --command: the Nth such command (default 1)")
    parser.add_argument("--tpm", metavar="NAME",
                        help="pcap: whose TPM: a guest, a vTPM domain or 'physical' "
                        "(default: the first vTPM)")
    parser.add_argument("--verbose", action="store_true",
                        help="text: also every notification, grant, page and XenStore write")


def records_of(args, sc=None):
    """The records to export, as a stream read a record at a time (each export
    reads it a few times; see :mod:`simxen.analysis.trace_format`): the file of
    --from, read line by line, or the run of the scenario (*sc*, or loaded here)
    at full level, read back from its trace (whose buffer and spilled runs bound
    its memory)."""
    if args.from_trace:
        return trace_format.TraceFile(args.from_trace, cut_short_ok=True)
    sc = sc if sc is not None else _load(args)
    result = runner.run(sc, seed=args.seed, until=args.until, trace_level="full")
    return trace_format.TraceRecords(result.trace)


def _load(args):
    """Check the command line's choice of what to read; the scenario it names, loaded
    (``None`` with ``--from``, whose options of a run are refused)."""
    if args.from_trace and args.scenario:
        raise InputError("give SCENARIO or --from TRACE, not both")
    if args.from_trace:
        for option, given in (("--seed", args.seed is not None),
                              ("--until", args.until is not None), ("--set", bool(args.set))):
            if given:       # the export would look re-run or cut, and be the file as it is
                raise InputError("applies to a run of SCENARIO; a --from trace is read as it "
                                 "was recorded (--start and --end cut it)", key=option)
        return None
    if not args.scenario:
        raise InputError("give a SCENARIO to run, or --from TRACE")
    if args.seed is not None and args.seed < 0:
        raise InputError(f"--seed: expected an integer >= 0, found {args.seed}")
    return scenario_file.load(args.scenario, args.set)


def _window(records, args):
    if args.start is not None or args.end is not None:
        return trace_format.Window(records, args.start, args.end)
    return records


#: option -> (the formats it applies to, whether it was given)
_APPLIES = {
    "--domain": (("sequence", "text"), lambda a: bool(a.domain)),
    "--command": (("sequence",), lambda a: a.tpm_command is not None),
    "--nth": (("sequence",), lambda a: a.nth != 1),
    "--tpm": (("pcap",), lambda a: a.tpm is not None),
    "--verbose": (("text",), lambda a: a.verbose),
}


def check_options(args):
    """An option the chosen format does not read is refused rather than ignored (the
    export would look filtered and is not), and a window must not end before it starts."""
    for option, (formats, given) in _APPLIES.items():
        if given(args) and args.format not in formats:
            raise InputError(f"applies to --format {' or '.join(formats)} only, not "
                             f"{args.format}", key=option)
    if args.nth < 1:
        raise InputError(f"--nth: expected an integer >= 1, found {args.nth}")
    if args.nth != 1 and args.tpm_command is None:
        raise InputError("counts the commands --command names: give --command too",
                         key="--nth")
    for option, value in (("--start", args.start), ("--end", args.end)):
        if value is not None and value != value:        # NaN: no time is before or after it
            raise InputError("expected a number of seconds, found nan", key=option)
    if args.start is not None and args.end is not None and args.start > args.end:
        raise InputError(f"the window starts ({args.start:g} s) after it ends ({args.end:g} s)",
                         key="--start/--end")


@contextlib.contextmanager
def _writing(out):
    """A device that refuses the bytes (a full disk, /dev/full, a /proc file) is one
    line naming -o, not an internal error."""
    try:
        yield
    except OSError as exc:
        raise InputError(f"cannot write: {exc.strerror or exc}", path=out, key="-o") from None


def main(args) -> int:
    check_options(args)
    out = Path(args.output) if args.output and args.output != "-" else None
    if out is None and args.format in ("perfetto", "pcap", "sequence"):
        raise InputError(f"--format {args.format} needs -o FILE")
    sc = _load(args)        # before -o is checked: what the run reads, -o may not replace
    if out is not None:
        reads = sc.reads(args.scenario) if sc else [("the scenario", args.scenario)]
        check_file(out, "-o", reads=reads + [("the trace", args.from_trace)])   # before the run
    records = records_of(args, sc)
    if args.domain and args.format == "text":   # each name, not only when nothing is left
        unknown = _unknown_domains(records, args)    # (sequence.messages checks its own)
        if unknown is not None:
            raise unknown
    if args.format == "perfetto":
        with _writing(out):
            n = perfetto.write(_window(records, args), out)
        print(f"wrote {out}: {n} trace events (open in ui.perfetto.dev)", file=sys.stderr)
    elif args.format == "pcap":
        with _writing(out):
            name, n = pcap.write(_window(records, args), out, args.tpm)
        whose = "the physical TPM" if name == pcap.PHYSICAL else f"the vTPM in {name}"
        print(f"wrote {out}: {n} commands seen by {whose} (tshark -r {out} -V)", file=sys.stderr)
        if name == pcap.PHYSICAL:
            _firmware_note(_window(records, args))
    elif args.format == "sequence":
        try:
            msgs = sequence.messages(records, domains=args.domain or None, start=args.start,
                                     end=args.end, command=args.tpm_command, nth=args.nth)
        except InputError as err:
            if err.key == "--command":
                raise _no_such_command(records, args, err) from None
            raise
        if not msgs:
            raise _nothing_to_show(records, args, "message", "messages")
        title = f"{args.tpm_command} (number {args.nth})" if args.tpm_command else None
        if out.suffix.lower() in (".mmd", ".md", ".mermaid"):
            text, drawn = sequence.mermaid_drawn(msgs, records, title=title)
            what = "Mermaid" if drawn == len(msgs) else (
                f"Mermaid; the first {drawn} of {len(msgs)}: {sequence.cut_note(msgs[drawn:])}")
        else:
            text, drawn = sequence.svg_drawn(msgs, records, title=title)
            what = "SVG" if drawn == len(msgs) else (
                f"SVG; the first {drawn} of {len(msgs)}: {sequence.svg_cut_note(msgs[drawn:])}")
        with _writing(out):
            out.write_text(text, encoding="utf-8")
        print(f"wrote {out}: {len(msgs)} messages ({what})", file=sys.stderr)
    else:
        lines = narrate.iter_lines(records, verbose=args.verbose, start=args.start,
                                   end=args.end, domains=args.domain or None)
        first = next(lines, None)       # the trace has been read once (a file: checked)
        if first is None:
            raise _nothing_to_show(records, args, "event", "events to narrate")
        if out is None:
            _write_lines(sys.stdout, first, lines)
        else:
            with _writing(out), out.open("w", encoding="utf-8") as fp:
                _write_lines(fp, first, lines)
    if args.verbose and not _plumbing(r["kind"] for r in records):
        print("simxen trace: note: --verbose added nothing: the trace holds no notification, "
              "grant, page or XenStore record, as a run at --trace-level commands keeps none "
              "(record it with --trace-level full)", file=sys.stderr)
    cut = getattr(records, "cut_short", None)
    if cut is not None:
        print(f"simxen trace: note: {args.from_trace}: line {cut}, the last, is cut short (the "
              "run was killed while writing it?) and was left out", file=sys.stderr)
    return 0


def _no_such_command(records, args, err) -> InputError:
    """``--command NAME`` found fewer than ``--nth``: when it found none, which commands
    the trace does have (and the closest name to a misspelt one)."""
    if not err.message.startswith("the trace has 0 "):
        return err
    names = sorted({r.get("cc_name") for r in records
                    if r["kind"] == "tpm.front.submit" and r.get("cc_name")})
    if not names:
        return InputError(f"the trace has no TPM command at all, so no {args.tpm_command}",
                          key="--command")
    return InputError(f"the trace has no completed {args.tpm_command} command"
                      f"{did_you_mean(args.tpm_command, names, cutoff=0.75)}"
                      f" (it has: {', '.join(names)})",
                      key="--command")


def _unknown_domains(records, args) -> InputError | None:
    """The ``--domain`` names no domain of the trace has (``text``; a sequence
    diagram's lifelines are checked by :func:`sequence.messages`)."""
    known = sorted({"host", *trace_format.domain_names(records).values()})
    unknown = [d for d in args.domain if d not in known]
    if not unknown:
        return None
    return InputError(f"the trace has no domain called {unknown[0]!r}"
                      f"{did_you_mean(unknown[0], known, cutoff=0.75)}"
                      f" (it has: {', '.join(known)})",
                      key="--domain")


def _firmware_note(records) -> None:
    """Say, under a capture of the physical TPM, that the host's measured boot is not in
    it: the firmware's and GRUB's extends (``host.measure``) run before Xen, on the TPM
    itself, and their records hold each PCR and digest, not the command's bytes."""
    n = sum(1 for r in records if r["kind"] == "host.measure")
    if n:
        print(f"simxen trace: note: the host's {n} measured-boot extend(s) before Xen "
              "(host.measure records: a PCR and a digest each, no command bytes) are not in "
              "the capture; simxen trace -f text lists them", file=sys.stderr)


def _plumbing(kinds) -> bool:
    """Whether any of *kinds* is the split drivers' plumbing (pages, event channels,
    XenStore...), which every run makes from its first domain on: none means a trace
    of ``--trace-level commands``."""
    return any(kind.split(".", 1)[0] in PLUMBING for kind in kinds)


def _nothing_to_show(records, args, one, many) -> InputError:
    """Why an export found nothing to show: the filters given, or a trace recorded at a
    level that did not keep what the export draws (``--trace-level off`` keeps no
    record, ``commands`` only the TPM command records and the domains' creation)."""
    filters = [name for name, value in (("--domain", args.domain), ("--start", args.start),
                                        ("--end", args.end), ("--command", args.tpm_command))
               if value not in (None, [])]
    if filters:
        return InputError(f"no {one} is left after the filters", key="/".join(filters))
    where = dict(path=args.from_trace) if args.from_trace else {}
    if next(iter(records), None) is None:
        if getattr(records, "cut_short", None) is not None:
            return InputError("the trace's only line is cut short: the run was killed before "
                              "it wrote a whole record", **where)
        return InputError("the trace holds no records: a run killed before its trace's first "
                          "write leaves none, as did one at --trace-level off (which simxen "
                          "run now refuses to write); record it again", **where)
    kinds = {}
    for r in records:
        kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
    held = (f"its {sum(kinds.values()):,} records are "
            + ", ".join(f"{n:,} {kind}" for kind, n in sorted(kinds.items())))
    if not _plumbing(kinds):
        return InputError(f"the trace holds no {many}: {held}, as a run at --trace-level "
                          "commands keeps them -- only the TPM command records and the "
                          "domains' creation (record it with --trace-level full)", **where)
    return InputError(f"the trace holds no {many}: {held} -- the run ended before there was "
                      "more to show (a longer scenario.until, or --until, lets it go on)",
                      **where)


def _write_lines(fp, first, lines):
    """The narrated lines, written as they are made."""
    fp.write(first + "\n")
    for line in lines:
        fp.write(line + "\n")

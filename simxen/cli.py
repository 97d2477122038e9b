"""The ``simxen`` command.

Each subcommand lives in the module that owns it; this file only parses the
command line and keeps the exit-status contract for all of them, in one
place (:func:`main`):

===  ==================================================================
0    success
1    an expectation failed (:class:`simxen.errors.ExpectationFailed`)
2    usage or input error: one line naming the file, the key and what
     was expected (:class:`simxen.errors.InputError`, argparse)
3    internal error (a bug in simxen): one line saying so and naming the
     file the full traceback was written to -- never a raw traceback
===  ==================================================================

A run stopped by a signal (Ctrl-C, SIGTERM) exits with the shell's code for
it, 128 + the signal number (130, 143), after saying what it kept.
"""

import argparse
import importlib
import os
import sys
import tempfile
import traceback

from simxen import __version__
from simxen.errors import SimxenError

#: The exit-status contract, as ``--help`` prints it.
EXIT_STATUS = ("Exit status: 0 success, 1 an expectation failed, 2 usage or input error, "
               "3 internal error (the traceback goes to a file the message names); "
               "128+N when stopped by signal N.")
#: Exit status of an internal error (an exception that is not a SimxenError).
INTERNAL_ERROR = 3

#: subcommand -> (module, help); the module provides ``add_arguments(parser)``
#: and ``main(args) -> int``.
COMMANDS = {
    "run": ("simxen.scenario.cmd_run", "run a scenario file and print its report"),
    "validate": ("simxen.scenario.cmd_validate", "check a scenario file without running it"),
    "metrics": ("simxen.scenario.cmd_metrics",
                "list every metric a scenario publishes, with its unit"),
    "sweep": ("simxen.experiment.cmd_sweep",
              "run a scenario over a grid of parameter values with replications: CSVs and plots"),
    "plot": ("simxen.experiment.cmd_plot", "draw a sweep's summary (PNG and SVG)"),
    "serve": ("simxen.server.cmd_serve",
              "run a scenario and expose a guest's vTPM to tpm2-tools on loopback, through "
              "every simulated hop"),
    "tpm": ("simxen.server.cmd_tpm", "stand-alone TPM 2.0 engine tools (serve)"),
    "trace": ("simxen.scenario.cmd_trace",
              "export a run's trace: perfetto timeline, sequence diagram, pcap, narrated text"),
    "profile": ("simxen.scenario.cmd_profile",
                "show a timing profile: every op with its distribution, source and certainty"),
    "explain": ("simxen.scenario.cmd_explain",
                "run an attestation scenario and explain its chain of trust step by step"),
}


def build_parser(argv=()):
    """The argument parser. Only the chosen subcommand's module is imported
    (start-up stays fast, and one layer's import cost is not every command's)."""
    parser = argparse.ArgumentParser(
        prog="simxen",
        description="Discrete-event simulator of Xen's split-driver virtual TPM.",
        epilog=EXIT_STATUS,
    )
    parser.add_argument("--version", action="version", version=f"simxen {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    chosen = next((a for a in argv if a in COMMANDS), None)
    for name, (module_name, help_text) in COMMANDS.items():
        if name != chosen:
            sub.add_parser(name, help=help_text)
            continue
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text, description=module.__doc__ or help_text,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def save_traceback(argv) -> str:
    """Write the traceback being handled (with the command line and version) to a
    new file in the temporary folder; return its path (or a note why not)."""
    text = (f"simxen {__version__}\ncommand: simxen {' '.join(argv)}\n\n"
            + traceback.format_exc())
    try:
        fd, path = tempfile.mkstemp(prefix="simxen-traceback-", suffix=".txt")
        with os.fdopen(fd, "w", encoding="utf-8") as fp:
            fp.write(text)
    except OSError as exc:
        return f"<not saved: {exc.strerror}>"
    return path


def main(argv=None):
    """Run ``simxen ARGV``; return the exit status (see the module doc)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if a in COMMANDS), "")
    name = f"simxen {command}".rstrip()
    try:
        parser = build_parser(argv)
        args = parser.parse_args(argv)
        return int(args._module.main(args) or 0)
    except SimxenError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except SystemExit:
        raise                              # argparse: --help (0), usage error (2)
    except Exception as exc:               # a bug in simxen, not in the user's input
        where = save_traceback(argv)
        print(f"{name}: internal error ({type(exc).__name__}: {_one_line(exc)}); "
              f"full traceback in {where} -- please report it", file=sys.stderr)
        return INTERNAL_ERROR


def _one_line(exc) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 200 else text[:197] + "..."


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""The ``simxen`` command.

Exit status: 0 success, 1 an expectation failed, 2 usage or input error.
Each subcommand lives in the module that owns it; this file only parses the
command line and turns :class:`simxen.errors.SimxenError` into one line on
standard error.
"""

import argparse
import importlib
import sys

from simxen import __version__
from simxen.errors import SimxenError

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
}


def build_parser(argv=()):
    """The argument parser. Only the chosen subcommand's module is imported
    (start-up stays fast, and one layer's import cost is not every command's)."""
    parser = argparse.ArgumentParser(
        prog="simxen",
        description="Discrete-event simulator of Xen's split-driver virtual TPM.",
        epilog="Exit status: 0 success, 1 an expectation failed, 2 usage or input error.",
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


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        return int(args._module.main(args) or 0)
    except SimxenError as exc:
        print(f"simxen {args.command}: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print(f"simxen {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

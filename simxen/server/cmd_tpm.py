"""Stand-alone TPM 2.0 engine: ``simxen tpm serve``.

Serves one software TPM on loopback so that real tools reach it::

    simxen tpm serve --port 2321 --state tpm.state &
    export TPM2TOOLS_TCTI=mssim:host=127.0.0.1,port=2321
    tpm2_startup -c                  # a fresh TPM answers nothing before TPM2_Startup
    tpm2_pcrread sha256:0,1,2        # PCRs are listed one by one (no ranges)

``--protocol mssim`` (default) uses the Microsoft simulator protocol on
ports P and P+1 and flushes what each tool run left loaded when it
disconnects; ``--protocol swtpm`` speaks swtpm's raw protocol (data P,
control P+1).  With ``--state FILE`` the TPM starts from the file if it
exists; the file is written atomically (temporary file, fsync, rename)
before the response to every command that changed the TPM's persistent
state, and once more on exit, so even a SIGKILL loses no answered change.
Each command is logged to standard error by name and response code.
Ctrl-C or SIGTERM stops it (exit status 130 or 143, as any simxen command
a signal stops; swtpm's CMD_SHUTDOWN: 0).
"""

import argparse
import sys

from simxen.errors import InputError
from simxen.server import foreground
from simxen.server.resource_manager import ResourceManager, describe
from simxen.server.state_file import PersistingEngine, StateFile
from simxen.tpm import TpmEngine


def add_arguments(parser):
    sub = parser.add_subparsers(dest="tpm_command", metavar="ACTION")
    sub.required = True
    p = sub.add_parser("serve", help="serve a TPM 2.0 engine on loopback for tpm2-tools",
                       description=__doc__.split("\n\n", 1)[1].replace("::\n", ":\n"),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    foreground.add_listen_arguments(p)
    p.add_argument("--state", metavar="FILE",
                   help="load TPM state from FILE if present; save it there after every "
                        "command that changes persistent state, and on exit")
    p.add_argument("--seed", help="derive the primary seeds from this text (fresh TPM only)")
    p.add_argument("--quiet", action="store_true", help="do not log each command")


def main(args):
    if args.tpm_command != "serve":
        raise InputError(f"unknown action {args.tpm_command!r}")
    foreground.check_free(args.host, args.port)        # before the state is read or written
    err = sys.stderr
    state = None
    if args.state:
        state = StateFile(args.state)
        state.check_writable()                         # now, not after the session
        engine = state.load(args.seed)
        state.save(engine)              # a fresh TPM's seeds are on disk before any tool sees them
        backend = PersistingEngine(engine, state, on_save_error=lambda exc: print(
            f"simxen tpm: {exc}", file=err, flush=True))
    else:
        engine = TpmEngine(seed=args.seed.encode() if args.seed is not None else None,
                           powered=True)
        backend = engine

    def log(client, command, response, locality):
        print(f"[client {client.ident}] {describe(command, response)}", file=err, flush=True)

    manager = ResourceManager(backend, log=None if args.quiet else log)
    server = foreground.start(manager, args.protocol, args.host, args.port, platform=engine)

    def announce():
        print(f"simxen tpm: serving a TPM 2.0 ({args.protocol}) on "
              f"{foreground.listening_on(server, args.host)} "
              f"and {args.port + 1}", file=err, flush=True)
    try:
        signum = foreground.wait_until_stopped(server, ready=announce)
    finally:
        if state is not None:
            with manager.lock:
                state.save(engine)
            print(f"simxen tpm: state saved to {args.state}", file=err, flush=True)
    return foreground.exit_status(signum)

"""Stand-alone TPM 2.0 engine: ``simxen tpm serve``.

Serves one software TPM on loopback so that real tools reach it::

    simxen tpm serve --port 2321 --state tpm.state &
    export TPM2TOOLS_TCTI=mssim:host=127.0.0.1,port=2321
    tpm2_startup -c && tpm2_pcrread sha256:0-7

``--protocol mssim`` (default) uses the Microsoft simulator protocol on
ports P and P+1 and flushes what each tool run left loaded when it
disconnects; ``--protocol swtpm`` speaks swtpm's raw protocol (data P,
control P+1).  With ``--state FILE`` the TPM starts from the file if it
exists and writes its state back on exit (Ctrl-C or SIGTERM).  Each command
is logged to standard error by name and response code.
"""

import os
import sys

from simxen.errors import InputError
from simxen.server import foreground
from simxen.server.resource_manager import ResourceManager, describe
from simxen.tpm import StateError, TpmEngine


def add_arguments(parser):
    sub = parser.add_subparsers(dest="tpm_command", metavar="ACTION")
    sub.required = True
    p = sub.add_parser("serve", help="serve a TPM 2.0 engine on loopback for tpm2-tools",
                       description=__doc__.split("\n\n")[1])
    foreground.add_listen_arguments(p)
    p.add_argument("--state", metavar="FILE",
                   help="load TPM state from FILE if present; write it there on exit")
    p.add_argument("--seed", help="derive the primary seeds from this text (fresh TPM only)")
    p.add_argument("--quiet", action="store_true", help="do not log each command")


def load_engine(state_path, seed):
    """The engine: restored from ``state_path`` if that file exists."""
    if state_path and os.path.exists(state_path):
        try:
            with open(state_path, "rb") as f:
                blob = f.read()
        except OSError as exc:
            raise InputError(f"cannot read TPM state: {exc.strerror}", path=state_path) from None
        try:
            return TpmEngine.from_state(blob)
        except StateError as exc:
            raise InputError(str(exc), path=state_path) from None
    return TpmEngine(seed=seed.encode() if seed is not None else None, powered=True)


def save_engine(engine, state_path):
    """Write the state atomically (temporary file, then rename)."""
    tmp = state_path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(engine.save_state())
        os.replace(tmp, state_path)
    except OSError as exc:
        raise InputError(f"cannot write TPM state: {exc.strerror}", path=state_path) from None


def main(args):
    if args.tpm_command != "serve":
        raise InputError(f"unknown action {args.tpm_command!r}")
    foreground.check_port(args.port)                   # before the state is read
    if args.state:
        folder = os.path.dirname(os.path.abspath(args.state))
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            raise InputError(f"folder {folder} does not exist or is not writable",
                             path=args.state, key="--state")
    engine = load_engine(args.state, args.seed)
    err = sys.stderr

    def log(client, command, response, locality):
        print(f"[client {client.ident}] {describe(command, response)}", file=err, flush=True)

    manager = ResourceManager(engine, log=None if args.quiet else log)
    server = foreground.start(manager, args.protocol, args.host, args.port, platform=engine)

    def announce():
        print(f"simxen tpm: serving a TPM 2.0 ({args.protocol}) on {args.host}:{args.port} "
              f"and {args.port + 1}", file=err, flush=True)
    try:
        foreground.wait_until_stopped(server, ready=announce)
    finally:
        if args.state:
            with manager.lock:
                save_engine(engine, args.state)
            print(f"simxen tpm: state saved to {args.state}", file=err, flush=True)
    return 0

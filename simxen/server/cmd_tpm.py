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
import signal
import sys
import threading

from simxen.errors import InputError
from simxen.server.mssim import MssimServer
from simxen.server.resource_manager import ResourceManager, describe
from simxen.server.swtpm import SwtpmServer
from simxen.tpm import StateError, TpmEngine


def add_arguments(parser):
    sub = parser.add_subparsers(dest="tpm_command", metavar="ACTION")
    sub.required = True
    p = sub.add_parser("serve", help="serve a TPM 2.0 engine on loopback for tpm2-tools",
                       description=__doc__.split("\n\n")[1])
    p.add_argument("--port", type=int, default=2321,
                   help="data/command port P (P+1 is the platform/control port; default 2321)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--protocol", choices=("mssim", "swtpm"), default="mssim",
                   help="transport: mssim (default) or swtpm")
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
    if not 1 <= args.port <= 65534:
        raise InputError("port must be between 1 and 65534", key="--port")
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
    stop = threading.Event()
    try:
        if args.protocol == "mssim":
            server = MssimServer(manager, args.host, args.port, platform=engine)
        else:
            server = SwtpmServer(manager, args.host, args.port, platform=engine,
                                 on_shutdown=stop.set)
    except OSError as exc:
        raise InputError(f"cannot listen on {args.host}:{args.port}-{args.port + 1}: "
                         f"{exc.strerror}", key="--port") from None
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server.start()
    print(f"simxen tpm: serving a TPM 2.0 ({args.protocol}) on {args.host}:{args.port} "
          f"and {args.port + 1}", file=err, flush=True)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.stop()
        if args.state:
            with manager.lock:
                save_engine(engine, args.state)
            print(f"simxen tpm: state saved to {args.state}", file=err, flush=True)
    return 0

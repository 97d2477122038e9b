"""Running a TPM server in the foreground of a command: bind, serve, stop on a signal.

Both ``simxen tpm serve`` and ``simxen serve`` do the same around their
backend: open the mssim or swtpm port pair (a port in use is the user's
problem, so an :class:`~simxen.errors.InputError` naming ``--port``), serve
until SIGTERM, Ctrl-C or the swtpm client's CMD_SHUTDOWN, then stop the
listening threads before the command writes its state or trace, and exit
with the shell's status for the signal (143, 130; 0 after CMD_SHUTDOWN)::

    server = start(manager, "mssim", "127.0.0.1", 2321)
    signum = wait_until_stopped(server, ready=lambda: print("listening ..."))  # once stopped
    return exit_status(signum)
"""

from __future__ import annotations

import errno
import functools
import signal
import socket
import threading
import time

from simxen.errors import InputError
from simxen.server.loopback import UNUSABLE, bind_pair, bound_socket, format_address
from simxen.server.mssim import MssimServer
from simxen.server.swtpm import SwtpmServer

__all__ = ["add_listen_arguments", "check_free", "check_port", "exit_status", "listening_on",
           "start",
           "wait_until_stopped", "PROTOCOLS"]

#: Transports a foreground server speaks.
PROTOCOLS = ("mssim", "swtpm")


def add_listen_arguments(parser):
    """``--port``, ``--host`` and ``--protocol``, as every TPM server command takes them."""
    parser.add_argument("--port", type=int, default=2321,
                        help="data/command port P (P+1 is the platform/control port; default 2321)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address or name to bind: 127.0.0.1 (default), ::1, localhost, "
                        "0.0.0.0, :: (IPv6 addresses with or without [brackets])")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="mssim",
                        help="transport: mssim (default) or swtpm")


def check_port(port):
    """``InputError`` naming ``--port`` unless ports ``port`` and ``port + 1`` can exist."""
    if not 1 <= port <= 65534:
        raise InputError(f"port must be between 1 and 65534, found {port}", key="--port")


def check_free(host, port):
    """``InputError`` now, before a long boot, if ``host:port`` or ``port + 1`` cannot
    be bound (in use, privileged, not this machine's address); :func:`start` binds
    them for good later -- a port another process takes in between is still
    refused there, with the same line."""
    check_port(port)
    try:
        for sock in bind_pair(host, port, functools.partial(bound_socket, reuse=True)):
            sock.close()                        # bound as the server binds, on the same address
    except OSError as exc:
        raise _listen_error(exc, host, port) from None


def start(manager, protocol, host, port, *, platform=None):
    """Bind and start the ``protocol`` server for ``manager``; return it.

    The server gets a ``stop_requested`` :class:`threading.Event` that
    swtpm's CMD_SHUTDOWN sets. ``InputError`` if the ports cannot be bound.
    """
    if protocol not in PROTOCOLS:
        raise InputError(f"expected one of {', '.join(PROTOCOLS)}, found {protocol!r}",
                         key="--protocol")
    check_port(port)
    stop = threading.Event()
    try:
        if protocol == "mssim":
            server = MssimServer(manager, host, port, platform=platform)
        else:
            server = SwtpmServer(manager, host, port, platform=platform, on_shutdown=stop.set)
    except OSError as exc:
        raise _listen_error(exc, host, port) from None
    server.stop_requested = stop
    return server.start()


def listening_on(server, host) -> str:
    """Where ``server`` listens, for the command's "listening" line: ``127.0.0.1:2321``,
    ``[::1]:2321``, or for a name the address it bound, ``localhost ([::1]:2321)``."""
    pair = server.pair
    bound = format_address(pair.address, pair.port)
    return bound if pair.address == host.strip("[]") else f"{host} ({bound})"


def exit_status(signum) -> int:
    """The command's exit status once :func:`wait_until_stopped` returned ``signum``:
    the shell's 128 + N for a signal (130 Ctrl-C, 143 SIGTERM), as every ``simxen``
    command stopped by one; 0 for a stop the client asked for (swtpm's CMD_SHUTDOWN)."""
    return 0 if signum is None else 128 + int(signum)


def _listen_error(exc, host, port) -> InputError:
    """Why ``host:port`` and ``port + 1`` cannot be bound, blamed on the option at fault:
    ``--host`` for a name that does not resolve or an address that is not this
    machine's, ``--port`` otherwise (in use; below 1024 without the right to bind it)."""
    text = f"cannot listen on {format_address(host, port)}-{port + 1}: {exc.strerror or exc}"
    if isinstance(exc, socket.gaierror) or exc.errno in UNUSABLE:
        return InputError(text, key="--host")
    if exc.errno == errno.EACCES and port < _UNPRIVILEGED_PORT_START:
        text += (f" (a port below {_UNPRIVILEGED_PORT_START} needs root or "
                 "CAP_NET_BIND_SERVICE; try --port 2321)")
    return InputError(text, key="--port")


#: Linux's default net.ipv4.ip_unprivileged_port_start: lower ports are privileged
_UNPRIVILEGED_PORT_START = 1024


def wait_until_stopped(server, *, ready=None, poll=0.2):
    """Serve until SIGTERM, Ctrl-C (SIGINT) or ``server.stop_requested``; then stop the
    server. Returns the signal that stopped it, or ``None`` (``stop_requested``).

    ``ready()`` (the command's "listening" line) runs once the signals are
    handled here, so a signal that follows it always ends in a clean stop.
    The handlers only note the signal. A handler runs in the main thread
    between two of its bytecodes: one that sets a :class:`threading.Event`
    can find the event's lock held by the ``Event.wait`` it interrupted and
    wait for it forever, and a ``KeyboardInterrupt`` can surface anywhere in
    the waiting code. So the main thread sleeps, without a lock, and looks
    at the note (and at the event, which a server thread may set) every
    ``poll`` seconds. Must run in the main thread; the previous handlers are
    put back before returning.
    """
    stop = server.stop_requested
    signalled = []
    previous = {}
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, lambda signum, _frame: signalled.append(signum))
        if ready is not None:
            ready()
        while not signalled and not stop.is_set():
            time.sleep(poll)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.stop()
    return signal.Signals(signalled[0]) if signalled else None

"""Two listening TCP ports (P and P+1) served by threads, and exact reads.

Both TPM transports tpm2-tss speaks (mssim and swtpm) use a data port P and a
control/platform port P+1.  :class:`PortPair` binds both (loopback by
default), runs one thread per connection, and stops cleanly;
:class:`PortPairServer` is the start and stop both servers inherit.

The host may be an IPv4 or IPv6 address or a name: :func:`listen_addresses`
asks ``getaddrinfo`` what to bind, in its order (``::1`` is an IPv6 socket,
``localhost`` the first of its addresses this machine has, ``::`` every
address of both families where the system's ``bindv6only`` is 0, Linux's
default).
"""

import collections
import errno
import fcntl
import os
import random
import socket
import tempfile
import time
import socketserver
import threading


def listen_addresses(host, port):
    """``[(family, sockaddr)]`` to bind a listening TCP socket on ``host``, port ``port``,
    in ``getaddrinfo``'s order, each once. ``host`` may be bracketed as in a URL
    (``[::1]``). ``socket.gaierror`` when it names nothing, or is no name at all."""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    found = []
    try:
        answers = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0,
                                     socket.AI_PASSIVE)
    except UnicodeError:        # a label IDNA cannot encode: empty (a..b) or over 63 bytes
        raise socket.gaierror(socket.EAI_NONAME, "not a host name (an empty label, or one "
                              "longer than 63 characters)") from None
    for family, _, _, _, sockaddr in answers:
        if family in (socket.AF_INET, socket.AF_INET6) and (family, sockaddr) not in found:
            found.append((family, sockaddr))
    return found


def _with_port(sockaddr, port):
    """``sockaddr`` (an IPv4 pair or IPv6 4-tuple) with another port."""
    return (sockaddr[0], port) + tuple(sockaddr[2:])


#: bind's errors that say this machine cannot listen on an address at all: not one of
#: its addresses (EADDRNOTAVAIL), a family it lacks (EAFNOSUPPORT: IPv6 disabled), an
#: address bind cannot take (EINVAL: an IPv6 link-local one without its %interface).
#: For these, a name's next address is tried; any other error is the answer.
UNUSABLE = (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT, errno.EINVAL)


def bind_pair(host, port, bind):
    """``bind(family, sockaddr)`` for port ``port`` then ``port + 1`` on the first of
    :func:`listen_addresses` this machine can listen on; returns the pair of what
    ``bind`` returned (a first port bound where the second fails is ``close()``-d).

    An address that is :data:`UNUSABLE` here is passed over (``localhost`` on a
    host without IPv6). A port in use, or one this process may not bind, is not:
    a client resolving the same name may try that address first, and would reach
    whoever holds the port there -- so it is the error.

    :raises OSError: that error, or the first address's when none is usable.
    """
    unusable = None
    for family, sockaddr in listen_addresses(host, port):
        first = None
        try:
            first = bind(family, sockaddr)
            return first, bind(family, _with_port(sockaddr, port + 1))
        except OSError as exc:
            if first is not None:
                first.close()
            if exc.errno not in UNUSABLE:
                raise
            unusable = unusable or exc
    if unusable is None:                        # getaddrinfo answered, but no IP address
        raise socket.gaierror(socket.EAI_NONAME, "no IPv4 or IPv6 address")
    raise unusable


def format_address(host, port) -> str:
    """``host:port``, an IPv6 address bracketed (``[::1]:2321``) as URLs write it."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


class ConnectionClosed(Exception):
    """The peer closed the connection (possibly in the middle of a message)."""


def recv_exact(sock, n):
    """Exactly ``n`` bytes from ``sock``; :class:`ConnectionClosed` on EOF."""
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionClosed()
        buf += chunk
    return bytes(buf)


#: where Linux takes the source port of an outgoing connection (``ip_local_port_range``)
_EPHEMERAL = "/proc/sys/net/ipv4/ip_local_port_range"


def _ephemeral_low(default=32768):
    """The lowest port Linux hands out to connections that bind no port themselves."""
    try:
        with open(_EPHEMERAL) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return default


#: One empty file per port pair :func:`free_port_pair` hands out, locked (``flock``)
#: by the process it was handed to: the agreement between every process that asks.
PORT_LOCKS = os.path.join(tempfile.gettempdir(), "simxen-ports")
#: how many port pairs a process keeps reserved (its oldest reservation is dropped
#: after this many more: by then the server it was for has long bound its ports)
HELD_PAIRS = 256

_held = collections.deque()         # the locked descriptors of this process's reservations
_held_lock = threading.Lock()


def _reserve(port):
    """Lock ``port``'s file in :data:`PORT_LOCKS` for this process: its descriptor,
    or None if another process (or another reservation of this one) holds it."""
    try:
        os.mkdir(PORT_LOCKS)
        os.chmod(PORT_LOCKS, 0o1777)            # every user's tests share one agreement
    except FileExistsError:
        pass
    except OSError:
        return None
    try:
        fd = os.open(os.path.join(PORT_LOCKS, f"{port}.lock"), os.O_RDONLY | os.O_CREAT, 0o444)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _keep(fd):
    with _held_lock:
        _held.append(fd)
        if len(_held) > HELD_PAIRS:
            os.close(_held.popleft())           # closing the descriptor releases its lock


def free_port_pair(host="127.0.0.1", between=None):
    """An even port P such that P and P+1 are both free on ``host`` right now, and
    that no other caller of this function is handed while this process holds it.

    P is drawn from below the kernel's ephemeral range (10000 up to
    ``ip_local_port_range``'s low end): a port the kernel picked for ``bind(0)``
    lies inside that range, where any client's next connection may take it as
    its source port before the server that was meant to have it binds -- which
    tests that start a server and then run clients met about once in eight runs.
    Below the range only a process that names the port can take it.

    "Free right now" is not "still free when the server binds": a server is
    often a new process that binds a second later, and in that second another
    process (a second pytest-xdist worker, the tests of a second checkout) could
    find the same pair free.  So the pair is also reserved: P's lock file in
    :data:`PORT_LOCKS` stays locked (``flock``) by this process for its last
    :data:`HELD_PAIRS` pairs, and a pair whose file another reservation holds --
    in this process or any other -- is never handed out.  P is even, so two
    pairs never overlap.

    :param between: ``(low, high)``: draw P from these ports instead (both even).
    :raises OSError: no pair is free after 200 draws.
    """
    if between is not None:
        low, high = between
    else:
        low, high = 10000, _ephemeral_low() - 2
        if high <= low:                         # an unusual ip_local_port_range
            low, high = 1024, 65533
    pick = random.Random()      # seeded from the OS: nothing simulated depends on it
    for _ in range(200):
        port = pick.randrange(low, high + 1, 2)
        fd = _reserve(port)
        if fd is None:
            continue
        try:
            for sock in bind_pair(host, port, bound_socket):
                sock.close()
        except OSError:
            os.close(fd)                        # bound by a program that does not ask us
            continue
        _keep(fd)
        return port
    raise OSError(f"no free port pair on {host} between {low} and {high + 1}")


def wait_listening(port, timeout=20.0, process=None, host="127.0.0.1"):
    """Whether something accepts connections on ``port`` within ``timeout``
    seconds; gives up at once if ``process`` (a Popen that should be the
    listener) has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


#: Linux's TCP_QUICKACK (absent elsewhere: then nothing is done)
_QUICKACK = getattr(socket, "TCP_QUICKACK", None)


class BufferedReader:
    """Exact reads from a socket with one buffer, so a message that arrived
    in one segment costs one ``recv`` however many fields it is read in.

    Before it waits for more bytes, what came so far is acknowledged at once
    (TCP_QUICKACK).  tpm2-tss's mssim and swtpm TCTIs
    write a command in two pieces (the 9-byte header, then the command) on a
    socket with Nagle's algorithm on: the second piece waits for the ACK of
    the first, which a delayed ACK holds back for up to 40 ms -- more than
    the TPM's own work on nearly every command.
    """

    __slots__ = ("sock", "buf")

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def read(self, n):
        while len(self.buf) < n:
            if _QUICKACK is not None:       # acknowledge what came before waiting
                self.sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
            chunk = self.sock.recv(max(65536, n))
            if not chunk:
                raise ConnectionClosed()
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


def bound_socket(family, sockaddr, *, reuse=False):
    """A TCP socket of ``family`` bound to ``sockaddr``; with ``reuse``, SO_REUSEADDR
    first, as a server binds (a port whose last connection is in TIME_WAIT binds)."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if reuse:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
    except OSError:
        sock.close()
        raise
    return sock


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, family, address, handle):
        self._handle = handle
        self.address_family = family        # socketserver makes its socket of this family
        super().__init__(address, _Handler)

    def close(self):
        self.server_close()


class _Handler(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self.server._handle(self.request)
        except (ConnectionClosed, ConnectionError, OSError):
            pass


class PortPair:
    """Serve ``data_handler(sock)`` on ``port`` and ``control_handler(sock)``
    on ``port + 1``.  ``OSError`` if a port is taken."""

    def __init__(self, host, port, data_handler, control_handler):
        self.host = host
        self.port = port
        self.data, self.control = bind_pair(host, port, lambda family, sockaddr: _Server(
            family, sockaddr, data_handler if sockaddr[1] == port else control_handler))
        self._threads = []

    @property
    def address(self) -> str:
        """The address the ports are bound to (``127.0.0.1``, ``::1``...)."""
        return self.data.server_address[0]

    def start(self):
        for srv in (self.data, self.control):
            t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2},
                                 daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self):
        for srv in (self.data, self.control):
            srv.shutdown()
            srv.server_close()
        for t in self._threads:
            t.join(timeout=5)


class PortPairServer:
    """The listening half every TPM server here shares: its :class:`PortPair` and
    the start and stop of it.

    A transport (:class:`~simxen.server.mssim.MssimServer`,
    :class:`~simxen.server.swtpm.SwtpmServer`) derives from it and passes its two
    connection handlers: ``data_handler`` for port P, ``control_handler`` for
    P + 1. With ``listen=False`` nothing is bound: :attr:`pair` is ``None``,
    :meth:`start` and :meth:`stop` do nothing, and only the handlers are used,
    on sockets the caller made (the fuzzer's). ``OSError`` if a port is taken.
    """

    def __init__(self, host, port, data_handler, control_handler, *, listen=True):
        #: the two listening ports; ``None`` with ``listen=False``
        self.pair = PortPair(host, port, data_handler, control_handler) if listen else None

    def start(self):
        """Serve both ports from their own threads; returns ``self``."""
        if self.pair is not None:
            self.pair.start()
        return self

    def stop(self):
        """Stop serving and close both ports."""
        if self.pair is not None:
            self.pair.stop()

"""Two listening TCP ports (P and P+1) served by threads, and exact reads.

Both TPM transports tpm2-tss speaks (mssim and swtpm) use a data port P and a
control/platform port P+1.  :class:`PortPair` binds both (loopback by
default), runs one thread per connection, and stops cleanly.
"""

import random
import socket
import time
import socketserver
import threading


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


def free_port_pair(host="127.0.0.1"):
    """A port P such that P and P+1 are both free on ``host`` right now.

    P is drawn from below the kernel's ephemeral range (10000 up to
    ``ip_local_port_range``'s low end): a port the kernel picked for ``bind(0)``
    lies inside that range, where any client's next connection may take it as
    its source port before the server that was meant to have it binds -- which
    tests that start a server and then run clients met about once in eight runs.
    Below the range only a process that names the port can take it.
    """
    low, high = 10000, _ephemeral_low() - 2
    pick = random.Random()      # seeded from the OS: nothing simulated depends on it
    for _ in range(200):
        port = pick.randint(low, high) if high > low else pick.randint(1024, 65533)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind((host, port))
                b.bind((host, port + 1))
            return port
        except OSError:
            continue
    raise OSError("no free port pair on " + host)


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


class BufferedReader:
    """Exact reads from a socket with one buffer, so a message that arrived
    in one segment costs one ``recv`` however many fields it is read in."""

    __slots__ = ("sock", "buf")

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(max(65536, n))
            if not chunk:
                raise ConnectionClosed()
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, address, handle):
        self._handle = handle
        super().__init__(address, _Handler)


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
        self.data = _Server((host, port), data_handler)
        try:
            self.control = _Server((host, port + 1), control_handler)
        except OSError:
            self.data.server_close()
            raise
        self._threads = []

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

"""The tests' own TPM clients over a socket: mssim's two connections, framed by
:mod:`simxen.protocols.mssim`, and swtpm's data port, which carries bare TPM packets
(their size read by :mod:`simxen.tpm.header`). Each layout has its one source there;
bytes are read with :func:`simxen.server.loopback.recv_exact` (a closed connection raises
``ConnectionClosed``).

tpm2-tss's TCTIs drive the same servers in ``tests/interop``; these clients are for the
tests that need a byte-exact or a broken conversation no tool would have.
"""

import socket

from simxen.protocols import mssim
from simxen.server.loopback import recv_exact
from simxen.tpm import header


def bare_exchange(sock, command):
    """Send ``command`` as it is (swtpm's data port); the response, read by its own size."""
    sock.sendall(command)
    head = recv_exact(sock, header.HEADER_SIZE)
    return head + recv_exact(sock, header.size(head) - header.HEADER_SIZE)


def exchange(sock, command, locality=0):
    """Send ``command`` on an mssim command connection; the response (its trailing 0 checked)."""
    sock.sendall(mssim.send_command_header(locality, len(command)) + command)
    response = recv_exact(sock, mssim.unpack_u32(recv_exact(sock, mssim.CODE_SIZE)))
    assert recv_exact(sock, len(mssim.ACK)) == mssim.ACK
    return response


class MssimClient:
    """A command and a platform connection to ``host:port`` and ``port + 1``.

    ``power_on`` sends POWER_ON and NV_ON first, as the TCTI does when it connects.
    """

    def __init__(self, port, host="127.0.0.1", *, power_on=False, timeout=None):
        self.cmd = socket.create_connection((host, port), timeout=timeout)
        self.plat = socket.create_connection((host, port + 1), timeout=timeout)
        if power_on:
            for signal in (mssim.SIGNAL_POWER_ON, mssim.SIGNAL_NV_ON):
                self.plat.sendall(mssim.pack_u32(signal))
                assert recv_exact(self.plat, len(mssim.ACK)) == mssim.ACK

    def execute(self, command, locality=0):
        return exchange(self.cmd, command, locality)

    def close(self):
        self.cmd.close()
        self.plat.close()

"""The Microsoft TPM simulator's TCP protocol, as tpm2-tss's ``mssim`` TCTI
speaks it (its framing: :mod:`simxen.protocols.mssim`).

Command port P, platform port P+1; a tool opens one connection to each for
its whole run.  On the command port every message starts with a 4-byte
code: ``8`` TPM_SEND_COMMAND (locality u8, size u32, command) is answered
with size u32, the response and a 4-byte 0, written as three sends so that
tshark's TPM dissector sees each part; ``20`` TPM_SESSION_END ends the
client; ``15`` REMOTE_HANDSHAKE is answered with version 1 and flags.  On the
platform port each 4-byte signal gets a 4-byte 0; a command longer than
64 KiB is read past and answered ``TPM_RC_COMMAND_SIZE`` (the connection
stays open); POWER_ON on a powered TPM
does nothing (every tool sends one), RESET is _TPM_Init.

Each command connection is one client of a
:class:`~simxen.server.resource_manager.ResourceManager`: when it ends
(EOF or SESSION_END), the objects and sessions it left loaded are flushed.
"""

from simxen.protocols.mssim import (ACK, CODE_SIZE, COMMAND_HEADER_SIZE,  # noqa: F401
                                    MAX_COMMAND, REMOTE_HANDSHAKE, SIGNAL_POWER_OFF,
                                    SIGNAL_POWER_ON, SIGNAL_RESET, SIGNAL_RESTART,
                                    TPM_SEND_COMMAND, TPM_SESSION_END, TPM_STOP, handshake_reply,
                                    response_parts, unpack_command_header, unpack_u32)
from simxen.server.loopback import BufferedReader, ConnectionClosed, PortPairServer, recv_exact
from simxen.server.resource_manager import as_manager
from simxen.tpm.constants import TPM_RC
from simxen.tpm.engine import error_response



class MssimServer(PortPairServer):
    """Serve ``manager`` over the mssim protocol: a
    :class:`~simxen.server.resource_manager.ResourceManager`, or any backend
    with ``execute(command, locality)``, which then gets one.

    ``platform`` is the object that receives power signals (an engine with
    ``power_on()``/``powered``); ``None`` acknowledges them and does nothing.
    """

    def __init__(self, manager, host="127.0.0.1", port=2321, platform=None, *, listen=True):
        self.manager = as_manager(manager)
        self.platform = platform
        super().__init__(host, port, self.serve_commands, self.serve_platform, listen=listen)

    def serve_commands(self, sock):
        """Serve one connection to the command port until it ends."""
        client = self.manager.open_client()
        reader = BufferedReader(sock)
        try:
            while True:
                try:
                    code = unpack_u32(reader.read(CODE_SIZE))
                except ConnectionClosed:
                    return
                if code == TPM_SEND_COMMAND:
                    locality, size = unpack_command_header(reader.read(COMMAND_HEADER_SIZE))
                    if size > MAX_COMMAND:
                        # more than any TPM takes: read past it, answer as a TPM would
                        for _ in range(size // MAX_COMMAND):
                            reader.read(MAX_COMMAND)
                        reader.read(size % MAX_COMMAND)
                        response = error_response(TPM_RC.COMMAND_SIZE)
                    else:
                        response = client.execute(reader.read(size), locality)
                    # three sends, so that tshark's dissector sees each part
                    for part in response_parts(response):
                        sock.sendall(part)
                elif code == REMOTE_HANDSHAKE:
                    reader.read(CODE_SIZE)      # the client's version
                    sock.sendall(handshake_reply())
                else:                  # SESSION_END, STOP, or unknown: end of client
                    return
        finally:
            client.close()

    def serve_platform(self, sock):
        """Serve one connection to the platform port until it ends."""
        while True:
            try:
                code = unpack_u32(recv_exact(sock, CODE_SIZE))
            except ConnectionClosed:
                return
            if code in (TPM_SESSION_END, TPM_STOP):
                return
            self._signal(code)
            sock.sendall(ACK)

    def _signal(self, code):
        p = self.platform
        if p is None:
            return
        with self.manager.lock:
            if code == SIGNAL_POWER_ON and not getattr(p, "powered", True):
                p.power_on()
            elif code == SIGNAL_POWER_OFF and hasattr(p, "power_off"):
                p.power_off()
            elif code in (SIGNAL_RESET, SIGNAL_RESTART) and hasattr(p, "power_on"):
                p.power_on()

"""swtpm's socket protocol, as tpm2-tss's ``swtpm`` TCTI speaks it.

Data port P carries raw TPM commands and responses; the TCTI opens a new
connection for every command (an mssim-style prefix — code 8, locality,
size — is accepted too, as swtpm does).  Control port P+1 takes a 4-byte
command code and payload and answers a 4-byte result (0 = success) and
payload: CMD_GET_CAPABILITY, CMD_INIT (_TPM_Init), CMD_SHUTDOWN,
CMD_GET_TPMESTABLISHED, CMD_SET_LOCALITY, CMD_HASH_START/DATA/END (the DRTM
sequence at locality 4), CMD_CANCEL_TPM_CMD, CMD_STORE_VOLATILE,
CMD_RESET_TPMESTABLISHED, CMD_STOP, CMD_GET_CONFIG, CMD_SET_BUFFERSIZE.

tpm2-tools sends CMD_SET_LOCALITY once, on a fresh control connection, at the
start of each tool run.  The server takes that as "a new client begins" and
flushes what the previous client left loaded — the only resource
management this connection-per-command protocol allows.
"""

import socket
import struct
import threading

from simxen.server.loopback import ConnectionClosed, PortPairServer, recv_exact
from simxen.server.resource_manager import as_manager

CMD_GET_CAPABILITY = 0x01
CMD_INIT = 0x02
CMD_SHUTDOWN = 0x03
CMD_GET_TPMESTABLISHED = 0x04
CMD_SET_LOCALITY = 0x05
CMD_HASH_START = 0x06
CMD_HASH_DATA = 0x07
CMD_HASH_END = 0x08
CMD_CANCEL_TPM_CMD = 0x09
CMD_STORE_VOLATILE = 0x0A
CMD_RESET_TPMESTABLISHED = 0x0B
CMD_STOP = 0x0E
CMD_GET_CONFIG = 0x0F
CMD_SET_BUFFERSIZE = 0x11

# The control channel's results: TPM 1.2 return codes (libtpms's tpm_error.h), as swtpm
# answers them (src/swtpm/ctrlchannel.c, ctrlchannel_process_fd)
TPM_SUCCESS = 0
TPM_FAIL = 9
TPM_BAD_PARAMETER = 3
TPM_BAD_ORDINAL = 10            #: a command code swtpm does not know
TPM_BAD_LOCALITY = 61           #: CMD_SET_LOCALITY above 4
#: PTM_CAP_* (swtpm's tpm_ioctl.h) of the commands above, and only those: INIT 0x1,
#: SHUTDOWN 0x2, GET_TPMESTABLISHED 0x4, SET_LOCALITY 0x8, HASHING 0x10, CANCEL_TPM_CMD
#: 0x20, STORE_VOLATILE 0x40, RESET_TPMESTABLISHED 0x80, STOP 0x400, GET_CONFIG 0x800,
#: SET_BUFFERSIZE 0x2000 (no GET/SET_STATEBLOB, SET_DATAFD or GET_INFO: a client that
#: checks, as swtpm_ioctl and QEMU do, does not send them)
CAPABILITIES = 0x0000_0000_0000_2CFF
BUFFER_SIZE = 4096

_U32 = struct.Struct(">I")


def _discard_received(sock):
    """Drop what has arrived on ``sock`` and not been read, without waiting for more."""
    while True:
        try:
            if not sock.recv(BUFFER_SIZE, socket.MSG_DONTWAIT):
                return
        except BlockingIOError:
            return


class SwtpmServer(PortPairServer):
    """Serve ``manager`` (a ResourceManager, or any backend with
    ``execute(command, locality)``, which then gets one) over swtpm's protocol.

    ``platform`` gets _TPM_Init on CMD_INIT and the DRTM hash sequence
    (``hash_start``/``hash_data``/``hash_end``) if it has them.
    ``on_shutdown`` is called for CMD_SHUTDOWN (the CLI stops then).
    """

    def __init__(self, manager, host="127.0.0.1", port=2321, platform=None,
                 on_shutdown=None, *, listen=True):
        self.manager = as_manager(manager)
        self.platform = platform
        self.on_shutdown = on_shutdown
        self.locality = 0
        self.established = 0
        self._client = self.manager.open_client()
        self._client_lock = threading.Lock()
        super().__init__(host, port, self.serve_data, self.serve_control, listen=listen)

    def stop(self):
        """Stop serving, then end the current client (flushing what it left loaded)."""
        super().stop()
        self._client.close()

    def new_client(self):
        """End the current client (flushing what it left loaded) and start the next."""
        with self._client_lock:
            self._client.close()
            self._client = self.manager.open_client()

    def serve_data(self, sock):
        """Serve one data-port connection until it ends."""
        pending = b""
        while True:
            # one recv usually holds a whole command; read more only if not
            while len(pending) < 10:
                chunk = sock.recv(BUFFER_SIZE)
                if not chunk:
                    return
                pending += chunk
            locality = self.locality
            if pending[:2] not in (b"\x80\x01", b"\x80\x02") and \
                    _U32.unpack_from(pending)[0] == 8:
                locality = pending[4]
                size = _U32.unpack_from(pending, 5)[0] + 9
                start = 9
            else:
                size = _U32.unpack_from(pending, 2)[0]
                start = 0
                if size > BUFFER_SIZE or size < 10:
                    size = len(pending)      # let the TPM report the size error
            while len(pending) < size:
                chunk = sock.recv(BUFFER_SIZE)
                if not chunk:
                    return
                pending += chunk
            command, pending = pending[start:size], pending[size:]
            client = self._client
            sock.sendall(client.execute(command, locality))

    def serve_control(self, sock):
        """Serve one control-port connection until it ends."""
        fresh = True
        while True:
            try:
                code = _U32.unpack(recv_exact(sock, 4))[0]
            except ConnectionClosed:
                return
            reply = self._control(sock, code, fresh)
            fresh = False
            sock.sendall(reply)
            if code == CMD_SHUTDOWN and self.on_shutdown is not None:
                self.on_shutdown()
                return

    def _control(self, sock, code, fresh):
        ok = _U32.pack(TPM_SUCCESS)
        p = self.platform
        if code == CMD_GET_CAPABILITY:
            return struct.pack(">Q", CAPABILITIES)
        if code == CMD_SET_LOCALITY:
            loc = recv_exact(sock, 1)[0]
            if loc > 4:
                return _U32.pack(TPM_BAD_LOCALITY)
            if fresh:
                self.new_client()
            self.locality = loc
            return ok
        if code == CMD_INIT:
            recv_exact(sock, 4)
            if p is not None:
                with self.manager.lock:
                    p.power_on()
            return ok
        if code == CMD_GET_TPMESTABLISHED:
            return ok + bytes((self.established,))
        if code == CMD_RESET_TPMESTABLISHED:
            recv_exact(sock, 1)
            self.established = 0
            return ok
        if code == CMD_HASH_START:
            return self._drtm("hash_start")
        if code == CMD_HASH_DATA:
            size = _U32.unpack(recv_exact(sock, 4))[0]
            if size > BUFFER_SIZE:
                return _U32.pack(TPM_BAD_PARAMETER)
            return self._drtm("hash_data", recv_exact(sock, size))
        if code == CMD_HASH_END:
            reply = self._drtm("hash_end")
            if reply == ok:
                self.established = 1
            return reply
        if code in (CMD_CANCEL_TPM_CMD, CMD_STORE_VOLATILE, CMD_SHUTDOWN, CMD_STOP):
            return ok
        if code == CMD_GET_CONFIG:
            return ok + _U32.pack(0)
        if code == CMD_SET_BUFFERSIZE:
            recv_exact(sock, 4)
            return ok + _U32.pack(BUFFER_SIZE) + _U32.pack(BUFFER_SIZE) + _U32.pack(BUFFER_SIZE)
        # and the connection stays open, as swtpm's -- without the rest of the message: swtpm
        # reads a message at once (ctrlchannel_recv_cmd), so the payload of a command it does
        # not know (CMD_GET_INFO's flags, CMD_GET_STATEBLOB's type) is not read as commands
        _discard_received(sock)
        return _U32.pack(TPM_BAD_ORDINAL)

    def _drtm(self, method, *args):
        fn = getattr(self.platform, method, None)
        if fn is None:
            return _U32.pack(TPM_FAIL)
        with self.manager.lock:
            ok = fn(*args)
        return _U32.pack(TPM_SUCCESS if ok is not False else TPM_FAIL)

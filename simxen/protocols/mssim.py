"""The framing of the Microsoft TPM 2.0 simulator's TCP protocol ("mssim").

tpm2-tss's ``mssim`` TCTI (``src/tss2-tcti/tcti-mssim.c``) and the reference
simulator (``TcpServer.c`` of the TCG reference code) speak it: on the command
port a client sends the 4-byte code ``TPM_SEND_COMMAND``, the locality (u8) and
the command's size (u32), then the command; the simulator answers with the
response's size (u32), the response, and a 4-byte 0. Platform signals
(POWER_ON, ...) go to the next port as 4-byte codes, each answered by a
4-byte 0. All integers are big-endian.

Wireshark's TPM 2.0 dissector (``epan/dissectors/packet-tpm20.c``) decodes this
on TCP port 2321 (command) and 2322 (platform) without reassembly: each part
must be its own TCP segment, and the server's port must be the lower one.
:mod:`simxen.server.mssim` serves it; :mod:`simxen.analysis.pcap` writes
captures of it.
"""

import struct

__all__ = ["COMMAND_PORT", "PLATFORM_PORT", "TPM_SEND_COMMAND", "REMOTE_HANDSHAKE",
           "TPM_SESSION_END", "TPM_STOP", "SIGNAL_POWER_ON", "SIGNAL_POWER_OFF", "SIGNAL_NV_ON",
           "SIGNAL_RESET", "SIGNAL_RESTART", "MAX_COMMAND", "ACK", "CODE_SIZE",
           "COMMAND_HEADER_SIZE", "pack_u32", "unpack_u32", "send_command_header",
           "unpack_command_header", "response_parts", "handshake_reply"]

#: the simulator's default ports (the dissector's too)
COMMAND_PORT = 2321
PLATFORM_PORT = 2322

TPM_SEND_COMMAND = 8
REMOTE_HANDSHAKE = 15
TPM_SESSION_END = 20
TPM_STOP = 21

SIGNAL_POWER_ON = 1
SIGNAL_POWER_OFF = 2
SIGNAL_NV_ON = 11
SIGNAL_RESET = 17
SIGNAL_RESTART = 18
MAX_COMMAND = 1 << 16

_HEADER = struct.Struct(">IBI")
_AFTER_CODE = struct.Struct(">BI")
_U32 = struct.Struct(">I")

#: the 4-byte 0 that ends a response and answers a platform signal
ACK = b"\0\0\0\0"
#: bytes of the code that starts every message to either port
CODE_SIZE = _U32.size
#: bytes after a ``TPM_SEND_COMMAND`` code and before the command: locality, size
COMMAND_HEADER_SIZE = _AFTER_CODE.size


def pack_u32(value):
    """A code, a size or a signal as the protocol sends it (big-endian u32)."""
    return _U32.pack(value)


def unpack_u32(data):
    """The u32 at the start of ``data`` (a code, a size)."""
    return _U32.unpack_from(data)[0]


def send_command_header(locality, size):
    """The 9 bytes a client sends before a command of ``size`` bytes."""
    return _HEADER.pack(TPM_SEND_COMMAND, locality, size)


def unpack_command_header(data):
    """``(locality, size)``: the :data:`COMMAND_HEADER_SIZE` bytes after ``TPM_SEND_COMMAND``."""
    return _AFTER_CODE.unpack_from(data)


def response_parts(response):
    """The three segments that carry ``response``: size, body, trailing 0."""
    return _U32.pack(len(response)), bytes(response), ACK


def handshake_reply(version=1, flags=0x0F):
    """The answer to ``REMOTE_HANDSHAKE``: the server's protocol version and its flags
    (the reference simulator's ``TcpServer.c`` sends 1 and 0x0F), then the trailing 0."""
    return _U32.pack(version) + _U32.pack(flags) + ACK

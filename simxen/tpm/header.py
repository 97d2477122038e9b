"""The 10-byte header every TPM command and response starts with.

TPM 2.0 (TCG TPM 2.0 Library, Part 1 "Command/Response Structure" and
Part 2 ``TPM_ST``/``TPM_CC``/``TPM_RC``), all big-endian::

    offset  size  command              response
         0     2  tag (TPM_ST)         tag
         2     4  commandSize          responseSize   (the whole packet, header included)
         6     4  commandCode (TPM_CC) responseCode (TPM_RC)

TPM 1.2 (TPM Main Part 3) has the same shape -- ``tag``, ``paramSize``,
``ordinal``/``returnCode`` -- so the 1.2 packets the vTPM manager passes to
the physical TPM read the same way. This module is the one place the layout
is written: the engine, the client, the drivers, the domains and the servers
all read codes through it::

    >>> from simxen.tpm import header
    >>> header.code(bytes.fromhex("80010000000a00000100"))
    256
    >>> header.pack(0x8001, 0x100).hex()
    '80010000000a00000100'

A packet shorter than the header has no code: :func:`code`, :func:`tag` and
:func:`unpack` return ``None`` for it (a driver traces ``cc=None``; the
engine answers ``TPM_RC_COMMAND_SIZE``).
"""

import struct

#: ``tag, size, code`` as one struct (``>HII``)
HEADER = struct.Struct(">HII")
#: bytes of the header: ``len(pack(...))`` of an empty body
HEADER_SIZE = HEADER.size
_CODE = struct.Struct(">I")
_TAG = struct.Struct(">H")


def unpack(packet):
    """``(tag, size, code)`` of ``packet``, or ``None`` when it is shorter than a header."""
    if len(packet) < HEADER_SIZE:
        return None
    return HEADER.unpack_from(packet)


def code(packet):
    """The command code, response code or TPM 1.2 ordinal (bytes 6..9), or ``None`` if short."""
    if len(packet) < HEADER_SIZE:
        return None
    return _CODE.unpack_from(packet, 6)[0]


def tag(packet):
    """The tag (bytes 0..1), or ``None`` when ``packet`` is shorter than 2 bytes."""
    if len(packet) < 2:
        return None
    return _TAG.unpack_from(packet)[0]


def size(packet):
    """The size field (bytes 2..5), or ``None`` when ``packet`` is shorter than a header."""
    if len(packet) < HEADER_SIZE:
        return None
    return _CODE.unpack_from(packet, 2)[0]


def pack(tag, code, body=b""):
    """A whole packet: the header with ``size = 10 + len(body)``, then ``body``."""
    return HEADER.pack(tag, HEADER_SIZE + len(body), code) + body


def with_tag(packet, tag):
    """``packet`` with its tag replaced (nothing else changes)."""
    return _TAG.pack(tag) + packet[2:]

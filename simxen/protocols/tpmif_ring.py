"""A multi-slot vTPM transport: TPM packets in the slots of a ``ring.h`` ring.

**Not Xen's protocol.** Xen's vTPM protocol (:mod:`simxen.protocols.tpmif`,
``tpmif.h`` v2) shares one page that holds one command *or* its response,
so a frontend has at most one command at its backend. This module is the
what-if variant simxen offers beside it, built only from Xen's own generic
shared ring (``xen/include/public/io/ring.h``, :mod:`simxen.protocols.ring`):
the same granted 4 KiB page is a ring of ``N`` slots, so up to ``N``
commands of one frontend wait *at the backend*, and notifications are
suppressed with ring.h's event indices. Comparing the two shows what
concurrency the single page costs.

Each slot is one ring entry of ``entry_size`` bytes (a request and its
response share a slot index, as ring.h's union does). Entry layout, little
endian like the rest of the shared page::

     offset  size  field
     ------  ----  ---------------------------------------------------
          0     2  id        frontend's tag; the response carries it back
          2     1  locality  request: TPM locality; response: 0
          3     1  status    request: 0; response: TPMIF_RING_OK or
                             TPMIF_RING_TOO_BIG (the response did not fit)
          4     4  length    bytes of TPM packet that follow
          8   ...  packet    the TPM command or response

``N`` = ``ring_size(entry_size)``: the largest power of two of entries that
fits after ring.h's 64-byte header (``__RING_SIZE``): 256-byte entries give
8 slots of 248-byte packets.

The frontend asks for this transport by writing ``multi-slot-entry-size``
(:data:`XS_ENTRY_SIZE`) in its device directory beside ``ring-ref``,
``event-channel`` and ``feature-protocol-v2``; a backend that does not know
the key treats the page as tpmif v2 and the connection fails as any garbled
page would.
"""

from __future__ import annotations

import struct

from simxen.protocols.ring import SRING_HEADER, ring_size

__all__ = ["ENTRY_HEADER", "XS_ENTRY_SIZE", "TPMIF_RING_OK", "TPMIF_RING_TOO_BIG",
           "MIN_ENTRY_SIZE", "slots", "capacity", "pack_entry", "unpack_entry"]

#: bytes of an entry's header (id, locality, status, length)
ENTRY_HEADER = 8
#: XenStore key (frontend directory) that selects this transport: the entry size in bytes
XS_ENTRY_SIZE = "multi-slot-entry-size"
#: response status: the packet is complete
TPMIF_RING_OK = 0
#: response status: the backend's response was longer than a slot (packet cut to fit)
TPMIF_RING_TOO_BIG = 1
#: the smallest useful entry: a header and a 10-byte TPM header
MIN_ENTRY_SIZE = ENTRY_HEADER + 10

_HDR = struct.Struct("<HBBI")


def slots(entry_size: int) -> int:
    """Ring entries of ``entry_size`` bytes in one page (ring.h's ``__RING_SIZE``)."""
    if entry_size < MIN_ENTRY_SIZE or entry_size > 4096 - SRING_HEADER:
        raise ValueError(f"entry size {entry_size} outside {MIN_ENTRY_SIZE}.."
                         f"{4096 - SRING_HEADER}")
    return ring_size(entry_size)


def capacity(entry_size: int) -> int:
    """Largest TPM packet one entry carries."""
    return entry_size - ENTRY_HEADER


def pack_entry(ident: int, packet: bytes, *, locality: int = 0, status: int = 0) -> bytes:
    """One entry's bytes (header then packet)."""
    return _HDR.pack(ident & 0xFFFF, locality, status, len(packet)) + bytes(packet)


def unpack_entry(data: bytes, entry_size: int):
    """``(id, locality, status, packet)`` of an entry; a length beyond the slot is cut to it."""
    ident, locality, status, length = _HDR.unpack_from(data, 0)
    length = min(length, entry_size - ENTRY_HEADER)
    return ident, locality, status, bytes(data[ENTRY_HEADER:ENTRY_HEADER + length])

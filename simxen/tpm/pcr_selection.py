"""TPML_PCR_SELECTION: which PCRs of which banks (Part 2, 10.6 and 10.9.7).

A selection is a list of ``(hashAlg, select)`` pairs where ``select`` is the
bitmap bytes: bit *b* of byte *k* selects PCR ``8*k + b``.

    >>> sel = [(0x000B, bytes([0x03, 0, 0]))]          # sha256:0,1
    >>> marshal_pcr_selection(sel).hex()
    '00000001000b03030000'
    >>> pcr_indices(sel[0][1])
    [0, 1]
"""

from simxen.tpm.constants import TPM_RC
from simxen.tpm.errors import TpmError
from simxen.tpm.marshal import Reader, u16, u32

#: What a reader of another TPM's selections accepts: at most 8 banks of 4 bytes
#: (32 PCRs).
PCR_SELECT_MAX = 4
MAX_BANKS = 8
#: What this TPM accepts in a command (Part 2, TPMS_PCR_SELECTION: sizeofSelect
#: ``{PCR_SELECT_MIN:}``, ``pcrSelect {:PCR_SELECT_MAX}``; TPML_PCR_SELECTION:
#: count ``{:HASH_COUNT}``): its 24 PCRs in exactly 3 bytes, its 4 hashes.
TPM_PCR_SELECT_SIZE = 3
TPM_HASH_COUNT = 4


def parse_pcr_selection(r, *, known_hashes=None):
    """Read a TPML_PCR_SELECTION from :class:`Reader` ``r``.

    With ``known_hashes`` (the TPM reading a command) an algorithm not in it
    is ``TPM_RC_HASH``, more than :data:`TPM_HASH_COUNT` entries
    ``TPM_RC_SIZE`` and a bitmap of other than :data:`TPM_PCR_SELECT_SIZE`
    bytes ``TPM_RC_VALUE``, checked as each field is read; without (a client
    reading what a TPM answered) the limits are :data:`MAX_BANKS` and
    :data:`PCR_SELECT_MAX`.
    """
    strict = known_hashes is not None
    count = r.u32()
    if count > (TPM_HASH_COUNT if strict else MAX_BANKS):
        raise TpmError(TPM_RC.SIZE, param=r.param)
    out = []
    for _ in range(count):
        alg = r.u16()
        if strict and alg not in known_hashes:
            raise TpmError(TPM_RC.HASH, param=r.param)
        size = r.u8()
        if size != TPM_PCR_SELECT_SIZE if strict else size > PCR_SELECT_MAX:
            raise TpmError(TPM_RC.VALUE, param=r.param)
        out.append((alg, r.bytes(size)))
    return out


def marshal_pcr_selection(selection):
    """The wire form of a list of ``(hashAlg, select bytes)``."""
    parts = [u32(len(selection))]
    for alg, select in selection:
        parts.append(u16(alg) + bytes((len(select),)) + bytes(select))
    return b"".join(parts)


#: byte value -> the bits set in it, ascending (a bitmap is read a byte at a time)
_BITS = tuple(tuple(b for b in range(8) if value >> b & 1) for value in range(256))


def pcr_indices(select):
    """The PCR numbers set in a bitmap, ascending."""
    return [8 * k + b for k, byte in enumerate(select) for b in _BITS[byte]]


def select_bytes(indices, size=3):
    """A bitmap of ``size`` bytes selecting ``indices``, longer if an index needs it.

    A PCR beyond the bitmap widens it (PCR 31 gives 4 bytes): the selection
    is handed on as asked and the TPM that reads it decides (ignores PCRs it
    does not implement, refuses more than :data:`PCR_SELECT_MAX` bytes with
    ``TPM_RC_VALUE``). A negative index is ``ValueError``.
    """
    indices = list(indices)
    if indices:
        if min(indices) < 0:
            raise ValueError(f"PCR index {min(indices)} is negative")
        size = max(size, max(indices) // 8 + 1)
    out = bytearray(size)
    for i in indices:
        out[i // 8] |= 1 << (i % 8)
    return bytes(out)


def from_bytes(data, *, known_hashes=None):
    """Parse a complete TPML_PCR_SELECTION from ``data``."""
    r = Reader(data)
    sel = parse_pcr_selection(r, known_hashes=known_hashes)
    r.done()
    return sel

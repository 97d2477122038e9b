"""Big-endian marshalling of TPM 2.0 basic types (Part 2, chapter 5 and 10).

:class:`Reader` walks an input buffer; every read that runs past the end raises
:class:`~simxen.tpm.errors.TpmError` with ``TPM_RC_INSUFFICIENT``, and the
engine reports it against the parameter being read.  Writing is done with the
small ``u16``/``u32``/``tpm2b`` helpers, which return ``bytes`` to be joined.

    >>> r = Reader(bytes.fromhex("0004abcdef01000b"))
    >>> r.tpm2b(), r.u16()
    (b'\\xab\\xcd\\xef\\x01', 11)
    >>> tpm2b(b"ab") + u16(11)
    b'\\x00\\x02ab\\x00\\x0b'
"""

import struct

from simxen.tpm.constants import TPM_RC
from simxen.tpm.errors import TpmError

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")

u16 = _U16.pack
u32 = _U32.pack
u64 = _U64.pack


def u8(value):
    return bytes((value,))


def tpm2b(data):
    """A TPM2B: 16-bit size followed by the bytes."""
    return _U16.pack(len(data)) + data


class Reader:
    """Sequential reader over ``data[pos:end]``.

    ``param`` is the number of the command parameter currently being read
    (set by the command code with :meth:`at`); insufficient input is reported
    against it.
    """

    __slots__ = ("data", "pos", "end", "param")

    def __init__(self, data, pos=0, end=None):
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end
        self.param = 1

    def at(self, param):
        """Note that the next bytes belong to parameter number ``param``."""
        self.param = param
        return self

    def _short(self):
        return TpmError(TPM_RC.INSUFFICIENT, param=self.param)

    def remaining(self):
        return self.end - self.pos

    def u8(self):
        p = self.pos
        if p + 1 > self.end:
            raise self._short()
        self.pos = p + 1
        return self.data[p]

    def u16(self):
        p = self.pos
        if p + 2 > self.end:
            raise self._short()
        self.pos = p + 2
        return _U16.unpack_from(self.data, p)[0]

    def u32(self):
        p = self.pos
        if p + 4 > self.end:
            raise self._short()
        self.pos = p + 4
        return _U32.unpack_from(self.data, p)[0]

    def u64(self):
        p = self.pos
        if p + 8 > self.end:
            raise self._short()
        self.pos = p + 8
        return _U64.unpack_from(self.data, p)[0]

    def bytes(self, n):
        p = self.pos
        if p + n > self.end:
            raise self._short()
        self.pos = p + n
        return bytes(self.data[p:p + n])

    def yes_no(self):
        """A TPMI_YES_NO: 0 or 1, anything else ``TPM_RC_VALUE``."""
        value = self.u8()
        if value > 1:
            raise TpmError(TPM_RC.VALUE, param=self.param)
        return value

    def tpm2b(self, maximum=None):
        """A TPM2B.  A size above ``maximum`` is ``TPM_RC_SIZE``."""
        n = self.u16()
        if maximum is not None and n > maximum:
            raise TpmError(TPM_RC.SIZE, param=self.param)
        return self.bytes(n)

    def sub(self, n):
        """A reader over the next ``n`` bytes (for a sized structure)."""
        p = self.pos
        if p + n > self.end:
            raise self._short()
        self.pos = p + n
        r = Reader(self.data, p, p + n)
        r.param = self.param
        return r

    def sized(self, parse):
        """A sized structure (TPM2B_PUBLIC, TPM2B_SENSITIVE_CREATE,
        TPM2B_NV_PUBLIC): ``parse(self)`` after its 16-bit size, read as the
        reference unmarshals it -- on from the size, not inside a window of
        that size -- so a size of 0, or one the structure does not fill
        exactly, is ``TPM_RC_SIZE`` and a structure cut short by the end of
        the command ``TPM_RC_INSUFFICIENT``."""
        size = self.u16()
        if size == 0:
            raise TpmError(TPM_RC.SIZE, param=self.param)
        start = self.pos
        value = parse(self)
        if self.pos - start != size:
            raise TpmError(TPM_RC.SIZE, param=self.param)
        return value

    def done(self):
        """Trailing bytes after the last parameter are ``TPM_RC_SIZE``."""
        if self.pos != self.end:
            raise TpmError(TPM_RC.SIZE)

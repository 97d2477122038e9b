"""An NV index: TPMS_NV_PUBLIC, its authValue and its data (Part 2, 13).

TPMS_NV_PUBLIC = nvIndex u32 || nameAlg u16 || attributes u32 ||
authPolicy TPM2B || dataSize u16; the Name of the index is
``nameAlg || H(TPMS_NV_PUBLIC)``, so it changes when TPMA_NV_WRITTEN is set
by the first write.
"""

from simxen.tpm.algorithms import HASHES
from simxen.tpm.constants import TPM_RC, TPM_NT, TPMA_NV
from simxen.tpm.errors import TpmError
from simxen.tpm.marshal import Reader, tpm2b, u16, u32

#: Largest data an index may hold (also TPM_PT_NV_INDEX_MAX).
NV_INDEX_MAX = 2048
#: Total NV bytes available to indices.
NV_MEMORY = 64 * 1024


class NvIndex:
    """One defined NV index."""

    __slots__ = ("index", "name_alg", "attributes", "auth_policy", "data_size",
                 "auth_value", "data", "_name")

    def __init__(self, index, name_alg, attributes, auth_policy, data_size,
                 auth_value=b"", data=None):
        self.index = index
        self.name_alg = name_alg
        self.attributes = attributes
        self.auth_policy = auth_policy
        self.data_size = data_size
        self.auth_value = auth_value.rstrip(b"\0")
        self.data = bytearray(data) if data is not None else bytearray(b"\xff" * data_size)
        self._name = None

    @property
    def nt(self):
        """TPM_NT: the index type in bits 4..7 of the attributes."""
        return (self.attributes & TPMA_NV.TPM_NT_MASK) >> TPMA_NV.TPM_NT_SHIFT

    @property
    def is_pin(self):
        """A PIN pass or PIN fail index: its data is TPMS_NV_PIN_COUNTER_PARAMETERS
        (pinCount u32, pinLimit u32) and its authValue is a PIN."""
        return self.nt == TPM_NT.PIN_PASS or self.nt == TPM_NT.PIN_FAIL

    @property
    def pin_count(self):
        return int.from_bytes(self.data[0:4], "big")

    @pin_count.setter
    def pin_count(self, value):
        self.data[0:4] = value.to_bytes(4, "big")

    @property
    def pin_limit(self):
        return int.from_bytes(self.data[4:8], "big")

    def set_attributes(self, attributes):
        self.attributes = attributes
        self._name = None

    def marshal_public(self):
        return (u32(self.index) + u16(self.name_alg) + u32(self.attributes)
                + tpm2b(self.auth_policy) + u16(self.data_size))

    @property
    def name(self):
        if self._name is None:
            self._name = u16(self.name_alg) + HASHES[self.name_alg].digest(self.marshal_public())
        return self._name

    @staticmethod
    def parse_public(r):
        """TPMS_NV_PUBLIC from reader ``r`` -> ``(index, nameAlg, attrs,
        authPolicy, dataSize)``."""
        index = r.u32()
        if index >> 24 != 0x01:                   # TPMI_RH_NV_INDEX
            raise TpmError(TPM_RC.VALUE, param=r.param)
        name_alg = r.u16()
        if name_alg not in HASHES:
            raise TpmError(TPM_RC.HASH, param=r.param)
        attrs = r.u32()
        policy = r.tpm2b(64)
        size = r.u16()
        return index, name_alg, attrs, policy, size

    def serialize(self):
        return self.marshal_public() + tpm2b(self.auth_value) + tpm2b(bytes(self.data))

    @classmethod
    def deserialize(cls, data):
        r = Reader(data)
        pub = cls.parse_public(r)
        auth = r.tpm2b()
        body = r.tpm2b()
        r.done()
        return cls(*pub, auth_value=auth, data=body)

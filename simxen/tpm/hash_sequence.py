"""A hash, HMAC or event sequence object (Part 3, 17).

It sits in a transient slot like any object, is authorized with the
authValue given at its start, and its Name is empty (it has no public area,
its nameAlg is TPM_ALG_NULL — what ESYS puts in cpHash too).  It cannot be
used as a key.

TPM2_ContextSave saves it like any transient object (savedHandle
0x80000001, hierarchy TPM_RH_NULL, so the context dies at the next TPM
Reset) and every ContextLoad of the blob resumes the hashes where they were
(:mod:`simxen.tpm.hash_state`).  The context's plain bytes, inside the
protected blob, are::

    kind u8 (0 hash, 1 HMAC, 2 event) || alg u16 || TPM2B(authValue)
    || TPM2B(first bytes, up to 4) || TPM2B(HMAC key) || count u8
    || count × (alg u16 || hash state)
"""

from simxen.tpm.algorithms import HASHES
from simxen.tpm.constants import TPM_ALG, TPM_RH, TPMA_OBJECT
from simxen.tpm.hash_state import ResumableHash
from simxen.tpm.marshal import tpm2b, u16

_HASH, _HMAC, _EVENT = 0, 1, 2


class HashSequence:
    """Hashes in progress: one hash (``alg``), an HMAC (``key`` given), or an
    event sequence (``alg`` None: every implemented hash at once)."""

    is_sequence = True
    attributes = TPMA_OBJECT.userWithAuth | TPMA_OBJECT.noDA
    hierarchy = TPM_RH.NULL

    def __init__(self, auth_value, alg=None, key=None):
        self.auth_value = auth_value.rstrip(b"\0")
        self.alg = alg
        self.name = b""                  # nameAlg NULL: the empty Name
        self.first_bytes = b""
        self.is_hmac = key is not None
        self._key = b""
        if key is not None:
            block = HASHES[alg].block
            self._key = (HASHES[alg].digest(key) if len(key) > block else key).ljust(block,
                                                                                   b"\0")
            inner = ResumableHash(alg)
            inner.update(bytes(b ^ 0x36 for b in self._key))
            self.states = {alg: inner}
        elif alg is not None:
            self.states = {alg: ResumableHash(alg)}
        else:
            self.states = {a: ResumableHash(a) for a in HASHES}

    def update(self, data):
        if len(self.first_bytes) < 4:
            self.first_bytes = (self.first_bytes + data)[:4]
        for state in self.states.values():
            state.update(data)

    def digests(self):
        """Each hash's digest (an HMAC sequence's: the HMAC, RFC 2104)."""
        if self.is_hmac:
            h = HASHES[self.alg]
            outer = h.new(bytes(b ^ 0x5C for b in self._key))
            outer.update(self.states[self.alg].digest())
            return {self.alg: outer.digest()}
        return {alg: state.digest() for alg, state in self.states.items()}

    # -- context -----------------------------------------------------------
    def serialize(self):
        """The plain bytes of this sequence's context (module docstring)."""
        kind = _HMAC if self.is_hmac else _EVENT if self.alg is None else _HASH
        out = (bytes((kind,)) + u16(self.alg or TPM_ALG.NULL) + tpm2b(self.auth_value)
               + tpm2b(self.first_bytes) + tpm2b(self._key) + bytes((len(self.states),)))
        return out + b"".join(u16(alg) + state.export() for alg, state in self.states.items())

    @classmethod
    def deserialize(cls, reader):
        """The sequence :meth:`serialize` wrote; ``ValueError`` (or a
        :class:`~simxen.tpm.errors.TpmError` from ``reader``) if it is not one."""
        kind = reader.u8()
        alg = reader.u16()
        seq = cls.__new__(cls)
        seq.auth_value = reader.tpm2b(64)
        seq.first_bytes = reader.tpm2b(4)
        seq._key = reader.tpm2b(128)
        seq.alg = None if kind == _EVENT else alg
        seq.is_hmac = kind == _HMAC
        seq.name = b""
        seq.states = {}
        for _ in range(reader.u8()):
            a = reader.u16()
            if a not in HASHES:
                raise ValueError("not a hash")
            seq.states[a] = ResumableHash.restore(a, reader)
        expected = set(HASHES) if kind == _EVENT else {alg}
        if kind not in (_HASH, _HMAC, _EVENT) or set(seq.states) != expected \
                or (kind == _HMAC) != bool(seq._key):
            raise ValueError("not a sequence context")
        reader.done()
        return seq

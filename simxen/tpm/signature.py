"""TPMT_SIGNATURE and TPMT_SIG_SCHEME (Part 2, 11.2-11.3).

    >>> sig = Signature(0x0018, 0x000B, r=b"\\x01" * 32, s=b"\\x02" * 32)
    >>> Signature.from_bytes(sig.marshal()) == sig
    True
"""

from simxen.tpm.algorithms import HASHES
from simxen.tpm.constants import TPM_ALG, TPM_RC
from simxen.tpm.errors import TpmError
from simxen.tpm.marshal import Reader, tpm2b, u16
from simxen.tpm.public import parse_scheme

SIGNING_SCHEMES = {TPM_ALG.RSASSA, TPM_ALG.RSAPSS, TPM_ALG.ECDSA, TPM_ALG.ECDAA, TPM_ALG.HMAC}
_SIG_SCHEMES_OR_NULL = SIGNING_SCHEMES | {TPM_ALG.NULL}


class Signature:
    """A signature: ``alg`` (scheme), ``hash``, and ``sig`` (RSA), ``r``/``s``
    (ECC) or ``digest`` (HMAC)."""

    __slots__ = ("alg", "hash", "sig", "r", "s", "digest")

    def __init__(self, alg, hash=TPM_ALG.NULL, *, sig=b"", r=b"", s=b"", digest=b""):
        self.alg = alg
        self.hash = hash
        self.sig = sig
        self.r = r
        self.s = s
        self.digest = digest

    @classmethod
    def parse(cls, rd, allow_null=True):
        """A TPMT_SIGNATURE (``allow_null`` False: TPMT_SIGNATURE without
        ``+``, where TPM_ALG_NULL is ``TPM_RC_SCHEME``)."""
        alg = rd.u16()
        if alg == TPM_ALG.NULL and allow_null:
            return cls(alg)
        if alg not in SIGNING_SCHEMES:
            raise TpmError(TPM_RC.SCHEME, param=rd.param)
        h = rd.u16()
        if h not in HASHES:
            raise TpmError(TPM_RC.HASH, param=rd.param)
        if alg in (TPM_ALG.RSASSA, TPM_ALG.RSAPSS):
            return cls(alg, h, sig=rd.tpm2b(512))
        if alg == TPM_ALG.HMAC:
            return cls(alg, h, digest=rd.bytes(HASHES[h].size))
        return cls(alg, h, r=rd.tpm2b(66), s=rd.tpm2b(66))

    @classmethod
    def from_bytes(cls, data):
        rd = Reader(data)
        sig = cls.parse(rd)
        rd.done()
        return sig

    def marshal(self):
        if self.alg == TPM_ALG.NULL:
            return u16(self.alg)
        if self.alg in (TPM_ALG.RSASSA, TPM_ALG.RSAPSS):
            return u16(self.alg) + u16(self.hash) + tpm2b(self.sig)
        if self.alg == TPM_ALG.HMAC:
            return u16(self.alg) + u16(self.hash) + self.digest
        return u16(self.alg) + u16(self.hash) + tpm2b(self.r) + tpm2b(self.s)

    def __eq__(self, other):
        return isinstance(other, Signature) and self.marshal() == other.marshal()

    def __repr__(self):
        return f"Signature(alg={self.alg:#06x}, hash={self.hash:#06x})"


def parse_sig_scheme(r):
    """TPMT_SIG_SCHEME -> ``(scheme, hashAlg)``; NULL scheme has NULL hash."""
    return parse_scheme(r, _SIG_SCHEMES_OR_NULL)

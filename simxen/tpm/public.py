"""TPMT_PUBLIC, the public area of an object (Part 2, 12.2), and its Name.

:class:`Public` holds the fields of any object type (RSA, ECC, KEYEDHASH,
SYMCIPHER).  :meth:`Public.parse` validates while it reads (unknown type,
hash, scheme or curve give the TPM's response codes); :meth:`Public.marshal`
gives the canonical wire bytes that the Name is computed over::

    Name = nameAlg || H_nameAlg(TPMT_PUBLIC)

A parsed-then-marshalled public area is byte-identical to its input.
"""

from simxen.tpm.algorithms import HASHES
from simxen.tpm.constants import TPM_ALG, TPM_ECC, TPM_RC
from simxen.tpm.errors import TpmError
from simxen.tpm.marshal import Reader, tpm2b, u16, u32
from simxen.tpm.keys import CURVE_BYTES, RSA_KEY_BITS
from simxen.tpm.symmetric import CIPHERS, MODES

#: Schemes whose details are one hash algorithm.
_HASH_SCHEMES = {TPM_ALG.RSASSA, TPM_ALG.RSAPSS, TPM_ALG.OAEP, TPM_ALG.ECDSA,
                 TPM_ALG.ECDH, TPM_ALG.ECSCHNORR, TPM_ALG.HMAC, TPM_ALG.ECDAA,
                 TPM_ALG.KDF1_SP800_56A, TPM_ALG.KDF1_SP800_108}
RSA_SCHEMES = {TPM_ALG.NULL, TPM_ALG.RSASSA, TPM_ALG.RSAPSS, TPM_ALG.RSAES, TPM_ALG.OAEP}
ECC_SCHEMES = {TPM_ALG.NULL, TPM_ALG.ECDSA, TPM_ALG.ECDH, TPM_ALG.ECDAA}
#: every mode a SYMCIPHER key may name (NULL: chosen per EncryptDecrypt)
SYMCIPHER_MODES = MODES + (TPM_ALG.NULL,)


def parse_sym_def_object(r, modes=(TPM_ALG.CFB, TPM_ALG.NULL)):
    """TPMT_SYM_DEF_OBJECT -> ``(alg, keyBits, mode)`` (bits/mode 0 for NULL).

    ``modes`` are the block-cipher modes this use accepts: CFB (or NULL) for
    a storage key's or session's symmetric, every mode for a SYMCIPHER key
    (:data:`simxen.tpm.symmetric.MODES`).
    """
    alg = r.u16()
    if alg == TPM_ALG.NULL:
        return (alg, 0, 0)
    if alg == TPM_ALG.AES or alg == TPM_ALG.CAMELLIA:
        bits = r.u16()
        if bits not in CIPHERS[alg][1]:                # TPMI_*_KEY_BITS: a value error
            raise TpmError(TPM_RC.VALUE, param=r.param)
        mode = r.u16()
        if mode not in modes:
            raise TpmError(TPM_RC.MODE, param=r.param)
        return (alg, bits, mode)
    if alg == TPM_ALG.XOR:
        h = r.u16()
        if h not in HASHES:
            raise TpmError(TPM_RC.HASH, param=r.param)
        return (alg, h, 0)
    raise TpmError(TPM_RC.SYMMETRIC, param=r.param)


def marshal_sym_def(sym):
    alg, bits, mode = sym
    if alg == TPM_ALG.NULL:
        return u16(alg)
    if alg == TPM_ALG.XOR:
        return u16(alg) + u16(bits)
    return u16(alg) + u16(bits) + u16(mode)


def parse_scheme(r, allowed, error=TPM_RC.SCHEME):
    """A TPMT_*_SCHEME -> ``(scheme, hashAlg)`` (hashAlg NULL if none);
    ``(ECDAA, hashAlg, count)`` for ECDAA, whose details carry the commit
    count (TPMS_SCHEME_ECDAA).  A scheme not in ``allowed`` is ``error``
    (``TPM_RC_KDF`` for a TPMT_KDF_SCHEME)."""
    scheme = r.u16()
    if scheme not in allowed:
        raise TpmError(error, param=r.param)
    if scheme == TPM_ALG.NULL or scheme == TPM_ALG.RSAES:
        return (scheme, TPM_ALG.NULL)
    h = r.u16()
    if h not in HASHES:
        raise TpmError(TPM_RC.HASH, param=r.param)
    if scheme == TPM_ALG.ECDAA:
        return (scheme, h, r.u16())
    if scheme == TPM_ALG.XOR:
        r.u16()
    return (scheme, h)


def marshal_scheme(scheme):
    s, h = scheme[0], scheme[1]
    if s == TPM_ALG.NULL or s == TPM_ALG.RSAES:
        return u16(s)
    if s == TPM_ALG.ECDAA:
        return u16(s) + u16(h) + u16(scheme[2])
    return u16(s) + u16(h)


#: TPMU_PUBLIC_ID of each object type: how its ``unique`` is read
_UNIQUE = {
    TPM_ALG.RSA: lambda r: r.tpm2b(512),
    TPM_ALG.ECC: lambda r: (r.tpm2b(66), r.tpm2b(66)),
    TPM_ALG.KEYEDHASH: lambda r: r.tpm2b(64),
    TPM_ALG.SYMCIPHER: lambda r: r.tpm2b(64),
}


class Public:
    """A TPMT_PUBLIC.  ``unique`` is ``bytes`` except for ECC, where it is
    the pair ``(x, y)``."""

    __slots__ = ("type", "name_alg", "attributes", "auth_policy", "symmetric",
                 "scheme", "key_bits", "exponent", "curve", "kdf", "unique",
                 "_bytes", "_name")

    def __init__(self, type, name_alg, attributes, auth_policy=b"", *,
                 symmetric=(TPM_ALG.NULL, 0, 0), scheme=(TPM_ALG.NULL, TPM_ALG.NULL),
                 key_bits=0, exponent=0, curve=0, kdf=(TPM_ALG.NULL, TPM_ALG.NULL),
                 unique=b""):
        self.type = type
        self.name_alg = name_alg
        self.attributes = attributes
        self.auth_policy = auth_policy
        self.symmetric = symmetric
        self.scheme = scheme
        self.key_bits = key_bits
        self.exponent = exponent
        self.curve = curve
        self.kdf = kdf
        self.unique = unique
        self._bytes = None
        self._name = None

    # -- wire form -----------------------------------------------------
    @classmethod
    def parse(cls, r):
        """Read and validate a TPMT_PUBLIC from reader ``r``, each field as it
        is read (the type first: ``TPM_RC_TYPE``)."""
        type_ = r.u16()
        unique = _UNIQUE.get(type_)
        if unique is None:
            raise TpmError(TPM_RC.TYPE, param=r.param)
        name_alg = r.u16()
        if name_alg not in HASHES:
            raise TpmError(TPM_RC.HASH, param=r.param)
        attrs = r.u32()
        policy = r.tpm2b(64)
        p = cls(type_, name_alg, attrs, policy)
        p.parse_parameters(r)
        p.unique = unique(r)
        return p

    def parse_parameters(self, r):
        """Read this type's TPMU_PUBLIC_PARMS from ``r`` into this area (what
        TPM2_TestParms checks alone)."""
        if self.type == TPM_ALG.RSA:
            self.symmetric = parse_sym_def_object(r, SYMCIPHER_MODES)
            self.scheme = parse_scheme(r, RSA_SCHEMES)
            self.key_bits = r.u16()
            if self.key_bits not in RSA_KEY_BITS:   # TPMI_RSA_KEY_BITS: a value error
                raise TpmError(TPM_RC.VALUE, param=r.param)
            self.exponent = r.u32()
        elif self.type == TPM_ALG.ECC:
            self.symmetric = parse_sym_def_object(r, SYMCIPHER_MODES)
            self.scheme = parse_scheme(r, ECC_SCHEMES)
            self.curve = r.u16()
            if self.curve not in CURVE_BYTES:
                raise TpmError(TPM_RC.CURVE, param=r.param)
            self.kdf = parse_scheme(r, {TPM_ALG.NULL, TPM_ALG.KDF1_SP800_56A,
                                        TPM_ALG.KDF1_SP800_108}, TPM_RC.KDF)
        elif self.type == TPM_ALG.KEYEDHASH:
            scheme = r.u16()
            if scheme == TPM_ALG.HMAC:
                h = r.u16()
                if h not in HASHES:
                    raise TpmError(TPM_RC.HASH, param=r.param)
                self.scheme = (scheme, h)
            elif scheme == TPM_ALG.NULL:
                self.scheme = (scheme, TPM_ALG.NULL)
            else:
                raise TpmError(TPM_RC.SCHEME, param=r.param)
        else:
            self.symmetric = parse_sym_def_object(r, SYMCIPHER_MODES)
            if self.symmetric[0] not in CIPHERS:
                raise TpmError(TPM_RC.SYMMETRIC, param=r.param)

    @classmethod
    def from_bytes(cls, data):
        r = Reader(data)
        p = cls.parse(r)
        r.done()
        return p

    def marshal(self):
        """Canonical TPMT_PUBLIC bytes (cached; do not mutate after calling)."""
        if self._bytes is not None:
            return self._bytes
        parts = [u16(self.type), u16(self.name_alg), u32(self.attributes),
                 tpm2b(self.auth_policy)]
        if self.type == TPM_ALG.RSA:
            parts += [marshal_sym_def(self.symmetric), marshal_scheme(self.scheme),
                      u16(self.key_bits), u32(self.exponent), tpm2b(self.unique)]
        elif self.type == TPM_ALG.ECC:
            parts += [marshal_sym_def(self.symmetric), marshal_scheme(self.scheme),
                      u16(self.curve), marshal_scheme(self.kdf),
                      tpm2b(self.unique[0]), tpm2b(self.unique[1])]
        elif self.type == TPM_ALG.KEYEDHASH:
            parts += [marshal_scheme(self.scheme), tpm2b(self.unique)]
        else:
            parts += [marshal_sym_def(self.symmetric), tpm2b(self.unique)]
        self._bytes = b"".join(parts)
        return self._bytes

    def invalidate(self):
        """Forget cached bytes and Name after a field changed."""
        self._bytes = None
        self._name = None

    @property
    def name(self):
        """``nameAlg || H_nameAlg(TPMT_PUBLIC)``."""
        if self._name is None:
            self._name = u16(self.name_alg) + HASHES[self.name_alg].digest(self.marshal())
        return self._name

    def copy(self):
        c = Public.from_bytes(self.marshal())
        return c

    def __repr__(self):
        return f"Public(type={self.type:#06x}, attrs={self.attributes:#010x})"

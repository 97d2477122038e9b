"""The hash algorithms the engine implements and what it knows about them.

``HASHES`` maps a TPM_ALG id to a :class:`HashAlg` (hashlib constructor and
digest size).  Anything else used where a hash is required is ``TPM_RC_HASH``.
"""

import hashlib
import hmac as _hmac

from simxen.tpm.constants import TPM_ALG, TPM_RC
from simxen.tpm.errors import TpmError


class HashAlg:
    """One hash algorithm: ``alg`` id, ``name`` for hashlib, ``size`` in bytes."""

    __slots__ = ("alg", "name", "size", "new", "block")

    def __init__(self, alg, name):
        self.alg = alg
        self.name = name
        self.new = getattr(hashlib, name)
        self.size = self.new().digest_size
        self.block = self.new().block_size

    def digest(self, data):
        return self.new(data).digest()

    def hmac(self, key, data):
        return _hmac.digest(key, data, self.name)

    def __repr__(self):
        return f"HashAlg({self.name})"


HASHES = {
    TPM_ALG.SHA1: HashAlg(TPM_ALG.SHA1, "sha1"),
    TPM_ALG.SHA256: HashAlg(TPM_ALG.SHA256, "sha256"),
    TPM_ALG.SHA384: HashAlg(TPM_ALG.SHA384, "sha384"),
    TPM_ALG.SHA512: HashAlg(TPM_ALG.SHA512, "sha512"),
}

#: sizeof(TPMU_HA): the largest digest of a hash the TPM implements, which bounds
#: every TPM2B_DIGEST, TPM2B_NONCE and TPM2B_AUTH (64 bytes: SHA-512's)
MAX_DIGEST_SIZE = max(h.size for h in HASHES.values())

#: The context hash: the largest hash the TPM implements, as the reference
#: implementation chooses its CONTEXT_HASH_ALGORITHM (SHA-512 here, as in
#: libtpms). A saved context's integrity is an HMAC of it, its secret a KDFa of
#: it, and so is the obfuscation of an attestation's counters.
CONTEXT_HASH = max(HASHES, key=lambda alg: HASHES[alg].size)

#: Algorithms the engine reports in GetCapability(TPM_CAP_ALGS), with their
#: TPMA_ALGORITHM bits (asymmetric 1, symmetric 2, hash 4, object 8,
#: signing 0x100, encrypting 0x200, method 0x400), as the reference
#: implementation's ``AlgorithmCap.c`` gives them (and swtpm answers): a keyed
#: hash is a hash, an object type, a signing and an encrypting scheme; a block
#: cipher mode is symmetric and encrypting (Part 2's "S E"), not a method.
IMPLEMENTED_ALGS = (
    (TPM_ALG.RSA, 0x0009),
    (TPM_ALG.SHA1, 0x0004),
    (TPM_ALG.HMAC, 0x0104),
    (TPM_ALG.AES, 0x0002),
    (TPM_ALG.KEYEDHASH, 0x030C),
    (TPM_ALG.XOR, 0x0006),
    (TPM_ALG.SHA256, 0x0004),
    (TPM_ALG.SHA384, 0x0004),
    (TPM_ALG.SHA512, 0x0004),
    (TPM_ALG.NULL, 0x0000),
    (TPM_ALG.RSASSA, 0x0101),
    (TPM_ALG.RSAES, 0x0201),
    (TPM_ALG.RSAPSS, 0x0101),
    (TPM_ALG.OAEP, 0x0201),
    (TPM_ALG.ECDSA, 0x0101),
    (TPM_ALG.ECDH, 0x0401),
    (TPM_ALG.KDF1_SP800_56A, 0x0404),
    (TPM_ALG.KDF1_SP800_108, 0x0404),
    (TPM_ALG.ECC, 0x0009),
    (TPM_ALG.SYMCIPHER, 0x0008),
    (TPM_ALG.CAMELLIA, 0x0002),
    (TPM_ALG.CTR, 0x0202),
    (TPM_ALG.OFB, 0x0202),
    (TPM_ALG.CBC, 0x0202),
    (TPM_ALG.CFB, 0x0202),
    (TPM_ALG.ECB, 0x0202),
)


def hash_alg(alg, *, param=0, allow_null=False):
    """The :class:`HashAlg` for ``alg``; ``None`` for TPM_ALG_NULL when
    ``allow_null``; otherwise ``TPM_RC_HASH`` against ``param``."""
    h = HASHES.get(alg)
    if h is None:
        if allow_null and alg == TPM_ALG.NULL:
            return None
        raise TpmError(TPM_RC.HASH, param=param)
    return h

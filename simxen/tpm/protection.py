"""Protection of data that leaves the TPM: TPM2B_PRIVATE and context blobs.

Both follow Part 1, 22-23 ("Protected Storage"): an AES-CFB encryption
under a key derived with KDFa from a secret, then an HMAC over the
ciphertext and a binding value (the object's Name, or the context's
sequence number and handle)::

    symKey   = KDFa(hash, secret, "STORAGE",   name, "", 128)
    hmacKey  = KDFa(hash, secret, "INTEGRITY", "",   "", digestBits)
    encSens  = AES-128-CFB(symKey, IV = 0, TPM2B(plain))
    blob     = TPM2B(HMAC(hmacKey, encSens || name)) || encSens

:func:`unwrap` checks the HMAC first (``TPM_RC_INTEGRITY``) and only then
decrypts, so a tampered blob is rejected before it is looked at.
"""

import hmac as _hmac

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

try:                                    # cryptography >= 47 keeps CFB here
    from cryptography.hazmat.decrepit.ciphers.modes import CFB
except ImportError:                     # pragma: no cover - older cryptography
    from cryptography.hazmat.primitives.ciphers.modes import CFB

from simxen.tpm.algorithms import HASHES
from simxen.tpm.constants import TPM_RC
from simxen.tpm.errors import TpmError
from simxen.tpm.kdf import kdfa
from simxen.tpm.marshal import Reader, tpm2b


def cfb(key, iv, data, encrypt):
    """AES-CFB (128-bit feedback) of ``data``."""
    c = Cipher(algorithms.AES(key), CFB(iv))
    ctx = c.encryptor() if encrypt else c.decryptor()
    return ctx.update(data) + ctx.finalize()


def wrap(hash_alg, secret, label, binding, plain, key_bits=128):
    """An outer wrap of ``TPM2B(plain)`` (Create's TPM2B_PRIVATE, credentials)."""
    return wrap_buffer(hash_alg, secret, label, binding, tpm2b(plain), key_bits)


def wrap_buffer(hash_alg, secret, label, binding, buffer, key_bits=128):
    """``TPM2B(HMAC) || AES-CFB(buffer)``: the outer wrap of any buffer (a
    duplicate's inner-wrapped sensitive area is one without a size of its own)."""
    h = HASHES[hash_alg]
    sym = kdfa(h.name, secret, label, binding, b"", key_bits)
    mac_key = kdfa(h.name, secret, b"INTEGRITY", b"", b"", h.size * 8)
    enc = cfb(sym, bytes(16), buffer, True)
    return tpm2b(h.hmac(mac_key, enc + binding)) + enc


def unwrap_buffer(hash_alg, secret, label, binding, blob, key_bits=128, *, param=0):
    """The buffer inside an outer wrap; ``TPM_RC_INTEGRITY`` (or
    ``TPM_RC_SIZE``) against ``param`` if the HMAC does not check out."""
    h = HASHES[hash_alg]
    r = Reader(blob)
    r.param = param
    mac = r.tpm2b()
    enc = blob[r.pos:]
    mac_key = kdfa(h.name, secret, b"INTEGRITY", b"", b"", h.size * 8)
    if len(mac) != h.size or not _hmac.compare_digest(mac, h.hmac(mac_key, enc + binding)):
        raise TpmError(TPM_RC.INTEGRITY, param=param)
    sym = kdfa(h.name, secret, label, binding, b"", key_bits)
    return cfb(sym, bytes(16), enc, False)


def unwrap(hash_alg, secret, label, binding, blob, key_bits=128, *, param=0):
    """The plain bytes of a wrapped blob; ``TPM_RC_INTEGRITY`` or
    ``TPM_RC_SIZE`` (against ``param``) if it does not check out."""
    plain = unwrap_buffer(hash_alg, secret, label, binding, blob, key_bits, param=param)
    return sized(plain, param)


def sized(buffer, param):
    """The contents of a buffer that must be exactly one TPM2B."""
    r = Reader(buffer)
    r.param = param
    out = r.tpm2b()
    if r.remaining():
        raise TpmError(TPM_RC.SIZE, param=param)
    return out

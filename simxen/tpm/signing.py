"""Signing and verifying with a loaded key, and choosing the scheme.

:func:`resolve_scheme` implements the rule of Part 3, 20/18: a key with a
scheme of its own signs with it (an explicit ``inScheme`` must then agree);
a key without one needs an explicit scheme that fits its type.
"""

import hmac as _hmac

from simxen.tpm import keys
from simxen.tpm.algorithms import HASHES
from simxen.tpm.constants import TPM_ALG, TPM_RC, TPMA_OBJECT
from simxen.tpm.errors import TpmError
from simxen.tpm.signature import Signature

_FITS = {TPM_ALG.ECC: {TPM_ALG.ECDSA, TPM_ALG.ECDAA}, TPM_ALG.RSA: {TPM_ALG.RSASSA, TPM_ALG.RSAPSS},
         TPM_ALG.KEYEDHASH: {TPM_ALG.HMAC}}


def resolve_scheme(obj, in_scheme, param, key_index=1):
    """The ``(scheme, hashAlg)`` a signing key will use; ``key_index`` is the
    number of the key's handle (for ``TPM_RC_KEY``)."""
    if not obj.attributes & TPMA_OBJECT.sign:
        raise TpmError(TPM_RC.KEY, handle=key_index)
    key_scheme = obj.public.scheme
    if key_scheme[0] != TPM_ALG.NULL:
        if in_scheme[0] != TPM_ALG.NULL and in_scheme[:2] != key_scheme[:2]:
            raise TpmError(TPM_RC.SCHEME, param=param)
        # ECDAA: the commit count comes with the command's scheme
        scheme = in_scheme if key_scheme[0] == TPM_ALG.ECDAA and in_scheme[0] != TPM_ALG.NULL \
            else key_scheme
    else:
        if in_scheme[0] == TPM_ALG.NULL:
            raise TpmError(TPM_RC.SCHEME, param=param)
        scheme = in_scheme
    if scheme[0] not in _FITS.get(obj.public.type, ()):
        raise TpmError(TPM_RC.SCHEME, param=param)
    return scheme


#: the schemes a signature can be verified in, by key type (an ECDAA signature
#: cannot be verified by the TPM: the reference's CryptEccValidateSignature)
_VERIFIES = {TPM_ALG.ECC: {TPM_ALG.ECDSA}, TPM_ALG.RSA: {TPM_ALG.RSASSA, TPM_ALG.RSAPSS},
             TPM_ALG.KEYEDHASH: {TPM_ALG.HMAC}}


def check_signature_scheme(obj, sig, param):
    """A signature whose scheme the TPM cannot verify with a key of ``obj``'s
    type is ``TPM_RC_SCHEME`` (the reference's CryptValidateSignature), before
    any verifying."""
    if sig.alg not in _VERIFIES.get(obj.public.type, ()):
        raise TpmError(TPM_RC.SCHEME, param=param)


def sign_digest(tpm, obj, scheme, digest):
    """A :class:`Signature` of ``digest`` (already hashed with the scheme's
    hash) by ``obj``."""
    alg, h = scheme[0], scheme[1]
    if alg == TPM_ALG.ECDAA:
        from simxen.tpm.commit import sign_ecdaa
        return sign_ecdaa(tpm, obj, h, scheme[2], digest)
    if alg == TPM_ALG.ECDSA:
        size = keys.CURVE_BYTES[obj.public.curve]
        r, s = keys.ecdsa_sign(obj.private_key(), h, digest, size)
        return Signature(alg, h, r=r, s=s)
    if alg == TPM_ALG.RSASSA:
        return Signature(alg, h, sig=keys.rsassa_sign(obj.private_key(), h, digest))
    if alg == TPM_ALG.RSAPSS:
        key_bytes = len(obj.public.unique)
        salt = tpm.random_bytes(keys.pss_salt_size(HASHES[h].size, key_bytes))
        return Signature(alg, h, sig=keys.rsapss_sign(obj.private_key(), h, digest, salt))
    if alg == TPM_ALG.HMAC:
        return Signature(alg, h, digest=_hmac.digest(obj.sensitive, digest, HASHES[h].name))
    raise TpmError(TPM_RC.SCHEME)


def verify_digest(obj, digest, sig):
    """Whether ``sig`` is ``obj``'s signature of ``digest``."""
    t = obj.public.type
    if sig.alg == TPM_ALG.ECDSA and t == TPM_ALG.ECC:
        return keys.ecdsa_verify(obj.public_key(), sig.hash, digest, sig.r, sig.s)
    if sig.alg in (TPM_ALG.RSASSA, TPM_ALG.RSAPSS) and t == TPM_ALG.RSA:
        return keys.rsa_verify(obj.public_key(), sig.alg, sig.hash, digest, sig.sig)
    if sig.alg == TPM_ALG.HMAC and t == TPM_ALG.KEYEDHASH and obj.sensitive is not None:
        expected = _hmac.digest(obj.sensitive, digest, HASHES[sig.hash].name)
        return _hmac.compare_digest(expected, sig.digest)
    return False

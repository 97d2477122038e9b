"""Part 3, chapter 14: RSA_Encrypt and RSA_Decrypt.

Schemes: TPM_ALG_OAEP (with a hash), TPM_ALG_RSAES (PKCS #1 v1.5) and
TPM_ALG_NULL (the raw RSA operation on a full-size block).  A key with a
scheme of its own uses it.  The OAEP label gets a terminating zero byte if it
has none, as the TPM adds one.  The padding's randomness comes from the
engine's ``random_bytes``, so encryption is deterministic under a seeded
stream too.  Restricted keys refuse both commands (they decrypt only for
their own children and credentials).
"""

from cryptography.hazmat.primitives.asymmetric import padding

from simxen.tpm import keys
from simxen.tpm.algorithms import HASHES
from simxen.tpm.commands import command
from simxen.tpm.constants import TPM_ALG, TPM_CC, TPM_RC, TPMA_OBJECT
from simxen.tpm.errors import TpmError
from simxen.tpm.marshal import tpm2b
from simxen.tpm.public import parse_scheme

_DECRYPT_SCHEMES = {TPM_ALG.NULL, TPM_ALG.OAEP, TPM_ALG.RSAES}


def _params(tpm, cmd):
    r = cmd.r
    data = r.at(1).tpm2b(512)
    in_scheme = parse_scheme(r.at(2), _DECRYPT_SCHEMES)
    label = r.at(3).tpm2b(64)
    r.done()
    obj = tpm.get_object(cmd.handles[0])
    if obj.public.type != TPM_ALG.RSA:
        raise TpmError(TPM_RC.KEY, handle=1)
    a = obj.attributes
    if not a & TPMA_OBJECT.decrypt or a & TPMA_OBJECT.restricted:
        raise TpmError(TPM_RC.ATTRIBUTES, handle=1)
    scheme = obj.public.scheme
    if scheme[0] == TPM_ALG.NULL:
        scheme = in_scheme
    elif in_scheme[0] != TPM_ALG.NULL and in_scheme != scheme:
        raise TpmError(TPM_RC.SCHEME, param=2)
    if scheme[0] not in _DECRYPT_SCHEMES:
        raise TpmError(TPM_RC.SCHEME, param=2)
    if label and label[-1] != 0:
        label += b"\0"
    return obj, data, scheme, label


@command(TPM_CC.RSA_Encrypt, handles=("object",), encrypt=True)
def rsa_encrypt(tpm, cmd):
    obj, message, (scheme, h), label = _params(tpm, cmd)
    n = int.from_bytes(obj.public.unique, "big")
    k = len(obj.public.unique)
    try:
        if scheme == TPM_ALG.OAEP:
            block = keys.oaep_encode(h, label, message, k, tpm.random_bytes(HASHES[h].size))
        elif scheme == TPM_ALG.RSAES:
            block = keys.pkcs1v15_encode(message, k, tpm.random_bytes)
        else:
            block = message.rjust(k, b"\0") if len(message) <= k else message
        out = keys.rsa_raw(n, obj.public.exponent or 65537, block)
    except ValueError:
        raise TpmError(TPM_RC.VALUE, param=1) from None
    return b"", tpm2b(out)


@command(TPM_CC.RSA_Decrypt, handles=("object",), auth=1, decrypt=True, encrypt=True)
def rsa_decrypt(tpm, cmd):
    obj, cipher, (scheme, h), label = _params(tpm, cmd)
    if obj.sensitive is None:
        raise TpmError(TPM_RC.KEY, handle=1)
    key = obj.private_key()
    k = len(obj.public.unique)
    if len(cipher) != k:
        raise TpmError(TPM_RC.SIZE, param=1)
    try:
        if scheme == TPM_ALG.OAEP:
            cls = keys.HASH_CLASSES[h]
            out = key.decrypt(cipher, padding.OAEP(mgf=padding.MGF1(cls()), algorithm=cls(),
                                                   label=label or None))
        elif scheme == TPM_ALG.RSAES:
            out = key.decrypt(cipher, padding.PKCS1v15())
        else:
            nums = key.private_numbers()
            out = keys.rsa_raw(nums.public_numbers.n, nums.d, cipher)
    except ValueError:
        raise TpmError(TPM_RC.VALUE, param=1) from None
    return b"", tpm2b(out)

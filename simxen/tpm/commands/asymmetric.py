"""Part 3, chapter 14: RSA_Encrypt, RSA_Decrypt, ECDH_KeyGen, ECDH_ZGen,
ECC_Parameters.

Schemes: TPM_ALG_OAEP (with a hash), TPM_ALG_RSAES (PKCS #1 v1.5) and
TPM_ALG_NULL (the raw RSA operation on a full-size block).  A key with a
scheme of its own uses it.  The OAEP label gets a terminating zero byte if it
has none, as the TPM adds one.  The padding's randomness comes from the
engine's ``random_bytes``, so encryption is deterministic under a seeded
stream too.  Restricted keys refuse RSA_Decrypt and ECDH_ZGen (they
decrypt only for their own children and credentials).  The ECDH commands
return whole points (x and y), computed with the engine's own Jacobian
arithmetic on the NIST curves.
"""

from cryptography.hazmat.primitives.asymmetric import padding

from simxen.tpm import keys
from simxen.tpm.algorithms import HASHES
from simxen.tpm.commands import command
from simxen.tpm.constants import TPM_ALG, TPM_CC, TPM_RC, TPMA_OBJECT
from simxen.tpm.errors import TpmError
from simxen.tpm.marshal import tpm2b, u16
from simxen.tpm.public import parse_scheme

_DECRYPT_SCHEMES = {TPM_ALG.NULL, TPM_ALG.OAEP, TPM_ALG.RSAES}


def _params(tpm, cmd):
    r = cmd.r
    data = r.at(1).tpm2b(512)
    in_scheme = parse_scheme(r.at(2), _DECRYPT_SCHEMES, TPM_RC.VALUE)    # TPMI_ALG_RSA_DECRYPT
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
        # not the key's size: TPM_RC_SIZE without a parameter number, as the
        # reference implementation's CryptRsaDecrypt returns it (and libtpms)
        raise TpmError(TPM_RC.SIZE)
    try:
        if scheme == TPM_ALG.OAEP:
            cls = keys.HASH_CLASSES[h]
            out = key.decrypt(cipher, padding.OAEP(mgf=padding.MGF1(cls()), algorithm=cls(),
                                                   label=label or None))
        else:
            nums = key.private_numbers()
            out = keys.rsa_raw(nums.public_numbers.n, nums.d, cipher)
            if scheme == TPM_ALG.RSAES:
                out = keys.pkcs1v15_decode(out)
    except ValueError:
        # a block that is not properly encoded: TPM_RC_VALUE without a
        # parameter number, as the reference implementation's CryptRsaDecrypt
        raise TpmError(TPM_RC.VALUE) from None
    return b"", tpm2b(out)


def _ecc_point_2b(x, y):
    return tpm2b(tpm2b(x) + tpm2b(y))


def _ecc_key(tpm, handle, private):
    obj = tpm.get_object(handle)
    if obj.public.type != TPM_ALG.ECC or (private and obj.sensitive is None):
        raise TpmError(TPM_RC.KEY, handle=1)
    a = obj.attributes       # ECDH_KeyGen needs only the public key (any ECC key)
    if private and (not a & TPMA_OBJECT.decrypt or a & TPMA_OBJECT.restricted):
        raise TpmError(TPM_RC.ATTRIBUTES, handle=1)
    return obj


@command(TPM_CC.ECDH_KeyGen, handles=("object",), encrypt=True)
def ecdh_keygen(tpm, cmd):
    """An ephemeral key pair and the shared point Z = d_e · Q_key."""
    cmd.r.done()
    obj = _ecc_key(tpm, cmd.handles[0], False)
    curve = obj.public.curve
    d = keys.ecc_scalar(curve, tpm.random_bytes(keys.ecc_material_size(curve)))
    pub = keys.ecc_point(keys.ecc_private_key(curve, d), curve)
    z = keys.ecc_multiply(curve, d, *obj.public.unique)
    return b"", _ecc_point_2b(*z) + _ecc_point_2b(*pub)


@command(TPM_CC.ECDH_ZGen, handles=("object",), auth=1, decrypt=True, encrypt=True)
def ecdh_zgen(tpm, cmd):
    """d_key · inPoint, after checking that inPoint is on the key's curve."""
    r = cmd.r
    size = r.u16()
    sub = r.sub(size)
    x, y = sub.tpm2b(66), sub.tpm2b(66)
    if sub.remaining():
        raise TpmError(TPM_RC.SIZE, param=1)
    r.done()
    obj = _ecc_key(tpm, cmd.handles[0], True)
    curve = obj.public.curve
    try:
        keys.ecc_public_key(curve, x, y)                 # on the curve?
        out = keys.ecc_multiply(curve, int.from_bytes(obj.sensitive, "big"), x, y)
    except ValueError:
        raise TpmError(TPM_RC.ECC_POINT, param=1) from None
    return b"", _ecc_point_2b(*out)


@command(TPM_CC.ECC_Parameters)
def ecc_parameters(tpm, cmd):
    """TPMS_ALGORITHM_DETAIL_ECC of a curve this TPM implements: its key
    size, the KDF and signing scheme it imposes (SP800-56A KDF with the
    curve's hash; none), and the domain parameters p, a, b, G, n, h."""
    from simxen.tpm.commands.ephemeral import parse_curve
    curve, size = parse_curve(cmd.r)
    p = keys.CURVE_PRIMES[curve]
    gx, gy = keys.CURVE_G[curve]
    kdf_hash = keys.CURVE_HASHES[curve]
    numbers = (p, p - 3, keys.CURVE_B[curve], gx, gy, keys.CURVE_ORDERS[curve])
    return b"", (u16(curve) + u16(8 * size) + u16(TPM_ALG.KDF1_SP800_56A) + u16(kdf_hash)
                 + u16(TPM_ALG.NULL) + b"".join(tpm2b(n.to_bytes(size, "big")) for n in numbers)
                 + tpm2b(b"\x01"))


@command(TPM_CC.ZGen_2Phase, handles=("object",), auth=1, decrypt=True, encrypt=True)
def zgen_2phase(tpm, cmd):
    """Second phase of a two-phase key exchange (SP 800-56A "C(2e, 2s)"),
    for the ECDH scheme: ``Z1 = [dsA]QsB`` with the loaded static key and
    ``Z2 = [deA]QeB`` with the ephemeral key EC_Ephemeral made under
    ``counter`` (used once)."""
    from simxen.tpm.commands.ephemeral import check_on_curve, marshal_point, parse_point
    from simxen.tpm.commit import commit_scalar, state
    r = cmd.r
    qs_b = parse_point(r, 1)                # every parameter first (the reference)
    qe_b = parse_point(r, 2)
    scheme = r.at(3).u16()
    counter = r.at(4).u16()
    r.done()
    key = tpm.get_object(cmd.handles[0])
    pub = key.public
    if pub.type != TPM_ALG.ECC:
        raise TpmError(TPM_RC.KEY, handle=1)
    if pub.attributes & TPMA_OBJECT.restricted or not pub.attributes & TPMA_OBJECT.decrypt:
        raise TpmError(TPM_RC.ATTRIBUTES, handle=1)
    check_on_curve(qs_b, pub.curve, 1)
    check_on_curve(qe_b, pub.curve, 2)
    if qs_b is None or qe_b is None:
        raise TpmError(TPM_RC.ECC_POINT, param=1 if qs_b is None else 2)
    if scheme not in (TPM_ALG.ECDH, TPM_ALG.ECMQV, TPM_ALG.SM2):
        raise TpmError(TPM_RC.SCHEME, param=3)
    if pub.scheme[0] != TPM_ALG.NULL and pub.scheme[0] != scheme or scheme != TPM_ALG.ECDH:
        raise TpmError(TPM_RC.SCHEME, param=3)        # ECMQV and SM2 are not implemented
    c = state(tpm).take(counter, 4)
    de = commit_scalar(tpm, b"", c, pub.curve)
    try:
        z1 = keys.ecc_multiply(pub.curve, int.from_bytes(key.sensitive, "big"), *qs_b)
        z2 = keys.ecc_multiply(pub.curve, de, *qe_b)
    except ValueError:
        raise TpmError(TPM_RC.NO_RESULT) from None
    tpm.nv_changed = True
    return b"", marshal_point(z1) + marshal_point(z2)

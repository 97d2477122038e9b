"""Part 3, 12.5-12.6: MakeCredential and ActivateCredential.

Credential protection (Part 1, 24): a seed is shared with the holder of a
decryption key — RSA-OAEP with label "IDENTITY", or ECDH with
``KDFe(nameAlg, Z, "IDENTITY", x(Q_e), x(Q_key))`` — and the credential is
wrapped under it, bound to the Name of the object it is meant for::

    symKey    = KDFa(nameAlg, seed, "STORAGE", objectName, "", symKeyBits)
    hmacKey   = KDFa(nameAlg, seed, "INTEGRITY", "", "", digestBits)
    encId     = AES-CFB(symKey, IV = 0, TPM2B(credential))
    idObject  = TPM2B(HMAC(hmacKey, encId || objectName)) || encId

A verifier makes the credential for an AK's Name with the EK's public key;
only the TPM holding both the EK and an object of that Name gets it back.
"""

from cryptography.hazmat.primitives.asymmetric import ec, padding

from simxen.tpm import keys
from simxen.tpm.algorithms import HASHES
from simxen.tpm.commands import command
from simxen.tpm.constants import TPM_ALG, TPM_CC, TPM_RC, TPMA_OBJECT
from simxen.tpm.errors import TpmError
from simxen.tpm.kdf import kdfe
from simxen.tpm.marshal import Reader, tpm2b
from simxen.tpm.protection import unwrap, wrap

LABEL = b"IDENTITY"


def _check_key(obj, index):
    a = obj.attributes
    if not (a & TPMA_OBJECT.restricted and a & TPMA_OBJECT.decrypt) or \
            obj.public.type not in (TPM_ALG.RSA, TPM_ALG.ECC):
        raise TpmError(TPM_RC.TYPE, handle=index)


def make_seed(pub, random_bytes, label=LABEL):
    """``(seed, encryptedSecret)`` for the decryption key ``pub``; ``label``
    is "IDENTITY" for credentials, "DUPLICATE" for duplication."""
    h = HASHES[pub.name_alg]
    if pub.type == TPM_ALG.RSA:
        seed = random_bytes(h.size)
        cls = keys.HASH_CLASSES[pub.name_alg]
        secret = keys.rsa_public_key(pub.unique, pub.exponent).encrypt(
            seed, padding.OAEP(mgf=padding.MGF1(cls()), algorithm=cls(), label=label + b"\0"))
        return seed, secret
    eph = keys.ecc_private_key(pub.curve, keys.ecc_scalar(
        pub.curve, random_bytes(keys.ecc_material_size(pub.curve))))
    qx, qy = keys.ecc_point(eph, pub.curve)
    z = eph.exchange(ec.ECDH(), keys.ecc_public_key(pub.curve, *pub.unique))
    return kdfe(h.name, z, label, qx, pub.unique[0], 8 * h.size), tpm2b(qx) + tpm2b(qy)


def recover_seed(obj, secret, param, label=LABEL):
    pub = obj.public
    h = HASHES[pub.name_alg]
    if pub.type == TPM_ALG.RSA:
        try:
            return keys.rsa_oaep_decrypt(obj.private_key(), pub.name_alg, label + b"\0", secret)
        except ValueError:
            raise TpmError(TPM_RC.VALUE, param=param) from None
    r = Reader(secret)
    r.param = param
    x, y = r.tpm2b(), r.tpm2b()
    if r.remaining():
        raise TpmError(TPM_RC.SIZE, param=param)
    try:
        point = keys.ecc_public_key(pub.curve, x, y)
    except ValueError:
        raise TpmError(TPM_RC.ECC_POINT, param=param) from None
    z = obj.private_key().exchange(ec.ECDH(), point)
    return kdfe(h.name, z, label, x, pub.unique[0], 8 * h.size)


@command(TPM_CC.MakeCredential, handles=("object",), decrypt=True, encrypt=True)
def make_credential(tpm, cmd):
    r = cmd.r
    credential = r.at(1).tpm2b(64)
    name = r.at(2).tpm2b(66)
    r.done()
    key = tpm.get_object(cmd.handles[0])
    _check_key(key, 1)
    if len(name) < 2 or int.from_bytes(name[:2], "big") not in HASHES:
        raise TpmError(TPM_RC.SIZE, param=2)
    seed, secret = make_seed(key.public, tpm.random_bytes)
    blob = wrap(key.public.name_alg, seed, b"STORAGE", name, credential,
                key.public.symmetric[1])
    return b"", tpm2b(blob) + tpm2b(secret)


@command(TPM_CC.ActivateCredential, handles=("object", "object"), auth=2,
         roles=("admin", "user"), decrypt=True, encrypt=True)
def activate_credential(tpm, cmd):
    r = cmd.r
    blob = r.at(1).tpm2b(1024)
    secret = r.at(2).tpm2b(512)
    r.done()
    target = tpm.get_object(cmd.handles[0])
    key = tpm.get_object(cmd.handles[1])
    _check_key(key, 2)
    if key.sensitive is None:
        raise TpmError(TPM_RC.AUTH_UNAVAILABLE)
    seed = recover_seed(key, secret, 2)
    credential = unwrap(key.public.name_alg, seed, b"STORAGE", target.name, blob,
                        key.public.symmetric[1], param=1)
    return b"", tpm2b(credential)

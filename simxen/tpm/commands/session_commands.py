"""Part 3, chapter 11: StartAuthSession (and PolicyRestart lives in ea).

The session key (Part 1, 19.6.8)::

    sessionKey = KDFa(authHash, bindAuth || salt, "ATH", nonceTPM, nonceCaller,
                      digestBits)

and empty when the session is neither bound nor salted (what tpm2-tools
asks for).  A salt arrives encrypted to ``tpmKey``: RSA-OAEP with label
"SECRET" for an RSA key, or for an ECC key an ephemeral point Q_e from which
``salt = KDFe(nameAlg, x(d·Q_e), "SECRET", x(Q_e), x(Q_key), digestBits)``.
"""

from cryptography.hazmat.primitives.asymmetric import ec

from simxen.tpm import keys
from simxen.tpm.algorithms import HASHES
from simxen.tpm.commands import command
from simxen.tpm.constants import TPM_ALG, TPM_CC, TPM_RC, TPM_RH, TPM_SE, TPMA_OBJECT
from simxen.tpm.errors import TpmError
from simxen.tpm.kdf import kdfa, kdfe
from simxen.tpm.marshal import Reader, tpm2b, u32
from simxen.tpm.public import SYMCIPHER_MODES, parse_sym_def_object
from simxen.tpm.session import Session


def decrypt_salt(tpm, key_handle, encrypted):
    """The salt from ``encryptedSalt`` for ``tpmKey``; ``TPM_RC_VALUE`` (p2)
    when it does not decrypt, ``TPM_RC_KEY`` (h1) for an unsuitable key."""
    obj = tpm.get_object(key_handle)
    pub = obj.public
    if not pub.attributes & TPMA_OBJECT.decrypt or obj.sensitive is None:
        raise TpmError(TPM_RC.KEY, handle=1)
    h = HASHES[pub.name_alg]
    if pub.type == TPM_ALG.RSA:
        try:
            return keys.rsa_oaep_decrypt(obj.private_key(), pub.name_alg, b"SECRET\0",
                                         encrypted)
        except ValueError:
            raise TpmError(TPM_RC.VALUE, param=2) from None
    if pub.type == TPM_ALG.ECC:
        r = Reader(encrypted)
        r.param = 2
        x, y = r.tpm2b(), r.tpm2b()
        if r.remaining():
            raise TpmError(TPM_RC.SIZE, param=2)
        try:
            point = keys.ecc_public_key(pub.curve, x, y)
        except ValueError:
            raise TpmError(TPM_RC.ECC_POINT, param=2) from None
        z = obj.private_key().exchange(ec.ECDH(), point)
        return kdfe(h.name, z, b"SECRET", x, pub.unique[0], 8 * h.size)
    raise TpmError(TPM_RC.KEY, handle=1)


@command(TPM_CC.StartAuthSession, handles=("object+", "entity+"))
def start_auth_session(tpm, cmd):
    r = cmd.r
    nonce_caller = r.at(1).tpm2b(64)
    encrypted_salt = r.at(2).tpm2b(256)     # sizeof(TPMU_ENCRYPTED_SECRET): RSA-2048
    se = r.at(3).u8()
    if se not in (TPM_SE.HMAC, TPM_SE.POLICY, TPM_SE.TRIAL):
        raise TpmError(TPM_RC.VALUE, param=3)
    symmetric = parse_sym_def_object(r.at(4), SYMCIPHER_MODES)   # any mode (TPMT_SYM_DEF)
    auth_hash = r.at(5).u16()
    h = HASHES.get(auth_hash)
    if h is None:
        raise TpmError(TPM_RC.HASH, param=5)
    r.done()
    # then the reference's order: nonce size, salt, bind, mode (Part 3, 11.1)
    if not 16 <= len(nonce_caller) <= h.size:
        raise TpmError(TPM_RC.SIZE, param=1)
    tpm_key, bind = cmd.handles
    salt = b""
    if tpm_key != TPM_RH.NULL:
        if not encrypted_salt:
            raise TpmError(TPM_RC.VALUE, param=2)
        salt = decrypt_salt(tpm, tpm_key, encrypted_salt)
    elif encrypted_salt:
        raise TpmError(TPM_RC.VALUE, param=2)
    if symmetric[0] in (TPM_ALG.AES, TPM_ALG.CAMELLIA) and symmetric[2] != TPM_ALG.CFB:
        raise TpmError(TPM_RC.MODE, param=4)
    if symmetric[0] == TPM_ALG.CAMELLIA:       # parameter encryption is AES-CFB here
        raise TpmError(TPM_RC.SYMMETRIC, param=4)
    bind_auth = tpm.entity_auth(bind) if bind != TPM_RH.NULL else b""
    bind_name = tpm.entity_name(bind) if bind != TPM_RH.NULL else None
    base = 0x02000000 if se == TPM_SE.HMAC else 0x03000000

    def make(index):          # called once a slot is known to be free
        # as long as nonceCaller (the reference's SessionCreate; libtpms too); every
        # later nonceTPM of the session keeps that size
        nonce_tpm = tpm.random_bytes(len(nonce_caller))
        key = b""
        if bind != TPM_RH.NULL or salt:
            key = kdfa(h.name, bind_auth + salt, b"ATH", nonce_tpm, nonce_caller, 8 * h.size)
        return Session(base | index, se, h, nonce_tpm, key, bind_name, symmetric)

    session = tpm.add_session(make)
    session.start_time = tpm.time          # policy expirations count from here
    return u32(session.handle), tpm2b(session.nonce_tpm)

"""Making an object from a template: CreatePrimary, Create and CreateLoaded.

:func:`validate_template` applies the attribute rules of Part 1, 27 and
Part 3, 12.1 to a TPMT_PUBLIC; :func:`make_object` fills in the key
material and ``unique``; :func:`creation_data` and :func:`creation_ticket`
build what the commands return beside the object.

Primary objects are deterministic: their material comes from a KDFa stream
keyed with the hierarchy's primary seed, with the Name of the template and
``inSensitive.data`` as context (the reference implementation uses a DRBG
seeded with the same strings).  Same seed and template, same key — the EK
and SRK survive restarts as long as the seed is stored.  ECC primaries cost a
scalar multiplication; RSA keys need a prime search, whose result
:func:`simxen.tpm.keys.rsa_generate` remembers (a repeat leaves the stream
where the search would have; ``cache_key`` is no longer needed).
"""

import hmac as _hmac

from simxen.tpm import keys
from simxen.tpm.algorithms import HASHES
from simxen.tpm.constants import TPM_ALG, TPM_RC, TPM_RH, TPM_ST, TPMA_OBJECT
from simxen.tpm.errors import TpmError
from simxen.tpm.kdf import kdfa
from simxen.tpm.marshal import tpm2b, u16, u32
from simxen.tpm.pcr_selection import marshal_pcr_selection, pcr_indices
from simxen.tpm.tpm_object import TpmObject


class KdfStream:
    """An endless byte stream ``KDFa(SHA-256, key, label, context, i)``
    consumed in order: the deterministic generator behind primary keys."""

    __slots__ = ("key", "label", "context", "counter", "buffer")

    def __init__(self, key, label, context):
        self.key = key
        self.label = label
        self.context = context
        self.counter = 0
        self.buffer = b""

    def __call__(self, n):
        while len(self.buffer) < n:
            self.counter += 1
            self.buffer += kdfa("sha256", self.key, self.label, self.context,
                                self.counter.to_bytes(4, "big"), 8 * 256)
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out


def parse_sensitive_create(r):
    """TPM2B_SENSITIVE_CREATE -> ``(userAuth, data)``."""
    return r.sized(lambda s: (s.tpm2b(64), s.tpm2b(256)))


def validate_template(pub, data, param):
    """The attribute rules every new object obeys; ``TPM_RC_ATTRIBUTES`` /
    ``TPM_RC_SCHEME`` / ``TPM_RC_SYMMETRIC`` / ... against ``param``."""
    a = pub.attributes
    if a & TPMA_OBJECT.RESERVED:
        raise TpmError(TPM_RC.RESERVED_BITS, param=param)
    restricted = a & TPMA_OBJECT.restricted
    sign = a & TPMA_OBJECT.sign
    decrypt = a & TPMA_OBJECT.decrypt
    if bool(a & TPMA_OBJECT.fixedTPM) and not a & TPMA_OBJECT.fixedParent:
        raise TpmError(TPM_RC.ATTRIBUTES, param=param)
    if restricted and sign and decrypt:
        raise TpmError(TPM_RC.ATTRIBUTES, param=param)
    if pub.type in (TPM_ALG.RSA, TPM_ALG.ECC):
        if data:
            raise TpmError(TPM_RC.SIZE, param=param - 1 or 1)
        if not a & TPMA_OBJECT.sensitiveDataOrigin:
            raise TpmError(TPM_RC.ATTRIBUTES, param=param)
        # the reference's SchemeChecks order: the scheme first, then the
        # symmetric algorithm, then (ECC) the key's KDF
        scheme = pub.scheme[0]
        if restricted and decrypt and scheme != TPM_ALG.NULL:
            raise TpmError(TPM_RC.SCHEME, param=param)    # a parent has no scheme
        if scheme != TPM_ALG.NULL:
            signing = scheme in (TPM_ALG.RSASSA, TPM_ALG.RSAPSS, TPM_ALG.ECDSA, TPM_ALG.ECDAA)
            if signing and not sign or not signing and not decrypt:
                raise TpmError(TPM_RC.SCHEME, param=param)
        if restricted and sign and scheme == TPM_ALG.NULL:
            raise TpmError(TPM_RC.SCHEME, param=param)
        sym = pub.symmetric[0]
        if restricted and decrypt:
            if sym == TPM_ALG.NULL:
                raise TpmError(TPM_RC.SYMMETRIC, param=param)
            if sym == TPM_ALG.CAMELLIA:        # children are wrapped with AES-CFB here
                raise TpmError(TPM_RC.SYMMETRIC, param=param)
            if pub.symmetric[2] != TPM_ALG.CFB:
                raise TpmError(TPM_RC.MODE, param=param)     # a parent protects with CFB
        elif sym != TPM_ALG.NULL:
            raise TpmError(TPM_RC.SYMMETRIC, param=param)
        if pub.type == TPM_ALG.ECC and pub.kdf[0] != TPM_ALG.NULL:
            raise TpmError(TPM_RC.KDF, param=param)       # the curve's KDF is the only one
        if not sign and not decrypt:
            raise TpmError(TPM_RC.ATTRIBUTES, param=param)
    elif pub.type == TPM_ALG.KEYEDHASH:
        # the reference implementation's SchemeChecks: sign and decrypt both set
        # (unrestricted; restricted was refused above) or both clear (sealed data)
        # take the NULL scheme; a signing key HMAC; a decrypting key XOR (a
        # derivation parent), which this engine does not implement
        if not data and not a & TPMA_OBJECT.sensitiveDataOrigin:
            raise TpmError(TPM_RC.ATTRIBUTES, param=param)     # the caller's data, but none
        if not sign and not decrypt and a & TPMA_OBJECT.sensitiveDataOrigin:
            raise TpmError(TPM_RC.ATTRIBUTES, param=param)     # the TPM cannot make sealed data
        if bool(sign) == bool(decrypt):
            if pub.scheme[0] != TPM_ALG.NULL:
                raise TpmError(TPM_RC.SCHEME, param=param)
        elif sign and pub.scheme[0] != TPM_ALG.HMAC or decrypt:
            raise TpmError(TPM_RC.SCHEME, param=param)
        if data and a & TPMA_OBJECT.sensitiveDataOrigin:
            raise TpmError(TPM_RC.ATTRIBUTES, param=param)
    elif pub.type == TPM_ALG.SYMCIPHER:
        # unrestricted: decrypt and sign (= encrypt) in any combination but
        # neither; restricted: a parent, which decrypts and never signs
        if not data and not a & TPMA_OBJECT.sensitiveDataOrigin:
            raise TpmError(TPM_RC.ATTRIBUTES, param=param)     # the caller's key, but none
        if not sign and not decrypt or restricted and (sign or not decrypt):
            raise TpmError(TPM_RC.ATTRIBUTES, param=param)
        if restricted and pub.symmetric[2] != TPM_ALG.CFB:
            raise TpmError(TPM_RC.MODE, param=param)
        if data and a & TPMA_OBJECT.sensitiveDataOrigin:
            raise TpmError(TPM_RC.ATTRIBUTES, param=param)


def make_object(pub, auth, data, hierarchy, next_bytes, cache_key=None):
    """A :class:`TpmObject` for template ``pub`` with material from
    ``next_bytes(n)``.  ``pub`` is completed in place (its ``unique``)."""
    h = HASHES[pub.name_alg]
    a = pub.attributes
    seed_value = b""
    if pub.type == TPM_ALG.ECC:
        d = keys.ecc_scalar(pub.curve, next_bytes(keys.ecc_material_size(pub.curve)))
        priv = keys.ecc_private_key(pub.curve, d)
        pub.unique = keys.ecc_point(priv, pub.curve)
        secret = d.to_bytes(keys.CURVE_BYTES[pub.curve], "big")
    elif pub.type == TPM_ALG.RSA:
        # keys.rsa_generate remembers its results and, on a repeat, still consumes the
        # draws the prime search took, so what is drawn next (a primary's seedValue)
        # is the same whether the key was searched for or remembered.
        priv = keys.rsa_generate(pub.key_bits, pub.exponent, next_bytes)
        nums = priv.private_numbers()
        pub.unique = nums.public_numbers.n.to_bytes(pub.key_bits // 8, "big")
        secret = nums.p.to_bytes(pub.key_bits // 16, "big")
    elif pub.type == TPM_ALG.KEYEDHASH:
        secret = data if data else next_bytes(h.size)
        seed_value = next_bytes(h.size)
        pub.unique = h.digest(seed_value + secret)
    else:
        secret = data if data else next_bytes(pub.symmetric[1] // 8)
        seed_value = next_bytes(h.size)
        pub.unique = h.digest(seed_value + secret)
    if pub.type in (TPM_ALG.RSA, TPM_ALG.ECC) and a & TPMA_OBJECT.restricted \
            and a & TPMA_OBJECT.decrypt:
        seed_value = next_bytes(h.size)
    pub.invalidate()
    return TpmObject(pub, auth, seed_value, secret, hierarchy)


def primary_stream(seed, template_name, data):
    return KdfStream(seed, b"Primary Object Creation", template_name + tpm2b(data))


def creation_data(tpm, name_alg, selection, locality, parent_name_alg, parent_name,
                  parent_qn, outside_info):
    """TPMS_CREATION_DATA bytes."""
    h = HASHES[name_alg]
    values = b""
    for alg, bitmap in selection:
        bank = tpm.pcrs.banks.get(alg)
        if bank is not None:
            values += b"".join(bank[i] for i in pcr_indices(bitmap) if i < len(bank))
    return (marshal_pcr_selection(selection) + tpm2b(h.digest(values))
            + bytes((1 << locality if locality < 5 else locality,)) + u16(parent_name_alg)
            + tpm2b(parent_name) + tpm2b(parent_qn) + tpm2b(outside_info))


def ticket(tpm, tag, hierarchy, data):
    """A ticket (TPMT_TK_*): ``tag || hierarchy || TPM2B(HMAC(proof, tag || data))``;
    the NULL hierarchy gives the NULL ticket."""
    if hierarchy == TPM_RH.NULL:
        return u16(tag) + u32(TPM_RH.NULL) + tpm2b(b"")
    return u16(tag) + u32(hierarchy) + tpm2b(ticket_digest(tpm, tag, hierarchy, data))


def ticket_digest(tpm, tag, hierarchy, data):
    return _hmac.digest(tpm.hierarchy_proof(hierarchy), u16(tag) + data, "sha256")


#: TPMI_RH_HIERARCHY+: what a ticket, a saved context or an external object may name
HIERARCHIES_PLUS = frozenset((TPM_RH.OWNER, TPM_RH.ENDORSEMENT, TPM_RH.PLATFORM, TPM_RH.NULL))


def read_hierarchy(r):
    """A TPMI_RH_HIERARCHY+ read from :class:`~simxen.tpm.marshal.Reader` ``r``,
    checked as the reference unmarshals it: ``TPM_RC_VALUE`` (of ``r``'s
    parameter) for anything else."""
    hierarchy = r.u32()
    if hierarchy not in HIERARCHIES_PLUS:
        raise TpmError(TPM_RC.VALUE, param=r.param)
    return hierarchy


def parse_ticket(r, expected_tag=None):
    """TPMT_TK_* -> ``(tag, hierarchy, digest)``, checked as the reference
    unmarshals it: a tag other than ``expected_tag`` is ``TPM_RC_TAG``, a
    hierarchy that is no TPMI_RH_HIERARCHY+ ``TPM_RC_VALUE``."""
    tag = r.u16()
    if expected_tag is not None and tag != expected_tag:
        raise TpmError(TPM_RC.TAG, param=r.param)
    return tag, read_hierarchy(r), r.tpm2b(64)


def creation_outputs(tpm, obj, selection, locality, parent_name_alg, parent_name, parent_qn,
                     outside_info):
    """``(creationData TPM2B, creationHash TPM2B, creationTicket)`` bytes."""
    cd = creation_data(tpm, obj.public.name_alg, selection, locality, parent_name_alg,
                       parent_name, parent_qn, outside_info)
    chash = HASHES[obj.public.name_alg].digest(cd)
    tk = ticket(tpm, TPM_ST.CREATION, obj.hierarchy, obj.name + chash)
    return tpm2b(cd), tpm2b(chash), tk


def qualified_name(name_alg, parent_qn, name):
    """``QN = nameAlg || H(QN(parent) || Name)``."""
    return u16(name_alg) + HASHES[name_alg].digest(parent_qn + name)


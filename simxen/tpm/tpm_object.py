"""A loaded object: public area, sensitive area, hierarchy, Qualified Name.

The sensitive area is TPMT_SENSITIVE (Part 2, 12.3.2.4)::

    sensitiveType u16 || authValue TPM2B || seedValue TPM2B || sensitive TPM2B

where ``sensitive`` is ``d`` for ECC, the first prime ``p`` for RSA, the
data for a sealed KEYEDHASH object and the key for SYMCIPHER.
``seedValue`` is what a storage parent derives its children's protection keys
from.  The private key object for ``cryptography`` is built on first use and
kept.
"""

from simxen.tpm import keys
from simxen.tpm.constants import TPM_ALG, TPM_RC, TPMA_OBJECT
from simxen.tpm.errors import TpmError
from simxen.tpm.marshal import Reader, tpm2b, u16, u32
from simxen.tpm.public import Public


class TpmObject:
    """An object the TPM holds (transient or persistent)."""

    is_sequence = False

    __slots__ = ("public", "auth_value", "seed_value", "sensitive", "hierarchy",
                 "qualified_name", "_key", "_pub_key")

    def __init__(self, public, auth_value, seed_value, sensitive, hierarchy,
                 qualified_name=b""):
        self.public = public
        self.auth_value = auth_value.rstrip(b"\0")
        self.seed_value = seed_value
        self.sensitive = sensitive
        self.hierarchy = hierarchy
        self.qualified_name = qualified_name
        self._key = None
        self._pub_key = None

    @property
    def name(self):
        return self.public.name

    @property
    def attributes(self):
        return self.public.attributes

    @property
    def is_storage_parent(self):
        a = self.public.attributes
        return (a & TPMA_OBJECT.restricted and a & TPMA_OBJECT.decrypt
                and not a & TPMA_OBJECT.sign and self.public.type in (TPM_ALG.RSA, TPM_ALG.ECC))

    @property
    def has_private(self):
        return self.sensitive is not None

    def private_key(self):
        """The ``cryptography`` private key (RSA or ECC)."""
        if self._key is None:
            p = self.public
            if p.type == TPM_ALG.ECC:
                self._key = keys.ecc_private_key(p.curve, int.from_bytes(self.sensitive, "big"))
            elif p.type == TPM_ALG.RSA:
                self._key = keys.rsa_from_prime(int.from_bytes(p.unique, "big"), p.exponent,
                                                int.from_bytes(self.sensitive, "big"))
        return self._key

    def public_key(self):
        if self._pub_key is None:
            p = self.public
            if p.type == TPM_ALG.ECC:
                self._pub_key = keys.ecc_public_key(p.curve, *p.unique)
            elif p.type == TPM_ALG.RSA:
                self._pub_key = keys.rsa_public_key(p.unique, p.exponent)
        return self._pub_key

    # -- TPMT_SENSITIVE ----------------------------------------------------
    def marshal_sensitive(self):
        return (u16(self.public.type) + tpm2b(self.auth_value) + tpm2b(self.seed_value)
                + tpm2b(self.sensitive or b""))

    @staticmethod
    def parse_sensitive(public, data, param=1):
        """``(authValue, seedValue, sensitive)`` from TPMT_SENSITIVE bytes,
        checked against ``public``: a sensitiveType other than the public
        area's type is ``TPM_RC_TYPE`` of parameter ``param`` (the command's
        parameter that carried the bytes: inPrivate of Load and LoadExternal,
        duplicate of Import, as the reference adds it to ObjectLoad's code)."""
        r = Reader(data)
        if r.u16() != public.type:
            raise TpmError(TPM_RC.TYPE, param=param)
        auth = r.tpm2b(64)
        seed = r.tpm2b(64)
        sens = r.tpm2b(512)
        r.done()
        return auth, seed, sens

    # -- serialisation for contexts and persistent storage -----------------
    def serialize(self):
        return (u32(self.hierarchy) + tpm2b(self.qualified_name) + tpm2b(self.public.marshal())
                + tpm2b(self.marshal_sensitive() if self.sensitive is not None else b""))

    @classmethod
    def deserialize(cls, data):
        r = Reader(data)
        hierarchy = r.u32()
        qn = r.tpm2b()
        public = Public.from_bytes(r.tpm2b())
        sens = r.tpm2b()
        r.done()
        if sens:
            auth, seed, secret = cls.parse_sensitive(public, sens)
        else:
            auth, seed, secret = b"", b"", None
        return cls(public, auth, seed, secret, hierarchy, qn)

"""RSA paddings the TPM computes itself: the salt of RSASSA-PSS when the
key is small for the hash, and the check of a PKCS #1 v1.5 encryption block
in TPM2_RSA_Decrypt (found by OpenSSL's tpm2 provider,
``tests/interop/test_tpm2_openssl.py``)."""

import hashlib

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, utils

from simxen.tpm import client, keys
from simxen.tpm.client import parse_response, response_code
from simxen.tpm.constants import TPM_ALG, TPM_CC, TPM_RC, TPM_RH, TPM_ST
from simxen.tpm.marshal import tpm2b, u16, u32
from simxen.tpm.public import Public
from simxen.tpm.signature import Signature

from tpm_helpers import ecc_storage_template

NULL_TICKET = u16(TPM_ST.HASHCHECK) + u32(TPM_RH.NULL) + tpm2b(b"")


def rsa_key(tpm, bits, attributes):
    """An unrestricted RSA key without a scheme of its own, loaded under an SRK."""
    srk = client.parse_create_primary(tpm.execute(client.create_primary_command(
        TPM_RH.OWNER, ecc_storage_template())))[0]
    template = Public(TPM_ALG.RSA, TPM_ALG.SHA256, attributes, key_bits=bits, unique=b"")
    priv, pub = client.parse_create(tpm.execute(client.create_command(srk, template)))
    handle, _ = client.parse_load(tpm.execute(client.load_command(srk, priv, pub)))
    return handle, keys.rsa_public_key(pub.unique, pub.exponent)


@pytest.mark.parametrize("bits,hash_alg,hash_cls,salt", [
    (1024, TPM_ALG.SHA512, hashes.SHA512, 62),     # 128 - 64 - 2: no room for 64
    (1024, TPM_ALG.SHA384, hashes.SHA384, 48),
    (2048, TPM_ALG.SHA256, hashes.SHA256, 32),
])
def test_rsapss_salt_is_the_digest_size_or_what_fits(tpm, bits, hash_alg, hash_cls, salt):
    key, public = rsa_key(tpm, bits, 0x00040072)          # sign, userWithAuth
    digest = hashlib.new(hash_cls.name, b"message").digest()
    raw = tpm.execute(client.build_command(
        TPM_CC.Sign, (key,), tpm2b(digest) + u16(TPM_ALG.RSAPSS) + u16(hash_alg) + NULL_TICKET,
        [client.password_auth()]))
    assert response_code(raw) == TPM_RC.SUCCESS
    sig = Signature.parse(parse_response(raw).params)
    public.verify(sig.sig, digest, padding.PSS(mgf=padding.MGF1(hash_cls()), salt_length=salt),
                  utils.Prehashed(hash_cls()))
    if salt > 0:        # and exactly that long: one byte less does not verify
        with pytest.raises(InvalidSignature):
            public.verify(sig.sig, digest,
                          padding.PSS(mgf=padding.MGF1(hash_cls()), salt_length=salt - 1),
                          utils.Prehashed(hash_cls()))
    verify = client.build_command(TPM_CC.VerifySignature, (key,), tpm2b(digest) + sig.marshal())
    assert response_code(tpm.execute(verify)) == TPM_RC.SUCCESS

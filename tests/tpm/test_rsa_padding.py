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


def rsaes_decrypt(tpm, key, cipher):
    return tpm.execute(client.build_command(
        TPM_CC.RSA_Decrypt, (key,), tpm2b(cipher) + u16(TPM_ALG.RSAES) + tpm2b(b""),
        [client.password_auth()]))


def test_rsaes_decrypt_returns_the_message_of_a_good_block(tpm):
    key, public = rsa_key(tpm, 2048, 0x00020072)          # decrypt, userWithAuth
    cipher = public.encrypt(b"secret 42", padding.PKCS1v15())
    assert parse_response(rsaes_decrypt(tpm, key, cipher)).params.tpm2b() == b"secret 42"


def raw_block(public, block):
    assert len(block) == 256
    n = public.public_numbers()
    return pow(int.from_bytes(block, "big"), n.e, n.n).to_bytes(256, "big")


@pytest.mark.parametrize("what,block", [
    ("OAEP, not v1.5", None),
    ("02 where 00 belongs", b"\2\2" + b"\x55" * 201 + b"\0" + b"m" * 52),
    ("01 (a signature block)", b"\0\1" + b"\xff" * 201 + b"\0" + b"m" * 52),
    ("no zero after the padding", b"\0\2" + b"\x55" * 254),
    ("7 bytes of padding", b"\0\2" + b"\x55" * 7 + b"\0" + b"m" * 246),
])
def test_rsaes_decrypt_of_a_badly_padded_block_is_value(tpm, what, block):
    """A TPM answers TPM_RC_VALUE (no parameter number: the reference
    implementation's CryptRsaDecrypt returns it as is), never a message."""
    key, public = rsa_key(tpm, 2048, 0x00020072)
    if block is None:
        cipher = public.encrypt(b"secret 42", padding.OAEP(
            mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
    else:
        cipher = raw_block(public, block)
    assert response_code(rsaes_decrypt(tpm, key, cipher)) == TPM_RC.VALUE


def test_rsaes_decrypt_takes_8_bytes_of_padding_and_an_empty_message(tpm):
    key, public = rsa_key(tpm, 2048, 0x00020072)
    block = b"\0\2" + b"\x55" * 8 + b"\0" + b"m" * 245
    assert parse_response(rsaes_decrypt(tpm, key, raw_block(public, block))).params.tpm2b() \
        == b"m" * 245
    block = b"\0\2" + b"\x55" * 253 + b"\0"
    assert parse_response(rsaes_decrypt(tpm, key, raw_block(public, block))).params.tpm2b() \
        == b""


@pytest.mark.parametrize("size", [0, 100, 255])
@pytest.mark.parametrize("scheme", [TPM_ALG.RSAES, TPM_ALG.OAEP, TPM_ALG.NULL])
def test_a_ciphertext_not_the_keys_size_is_size_without_a_parameter(tpm, size, scheme):
    """TPM_RC_SIZE as the reference's CryptRsaDecrypt returns it, with no parameter
    number (libtpms 0.9 answers 0x095 for these bytes too); a TPM2B larger than
    the largest key this TPM has (RSA-4096: 512 bytes) is another matter, SIZE of
    parameter 1 as it is unmarshalled."""
    key, _ = rsa_key(tpm, 2048, 0x00020072)
    in_scheme = u16(scheme) + (u16(TPM_ALG.SHA256) if scheme == TPM_ALG.OAEP else b"")
    cmd = client.build_command(TPM_CC.RSA_Decrypt, (key,),
                               tpm2b(b"\1" * size) + in_scheme + tpm2b(b""),
                               [client.password_auth()])
    assert response_code(tpm.execute(cmd)) == TPM_RC.SIZE
    too_big = client.build_command(TPM_CC.RSA_Decrypt, (key,),
                                   tpm2b(b"\1" * 513) + in_scheme + tpm2b(b""),
                                   [client.password_auth()])
    assert response_code(tpm.execute(too_big)) == TPM_RC.SIZE | 0x0C0 | 0x100


@pytest.mark.parametrize("cc", [TPM_CC.RSA_Encrypt, TPM_CC.RSA_Decrypt])
@pytest.mark.parametrize("alg", [TPM_ALG.ECDSA, TPM_ALG.RSASSA, TPM_ALG.SHA256])
def test_an_in_scheme_that_is_no_decryption_scheme_is_value(tpm, cc, alg):
    """TPMI_ALG_RSA_DECRYPT takes RSAES, OAEP and NULL; anything else is
    TPM_RC_VALUE as it is unmarshalled (libtpms answers 0x2C4 too)."""
    key, _ = rsa_key(tpm, 2048, 0x00020072)
    auths = [client.password_auth()] if cc == TPM_CC.RSA_Decrypt else None   # (Encrypt: none)
    cmd = client.build_command(cc, (key,), tpm2b(bytes(32)) + u16(alg) + u16(TPM_ALG.SHA256)
                               + tpm2b(b""), auths)
    assert response_code(tpm.execute(cmd)) == 0x2C4          # VALUE, parameter 2

"""TPM2_EncryptDecrypt and EncryptDecrypt2 against published vectors.

The vectors are NIST SP 800-38A, appendix F (AES-128, the first block of
each mode's example); ivOut follows the reference implementation and
libtpms (checked byte for byte against swtpm 0.7.1 while writing this).
"""

import hashlib

import pytest
from hypothesis import given, settings, strategies as st

from simxen.tpm import client
from simxen.tpm.constants import TPM_ALG, TPM_CC, TPM_RC, TPM_RH, TPMA_OBJECT, rc_format1
from simxen.tpm.marshal import tpm2b, u8, u16, u32
from simxen.tpm import symmetric

KEY = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
PLAIN = bytes.fromhex("6bc1bee22e409f96e93d7e117393172a")
IV = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
CTR_IV = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
A = TPMA_OBJECT
BOTH = A.userWithAuth | A.decrypt | A.sign

VECTORS = [   # mode, iv, ciphertext (SP 800-38A F.1.1, F.2.1, F.3.13, F.4.1, F.5.1)
    (TPM_ALG.ECB, b"", "3ad77bb40d7a3660a89ecaf32466ef97"),
    (TPM_ALG.CBC, IV, "7649abac8119b246cee98e9b12e9197d"),
    (TPM_ALG.CFB, IV, "3b3fd92eb72dad20333449f8e83cfb4a"),
    (TPM_ALG.OFB, IV, "3b3fd92eb72dad20333449f8e83cfb4a"),
    (TPM_ALG.CTR, CTR_IV, "874d6191b620e3261bef6864990db6ce"),
]


def load_sym(tpm, key=KEY, mode=TPM_ALG.NULL, attrs=BOTH, alg=TPM_ALG.AES):
    seed = bytes(32)
    pub = (u16(TPM_ALG.SYMCIPHER) + u16(TPM_ALG.SHA256) + u32(attrs) + tpm2b(b"")
           + u16(alg) + u16(len(key) * 8) + u16(mode)
           + tpm2b(hashlib.sha256(seed + key).digest()))
    sens = u16(TPM_ALG.SYMCIPHER) + tpm2b(b"") + tpm2b(seed) + tpm2b(key)
    raw = tpm.execute(client.build_command(TPM_CC.LoadExternal, (),
                                           tpm2b(sens) + tpm2b(pub) + u32(TPM_RH.NULL)))
    client.check(raw)
    return int.from_bytes(raw[10:14], "big")


def crypt(tpm, handle, data, decrypt, mode, iv, version=2):
    if version == 2:
        params = tpm2b(data) + u8(decrypt) + u16(mode) + tpm2b(iv)
        cc = TPM_CC.EncryptDecrypt2
    else:
        params = u8(decrypt) + u16(mode) + tpm2b(iv) + tpm2b(data)
        cc = TPM_CC.EncryptDecrypt
    raw = tpm.execute(client.build_command(cc, (handle,), params,
                                           auths=[client.password_auth()]))
    rc = client.response_code(raw)
    if rc:
        return rc, None, None
    body = raw[14:]
    n = int.from_bytes(body[:2], "big")
    out = body[2:2 + n]
    m = int.from_bytes(body[2 + n:4 + n], "big")
    return 0, out, body[4 + n:4 + n + m]


@pytest.mark.parametrize("mode,iv,expected", VECTORS)
@pytest.mark.parametrize("version", [1, 2])
def test_sp800_38a_vectors(tpm, mode, iv, expected, version):
    h = load_sym(tpm)
    rc, out, iv_out = crypt(tpm, h, PLAIN, 0, mode, iv, version)
    assert rc == 0 and out.hex() == expected
    rc, back, _ = crypt(tpm, h, out, 1, mode, iv, version)
    assert rc == 0 and back == PLAIN
    if mode in (TPM_ALG.CBC, TPM_ALG.CFB):
        assert iv_out == out                     # the last ciphertext block
    elif mode == TPM_ALG.CTR:
        assert iv_out == (int.from_bytes(CTR_IV, "big") + 1 & (1 << 128) - 1).to_bytes(16, "big")
    elif mode == TPM_ALG.ECB:
        assert iv_out == b""


def test_long_message_continues_with_iv_out(tpm):
    """Two commands chained through ivOut equal one over the whole message."""
    h = load_sym(tpm)
    msg = bytes(range(256)) * 3
    for mode in (TPM_ALG.CBC, TPM_ALG.CFB, TPM_ALG.OFB, TPM_ALG.CTR):
        _, whole, _ = crypt(tpm, h, msg, 0, mode, IV)
        _, first, iv2 = crypt(tpm, h, msg[:512], 0, mode, IV)
        _, second, _ = crypt(tpm, h, msg[512:], 0, mode, iv2)
        assert first + second == whole, mode


@pytest.mark.parametrize("case,rc", [
    ("restricted", rc_format1(TPM_RC.ATTRIBUTES, handle=1)),
    ("encrypt-without-sign", rc_format1(TPM_RC.ATTRIBUTES, handle=1)),
    ("mode-mismatch", rc_format1(TPM_RC.MODE, param=3)),
    ("null-mode-both", rc_format1(TPM_RC.MODE, param=3)),
    ("short-iv", rc_format1(TPM_RC.SIZE, param=4)),
    ("ecb-with-iv", rc_format1(TPM_RC.SIZE, param=4)),
    ("cbc-partial", rc_format1(TPM_RC.SIZE, param=1)),
    ("not-symcipher", rc_format1(TPM_RC.KEY, handle=1)),
])
def test_refusals(tpm, case, rc):
    mode, iv, data, dec = TPM_ALG.NULL, IV, PLAIN, 0
    if case == "restricted":
        # a restricted symmetric key is a parent; LoadExternal with a
        # sensitive area refuses fixedTPM, so build it without those bits
        h = load_sym(tpm, mode=TPM_ALG.CFB, attrs=A.userWithAuth | A.decrypt | A.restricted)
        dec = 1
    elif case == "encrypt-without-sign":
        h = load_sym(tpm, attrs=A.userWithAuth | A.decrypt)
        mode = TPM_ALG.CFB
    elif case == "mode-mismatch":
        h = load_sym(tpm, mode=TPM_ALG.CFB)
        mode = TPM_ALG.CBC
    elif case == "null-mode-both":
        h = load_sym(tpm)
    elif case == "short-iv":
        h, mode, iv = load_sym(tpm), TPM_ALG.CFB, bytes(8)
    elif case == "ecb-with-iv":
        h, mode = load_sym(tpm), TPM_ALG.ECB
    elif case == "cbc-partial":
        h, mode, data = load_sym(tpm), TPM_ALG.CBC, b"x" * 17
    else:
        from tpm_helpers import sealed_template    # a KEYEDHASH object
        pub = sealed_template(attrs=A.userWithAuth)
        pub.unique = hashlib.sha256(bytes(32) + b"secret").digest()
        sens = u16(TPM_ALG.KEYEDHASH) + tpm2b(b"") + tpm2b(bytes(32)) + tpm2b(b"secret")
        raw = tpm.execute(client.build_command(TPM_CC.LoadExternal, (), tpm2b(sens)
                                               + tpm2b(pub.marshal()) + u32(TPM_RH.NULL)))
        client.check(raw)
        h, mode = int.from_bytes(raw[10:14], "big"), TPM_ALG.CFB
    before = tpm.save_state()
    got, _, _ = crypt(tpm, h, data, dec, mode, iv)
    assert got == rc
    assert tpm.save_state() == before


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=300), mode=st.sampled_from(symmetric.MODES),
       key=st.sampled_from([bytes(16), bytes(range(32))]),
       alg=st.sampled_from([TPM_ALG.AES, TPM_ALG.CAMELLIA]))
def test_round_trip_every_mode(data, mode, key, alg):
    from tpm_helpers import make_engine
    tpm = make_engine()
    if mode in (TPM_ALG.CBC, TPM_ALG.ECB):
        data = data[:len(data) - len(data) % 16]
    iv = b"" if mode == TPM_ALG.ECB else IV
    h = load_sym(tpm, key=key, alg=alg)
    rc, out, _ = crypt(tpm, h, data, 0, mode, iv)
    assert rc == 0 and len(out) == len(data)
    rc, back, _ = crypt(tpm, h, out, 1, mode, iv)
    assert rc == 0 and back == data

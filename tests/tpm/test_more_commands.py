"""The commands added for the whole TSS command set: each is implemented,
and the behaviour a caller can check arithmetically is checked here (the
response codes were compared with swtpm 0.7.1; the tool sequences in
tests/interop/sequences drive them with tpm2-tools)."""

import hashlib

import pytest

from simxen.tpm import TpmEngine, client, keys
from simxen.tpm.commands import COMMANDS
from simxen.tpm.constants import (TPM_ALG, TPM_CC, TPM_ECC, TPM_RC, TPM_RH, TPMA_NV,
                                  rc_format1)
from simxen.tpm.marshal import Reader, tpm2b, u16, u32
from simxen.tpm.public import Public

PW = [client.password_auth()]
P256 = TPM_ECC.NIST_P256

ISSUE_LIST = [
    "Duplicate", "Import", "Rewrap", "EncryptDecrypt", "EncryptDecrypt2",
    "SetCommandCodeAuditStatus", "GetCommandAuditDigest", "GetSessionAuditDigest",
    "PolicyAuthorizeNV", "PolicyCounterTimer", "PolicyDuplicationSelect",
    "PolicyPhysicalPresence", "PolicyTemplate", "PolicyTicket", "PCR_SetAuthPolicy",
    "PCR_SetAuthValue", "NV_UndefineSpaceSpecial", "NV_GlobalWriteLock", "ClockRateAdjust",
    "ECC_Parameters", "EC_Ephemeral", "ZGen_2Phase", "Commit", "SetAlgorithmSet",
    "PP_Commands", "IncrementalSelfTest",
]


@pytest.mark.parametrize("name", ISSUE_LIST)
def test_command_is_implemented(name):
    assert getattr(TPM_CC, name) in COMMANDS


def _point(raw):
    r = Reader(raw)
    return r.tpm2b(), r.tpm2b()


def _add(p1, p2):
    p = keys.CURVE_PRIMES[P256]
    x1, y1 = (int.from_bytes(v, "big") for v in p1)
    x2, y2 = (int.from_bytes(v, "big") for v in p2)
    lam = (y2 - y1) * pow(x2 - x1, -1, p) % p
    x3 = (lam * lam - x1 - x2) % p
    return x3.to_bytes(32, "big"), ((lam * (x1 - x3) - y1) % p).to_bytes(32, "big")


def _primary(tpm, scheme, attrs):
    tpl = Public(TPM_ALG.ECC, TPM_ALG.SHA256, attrs, scheme=scheme, curve=P256,
                 unique=(b"", b""))
    raw = tpm.execute(client.create_primary_command(TPM_RH.OWNER, tpl))
    client.check(raw)
    h = int.from_bytes(raw[10:14], "big")
    pub = Public.from_bytes(Reader(tpm.execute(client.read_public_command(h))[10:]).tpm2b())
    return h, pub


def test_ecdaa_commit_and_sign_verify(tpm):
    """[s]G = E + [T]Q with T = H(nonceK || digest): the signature a verifier
    checks against the commit E; a commit counter signs once."""
    h, pub = _primary(tpm, (TPM_ALG.ECDAA, TPM_ALG.SHA256, 0), 0x00040072)
    raw = tpm.execute(client.build_command(TPM_CC.Commit, (h,),
                                           u16(4) + u32(0) + tpm2b(b"") + tpm2b(b""),
                                           auths=PW))
    client.check(raw)
    r = client.parse_response(raw).params
    assert r.tpm2b() == tpm2b(b"") * 2 and r.tpm2b() == tpm2b(b"") * 2     # K, L empty
    e_point = _point(r.tpm2b())
    counter = r.u16()
    digest = hashlib.sha256(b"message").digest()
    sign = client.build_command(
        TPM_CC.Sign, (h,), tpm2b(digest) + u16(TPM_ALG.ECDAA) + u16(TPM_ALG.SHA256)
        + u16(counter) + u16(0x8024) + u32(TPM_RH.NULL) + tpm2b(b""), auths=PW)
    raw = tpm.execute(sign)
    client.check(raw)
    s = client.parse_response(raw).params
    assert s.u16() == TPM_ALG.ECDAA and s.u16() == TPM_ALG.SHA256
    nonce_k, sig_s = s.tpm2b(), s.tpm2b()
    n = keys.CURVE_ORDERS[P256]
    t = int.from_bytes(hashlib.sha256(nonce_k + digest).digest(), "big") % n
    g = tuple(v.to_bytes(32, "big") for v in keys.CURVE_G[P256])
    lhs = keys.ecc_multiply(P256, int.from_bytes(sig_s, "big"), *g)
    assert lhs == _add(e_point, keys.ecc_multiply(P256, t, *pub.unique))
    assert client.response_code(tpm.execute(sign)) == TPM_RC.VALUE         # used up


def test_zgen_2phase_static_part_is_ecdh(tpm):
    h, pub = _primary(tpm, (TPM_ALG.ECDH, TPM_ALG.SHA256), 0x00020072)
    raw = tpm.execute(client.build_command(TPM_CC.EC_Ephemeral, (), u16(P256)))
    client.check(raw)
    r = client.parse_response(raw).params
    qe = r.tpm2b()
    counter = r.u16()
    other = 12345
    g = tuple(v.to_bytes(32, "big") for v in keys.CURVE_G[P256])
    qs_b = keys.ecc_multiply(P256, other, *g)
    raw = tpm.execute(client.build_command(
        TPM_CC.ZGen_2Phase, (h,), tpm2b(tpm2b(qs_b[0]) + tpm2b(qs_b[1])) + tpm2b(qe)
        + u16(TPM_ALG.ECDH) + u16(counter), auths=PW))
    client.check(raw)
    z = client.parse_response(raw).params
    z1 = _point(z.tpm2b())
    assert z1 == keys.ecc_multiply(P256, other, *pub.unique)       # [dA]([b]G) = [b]([dA]G)


def test_ecc_parameters_are_p256(tpm):
    raw = tpm.execute(client.build_command(TPM_CC.ECC_Parameters, (), u16(P256)))
    r = client.parse_response(raw).params
    assert r.u16() == P256 and r.u16() == 256
    r.u16(), r.u16(), r.u16()                               # kdf scheme+hash, sign NULL
    p, a, b, gx, gy, n = (int.from_bytes(r.tpm2b(), "big") for _ in range(6))
    assert (gy * gy - gx ** 3 - a * gx - b) % p == 0       # G is on the curve
    assert n == keys.CURVE_ORDERS[P256] and r.tpm2b() == b"\x01"
    assert client.response_code(tpm.execute(client.build_command(
        TPM_CC.ECC_Parameters, (), u16(0x0001)))) == rc_format1(TPM_RC.CURVE, param=1)


def test_pcr_group_auth_value_and_policy(tpm):
    set_auth = client.build_command(TPM_CC.PCR_SetAuthValue, (20,), tpm2b(b"abc"), auths=PW)
    client.check(tpm.execute(set_auth))
    def extend(pcr, pw):                                         # PCR 20 takes locality 1-3
        return client.response_code(tpm.execute(client.build_command(
            TPM_CC.PCR_Extend, (pcr,), u32(0), auths=[client.password_auth(pw)]), locality=2))
    assert extend(20, b"abc") == 0 and extend(20, b"") == rc_format1(TPM_RC.BAD_AUTH,
                                                                      session=1)
    assert extend(16, b"") == 0                                  # not in the group
    assert client.response_code(tpm.execute(client.build_command(
        TPM_CC.PCR_SetAuthValue, (16,), tpm2b(b"x"), auths=PW))) == TPM_RC.VALUE
    client.check(tpm.execute(client.build_command(
        TPM_CC.PCR_SetAuthPolicy, (TPM_RH.PLATFORM,),
        tpm2b(bytes(32)) + u16(TPM_ALG.SHA256) + u32(21), auths=PW)))
    assert extend(20, b"abc") == TPM_RC.AUTH_TYPE                # policy only now
    again = TpmEngine.from_state(tpm.save_state())               # the policy persists
    client.check(again.execute(client.startup_command()))
    assert again.entity_policy(22) == (bytes(32), TPM_ALG.SHA256)


def test_pin_fail_counts_failures_in_the_index(tpm):
    idx = 0x01500004
    attrs = (TPMA_NV.OWNERWRITE | TPMA_NV.OWNERREAD | TPMA_NV.AUTHREAD | TPMA_NV.NO_DA
             | 0x8 << 4)
    pub = u32(idx) + u16(TPM_ALG.SHA256) + u32(attrs) + tpm2b(b"") + u16(8)
    client.check(tpm.execute(client.build_command(TPM_CC.NV_DefineSpace, (TPM_RH.OWNER,),
                                                  tpm2b(b"pin") + tpm2b(pub), auths=PW)))
    client.check(tpm.execute(client.build_command(
        TPM_CC.NV_Write, (TPM_RH.OWNER, idx), tpm2b(u32(0) + u32(2)) + u16(0), auths=PW)))

    def read(pw):
        return client.response_code(tpm.execute(client.build_command(
            TPM_CC.NV_Read, (idx, idx), u16(8) + u16(0), auths=[client.password_auth(pw)])))
    assert read(b"no") == rc_format1(TPM_RC.BAD_AUTH, session=1)
    assert read(b"pin") == 0                                      # success resets the count
    assert read(b"no") != 0 and read(b"no") != 0
    assert read(b"pin") == TPM_RC.AUTH_UNAVAILABLE                # two failures in a row
    assert tpm.da_failed_tries == 0                               # not dictionary attack


def test_pcr_allocate_applies_at_the_next_reset(tpm):
    sel = u32(2) + u16(TPM_ALG.SHA1) + b"\x03\x00\x00\x00" + u16(TPM_ALG.SHA256) + b"\x03\xff\xff\xff"
    raw = tpm.execute(client.build_command(TPM_CC.PCR_Allocate, (TPM_RH.PLATFORM,), sel,
                                           auths=PW))
    client.check(raw)
    assert raw[14] == 1                                           # allocationSuccess
    assert TPM_ALG.SHA1 in tpm.pcrs.banks                         # not yet
    again = TpmEngine.from_state(tpm.save_state())
    client.check(again.execute(client.startup_command()))
    assert set(again.pcrs.banks) == {TPM_ALG.SHA256, TPM_ALG.SHA384, TPM_ALG.SHA512}


def test_pp_commands_on_a_platform_without_physical_presence(tpm):
    raw = tpm.execute(client.build_command(TPM_CC.PP_Commands, (TPM_RH.PLATFORM,),
                                           u32(0) + u32(0), auths=PW))
    assert client.response_code(raw) == rc_format1(TPM_RC.PP, session=1)


@pytest.mark.parametrize("curve", sorted(keys.CURVE_BYTES))
def test_curve_constants_agree_with_cryptography(curve):
    from cryptography.hazmat.primitives.asymmetric import ec
    g = ec.derive_private_key(1, keys.CURVE_CLASSES[curve]()).public_key().public_numbers()
    assert (g.x, g.y) == keys.CURVE_G[curve]
    p, b = keys.CURVE_PRIMES[curve], keys.CURVE_B[curve]
    assert (g.y * g.y - g.x ** 3 + 3 * g.x - b) % p == 0
    size = keys.CURVE_BYTES[curve]
    with pytest.raises(ValueError):                  # [n]G is the point at infinity
        keys.ecc_multiply(curve, keys.CURVE_ORDERS[curve], g.x.to_bytes(size, "big"),
                          g.y.to_bytes(size, "big"))


def test_p521_primary_signs(tpm):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, utils
    tpl = Public(TPM_ALG.ECC, TPM_ALG.SHA256, 0x00040072, scheme=(TPM_ALG.ECDSA, TPM_ALG.SHA512),
                 curve=TPM_ECC.NIST_P521, unique=(b"", b""))
    raw = tpm.execute(client.create_primary_command(TPM_RH.OWNER, tpl))
    client.check(raw)
    h = int.from_bytes(raw[10:14], "big")
    pub = Public.from_bytes(Reader(tpm.execute(client.read_public_command(h))[10:]).tpm2b())
    digest = hashlib.sha512(b"p521").digest()
    raw = tpm.execute(client.build_command(
        TPM_CC.Sign, (h,), tpm2b(digest) + u16(TPM_ALG.NULL) + u16(0x8024) + u32(TPM_RH.NULL)
        + tpm2b(b""), auths=PW))
    client.check(raw)
    s = client.parse_response(raw).params
    s.u16(), s.u16()
    r_, s_ = (int.from_bytes(s.tpm2b(), "big") for _ in range(2))
    key = ec.EllipticCurvePublicNumbers(*(int.from_bytes(v, "big") for v in pub.unique),
                                        ec.SECP521R1()).public_key()
    key.verify(utils.encode_dss_signature(r_, s_), digest,
               ec.ECDSA(utils.Prehashed(hashes.SHA512())))


def test_unsupported_key_sizes_are_value_errors(tpm):
    """As libtpms: TPMI_RSA_KEY_BITS and TPMI_AES_KEY_BITS refuse a size
    they do not hold with TPM_RC_VALUE."""
    for body in (u16(TPM_ALG.RSA) + u16(TPM_ALG.NULL) + u16(TPM_ALG.NULL) + u16(4096) + u32(0),
                 u16(TPM_ALG.SYMCIPHER) + u16(TPM_ALG.AES) + u16(192) + u16(TPM_ALG.CFB)):
        raw = tpm.execute(client.build_command(TPM_CC.TestParms, (), body))
        assert client.response_code(raw) == rc_format1(TPM_RC.VALUE, param=1)

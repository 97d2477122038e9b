"""NV indices: define, write, read, counters, bit fields, extend, locks and
the authorization attributes."""

import hashlib

import pytest

from simxen.tpm import client
from simxen.tpm.client import AuthSessionClient, response_code
from simxen.tpm.constants import TPM_ALG, TPM_CC, TPM_RC, TPM_RH, TPMA_NV
from simxen.tpm.marshal import tpm2b, u16, u32, u64

from tpm_helpers import DetRandom

IDX = 0x01500016


def pw(password=b""):
    return [client.password_auth(password)]


def define(tpm, index=IDX, size=32, attrs=0x00060006, auth=b"", policy=b"",
           hierarchy=TPM_RH.OWNER):
    pub = u32(index) + u16(TPM_ALG.SHA256) + u32(attrs) + tpm2b(policy) + u16(size)
    return tpm.execute(client.build_command(TPM_CC.NV_DefineSpace, (hierarchy,),
                                            tpm2b(auth) + tpm2b(pub), pw()))


def write(tpm, data, offset=0, auth_handle=TPM_RH.OWNER, password=b"", index=IDX):
    return tpm.execute(client.build_command(TPM_CC.NV_Write, (auth_handle, index),
                                            tpm2b(data) + u16(offset), pw(password)))


def read(tpm, size, offset=0, auth_handle=TPM_RH.OWNER, password=b"", index=IDX):
    return tpm.execute(client.build_command(TPM_CC.NV_Read, (auth_handle, index),
                                            u16(size) + u16(offset), pw(password)))


def read_public(tpm, index=IDX):
    r = client.parse_response(tpm.execute(client.build_command(TPM_CC.NV_ReadPublic,
                                                               (index,)))).params
    return r.tpm2b(), r.tpm2b()


def test_define_write_read(tpm):
    client.check(define(tpm))
    pub, name = read_public(tpm)
    assert pub.hex() == "01500016000b000600060000" + "0020"
    assert name == b"\x00\x0b" + hashlib.sha256(pub).digest()
    assert response_code(read(tpm, 32)) == TPM_RC.NV_UNINITIALIZED
    client.check(write(tpm, b"A" * 32))
    assert client.parse_response(read(tpm, 32)).params.tpm2b() == b"A" * 32
    pub2, name2 = read_public(tpm)
    assert int.from_bytes(pub2[6:10], "big") == 0x20060006      # TPMA_NV_WRITTEN set
    assert name2 != name
    client.check(write(tpm, b"xyz", 4))
    assert client.parse_response(read(tpm, 8)).params.tpm2b() == b"AAAAxyzA"


def test_errors(tpm):
    client.check(define(tpm))
    assert response_code(define(tpm)) == TPM_RC.NV_DEFINED
    assert response_code(write(tpm, b"x" * 33)) == TPM_RC.NV_RANGE
    assert response_code(write(tpm, b"x", 32)) == TPM_RC.NV_RANGE
    assert response_code(read(tpm, 1, index=0x01500099)) == TPM_RC.HANDLE | 0x200
    assert response_code(define(tpm, index=0x01500017, attrs=0x00000006)) == 0x2C2
    assert response_code(define(tpm, index=0x01500017, size=4096)) == 0x2D5


def test_authorization_attributes(tpm):
    client.check(define(tpm, attrs=0x00040004, auth=b"idx"))     # authread|authwrite only
    assert response_code(write(tpm, b"1")) == TPM_RC.NV_AUTHORIZATION
    assert response_code(write(tpm, b"1", auth_handle=IDX, password=b"no")) == 0x98E
    client.check(write(tpm, b"1", auth_handle=IDX, password=b"idx"))
    assert client.parse_response(read(tpm, 1, auth_handle=IDX,
                                      password=b"idx")).params.tpm2b() == b"1"


def test_nv_write_with_hmac_session_uses_index_name(tpm):
    client.check(define(tpm))
    _, name = read_public(tpm)
    s = AuthSessionClient.start(tpm.execute, random_bytes=DetRandom())
    cmd = s.command(TPM_CC.NV_Write, [TPM_RH.OWNER, IDX], [u32(TPM_RH.OWNER), name],
                    tpm2b(b"hello") + u16(0), b"")
    s.response(tpm.execute(cmd), TPM_CC.NV_Write)
    _, new_name = read_public(tpm)
    cmd = s.command(TPM_CC.NV_Read, [TPM_RH.OWNER, IDX], [u32(TPM_RH.OWNER), new_name],
                    u16(5) + u16(0), b"")
    assert s.response(tpm.execute(cmd), TPM_CC.NV_Read).params.tpm2b() == b"hello"


def test_counter(tpm):
    attrs = 0x00060006 | (1 << 4)
    client.check(define(tpm, size=8, attrs=attrs))
    inc = lambda: tpm.execute(client.build_command(TPM_CC.NV_Increment, (TPM_RH.OWNER, IDX),
                                                   b"", pw()))
    for expected in (1, 2, 3):
        client.check(inc())
        assert client.parse_response(read(tpm, 8)).params.tpm2b() == u64(expected)
    assert response_code(write(tpm, b"x")) == TPM_RC.ATTRIBUTES
    # a new counter starts above every value any counter ever had
    client.check(tpm.execute(client.build_command(TPM_CC.NV_UndefineSpace, (TPM_RH.OWNER, IDX),
                                                  b"", pw())))
    client.check(define(tpm, size=8, attrs=attrs))
    client.check(inc())
    assert client.parse_response(read(tpm, 8)).params.tpm2b() == u64(4)


def test_extend_and_bits(tpm):
    client.check(define(tpm, size=32, attrs=0x00060006 | (4 << 4)))
    client.check(tpm.execute(client.build_command(TPM_CC.NV_Extend, (TPM_RH.OWNER, IDX),
                                                  tpm2b(b"event"), pw())))
    value = client.parse_response(read(tpm, 32)).params.tpm2b()
    assert value == hashlib.sha256(bytes(32) + b"event").digest()
    client.check(define(tpm, index=0x01500017, size=8, attrs=0x00060006 | (2 << 4)))
    for bits in (0x1, 0x10):
        client.check(tpm.execute(client.build_command(
            TPM_CC.NV_SetBits, (TPM_RH.OWNER, 0x01500017), u64(bits), pw())))
    assert client.parse_response(read(tpm, 8, index=0x01500017)).params.tpm2b() == u64(0x11)


def test_write_lock(tpm):
    client.check(define(tpm, attrs=0x00060006 | TPMA_NV.WRITEDEFINE))
    client.check(write(tpm, b"x"))
    client.check(tpm.execute(client.build_command(TPM_CC.NV_WriteLock, (TPM_RH.OWNER, IDX),
                                                  b"", pw())))
    assert response_code(write(tpm, b"y")) == TPM_RC.NV_LOCKED


# TPM_RC_ATTRIBUTES of the authHandle (the reference's TPM2_NV_DefineSpace, and libtpms)
@pytest.mark.parametrize("hierarchy,attrs,rc", [
    (TPM_RH.OWNER, 0x00060006 | TPMA_NV.PLATFORMCREATE, 0x182),
    (TPM_RH.PLATFORM, 0x00060006, 0x182),
    (TPM_RH.PLATFORM, 0x00060006 | TPMA_NV.PLATFORMCREATE, 0),
])
def test_platform_create_must_match(tpm, hierarchy, attrs, rc):
    assert response_code(define(tpm, attrs=attrs, hierarchy=hierarchy)) == rc


def test_nv_certify_signs_the_contents(tpm):
    import hashlib as _h
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, utils
    from simxen.tpm import keys
    from simxen.tpm.attest import Attest
    from simxen.tpm.constants import TPM_ST
    from simxen.tpm.signature import Signature
    from tpm_helpers import ecc_ak_template, ecc_storage_template
    client.check(define(tpm))
    client.check(write(tpm, b"B" * 32))
    srk, _, _ = client.parse_create_primary(tpm.execute(
        client.create_primary_command(TPM_RH.OWNER, ecc_storage_template())))
    priv, pub = client.parse_create(tpm.execute(client.create_command(
        srk, ecc_ak_template(0x00040072))))
    key, _ = client.parse_load(tpm.execute(client.load_command(srk, priv, pub)))
    rsp = tpm.execute(client.build_command(
        TPM_CC.NV_Certify, (key, TPM_RH.OWNER, IDX),
        tpm2b(b"q") + u16(TPM_ALG.ECDSA) + u16(TPM_ALG.SHA256) + u16(8) + u16(4), pw() + pw()))
    r = client.parse_response(rsp).params
    raw = r.tpm2b()
    sig = Signature.parse(r)
    att = Attest.from_bytes(raw)
    assert att.type == TPM_ST.ATTEST_NV and att.attested["nv_contents"] == b"B" * 8
    assert att.attested["offset"] == 4 and att.attested["index_name"] == read_public(tpm)[1]
    der = utils.encode_dss_signature(int.from_bytes(sig.r, "big"), int.from_bytes(sig.s, "big"))
    keys.ecc_public_key(pub.curve, *pub.unique).verify(der, raw, ec.ECDSA(hashes.SHA256()))
    assert _h.sha256(raw).digest()


def test_nv_change_auth_needs_a_policy_session(tpm):
    import hashlib as _h
    from simxen.tpm.client import AuthSessionClient
    from simxen.tpm.constants import TPM_SE
    policy = _h.sha256(bytes(32) + u32(TPM_CC.PolicyCommandCode)
                       + u32(TPM_CC.NV_ChangeAuth)).digest()
    client.check(define(tpm, attrs=0x00060006, auth=b"old", policy=policy))
    cmd = client.build_command(TPM_CC.NV_ChangeAuth, (IDX,), tpm2b(b"new"), pw(b"old"))
    assert response_code(tpm.execute(cmd)) == TPM_RC.AUTH_UNAVAILABLE
    s = AuthSessionClient.start(tpm.execute, random_bytes=DetRandom(), session_type=TPM_SE.POLICY)
    client.check(tpm.execute(client.build_command(TPM_CC.PolicyCommandCode, (s.handle,),
                                                  u32(TPM_CC.NV_ChangeAuth))))
    _, name = read_public(tpm)
    s.response(tpm.execute(s.command(TPM_CC.NV_ChangeAuth, [IDX], [name], tpm2b(b"new"))),
               TPM_CC.NV_ChangeAuth)
    assert tpm.nv_indices[IDX].auth_value == b"new"

"""Policy sessions: digests computed as Part 3 says (checked against the
recorded tpm2-tools values), and the checks they defer to the time of use."""

import hashlib

from simxen.tpm import client
from simxen.tpm.client import AuthSessionClient, response_code
from simxen.tpm.constants import TPM_ALG, TPM_CC, TPM_RC, TPM_RH, TPM_SE
from simxen.tpm.marshal import tpm2b, u16, u32
from simxen.tpm.pcr_selection import marshal_pcr_selection, select_bytes

from tpm_helpers import DetRandom, ecc_storage_template, sealed_template

SEL01 = marshal_pcr_selection([(TPM_ALG.SHA256, select_bytes([0, 1]))])
EK_POLICY = "837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa"


def session(tpm, kind=TPM_SE.POLICY):
    return AuthSessionClient.start(tpm.execute, random_bytes=DetRandom(b"p"), session_type=kind)


def digest(tpm, s):
    return client.parse_response(tpm.execute(client.build_command(
        TPM_CC.PolicyGetDigest, (s.handle,)))).params.tpm2b()


def policy_pcr(tpm, s, pcr_digest=b""):
    return tpm.execute(client.build_command(TPM_CC.PolicyPCR, (s.handle,),
                                            tpm2b(pcr_digest) + SEL01))


def test_policy_pcr_digest_matches_recorded_value(tpm):
    one = bytes(31) + b"\x01"
    client.check(tpm.execute(client.pcr_extend_command(0, {TPM_ALG.SHA256: one})))
    s = session(tpm, TPM_SE.TRIAL)
    client.check(policy_pcr(tpm, s))
    # recorded with tpm2-tools 5.4 + libtpms after the same extend of PCR 0
    assert digest(tpm, s).hex() == (
        "3b4f9d0147d71647bbee6e95ea4387a7f170a0eb83f52ee4aef5e91ba9a225e1")


def test_policy_secret_endorsement_gives_ek_policy(tpm):
    s = session(tpm, TPM_SE.TRIAL)
    cmd = client.build_command(TPM_CC.PolicySecret, (TPM_RH.ENDORSEMENT, s.handle),
                               tpm2b(b"") + tpm2b(b"") + tpm2b(b"") + u32(0),
                               [client.password_auth()])
    rsp = client.parse_response(tpm.execute(cmd)).params
    assert rsp.tpm2b() == b"" and rsp.u16() == 0x8023 and rsp.u32() == TPM_RH.NULL
    assert digest(tpm, s).hex() == EK_POLICY


def sealed(tpm, policy, attrs=0x12):
    srk, _, _ = client.parse_create_primary(tpm.execute(
        client.create_primary_command(TPM_RH.OWNER, ecc_storage_template())))
    priv, pub = client.parse_create(tpm.execute(client.create_command(
        srk, sealed_template(policy, attrs), data=b"sealed!")))
    h, name = client.parse_load(tpm.execute(client.load_command(srk, priv, pub)))
    return h, name


def unseal(tpm, s, h, name, auth=b""):
    return tpm.execute(s.command(TPM_CC.Unseal, [h], [name], b"", auth))


def test_unseal_under_pcr_policy_then_fail_after_extend(tpm):
    trial = session(tpm, TPM_SE.TRIAL)
    client.check(policy_pcr(tpm, trial))
    h, name = sealed(tpm, digest(tpm, trial))
    s = session(tpm)
    client.check(policy_pcr(tpm, s))
    rsp = s.response(unseal(tpm, s, h, name), TPM_CC.Unseal)
    assert rsp.params.tpm2b() == b"sealed!"
    # the policy session was reset after use (continueSession set)
    assert digest(tpm, s) == bytes(32)
    client.check(tpm.execute(client.pcr_extend_command(1, {TPM_ALG.SHA256: b"\x02" * 32})))
    s2 = session(tpm)
    client.check(policy_pcr(tpm, s2))
    assert response_code(unseal(tpm, s2, h, name)) == 0x99D


def test_pcr_changed_between_policy_and_use(tpm):
    trial = session(tpm, TPM_SE.TRIAL)
    client.check(policy_pcr(tpm, trial))
    h, name = sealed(tpm, digest(tpm, trial))
    s = session(tpm)
    client.check(policy_pcr(tpm, s))
    client.check(tpm.execute(client.pcr_extend_command(5, {TPM_ALG.SHA256: bytes(32)})))
    assert response_code(unseal(tpm, s, h, name)) == TPM_RC.PCR_CHANGED


def test_policy_pcr_wrong_digest_is_value(tpm):
    s = session(tpm)
    assert response_code(policy_pcr(tpm, s, b"\x01" * 32)) == 0x1C4


def test_trial_session_cannot_authorize(tpm):
    trial = session(tpm, TPM_SE.TRIAL)
    client.check(policy_pcr(tpm, trial))
    h, name = sealed(tpm, digest(tpm, trial))
    client.check(policy_pcr(tpm, trial))
    # the reference's ParseSessionBuffer: a trial session in an authorization
    # area is TPM_RC_ATTRIBUTES of that session (swtpm answers the same)
    assert response_code(unseal(tpm, trial, h, name)) == 0x982


def test_policy_auth_value_and_password(tpm):
    expected = hashlib.sha256(bytes(32) + u32(TPM_CC.PolicyAuthValue)).digest()
    srk, _, _ = client.parse_create_primary(tpm.execute(
        client.create_primary_command(TPM_RH.OWNER, ecc_storage_template())))
    priv, pub = client.parse_create(tpm.execute(client.create_command(
        srk, sealed_template(expected), data=b"pw-sealed", user_auth=b"pw")))
    h, name = client.parse_load(tpm.execute(client.load_command(srk, priv, pub)))
    s = session(tpm)
    client.check(tpm.execute(client.build_command(TPM_CC.PolicyAuthValue, (s.handle,))))
    assert digest(tpm, s) == expected
    assert response_code(unseal(tpm, s, h, name, b"bad")) == 0x98E
    # a failed command leaves the policy session as it was
    out = s.response(unseal(tpm, s, h, name, b"pw"), TPM_CC.Unseal).params.tpm2b()
    assert out == b"pw-sealed"
    p = session(tpm)
    client.check(tpm.execute(client.build_command(TPM_CC.PolicyPassword, (p.handle,))))
    assert digest(tpm, p) == expected
    area = u32(p.handle) + tpm2b(b"n" * 32) + b"\x01" + tpm2b(b"pw")
    rsp = tpm.execute(client.build_command(TPM_CC.Unseal, (h,), b"", [area]))
    assert client.parse_response(rsp).params.tpm2b() == b"pw-sealed"


def test_policy_command_code_restricts_use(tpm):
    s = session(tpm, TPM_SE.TRIAL)
    client.check(tpm.execute(client.build_command(TPM_CC.PolicyCommandCode, (s.handle,),
                                                  u32(TPM_CC.Unseal))))
    expected = hashlib.sha256(bytes(32) + u32(TPM_CC.PolicyCommandCode)
                              + u32(TPM_CC.Unseal)).digest()
    assert digest(tpm, s) == expected
    h, name = sealed(tpm, expected)
    real = session(tpm)
    client.check(tpm.execute(client.build_command(TPM_CC.PolicyCommandCode, (real.handle,),
                                                  u32(TPM_CC.Unseal))))
    assert real.response(unseal(tpm, real, h, name), TPM_CC.Unseal).params.tpm2b() == b"sealed!"
    client.check(tpm.execute(client.build_command(TPM_CC.PolicyCommandCode, (real.handle,),
                                                  u32(TPM_CC.Unseal))))
    assert response_code(tpm.execute(client.build_command(
        TPM_CC.PolicyCommandCode, (real.handle,), u32(TPM_CC.Quote)))) == 0x1C4


def test_policy_or_and_restart(tpm):
    a, b = b"\x11" * 32, b"\x22" * 32
    s = session(tpm)
    assert response_code(tpm.execute(client.build_command(
        TPM_CC.PolicyOR, (s.handle,), u32(2) + tpm2b(a) + tpm2b(b)))) == 0x1C4
    client.check(tpm.execute(client.build_command(TPM_CC.PolicyOR, (s.handle,),
                                                  u32(2) + tpm2b(bytes(32)) + tpm2b(b))))
    assert digest(tpm, s) == hashlib.sha256(bytes(32) + u32(TPM_CC.PolicyOR)
                                            + bytes(32) + b).digest()
    client.check(tpm.execute(client.build_command(TPM_CC.PolicyRestart, (s.handle,))))
    assert digest(tpm, s) == bytes(32)


def test_policy_commands_need_a_policy_session(tpm):
    h = AuthSessionClient.start(tpm.execute, random_bytes=DetRandom()).handle
    assert response_code(tpm.execute(client.build_command(TPM_CC.PolicyGetDigest, (h,)))) == 0x184
    assert response_code(tpm.execute(client.build_command(
        TPM_CC.PolicyGetDigest, (0x03000005,)))) == TPM_RC.REFERENCE_H0




def define_nv(tpm, index, data):
    pub = u32(index) + u16(TPM_ALG.SHA256) + u32(0x00060006) + tpm2b(b"") + u16(len(data))
    client.check(tpm.execute(client.build_command(TPM_CC.NV_DefineSpace, (TPM_RH.OWNER,),
                                                  tpm2b(b"") + tpm2b(pub),
                                                  [client.password_auth()])))
    client.check(tpm.execute(client.build_command(
        TPM_CC.NV_Write, (TPM_RH.OWNER, index), tpm2b(data) + b"\0\0",
        [client.password_auth()])))
    r = client.parse_response(tpm.execute(client.build_command(TPM_CC.NV_ReadPublic,
                                                               (index,)))).params
    r.tpm2b()
    return r.tpm2b()


def policy_nv(tpm, s, index, operand, op):
    return tpm.execute(client.build_command(
        TPM_CC.PolicyNV, (TPM_RH.OWNER, index, s.handle),
        tpm2b(operand) + b"\0\0" + op.to_bytes(2, "big"), [client.password_auth()]))


def test_policy_nv_compares_and_extends(tpm):
    name = define_nv(tpm, 0x01500070, b"\x05")
    s = session(tpm)
    client.check(policy_nv(tpm, s, 0x01500070, b"\x05", 0x0000))          # EQ
    args = hashlib.sha256(b"\x05" + b"\0\0" + b"\0\0").digest()
    assert digest(tpm, s) == hashlib.sha256(bytes(32) + u32(TPM_CC.PolicyNV) + args
                                            + name).digest()
    assert response_code(policy_nv(tpm, s, 0x01500070, b"\x07", 0x0000)) == TPM_RC.POLICY
    client.check(policy_nv(tpm, s, 0x01500070, b"\x07", 0x0005))          # UNSIGNED_LT
    client.check(policy_nv(tpm, s, 0x01500070, b"\x04", 0x000A))          # BITSET
    assert response_code(policy_nv(tpm, s, 0x01500070, b"\x02", 0x000A)) == TPM_RC.POLICY


def test_policy_nv_written_and_name_hash_are_checked_at_use(tpm):
    s = session(tpm)
    client.check(tpm.execute(client.build_command(TPM_CC.PolicyNvWritten, (s.handle,),
                                                  b"\x01")))
    assert response_code(tpm.execute(client.build_command(
        TPM_CC.PolicyNvWritten, (s.handle,), b"\x00"))) == 0x1C4
    assert digest(tpm, s) == hashlib.sha256(bytes(32) + u32(TPM_CC.PolicyNvWritten)
                                            + b"\x01").digest()
    n = session(tpm)
    name_hash = hashlib.sha256(b"some names").digest()
    client.check(tpm.execute(client.build_command(TPM_CC.PolicyNameHash, (n.handle,),
                                                  tpm2b(name_hash))))
    h, name = sealed(tpm, digest(tpm, n))
    assert response_code(unseal(tpm, n, h, name)) == 0x99D     # names do not hash to it

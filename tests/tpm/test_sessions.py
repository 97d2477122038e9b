"""HMAC sessions: cpHash/rpHash HMACs, nonce rolling, bound and salted
session keys, parameter encryption, continueSession, dictionary attack."""

import pytest

from simxen.tpm import client
from simxen.tpm.client import AuthSessionClient, response_code
from simxen.tpm.constants import TPM_ALG, TPM_CC, TPM_RC, TPM_RH, TPM_SE
from simxen.tpm.marshal import tpm2b, u16, u32

from tpm_helpers import DetRandom, ecc_storage_template, rsa_storage_template, sealed_template


def start(tpm, **kw):
    return AuthSessionClient.start(tpm.execute, random_bytes=DetRandom(b"caller"), **kw)


def nv_define(session, index, auth=b"", owner_auth=b"", encrypt=False, attrs=0x00060006):
    pub = u32(index) + u16(TPM_ALG.SHA256) + u32(attrs) + tpm2b(b"") + u16(16)
    return session.command(TPM_CC.NV_DefineSpace, [TPM_RH.OWNER], [u32(TPM_RH.OWNER)],
                           tpm2b(auth) + tpm2b(pub), owner_auth, encrypt_first=encrypt)


def test_hmac_session_command_and_response_hmacs(tpm):
    s = start(tpm)
    assert s.handle == 0x02000000 and len(s.nonce_tpm) == 32
    for i in range(3):                              # nonces roll every command
        before = s.nonce_tpm
        rsp = tpm.execute(nv_define(s, 0x01500100 + i))
        s.response(rsp, TPM_CC.NV_DefineSpace)
        assert s.nonce_tpm != before


def test_wrong_hmac_is_bad_auth_for_owner_and_auth_fail_for_keys(tpm):
    client.check(tpm.execute(client.build_command(
        TPM_CC.HierarchyChangeAuth, (TPM_RH.OWNER,), tpm2b(b"owner"), [client.password_auth()])))
    s = start(tpm)
    assert response_code(tpm.execute(nv_define(s, 0x01500001, owner_auth=b"nope"))) == 0x9A2
    s.response(tpm.execute(nv_define(s, 0x01500001, owner_auth=b"owner")),
               TPM_CC.NV_DefineSpace)


def test_response_hmac_uses_new_auth_after_change_auth(tpm):
    s = start(tpm)
    cmd = s.command(TPM_CC.HierarchyChangeAuth, [TPM_RH.OWNER], [u32(TPM_RH.OWNER)],
                    tpm2b(b"new"), b"")
    rsp = tpm.execute(cmd)
    s._key = s.session_key + b"new"
    s.response(rsp, TPM_CC.HierarchyChangeAuth)


def test_continue_session_clear_flushes(tpm):
    s = start(tpm)
    cmd = s.command(TPM_CC.HierarchyChangeAuth, [TPM_RH.OWNER], [u32(TPM_RH.OWNER)],
                    tpm2b(b""), b"", attributes=0x00)
    client.check(tpm.execute(cmd))
    assert s.handle not in tpm.sessions


@pytest.mark.parametrize("salt", [None, "ecc", "rsa"])
@pytest.mark.parametrize("bound", [False, True])
@pytest.mark.parametrize("encrypt", [False, True])
def test_salted_bound_encrypted_sessions(tpm, salt, bound, encrypt):
    client.check(tpm.execute(client.build_command(
        TPM_CC.HierarchyChangeAuth, (TPM_RH.OWNER,), tpm2b(b"ownerpw"), [client.password_auth()])))
    kw = {}
    if salt:
        tmpl = ecc_storage_template() if salt == "ecc" else rsa_storage_template()
        h, pub, _ = client.parse_create_primary(tpm.execute(client.create_primary_command(
            TPM_RH.OWNER, tmpl, password=b"ownerpw")))
        kw.update(salt_key=pub, salt_key_handle=h)
    if bound:
        kw.update(bind=TPM_RH.OWNER, bind_name=u32(TPM_RH.OWNER), bind_auth=b"ownerpw")
    if encrypt:
        kw.update(symmetric=(TPM_ALG.AES, 128, TPM_ALG.CFB))
    s = start(tpm, **kw)
    assert bool(s.session_key) == bool(salt or bound)
    cmd = nv_define(s, 0x01500003, auth=b"index-secret", owner_auth=b"ownerpw",
                    encrypt=encrypt)
    if encrypt:
        assert b"index-secret" not in cmd
    s.response(tpm.execute(cmd), TPM_CC.NV_DefineSpace)
    assert tpm.nv_indices[0x01500003].auth_value == b"index-secret"
    if encrypt:   # the TPM encrypts GetRandom's output for us
        cmd = s.command(TPM_CC.GetRandom, [], [], u16(8), decrypt_response=True)
        rsp = s.response(tpm.execute(cmd), TPM_CC.GetRandom)
        assert len(rsp.params.tpm2b()) == 8


def test_decrypt_on_command_without_tpm2b_parameter_is_attributes(tpm):
    s = start(tpm, symmetric=(TPM_ALG.AES, 128, TPM_ALG.CFB))
    cmd = s.command(TPM_CC.PCR_Extend, [3], [u32(3)], u32(0), b"", attributes=0x21)
    assert response_code(tpm.execute(cmd)) == TPM_RC.ATTRIBUTES | 0x900


def sealed_with_password(tpm, password):
    """A loaded, DA-protected sealed object whose authValue is ``password``."""
    srk, _, _ = client.parse_create_primary(tpm.execute(
        client.create_primary_command(TPM_RH.OWNER, ecc_storage_template())))
    priv, pub = client.parse_create(tpm.execute(client.create_command(
        srk, sealed_template(attrs=0x52), data=b"x", user_auth=password)))
    return client.parse_load(tpm.execute(client.load_command(srk, priv, pub)))[0]


def test_dictionary_attack_lockout(tpm):
    h = sealed_with_password(tpm, b"right")
    tpm.da_max_tries = 3
    unseal = lambda pw: tpm.execute(client.build_command(TPM_CC.Unseal, (h,), b"",
                                                         [client.password_auth(pw)]))
    for _ in range(3):
        assert response_code(unseal(b"wrong")) == 0x98E
        assert tpm.last_command_changed_nv
    assert response_code(unseal(b"right")) == TPM_RC.LOCKOUT
    client.check(tpm.execute(client.build_command(TPM_CC.DictionaryAttackLockReset,
                                                  (TPM_RH.LOCKOUT,), b"",
                                                  [client.password_auth()])))
    assert response_code(unseal(b"right")) == 0


def test_failed_tries_recover_with_tpm_clock(tpm):
    h = sealed_with_password(tpm, b"right")
    client.check(tpm.execute(client.build_command(
        TPM_CC.DictionaryAttackParameters, (TPM_RH.LOCKOUT,), u32(2) + u32(10) + u32(60),
        [client.password_auth()])))
    unseal = lambda pw: tpm.execute(client.build_command(TPM_CC.Unseal, (h,), b"",
                                                         [client.password_auth(pw)]))
    assert response_code(unseal(b"wrong")) == 0x98E
    assert response_code(unseal(b"wrong")) == 0x98E
    assert response_code(unseal(b"right")) == TPM_RC.LOCKOUT
    tpm._clock_fn.ms += 10_000                  # one recoveryTime later
    assert response_code(unseal(b"right")) == 0


def test_empty_hmac_accepted_when_key_is_empty(tpm):
    s = start(tpm)
    area = u32(s.handle) + tpm2b(b"c" * 32) + b"\x01" + tpm2b(b"")
    rsp = tpm.execute(client.build_command(TPM_CC.HierarchyChangeAuth, (TPM_RH.OWNER,),
                                           tpm2b(b""), [area]))
    assert response_code(rsp) == 0
    assert rsp.endswith(b"\x01\x00\x00")          # ... attrs, empty response hmac


def test_session_memory_and_handles(tpm):
    handles = [start(tpm).handle for _ in range(8)]
    assert handles == [0x02000000 + i for i in range(8)]
    rsp = tpm.execute(client.start_auth_session_command(b"x" * 16))
    assert response_code(rsp) == TPM_RC.SESSION_MEMORY
    p = tpm.execute(client.flush_context_command(handles[2]))
    client.check(p)
    h, _ = client.parse_start_auth_session(tpm.execute(client.start_auth_session_command(
        b"x" * 16, TPM_SE.POLICY)))
    assert h == 0x03000002


def test_short_nonce_is_size(tpm):
    assert response_code(tpm.execute(client.start_auth_session_command(b"x" * 8))) == 0x1D5


def test_encrypt_session_on_command_without_response_tpm2b_changes_nothing(tpm):
    s = start(tpm, symmetric=(TPM_ALG.AES, 128, TPM_ALG.CFB))
    cmd = nv_define(s, 0x01500009)
    # the same command, asking for response encryption it cannot have
    s2 = start(tpm, symmetric=(TPM_ALG.AES, 128, TPM_ALG.CFB))
    pub = u32(0x01500009) + u16(TPM_ALG.SHA256) + u32(0x00060006) + tpm2b(b"") + u16(16)
    bad = s2.command(TPM_CC.NV_DefineSpace, [TPM_RH.OWNER], [u32(TPM_RH.OWNER)],
                     tpm2b(b"") + tpm2b(pub), b"", decrypt_response=True)
    assert response_code(tpm.execute(bad)) == TPM_RC.ATTRIBUTES | 0x900
    assert 0x01500009 not in tpm.nv_indices
    s.response(tpm.execute(cmd), TPM_CC.NV_DefineSpace)


def test_capability_lists_loaded_and_saved_sessions(tpm):
    hmac_s = start(tpm).handle
    policy_s = start(tpm, session_type=TPM_SE.POLICY).handle
    client.check(tpm.execute(client.build_command(TPM_CC.ContextSave, (hmac_s,))))
    _, _, loaded = client.parse_get_capability(tpm.execute(
        client.get_capability_command(1, 0x02000000, 10)))
    _, _, saved = client.parse_get_capability(tpm.execute(
        client.get_capability_command(1, 0x03000000, 10)))
    assert loaded == [policy_s] and saved == [hmac_s]

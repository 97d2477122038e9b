"""The engine's order of checks before a command runs, where differential
testing against swtpm (``scripts/differential-swtpm.py``) found it differed
from the reference implementation (``ExecCommand.c``, ``ParseHandleBuffer``,
``EntityGetLoadStatus``, ``RetrieveSessionData`` and ``ParseSessionBuffer``).

Each test gives the code libtpms 0.9 (swtpm 0.7.1) answers for the same bytes.
"""

import pytest

from cryptography.hazmat.primitives.asymmetric import ec

from simxen.tpm import client, header
from simxen.tpm.client import AuthSessionClient, build_command, password_auth, response_code
from simxen.tpm.constants import TPM_ALG, TPM_CC, TPM_ECC, TPM_RC, TPM_RH, TPM_ST
from simxen.tpm.marshal import tpm2b, u16, u32, u64
from simxen.tpm.public import Public

from tpm_helpers import DetRandom, ecc_storage_template, make_engine


@pytest.fixture
def tpm():
    return make_engine()


def run(tpm, cmd):
    return response_code(tpm.execute(cmd))


def with_area(cc, handles, area, params=b""):
    """A 0x8002 command with the authorization area ``area`` as given."""
    body = b"".join(u32(h) for h in handles) + u32(len(area)) + area + params
    return header.pack(TPM_ST.SESSIONS, cc, body)


def start_hmac_session(tpm):
    return AuthSessionClient.start(tpm.execute, random_bytes=DetRandom(b"session"))


# ----------------------------------------------------------- header, handles
def test_a_second_startup_is_initialize_before_its_sessions_are_read(tpm):
    cmd = with_area(TPM_CC.Startup, [], b"\xff" * 9, u16(0))
    assert run(tpm, cmd) == TPM_RC.INITIALIZE


def test_a_truncated_handle_names_the_handle():
    tpm = make_engine()
    assert run(tpm, header.pack(TPM_ST.NO_SESSIONS, TPM_CC.ReadPublic, b"\x80\x00")) == 0x19A
    cmd = header.pack(TPM_ST.NO_SESSIONS, TPM_CC.Certify, u32(0x80000000) + b"\x81")
    assert run(tpm, cmd) == 0x29A          # INSUFFICIENT, handle 2


def test_every_handle_type_is_checked_before_any_is_looked_up(tpm):
    # handle 1 is a transient slot with nothing loaded, handle 2 no object at all:
    # the type error of handle 2 comes first
    cmd = build_command(TPM_CC.Certify, (0x80000001, TPM_RH.OWNER), tpm2b(b"") + u16(0x10),
                        [password_auth(), password_auth()])
    assert run(tpm, cmd) == 0x284           # VALUE, handle 2
    cmd = build_command(TPM_CC.Certify, (0x80000001, 0x80000001), tpm2b(b"") + u16(0x10),
                        [password_auth(), password_auth()])
    assert run(tpm, cmd) == TPM_RC.REFERENCE_H0


def test_a_transient_handle_past_the_slots_is_no_object_handle(tpm):
    assert run(tpm, client.read_public_command(0x80000001)) == TPM_RC.REFERENCE_H0
    assert run(tpm, client.read_public_command(0x80000100)) == 0x184   # VALUE, handle 1


def test_a_session_handle_of_the_other_type_is_handle(tpm):
    s = start_hmac_session(tpm)
    assert s.handle == 0x02000000
    cmd = build_command(TPM_CC.PolicyGetDigest, (0x03000000,))
    assert run(tpm, cmd) == 0x18B                                       # HANDLE, handle 1
    assert run(tpm, build_command(TPM_CC.PolicyGetDigest, (0x03000001,))) == \
        TPM_RC.REFERENCE_H0
    assert run(tpm, build_command(TPM_CC.PolicyGetDigest, (0x03000040,))) == 0x184


# ------------------------------------------------------ authorization area
def pw_area(attrs=1, nonce=b"", hmac=b""):
    return u32(TPM_RH.PW) + tpm2b(nonce) + bytes([attrs]) + tpm2b(hmac)


def pcr_reset(area):
    return with_area(TPM_CC.PCR_Reset, [16], area)


def test_session_fields_are_unmarshalled_with_the_session_number(tpm):
    assert run(tpm, pcr_reset(u32(0xFF000000) + b"\0\0\1\0\0")) == 0x984    # VALUE
    assert run(tpm, pcr_reset(pw_area(attrs=0x09))) == 0x9A1                # RESERVED_BITS
    assert run(tpm, pcr_reset(u32(TPM_RH.PW) + b"\0\x20" + b"\0" * 5)) == 0x99A  # INSUFFICIENT
    assert run(tpm, pcr_reset(pw_area(hmac=bytes(65)))) == 0x995            # SIZE


def test_password_session_rules(tpm):
    assert run(tpm, pcr_reset(pw_area(attrs=0x21))) == 0x982       # decrypt: ATTRIBUTES
    assert run(tpm, pcr_reset(pw_area(nonce=b"n"))) == 0x98F       # NONCE
    # a password session with no handle to authorize
    cmd = with_area(TPM_CC.ReadClock, [], pw_area())
    assert run(tpm, cmd) == 0x98B                                  # HANDLE, session 1
    cmd = with_area(TPM_CC.PCR_Reset, [16], pw_area() + pw_area())
    assert run(tpm, cmd) == 0xA8B                                  # HANDLE, session 2


def test_unloaded_session_of_the_other_type_is_handle(tpm):
    start_hmac_session(tpm)
    area = u32(0x03000000) + tpm2b(bytes(16)) + b"\x01" + tpm2b(b"")
    assert run(tpm, pcr_reset(area)) == 0x98B
    area = u32(0x02000001) + tpm2b(bytes(16)) + b"\x01" + tpm2b(b"")
    assert run(tpm, pcr_reset(area)) == TPM_RC.REFERENCE_S0


def test_decrypt_needs_a_symmetric_algorithm(tpm):
    s = start_hmac_session(tpm)
    area = u32(s.handle) + tpm2b(bytes(16)) + b"\x21" + tpm2b(bytes(32))
    cmd = with_area(TPM_CC.PCR_Event, [16], pw_area() + area, tpm2b(b"x"))
    assert run(tpm, cmd) == 0xA96                                  # SYMMETRIC, session 2


def test_context_commands_take_no_authorization_area(tpm):
    cmd = with_area(TPM_CC.FlushContext, [], pw_area(), u32(0x80000000))
    assert run(tpm, cmd) == TPM_RC.AUTH_CONTEXT


def test_the_hmac_of_a_session_that_authorizes_nothing_is_checked(tpm):
    """An audit session on GetRandom authorizes no handle; its HMAC (keyed
    by the session key alone) must still be right, or it is TPM_RC_BAD_AUTH:
    the engine used to accept any HMAC there."""
    s = start_hmac_session(tpm)
    good = s.command(TPM_CC.GetRandom, [], [], u16(8), attributes=0x81)
    bad = good[:-1] + bytes([good[-1] ^ 1])
    assert run(tpm, bad) == 0x9A2                                  # BAD_AUTH, session 1
    assert run(tpm, good) == TPM_RC.SUCCESS
    # without audit, decrypt or encrypt the session has no business here (found
    # before its HMAC, which is stale now)
    plain = s.command(TPM_CC.GetRandom, [], [], u16(8), attributes=0x01)
    assert run(tpm, plain) == 0x982                                # ATTRIBUTES, session 1


def test_an_oversized_nonce_is_size_even_past_the_area(tpm):
    assert run(tpm, pcr_reset(u32(TPM_RH.PW) + b"\0\x41" + b"\0" * 5)) == 0x995   # SIZE


# --------------------------------------------------------------- parameters
def test_yes_no_parameters_are_zero_or_one(tpm):
    cmd = build_command(TPM_CC.ClearControl, (TPM_RH.PLATFORM,), b"\x02", [password_auth()])
    assert run(tpm, cmd) == 0x1C4                                  # VALUE, parameter 1
    cmd = build_command(TPM_CC.HierarchyControl, (TPM_RH.PLATFORM,),
                        u32(TPM_RH.ENDORSEMENT) + b"\x7f", [password_auth()])
    assert run(tpm, cmd) == 0x2C4
    assert run(tpm, build_command(TPM_CC.SelfTest, params=b"\xff")) == 0x1C4


def policy_locality(tpm, handle, locality):
    return run(tpm, build_command(TPM_CC.PolicyLocality, (handle,), bytes([locality])))


def test_policy_locality_narrows_a_bitmap_or_keeps_one_extended_locality(tpm):
    s = AuthSessionClient.start(tpm.execute, random_bytes=DetRandom(b"p"),
                                session_type=0x01)
    assert policy_locality(tpm, s.handle, 0x03) == 0          # localities 0 and 1
    assert policy_locality(tpm, s.handle, 0x06) == 0          # ... and 1 or 2: locality 1
    assert policy_locality(tpm, s.handle, 0x04) == 0x1CD      # nothing left: RANGE
    assert policy_locality(tpm, s.handle, 0x80) == 0x1CD      # extended after normal: RANGE
    t = AuthSessionClient.start(tpm.execute, random_bytes=DetRandom(b"q"),
                                session_type=0x01)
    assert policy_locality(tpm, t.handle, 0x80) == 0          # an extended locality
    assert policy_locality(tpm, t.handle, 0x81) == 0x1CD
    assert policy_locality(tpm, t.handle, 0x00) == 0x1CD


def test_flush_context_handle_types_and_session_indices(tpm):
    flush = lambda h: run(tpm, build_command(TPM_CC.FlushContext, params=u32(h)))  # noqa: E731
    assert flush(0x01500000) == 0x1C4                          # no context type: VALUE
    assert flush(0x80000100) == 0x1C4                          # past the slots: VALUE
    assert flush(0x80000001) == 0x1CB                          # an empty slot: HANDLE
    s = start_hmac_session(tpm)
    assert flush(0x03000000 | s.handle & 0xFFFFFF) == 0        # the index decides
    assert flush(s.handle) == 0x1CB


def test_evict_control_persistent_handle_type_is_value(tpm):
    cmd = build_command(TPM_CC.EvictControl, (TPM_RH.OWNER, 0x81000001), u32(0x80000000),
                        [password_auth()])
    assert run(tpm, cmd) == TPM_RC.HANDLE | 0x200      # handle 2 not there (checked first)
    tpm_key = client.parse_create_primary(tpm.execute(client.create_primary_command(
        TPM_RH.OWNER, ecc_storage_template())))[0]
    cmd = build_command(TPM_CC.EvictControl, (TPM_RH.OWNER, tpm_key), u32(0x80000000),
                        [password_auth()])
    assert run(tpm, cmd) == 0x1C4


def test_a_curve_is_checked_before_trailing_bytes(tpm):
    cmd = build_command(TPM_CC.ECC_Parameters, params=u16(0x0150) + b"\0\x16")
    assert run(tpm, cmd) == 0x1E6                                  # CURVE, parameter 1


def test_incremental_self_test_refuses_algorithms_it_lacks(tpm):
    """The reference's CryptIncrementalSelfTest: an algorithm not implemented
    is TPM_RC_VALUE (libtpms has MGF1, 0x0007, which simxen lacks)."""
    cmd = build_command(TPM_CC.IncrementalSelfTest, params=u32(2) + u16(0x000B) + u16(0x0045))
    assert run(tpm, cmd) == 0x1C4
    cmd = build_command(TPM_CC.IncrementalSelfTest, params=u32(1) + u16(0x000B))
    assert run(tpm, cmd) == 0


def start_session_params(nonce, salt=b"", se=0x00, sym=u16(0x0010), auth_hash=0x000B):
    return tpm2b(nonce) + tpm2b(salt) + bytes([se]) + sym + u16(auth_hash)


def test_start_auth_session_nonces_and_order_of_checks(tpm):
    start = lambda handles, params: tpm.execute(  # noqa: E731
        build_command(TPM_CC.StartAuthSession, handles, params))
    null = (TPM_RH.NULL, TPM_RH.NULL)
    # nonceTPM is as long as nonceCaller (the reference's SessionCreate)
    rsp = client.parse_response(start(null, start_session_params(bytes(16))), 1)
    assert len(rsp.params.tpm2b()) == 16
    # nonceCaller longer than the session hash's digest: SIZE, parameter 1
    assert response_code(start(null, start_session_params(bytes(32), auth_hash=0x0004))) \
        == 0x1D5
    # a mode other than CFB is found after the salt: VALUE (parameter 2) first
    aes_cbc = u16(0x0006) + u16(128) + u16(0x0042)
    key = client.parse_create_primary(tpm.execute(client.create_primary_command(
        TPM_RH.OWNER, ecc_storage_template())))[0]
    assert response_code(start((key, TPM_RH.NULL), start_session_params(
        bytes(16), sym=aes_cbc))) == 0x2C4
    assert response_code(start(null, start_session_params(bytes(16), sym=aes_cbc))) == 0x4C9   # MODE


def test_mac_scheme_and_ticket_hierarchy_are_checked_as_read(tpm):
    # TPM2_Hash: an unknown hash is HASH (parameter 2) even when bytes follow
    cmd = build_command(TPM_CC.Hash, params=tpm2b(b"d") + u16(0x0007) + u32(TPM_RH.OWNER)
                        + b"\0")
    assert run(tpm, cmd) == 0x2C3
    cmd = build_command(TPM_CC.Hash, params=tpm2b(b"d") + u16(0x000B) + u32(0x40000002)
                        + b"\0")
    assert run(tpm, cmd) == 0x3C4                                  # VALUE, parameter 3
    # HMAC's hashAlg is revision 1.59's TPMI_ALG_MAC_SCHEME: SYMMETRIC
    key = client.parse_create_primary(tpm.execute(client.create_primary_command(
        TPM_RH.OWNER, ecc_storage_template())))[0]
    cmd = build_command(TPM_CC.HMAC, (key,), tpm2b(b"d") + u16(0x0016),
                        [password_auth()])
    assert run(tpm, cmd) == 0x2D6


def test_get_capability_pcrs_takes_property_zero(tpm):
    assert run(tpm, client.get_capability_command(0x5, 1, 1)) == 0x2C4
    assert run(tpm, client.get_capability_command(0x5, 0, 1)) == 0
    assert run(tpm, client.get_capability_command(0x9, 0x80000000, 1)) == 0x2C4


def test_a_sized_structure_is_read_on_and_its_size_compared_afterwards(tpm):
    pub = ecc_storage_template().marshal()
    sens = tpm2b(tpm2b(b"") + tpm2b(b""))
    tail = tpm2b(b"") + u32(0)
    body = lambda size: sens + u16(size) + pub + tail  # noqa: E731
    create = lambda size: run(tpm, build_command(  # noqa: E731
        TPM_CC.CreatePrimary, (TPM_RH.OWNER,), body(size), [password_auth()]))
    assert create(len(pub) - 1) == 0x2D5            # SIZE, parameter 2 (was INSUFFICIENT)
    assert create(len(pub) + 1) == 0x2D5
    assert create(0) == 0x2D5
    assert create(len(pub)) == 0
    # TPM2B_SENSITIVE_CREATE likewise
    cmd = build_command(TPM_CC.CreatePrimary, (TPM_RH.OWNER,),
                        u16(3) + tpm2b(b"") + tpm2b(b"") + tpm2b(pub) + tail, [password_auth()])
    assert run(tpm, cmd) == 0x1D5


def test_nv_index_type_and_offsets(tpm):
    public = client.nv_public(0x02000001, 8, 0x00060006)
    cmd = build_command(TPM_CC.NV_DefineSpace, (TPM_RH.OWNER,), tpm2b(b"") + tpm2b(public),
                        [password_auth()])
    assert run(tpm, cmd) == 0x2C4                              # TPMI_RH_NV_INDEX: VALUE
    client.check(tpm.execute(client.nv_define_space_command(0x01500001, 8, 0x00060006)))
    assert run(tpm, client.nv_write_command(0x01500001, b"1234", 9)) == 0x2C4   # past the end
    assert run(tpm, client.nv_write_command(0x01500001, b"1234", 6)) == TPM_RC.NV_RANGE
    client.check(tpm.execute(client.nv_write_command(0x01500001, b"12345678")))
    assert run(tpm, client.nv_read_command(0x01500001, 1, 9)) == 0x2C4
    assert run(tpm, client.nv_read_command(0x01500001, 4, 6)) == TPM_RC.NV_RANGE


def test_public_parameters_are_checked_field_by_field(tpm):
    test_parms = lambda body: run(tpm, build_command(TPM_CC.TestParms, params=body))  # noqa: E731
    ecc = u16(0x0023) + u16(0x0010) + u16(0x0010) + u16(0x0003)
    assert test_parms(ecc + u16(0x0010)) == 0
    assert test_parms(ecc + u16(0x8000)) == 0x1CC            # KDF, parameter 1
    assert test_parms(ecc[:-3]) == 0x1DA                     # INSUFFICIENT, parameter 1
    assert test_parms(ecc + u16(0x0010) + b"\0") == TPM_RC.SIZE   # trailing: no number
    # TPMT_PUBLIC: the type is checked before nameAlg
    pub = u16(0x0400) + u16(0x00F6) + bytes(16)
    cmd = build_command(TPM_CC.CreatePrimary, (TPM_RH.OWNER,),
                        tpm2b(tpm2b(b"") + tpm2b(b"")) + tpm2b(pub) + tpm2b(b"") + u32(0),
                        [password_auth()])
    assert run(tpm, cmd) == 0x2CA                            # TYPE, parameter 2


def test_a_policy_nonce_that_is_not_the_sessions_is_nonce(tpm):
    s = AuthSessionClient.start(tpm.execute, random_bytes=DetRandom(b"n"), session_type=0x01)
    cmd = build_command(TPM_CC.PolicySecret, (TPM_RH.OWNER, s.handle),
                        tpm2b(bytes(20)) + tpm2b(b"") + tpm2b(b"") + u32(0), [password_auth()])
    assert run(tpm, cmd) == 0x1CF                            # NONCE, parameter 1


def test_verify_signature_of_a_digest_of_another_size_is_signature(tpm):
    """A 20-byte digest with an ECDSA-SHA256 signature made the engine fail
    (TPM_RC_FAILURE from a ValueError); libtpms answers TPM_RC_SIGNATURE."""
    from tpm_helpers import ecc_ak_template
    key = client.parse_create_primary(tpm.execute(client.create_primary_command(
        TPM_RH.OWNER, ecc_ak_template())))[0]
    sig = u16(0x0018) + u16(0x000B) + tpm2b(bytes(32)) + tpm2b(bytes(32))
    cmd = build_command(TPM_CC.VerifySignature, (key,), tpm2b(bytes(20)) + sig)
    assert run(tpm, cmd) == 0x2DB
    assert tpm.last_internal_error is None


def test_sign_reads_its_ticket_as_the_reference_unmarshals_it(tpm):
    from tpm_helpers import ecc_ak_template
    template = ecc_ak_template(attrs=0x00040072)           # unrestricted signing key
    key = client.parse_create_primary(tpm.execute(client.create_primary_command(
        TPM_RH.OWNER, template)))[0]
    sign = lambda tag, hierarchy: run(tpm, build_command(  # noqa: E731
        TPM_CC.Sign, (key,), tpm2b(bytes(32)) + u16(0x0010) + u16(tag) + u32(hierarchy)
        + tpm2b(b""), [password_auth()]))
    assert sign(0x8024, TPM_RH.NULL) == 0
    assert sign(0x8024, 0x40000124) == 0x3C4                 # VALUE, parameter 3
    assert sign(0x8021, TPM_RH.NULL) == 0x3D7                # TAG, parameter 3


def test_one_nv_index_does_not_authorize_another(tpm):
    """NV_Increment of index B authorized as index A (with A's authValue)
    succeeded; the reference's NvWriteAccessChecks answers NV_AUTHORIZATION."""
    attrs = 0x02060006 | 0x10                                # auth/owner r/w, noDA, counter
    client.check(tpm.execute(client.nv_define_space_command(0x01500001, 8, attrs)))
    client.check(tpm.execute(client.nv_define_space_command(0x01500002, 8, attrs)))
    cmd = build_command(TPM_CC.NV_Increment, (0x01500001, 0x01500002), b"", [password_auth()])
    assert run(tpm, cmd) == TPM_RC.NV_AUTHORIZATION
    cmd = build_command(TPM_CC.NV_Increment, (0x01500002, 0x01500002), b"", [password_auth()])
    assert run(tpm, cmd) == 0
    assert run(tpm, client.nv_read_command(0x01500002, 1025, 0, auth_handle=0x01500002)) \
        == 0x1C4                                             # size over MAX_NV_BUFFER_SIZE


def test_a_policy_session_for_an_entity_without_policy_is_auth_unavailable(tpm):
    s = AuthSessionClient.start(tpm.execute, random_bytes=DetRandom(b"u"), session_type=0x01)
    area = u32(s.handle) + tpm2b(bytes(16)) + b"\x01" + tpm2b(b"")
    cmd = with_area(TPM_CC.ClockRateAdjust, [TPM_RH.OWNER], area, b"\0")
    assert run(tpm, cmd) == TPM_RC.AUTH_UNAVAILABLE


def test_sign_checks_a_ticket_it_is_given_even_for_an_unrestricted_key(tpm):
    from tpm_helpers import ecc_ak_template
    key = client.parse_create_primary(tpm.execute(client.create_primary_command(
        TPM_RH.OWNER, ecc_ak_template(attrs=0x00040072))))[0]
    cmd = build_command(TPM_CC.Sign, (key,), tpm2b(bytes(32)) + u16(0x0010) + u16(0x8024)
                        + u32(TPM_RH.OWNER) + tpm2b(bytes(32)), [password_auth()])
    assert run(tpm, cmd) == 0x3E0                            # TICKET, parameter 3


def test_values_checked_as_read_before_trailing_bytes(tpm):
    assert run(tpm, build_command(TPM_CC.GetCapability,
                                  params=u32(0x77) + u32(0) + u32(1) + b"\0")) == 0x1C4
    cmd = build_command(TPM_CC.HierarchyControl, (TPM_RH.PLATFORM,),
                        u32(0x40000099) + b"\x01\x00", [password_auth()])
    assert run(tpm, cmd) == 0x1C4
    ctx = u64(1) + u32(0x80000000) + u32(0x40000099) + tpm2b(b"")
    assert run(tpm, build_command(TPM_CC.ContextLoad, params=ctx)) == 0x1C4


def test_evict_control_checks_the_hierarchy_before_the_range(tpm):
    key = client.parse_create_primary(tpm.execute(client.create_primary_command(
        TPM_RH.OWNER, ecc_storage_template())))[0]
    cmd = build_command(TPM_CC.EvictControl, (TPM_RH.PLATFORM, key), u32(0x81000003),
                        [password_auth()])
    assert run(tpm, cmd) == 0x285                            # HIERARCHY, handle 2


def test_platformcreate_that_does_not_match_the_auth_handle_blames_the_handle(tpm):
    public = client.nv_public(0x01500020, 16, 0x00060006)
    cmd = build_command(TPM_CC.NV_DefineSpace, (TPM_RH.PLATFORM,), tpm2b(b"") + tpm2b(public),
                        [password_auth()])
    assert run(tpm, cmd) == 0x182                            # ATTRIBUTES, handle 1


def test_a_policy_session_on_a_hash_sequence_is_auth_unavailable_not_a_failure(tpm):
    """entity_policy of a sequence object raised AttributeError (TPM_RC_FAILURE)."""
    seq = client.parse_response(tpm.execute(build_command(
        TPM_CC.HashSequenceStart, params=tpm2b(b"") + u16(0x000B))), 1).handles[0]
    s = AuthSessionClient.start(tpm.execute, random_bytes=DetRandom(b"s"), session_type=0x01)
    area = u32(s.handle) + tpm2b(bytes(16)) + b"\x01" + tpm2b(b"")
    assert run(tpm, with_area(TPM_CC.SequenceUpdate, [seq], area, tpm2b(b"x"))) == \
        TPM_RC.AUTH_UNAVAILABLE
    assert tpm.last_internal_error is None


def test_more_values_checked_as_read(tpm):
    assert run(tpm, build_command(TPM_CC.Shutdown, params=u16(7) + b"\0")) == 0x1C4
    cmd = build_command(TPM_CC.ClockRateAdjust, (TPM_RH.OWNER,), b"\x09\x00", [password_auth()])
    assert run(tpm, cmd) == 0x1C4
    cmd = build_command(TPM_CC.SetPrimaryPolicy, (TPM_RH.OWNER,),
                        tpm2b(b"") + u16(0x0007) + b"\0", [password_auth()])
    assert run(tpm, cmd) == 0x2C3
    # TPMI_DH_ENTITY (PolicySecret's authHandle) has no NULL; StartAuthSession's bind has
    s = AuthSessionClient.start(tpm.execute, random_bytes=DetRandom(b"e"), session_type=0x01)
    cmd = build_command(TPM_CC.PolicySecret, (TPM_RH.NULL, s.handle),
                        tpm2b(b"") + tpm2b(b"") + tpm2b(b"") + u32(0), [password_auth()])
    assert run(tpm, cmd) == 0x184


def test_keys_and_schemes_of_the_asymmetric_and_signing_commands(tpm):
    from tpm_helpers import ecc_ak_template
    signer = client.parse_create_primary(tpm.execute(client.create_primary_command(
        TPM_RH.OWNER, ecc_ak_template(attrs=0x00040072))))[0]
    # ECDH_KeyGen needs only an ECC public key, whatever its attributes
    assert run(tpm, build_command(TPM_CC.ECDH_KeyGen, (signer,))) == 0
    # an RSA signature for an ECC key: SCHEME, before any verifying
    sig = u16(0x0014) + u16(0x000B) + tpm2b(bytes(256))
    cmd = build_command(TPM_CC.VerifySignature, (signer,), tpm2b(bytes(32)) + sig)
    assert run(tpm, cmd) == 0x2D2
    # GetTime with a key that cannot sign: KEY of handle 2, where the key is
    storage = client.parse_create_primary(tpm.execute(client.create_primary_command(
        TPM_RH.OWNER, ecc_storage_template())))[0]
    cmd = build_command(TPM_CC.GetTime, (TPM_RH.ENDORSEMENT, storage), tpm2b(b"") + u16(0x10),
                        [password_auth(), password_auth()])
    assert run(tpm, cmd) == 0x29C


def test_the_platform_may_undefine_an_owner_index(tpm):
    client.check(tpm.execute(client.nv_define_space_command(0x01500001, 8, 0x00060006)))
    cmd = build_command(TPM_CC.NV_UndefineSpace, (TPM_RH.PLATFORM, 0x01500001), b"",
                        [password_auth()])
    assert run(tpm, cmd) == 0


def test_create_reads_its_parameters_before_it_looks_at_the_parent(tpm):
    from tpm_helpers import ecc_ak_template
    signer = client.parse_create_primary(tpm.execute(client.create_primary_command(
        TPM_RH.OWNER, ecc_ak_template(attrs=0x00040072))))[0]
    cmd = build_command(TPM_CC.Create, (signer,), tpm2b(b"data") + u16(0x000B),
                        [password_auth()])
    assert run(tpm, cmd) == 0x1D5              # SIZE of parameter 1, not TYPE of the parent
    cmd = client.create_command(signer, ecc_storage_template())
    assert run(tpm, cmd) == 0x18A              # then: not a storage parent (TYPE, handle 1)


def test_context_load_checks_the_saved_handle_as_read(tpm):
    ctx = u64(1) + u32(0x40000001) + u32(TPM_RH.OWNER) + tpm2b(b"")
    assert run(tpm, build_command(TPM_CC.ContextLoad, params=ctx)) == 0x1C4   # TPMI_DH_SAVED


def test_an_stclear_object_is_saved_as_0x80000002(tpm):
    from tpm_helpers import ecc_ak_template
    key = client.parse_create_primary(tpm.execute(client.create_primary_command(
        TPM_RH.OWNER, ecc_ak_template(attrs=0x00040076))))[0]          # stClear
    rsp = client.parse_response(tpm.execute(build_command(TPM_CC.ContextSave, (key,))))
    rsp.params.bytes(8)
    assert rsp.params.u32() == 0x80000002                 # Part 2: 0x80000001 is a sequence


def test_verify_signature_takes_no_null_signature(tpm):
    from tpm_helpers import ecc_ak_template
    key = client.parse_create_primary(tpm.execute(client.create_primary_command(
        TPM_RH.OWNER, ecc_ak_template(attrs=0x00040072))))[0]
    cmd = build_command(TPM_CC.VerifySignature, (key,), tpm2b(bytes(32)) + u16(0x0010) + b"\0")
    assert run(tpm, cmd) == 0x2D2                            # SCHEME, parameter 2


def test_key_bits_are_checked_before_the_mode_is_read(tpm):
    params = start_session_params(bytes(16), sym=u16(0x0006) + u16(0x000B))[:-2]
    cmd = build_command(TPM_CC.StartAuthSession, (TPM_RH.NULL, TPM_RH.NULL), params)
    assert run(tpm, cmd) == 0x4C4                            # VALUE, parameter 4


def test_incremental_self_test_of_null_is_value(tpm):
    cmd = build_command(TPM_CC.IncrementalSelfTest, params=u32(1) + u16(0x0010))
    assert run(tpm, cmd) == 0x1C4


def test_load_external_reads_the_sensitive_area_field_by_field(tpm):
    cmd = build_command(TPM_CC.LoadExternal,
                        params=u16(0x23) + u16(0x0010) + u16(0x0010) + u16(0x0003) + u16(0x10))
    assert run(tpm, cmd) == 0x1CA                            # TYPE, parameter 1
    cmd = build_command(TPM_CC.LoadExternal,
                        params=u16(3) + u16(0x0023) + tpm2b(b"") + tpm2b(b"") + tpm2b(b"k"))
    assert run(tpm, cmd) == 0x1D5                            # SIZE, parameter 1


@pytest.mark.parametrize("sensitive_type", [0x0001, 0x0008, 0x0025])    # RSA, KEYEDHASH, SYMCIPHER
def test_load_external_of_a_sensitive_area_of_another_type_is_type_of_in_private(
        tpm, sensitive_type):
    # the reference adds ObjectLoad's TPM_RC_TYPE to inPrivate (parameter 1); simxen
    # answered 0x08A, a format-one code with no number at all
    numbers = ec.derive_private_key(12345, ec.SECP256R1()).private_numbers()
    point = numbers.public_numbers
    pub = Public(TPM_ALG.ECC, TPM_ALG.SHA256, 0x00040040, scheme=(TPM_ALG.ECDSA, TPM_ALG.SHA256),
                 curve=TPM_ECC.NIST_P256, unique=(point.x.to_bytes(32, "big"),
                                                   point.y.to_bytes(32, "big")))
    d = numbers.private_value.to_bytes(32, "big")
    for kind, rc in ((TPM_ALG.ECC, TPM_RC.SUCCESS), (sensitive_type, 0x1CA)):
        sens = u16(kind) + tpm2b(b"") + tpm2b(b"") + tpm2b(d)
        cmd = build_command(TPM_CC.LoadExternal,
                            params=tpm2b(sens) + tpm2b(pub.marshal()) + u32(TPM_RH.NULL))
        assert run(tpm, cmd) == rc


def test_policy_availability_follows_the_entity(tpm):
    """IsAuthPolicyAvailable: a key takes a policy session even with an empty
    authPolicy (the digest then fails: POLICY_FAIL); a hierarchy with none
    does not (AUTH_UNAVAILABLE)."""
    from tpm_helpers import ecc_ak_template
    key = client.parse_create_primary(tpm.execute(client.create_primary_command(
        TPM_RH.OWNER, ecc_ak_template(attrs=0x00040072))))[0]
    s = AuthSessionClient.start(tpm.execute, random_bytes=DetRandom(b"k"), session_type=0x01)
    area = u32(s.handle) + tpm2b(bytes(16)) + b"\x01" + tpm2b(b"")
    cmd = with_area(TPM_CC.Sign, [key], area, tpm2b(bytes(32)) + u16(0x0010) + u16(0x8024)
                    + u32(TPM_RH.NULL) + tpm2b(b""))
    assert run(tpm, cmd) == 0x99D                            # POLICY_FAIL, session 1


def test_a_hierarchy_may_enable_itself_when_it_is_enabled(tpm):
    cmd = build_command(TPM_CC.HierarchyControl, (TPM_RH.ENDORSEMENT,),
                        u32(TPM_RH.ENDORSEMENT) + b"\x01", [password_auth()])
    assert run(tpm, cmd) == 0
    cmd = build_command(TPM_CC.HierarchyControl, (TPM_RH.ENDORSEMENT,),
                        u32(TPM_RH.OWNER) + b"\x01", [password_auth()])
    assert run(tpm, cmd) == TPM_RC.AUTH_TYPE


def test_a_command_code_list_holds_at_most_254(tpm):
    cmd = build_command(TPM_CC.SetCommandCodeAuditStatus, (TPM_RH.OWNER,),
                        u16(0x0010) + u32(255) + u32(0x17B), [password_auth()])
    assert run(tpm, cmd) == 0x2D5                            # SIZE, parameter 2


@pytest.mark.parametrize("symmetric, scheme, kdf, rc", [
    ((0x0010, 0, 0), (0x0018, 0x000B), (0x0010, 0x0010), 0x2D2),   # SCHEME before SYMMETRIC
    ((0x0006, 128, 0x0042), (0x0018, 0x000B), (0x0010, 0x0010), 0x2D2),   # before MODE too
    ((0x0010, 0, 0), (0x0010, 0x0010), (0x0010, 0x0010), 0x2D6),   # then SYMMETRIC
    ((0x0006, 128, 0x0043), (0x0010, 0x0010), (0x0020, 0x000B), 0x2CC),   # a KDF: TPM_RC_KDF
])
def test_a_parents_scheme_symmetric_and_kdf_in_the_references_order(tpm, symmetric, scheme,
                                                                    kdf, rc):
    """SchemeChecks (and libtpms): for a restricted decryption key the scheme is
    checked before the symmetric algorithm; an ECC key with a KDF is refused."""
    from simxen.tpm.public import Public
    pub = Public(0x0023, 0x000B, 0x00030472, symmetric=symmetric, scheme=scheme, curve=0x0003,
                 kdf=kdf, unique=(b"", b""))
    assert run(tpm, client.create_primary_command(TPM_RH.OWNER, pub)) == rc


@pytest.mark.parametrize("cc", [TPM_CC.Commit, TPM_CC.ZGen_2Phase])
def test_commit_and_zgen_read_their_parameters_before_the_key(tpm, cc):
    from tpm_helpers import ecc_ak_template
    signer = client.parse_create_primary(tpm.execute(client.create_primary_command(
        TPM_RH.OWNER, ecc_ak_template(attrs=0x00040072))))[0]
    cmd = build_command(cc, (signer,), u16(0x20) + bytes(4), [password_auth()])
    assert run(tpm, cmd) == 0x1DA                  # INSUFFICIENT (parameter 1), not the key


def test_a_quote_without_a_key_has_no_hash_for_its_pcr_digest(tpm):
    cmd = build_command(TPM_CC.Quote, (TPM_RH.NULL,), tpm2b(b"n") + u16(0x0010)
                        + u32(1) + u16(0x000B) + b"\x03\x01\x00\x00", [password_auth()])
    assert run(tpm, cmd) == 0x2D2                  # SCHEME, parameter 2 (the reference)


def test_modes_operations_and_mac_schemes_checked_as_read(tpm):
    key = client.parse_create_primary(tpm.execute(client.create_primary_command(
        TPM_RH.OWNER, ecc_storage_template())))[0]
    cmd = build_command(TPM_CC.EncryptDecrypt2, (key,), tpm2b(b"") + b"\x00" + u16(0x0099)
                        + tpm2b(b"") + b"\0", [password_auth()])
    assert run(tpm, cmd) == 0x3C9                            # MODE, parameter 3
    s = AuthSessionClient.start(tpm.execute, random_bytes=DetRandom(b"o"), session_type=0x01)
    cmd = build_command(TPM_CC.PolicyCounterTimer, (s.handle,),
                        tpm2b(b"") + u16(0) + u16(0x0099) + b"\0")
    assert run(tpm, cmd) == 0x3C4                            # VALUE, parameter 3
    # AES is no MAC scheme without CMAC
    cmd = build_command(TPM_CC.HMAC, (key,), tpm2b(b"d") + u16(0x0006), [password_auth()])
    assert run(tpm, cmd) == 0x2D6


def test_an_ecdaa_signature_cannot_be_verified(tpm):
    from tpm_helpers import ecc_ak_template
    key = client.parse_create_primary(tpm.execute(client.create_primary_command(
        TPM_RH.OWNER, ecc_ak_template(attrs=0x00040072))))[0]
    sig = u16(0x001A) + u16(0x000B) + tpm2b(bytes(32)) + tpm2b(bytes(32))
    cmd = build_command(TPM_CC.VerifySignature, (key,), tpm2b(bytes(32)) + sig)
    assert run(tpm, cmd) == 0x2D2                            # SCHEME


def _create_loaded(parent, template, data=b""):
    """TPM2_CreateLoaded: inSensitive, then the template as a TPM2B_TEMPLATE."""
    params = tpm2b(tpm2b(b"") + tpm2b(data)) + tpm2b(template.marshal())
    return build_command(TPM_CC.CreateLoaded, (parent,), params, [password_auth()])


@pytest.mark.parametrize("cc", ["Create", "CreatePrimary", "CreateLoaded"])
@pytest.mark.parametrize("kind", ["sealed data", "HMAC key", "AES key"])
def test_caller_supplied_sensitive_data_must_be_supplied(tpm, cc, kind):
    # sensitiveDataOrigin CLEAR says the caller gives the secret; giving none is
    # TPM_RC_ATTRIBUTES, parameter 2 (the reference's CreateChecks; libtpms 0.9 agrees)
    template = {"sealed data": Public(TPM_ALG.KEYEDHASH, TPM_ALG.SHA256, 0x52, b"",
                                      scheme=(TPM_ALG.NULL, TPM_ALG.NULL), unique=b""),
                "HMAC key": Public(TPM_ALG.KEYEDHASH, TPM_ALG.SHA256, 0x40052, b"",
                                   scheme=(TPM_ALG.HMAC, TPM_ALG.SHA256), unique=b""),
                "AES key": Public(TPM_ALG.SYMCIPHER, TPM_ALG.SHA256, 0x60052, b"",
                                  symmetric=(TPM_ALG.AES, 128, TPM_ALG.CFB), unique=b"")}[kind]
    srk, _, _ = client.parse_create_primary(tpm.execute(
        client.create_primary_command(TPM_RH.OWNER, ecc_storage_template())))
    if cc == "CreatePrimary":
        parent, make = TPM_RH.OWNER, client.create_primary_command
    else:
        parent = srk
        make = client.create_command if cc == "Create" else _create_loaded
    assert run(tpm, make(parent, template)) == 0x2C2
    assert run(tpm, make(parent, template, data=b"caller's secret")) == TPM_RC.SUCCESS


def _saved_primary_context(tpm):
    """TPMS_CONTEXT bytes of a saved primary key."""
    h = client.parse_create_primary(tpm.execute(client.create_primary_command(
        TPM_RH.OWNER, ecc_storage_template())))[0]
    r = client.parse_response(tpm.execute(build_command(TPM_CC.ContextSave, (h,)))).params
    return r.data[r.pos:r.end]


@pytest.mark.parametrize("integrity_size, rc", [
    (0x0400, 0x095),        # larger than any digest: TPM2B_DIGEST_Unmarshal's SIZE, as it is
    (0x0041, 0x095),
    (0x000B, 0x1D5),        # a digest, but not the context hash's (SHA-512): SIZE of the context
    (0x0020, 0x1D5),
    (0x0040, TPM_RC.SUCCESS),
])
def test_context_load_reads_the_integrity_size_as_the_reference_does(tpm, integrity_size, rc):
    blob = _saved_primary_context(tpm)
    at = 8 + 4 + 4 + 2                   # sequence, savedHandle, hierarchy, contextBlob.size
    assert blob[at:at + 2] == u16(0x0040)         # an HMAC-SHA-512, as libtpms's
    edited = blob[:at] + u16(integrity_size) + blob[at + 2:]
    assert run(tpm, build_command(TPM_CC.ContextLoad, params=edited)) == rc


def test_context_load_of_a_blob_too_short_for_its_integrity_is_insufficient(tpm):
    blob = _saved_primary_context(tpm)
    head = blob[:8 + 4 + 4]
    for body in (b"\x00", u16(0x40) + bytes(10)):
        cmd = build_command(TPM_CC.ContextLoad, params=head + tpm2b(body))
        assert run(tpm, cmd) == 0x09A          # INSUFFICIENT, no parameter number
    cmd = build_command(TPM_CC.ContextLoad, params=head + tpm2b(u16(0x40) + bytes(64) + bytes(7)))
    assert run(tpm, cmd) == 0x1D5              # no room for the 8-byte fingerprint


def test_a_disabled_hierarchy_is_checked_after_the_integrity(tpm):
    blob = _saved_primary_context(tpm)
    client.check(tpm.execute(build_command(TPM_CC.HierarchyControl, (TPM_RH.PLATFORM,),
                                           u32(TPM_RH.OWNER) + b"\x00", [password_auth()])))
    at = 8 + 4 + 4 + 2 + 2
    tampered = blob[:at] + bytes([blob[at] ^ 1]) + blob[at + 1:]
    assert run(tpm, build_command(TPM_CC.ContextLoad, params=tampered)) == 0x1DF   # INTEGRITY
    assert run(tpm, build_command(TPM_CC.ContextLoad, params=blob)) == 0x1C5      # HIERARCHY


def test_physical_presence_is_checked_before_the_authvalue_and_the_parameters(tpm):
    # the reference's CheckAuthSession asks for presence first, for a platform
    # authorization of a command that needs it: a wrong platform password, a
    # parameter list too long to read, an HMAC session -- all TPM_RC_PP (session 1)
    # (libtpms answers 0x990 for each too)
    too_long = u32(0x4000000B) + b"\x01"
    assert run(tpm, build_command(TPM_CC.PP_Commands, (TPM_RH.PLATFORM,), too_long,
                                  [password_auth()])) == 0x990
    good = u32(0) + u32(0)
    assert run(tpm, build_command(TPM_CC.PP_Commands, (TPM_RH.PLATFORM,), good,
                                  [password_auth(b"not the platform's")])) == 0x990
    s = start_hmac_session(tpm)
    cmd = s.command(TPM_CC.PP_Commands, [TPM_RH.PLATFORM], [u32(TPM_RH.PLATFORM)], good)
    assert run(tpm, cmd) == 0x990

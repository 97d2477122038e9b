"""Any byte string through ``execute``: never an exception, always a
well-formed response, and a failed command leaves the state unchanged."""

import struct

from hypothesis import HealthCheck, given, settings, strategies as st

from simxen.tpm import client
from simxen.tpm.commands import COMMANDS
from simxen.tpm.constants import TPM_ALG, TPM_RC

from tpm_helpers import make_engine

_ENGINE = make_engine()
_CODES = sorted(COMMANDS)


def well_formed(rsp):
    assert isinstance(rsp, bytes) and len(rsp) >= 10
    tag, size, rc = struct.unpack_from(">HII", rsp, 0)
    assert size == len(rsp)
    assert tag in (0x8001, 0x8002)
    if rc:
        assert len(rsp) == 10 and tag == 0x8001
        assert rc != TPM_RC.FAILURE, "internal error behind TPM_RC_FAILURE"
    return rc


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=80))
def test_random_bytes_never_raise(data):
    well_formed(_ENGINE.execute(data))


@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
@given(cc=st.sampled_from(_CODES), tag=st.sampled_from([0x8001, 0x8002]),
       body=st.binary(max_size=120), locality=st.integers(0, 4))
def test_random_bodies_of_real_commands_never_raise(cc, tag, body, locality):
    cmd = struct.pack(">HII", tag, 10 + len(body), cc) + body
    well_formed(_ENGINE.execute(cmd, locality))


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_failed_commands_leave_state_unchanged(data):
    tpm = make_engine()
    client.check(tpm.execute(client.pcr_extend_command(4, {TPM_ALG.SHA256: b"\x01" * 32})))
    before = tpm.save_state()
    pcrs_before = {a: list(v) for a, v in tpm.pcrs.banks.items()}
    cc = data.draw(st.sampled_from(_CODES))
    tag = data.draw(st.sampled_from([0x8001, 0x8002]))
    body = data.draw(st.binary(max_size=60))
    rsp = tpm.execute(struct.pack(">HII", tag, 10 + len(body), cc) + body)
    rc = well_formed(rsp)
    if rc and rc & 0xBF != TPM_RC.AUTH_FAIL:      # DA counting is the one allowed change
        assert tpm.save_state() == before
        assert {a: list(v) for a, v in tpm.pcrs.banks.items()} == pcrs_before


def test_mutated_valid_commands(tpm):
    """Every truncation and every single-byte change of a real command."""
    cmds = [client.pcr_extend_command(2, {TPM_ALG.SHA256: bytes(32)}),
            client.pcr_read_command({TPM_ALG.SHA256: [0, 1, 2]}),
            client.get_capability_command(6, 0x100, 127),
            client.get_random_command(16)]
    for cmd in cmds:
        for n in range(len(cmd)):
            well_formed(tpm.execute(cmd[:n]))
        for i in range(len(cmd)):
            for b in (0x00, 0xFF, cmd[i] ^ 0x80):
                well_formed(tpm.execute(cmd[:i] + bytes([b]) + cmd[i + 1:]))


def test_reference_error_codes(tpm):
    """The raw probes recorded against libtpms (rawtests-output.txt)."""
    def rc(cmd, locality=0):
        return client.response_code(tpm.execute(cmd, locality))
    assert rc(struct.pack(">HII", 0x8001, 10, 0x200)) == TPM_RC.COMMAND_CODE
    assert rc(client.get_random_command(8) + b"\x00") == TPM_RC.COMMAND_SIZE
    sized = struct.pack(">HII", 0x8001, 13, 0x17B) + b"\x00\x08\x00"
    assert rc(sized) == 0x095                          # trailing bytes: TPM_RC_SIZE
    assert rc(struct.pack(">HII", 0x8001, 11, 0x17B) + b"\x00") == 0x1DA
    assert rc(client.get_capability_command(0x77)) == 0x1C4
    assert rc(client.build_command(0x17E, params=bytes.fromhex("000000010099030700 00".replace(" ", "")))) == 0x1C3
    assert rc(client.flush_context_command(0x02000007)) == 0x1CB
    assert rc(client.pcr_extend_command(17, {TPM_ALG.SHA256: bytes(32)})) == TPM_RC.LOCALITY
    assert rc(struct.pack(">HII", 0x1234, 12, 0x17B) + b"\x00\x08") == TPM_RC.BAD_TAG
    assert rc(b"\x80\x01\x00") == TPM_RC.COMMAND_SIZE


def _scenario():
    """A started engine with a storage key, an ECC AK, a sealed object, an NV
    index and a policy session, and valid commands that use them."""
    from simxen.tpm.constants import TPM_CC, TPM_RH, TPM_SE
    from simxen.tpm.marshal import tpm2b, u16, u32
    from tpm_helpers import ecc_ak_template, ecc_storage_template, sealed_template
    tpm = make_engine()
    pw = [client.password_auth()]
    srk, srk_pub, _ = client.parse_create_primary(tpm.execute(
        client.create_primary_command(TPM_RH.OWNER, ecc_storage_template())))
    priv, pub = client.parse_create(tpm.execute(client.create_command(srk, ecc_ak_template())))
    ak, ak_name = client.parse_load(tpm.execute(client.load_command(srk, priv, pub)))
    spriv, spub = client.parse_create(tpm.execute(client.create_command(
        srk, sealed_template(attrs=0x52), data=b"s")))
    nvpub = u32(0x01500001) + u16(TPM_ALG.SHA256) + u32(0x00060006) + tpm2b(b"") + u16(16)
    policy, _ = client.parse_start_auth_session(tpm.execute(client.start_auth_session_command(
        b"p" * 32, TPM_SE.POLICY)))
    corpus = [
        client.create_primary_command(TPM_RH.OWNER, ecc_storage_template()),
        client.create_command(srk, ecc_ak_template()),
        client.load_command(srk, spriv, spub),
        client.quote_command(ak, b"nonce", {TPM_ALG.SHA256: [0, 1]},
                             (TPM_ALG.ECDSA, TPM_ALG.SHA256)),
        client.build_command(TPM_CC.Hash, params=tpm2b(b"data") + u16(TPM_ALG.SHA256)
                             + u32(TPM_RH.OWNER)),
        client.build_command(TPM_CC.NV_DefineSpace, (TPM_RH.OWNER,), tpm2b(b"") + tpm2b(nvpub), pw),
        client.build_command(TPM_CC.Certify, (ak, ak), tpm2b(b"x") + u16(TPM_ALG.NULL), pw + pw),
        client.build_command(TPM_CC.MakeCredential, (srk,), tpm2b(b"c") + tpm2b(ak_name)),
        client.build_command(TPM_CC.ContextSave, (ak,)),
        client.build_command(TPM_CC.EvictControl, (TPM_RH.OWNER, srk), u32(0x81000001), pw),
        client.build_command(TPM_CC.PolicyPCR, (policy,), tpm2b(b"") + bytes.fromhex(
            "00000001000b03030000")),
        client.build_command(TPM_CC.PolicySecret, (TPM_RH.ENDORSEMENT, policy),
                             tpm2b(b"") * 3 + u32(0), pw),
        client.build_command(TPM_CC.PolicyOR, (policy,), u32(2) + tpm2b(bytes(32)) * 2),
        client.build_command(TPM_CC.LoadExternal, params=u16(0) + tpm2b(srk_pub.marshal())
                             + u32(TPM_RH.OWNER)),
        client.build_command(TPM_CC.TestParms, params=srk_pub.marshal()[:2]
                             + srk_pub.marshal()[10:-68]),
        client.start_auth_session_command(b"n" * 32, TPM_SE.HMAC, tpm_key=srk,
                                          encrypted_salt=tpm2b(b"\x01" * 32) * 2),
        client.read_public_command(ak),
        client.get_capability_command(1, 0x80000000, 20),
        client.pcr_event_command(3, b"event"),
        client.build_command(TPM_CC.ReadClock),
    ]
    return corpus


_CORPUS = _scenario()


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_mutated_real_commands_get_proper_codes(data):
    cmd = bytearray(data.draw(st.sampled_from(_CORPUS)))
    kind = data.draw(st.sampled_from(["flip", "cut", "grow"]))
    if kind == "flip" and len(cmd) > 10:
        i = data.draw(st.integers(10, len(cmd) - 1))
        cmd[i] = data.draw(st.integers(0, 255))
    elif kind == "cut" and len(cmd) > 10:
        cmd = cmd[:data.draw(st.integers(10, len(cmd) - 1))]
    else:
        cmd += data.draw(st.binary(min_size=1, max_size=8))
    cmd[2:6] = struct.pack(">I", len(cmd))           # keep the header size right
    tpm = make_engine()
    _scenario_engine_state(tpm)
    well_formed(tpm.execute(bytes(cmd)))


def _scenario_engine_state(tpm):
    """Recreate the objects the corpus refers to (same handles, same keys)."""
    from simxen.tpm.constants import TPM_RH, TPM_SE
    from tpm_helpers import ecc_ak_template, ecc_storage_template
    srk, _, _ = client.parse_create_primary(tpm.execute(
        client.create_primary_command(TPM_RH.OWNER, ecc_storage_template())))
    priv, pub = client.parse_create(tpm.execute(client.create_command(srk, ecc_ak_template())))
    client.parse_load(tpm.execute(client.load_command(srk, priv, pub)))
    client.parse_start_auth_session(tpm.execute(client.start_auth_session_command(
        b"p" * 32, TPM_SE.POLICY)))


def test_corpus_commands_are_valid():
    tpm = make_engine()
    _scenario_engine_state(tpm)
    codes = {i: client.response_code(tpm.execute(c)) for i, c in enumerate(_CORPUS)}
    failed = {i: rc for i, rc in codes.items() if rc}
    # PolicyOR after PolicyPCR/PolicySecret: the digest is in neither branch;
    # the salt is a made-up point, not on the curve
    assert failed == {12: 0x1C4, 15: 0x2E7}, {i: hex(rc) for i, rc in failed.items()}


def test_same_seed_same_bytes():
    """Two engines with the same seed, byte stream and clock answer every
    command of the corpus byte-identically (signatures, nonces, keys)."""
    outs = []
    for _ in range(2):
        tpm = make_engine()
        _scenario_engine_state(tpm)
        outs.append([tpm.execute(c) for c in _CORPUS] + [tpm.save_state()])
    assert outs[0] == outs[1]

"""Command audit and audit sessions (simxen.tpm.audit).

The digests are recomputed here from the bytes on the wire; the defaults and
the rules at the edges (the hash change is not audited, an unsigned read does
not reset, exclusivity) follow what libtpms does (checked against swtpm).
"""

import hashlib

from simxen.tpm import client
from simxen.tpm.attest import Attest
from simxen.tpm.client import AuthSessionClient
from simxen.tpm.constants import (TPM_ALG, TPM_CAP, TPM_CC, TPM_RC, TPM_RH, TPM_ST,
                                  rc_format1)
from simxen.tpm.marshal import tpm2b, u16, u32

from tpm_helpers import DetRandom, make_engine

H = lambda b: hashlib.sha256(b).digest()                         # noqa: E731
PW = [client.password_auth()]


def set_audit(tpm, alg=TPM_ALG.NULL, set_list=(), clear_list=()):
    params = (u16(alg) + u32(len(set_list)) + b"".join(u32(c) for c in set_list)
              + u32(len(clear_list)) + b"".join(u32(c) for c in clear_list))
    return client.response_code(tpm.execute(client.build_command(
        TPM_CC.SetCommandCodeAuditStatus, (TPM_RH.OWNER,), params, auths=PW)))


def command_audit_info(tpm, sign=TPM_RH.NULL):
    raw = tpm.execute(client.build_command(
        TPM_CC.GetCommandAuditDigest, (TPM_RH.ENDORSEMENT, sign),
        tpm2b(b"") + u16(TPM_ALG.NULL), auths=PW + PW))
    client.check(raw)
    r = client.parse_response(raw).params
    return Attest.from_bytes(r.tpm2b()).attested


def test_defaults_and_capability(tpm):
    raw = tpm.execute(client.get_capability_command(TPM_CAP.AUDIT_COMMANDS, 0, 10))
    assert raw.endswith(u32(1) + u32(TPM_CC.SetCommandCodeAuditStatus))
    info = command_audit_info(tpm)
    assert info["digest_alg"] == TPM_ALG.SHA512 and info["audit_digest"] == b""


def test_command_audit_digest_covers_listed_commands(tpm):
    assert set_audit(tpm, TPM_ALG.SHA256) == 0          # a new hash: not audited itself
    assert command_audit_info(tpm)["audit_digest"] == b""
    assert set_audit(tpm, set_list=[TPM_CC.GetRandom]) == 0
    scas = client.build_command(TPM_CC.SetCommandCodeAuditStatus, (TPM_RH.OWNER,),
                                u16(TPM_ALG.NULL) + u32(1) + u32(TPM_CC.GetRandom) + u32(0),
                                auths=PW)
    cp1 = H(u32(TPM_CC.SetCommandCodeAuditStatus) + u32(TPM_RH.OWNER) + scas[27:])
    rp1 = H(bytes(4) + u32(TPM_CC.SetCommandCodeAuditStatus))
    raw = tpm.execute(client.get_random_command(8))
    cp2 = H(u32(TPM_CC.GetRandom) + u16(8))
    rp2 = H(bytes(4) + u32(TPM_CC.GetRandom) + raw[10:])
    tpm.execute(client.pcr_read_command({TPM_ALG.SHA256: [0]}))     # not on the list
    info = command_audit_info(tpm)
    assert info["audit_digest"] == H(H(bytes(32) + cp1 + rp1) + cp2 + rp2)
    assert info["audit_counter"] == 1
    assert info["command_digest"] == H(u32(TPM_CC.SetCommandCodeAuditStatus)
                                       + u32(TPM_CC.GetRandom))
    assert command_audit_info(tpm)["audit_digest"] == info["audit_digest"]  # unsigned: kept


def test_changing_hash_with_lists_is_refused(tpm):
    before = tpm.save_state()
    assert set_audit(tpm, TPM_ALG.SHA1, set_list=[TPM_CC.GetRandom]) == \
        rc_format1(TPM_RC.VALUE, param=1)
    assert tpm.save_state() == before


def test_set_command_code_audit_status_stays_on_the_list(tpm):
    assert set_audit(tpm, clear_list=[TPM_CC.SetCommandCodeAuditStatus, TPM_CC.GetRandom]) == 0
    raw = tpm.execute(client.get_capability_command(TPM_CAP.AUDIT_COMMANDS, 0, 10))
    assert raw.endswith(u32(1) + u32(TPM_CC.SetCommandCodeAuditStatus))


def test_audit_state_survives_save_and_restore(tpm):
    set_audit(tpm, set_list=[TPM_CC.GetRandom])
    tpm.execute(client.get_random_command(4))
    before = command_audit_info(tpm)
    from simxen.tpm import TpmEngine
    again = TpmEngine.from_state(tpm.save_state())
    client.check(again.execute(client.startup_command()))
    assert command_audit_info(again) == before


def test_fresh_engine_still_writes_version_1_state(tpm):
    assert tpm.save_state()[8:10] == b"\x00\x01"


def _audit_session(tpm):
    return AuthSessionClient.start(tpm.execute, random_bytes=DetRandom(b"caller"))


def test_audit_session_digest_and_exclusivity(tpm):
    s = _audit_session(tpm)
    d = bytes(32)
    for attrs in (0x81, 0x81 | 0x02):          # audit, then audit + auditExclusive
        raw = tpm.execute(s.command(TPM_CC.GetRandom, [], [], u16(8), attributes=attrs))
        rsp = s.response(raw, TPM_CC.GetRandom)
        random = rsp.params.tpm2b()
        d = H(d + H(u32(TPM_CC.GetRandom) + u16(8))
              + H(bytes(4) + u32(TPM_CC.GetRandom) + tpm2b(random)))
    raw = tpm.execute(client.build_command(
        TPM_CC.GetSessionAuditDigest, (TPM_RH.ENDORSEMENT, TPM_RH.NULL, s.handle),
        tpm2b(b"") + u16(TPM_ALG.NULL), auths=PW + PW))
    client.check(raw)
    att = Attest.from_bytes(client.parse_response(raw, 0).params.tpm2b())
    assert att.type == TPM_ST.ATTEST_SESSION_AUDIT
    assert att.attested["session_digest"] == d
    # GetSessionAuditDigest ran without the session: it is no longer exclusive
    raw = tpm.execute(s.command(TPM_CC.GetRandom, [], [], u16(8), attributes=0x83))
    assert client.response_code(raw) == TPM_RC.EXCLUSIVE
    # auditReset starts again and makes it exclusive
    raw = tpm.execute(s.command(TPM_CC.GetRandom, [], [], u16(8), attributes=0x85))
    s.response(raw, TPM_CC.GetRandom)
    raw = tpm.execute(s.command(TPM_CC.GetRandom, [], [], u16(8), attributes=0x83))
    s.response(raw, TPM_CC.GetRandom)


def test_audit_attribute_rules(tpm):
    s = _audit_session(tpm)
    raw = tpm.execute(s.command(TPM_CC.GetRandom, [], [], u16(8), attributes=0x05))
    assert client.response_code(raw) == rc_format1(TPM_RC.ATTRIBUTES, session=1)
    raw = tpm.execute(client.build_command(
        TPM_CC.GetSessionAuditDigest, (TPM_RH.ENDORSEMENT, TPM_RH.NULL, s.handle),
        tpm2b(b"") + u16(TPM_ALG.NULL), auths=PW + PW))
    assert client.response_code(raw) == rc_format1(TPM_RC.TYPE, handle=3)

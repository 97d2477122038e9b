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

"""PCR_Extend / PCR_Event / PCR_Read / PCR_Reset against hashlib and the PC
Client locality rules."""

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simxen.tpm import client, header
from simxen.tpm.constants import TPM_ALG, TPM_CC, TPM_RC, TPM_ST
from simxen.tpm.client import response_code
from simxen.tpm.marshal import tpm2b, u16, u32

from tpm_helpers import make_engine


def read(tpm, alg, pcrs):
    return client.parse_pcr_read(tpm.execute(client.pcr_read_command({alg: pcrs})))


def test_reset_values_after_startup_clear(tpm):
    _, v = read(tpm, TPM_ALG.SHA256, [0, 15, 16, 17, 22, 23])
    bank = v[TPM_ALG.SHA256]
    assert bank[0] == bank[15] == bank[16] == bank[23] == bytes(32)
    assert bank[17] == bank[22] == b"\xff" * 32


def test_extend_matches_hashlib_in_every_bank(tpm):
    digests = {TPM_ALG.SHA1: b"\x01" * 20, TPM_ALG.SHA256: b"\x02" * 32,
               TPM_ALG.SHA384: b"\x03" * 48}
    client.check(tpm.execute(client.pcr_extend_command(7, digests)))
    for alg, name in ((TPM_ALG.SHA1, "sha1"), (TPM_ALG.SHA256, "sha256"),
                      (TPM_ALG.SHA384, "sha384")):
        size = hashlib.new(name).digest_size
        expected = hashlib.new(name, bytes(size) + digests[alg]).digest()
        assert read(tpm, alg, [7])[1][alg][7] == expected
    # a bank not named is left alone
    assert read(tpm, TPM_ALG.SHA512, [7])[1][TPM_ALG.SHA512][7] == bytes(64)


def test_reference_extend_vector(tpm):
    one = bytes(31) + b"\x01"
    client.check(tpm.execute(client.pcr_extend_command(0, {TPM_ALG.SHA256: one})))
    assert read(tpm, TPM_ALG.SHA256, [0])[1][TPM_ALG.SHA256][0].hex() == (
        "90f4b39548df55ad6187a1d20d731ecee78c545b94afd16f42ef7592d99cd365")


def test_pcr_event_extends_hash_of_data(tpm):
    out = client.parse_pcr_event(tpm.execute(client.pcr_event_command(8, b"grub.cfg")))
    assert out[TPM_ALG.SHA256] == hashlib.sha256(b"grub.cfg").digest()
    value = read(tpm, TPM_ALG.SHA256, [8])[1][TPM_ALG.SHA256][8]
    assert value == hashlib.sha256(bytes(32) + hashlib.sha256(b"grub.cfg").digest()).digest()


def test_update_counter_increments(tpm):
    c0, _ = read(tpm, TPM_ALG.SHA256, [0])
    client.check(tpm.execute(client.pcr_extend_command(3, {TPM_ALG.SHA256: bytes(32)})))
    c1, _ = read(tpm, TPM_ALG.SHA256, [0])
    assert c1 == c0 + 1


def test_pcr_read_returns_at_most_eight_and_says_which(tpm):
    _, v = read(tpm, TPM_ALG.SHA256, list(range(24)))
    assert sorted(v[TPM_ALG.SHA256]) == list(range(8))
    _, v = client.parse_pcr_read(tpm.execute(client.pcr_read_command(
        {TPM_ALG.SHA1: [1, 2], TPM_ALG.SHA256: list(range(10))})))
    assert sorted(v[TPM_ALG.SHA1]) == [1, 2]
    assert sorted(v[TPM_ALG.SHA256]) == list(range(6))


def test_locality_rules(tpm):
    zero = {TPM_ALG.SHA256: bytes(32)}
    assert response_code(tpm.execute(client.pcr_extend_command(17, zero))) == TPM_RC.LOCALITY
    assert response_code(tpm.execute(client.pcr_extend_command(17, zero), 2)) == 0
    assert response_code(tpm.execute(client.pcr_extend_command(20, zero), 1)) == 0
    assert response_code(tpm.execute(client.pcr_extend_command(21, zero), 3)) == TPM_RC.LOCALITY
    assert response_code(tpm.execute(client.pcr_reset_command(0))) == TPM_RC.LOCALITY
    assert response_code(tpm.execute(client.pcr_reset_command(16))) == 0
    assert response_code(tpm.execute(client.pcr_reset_command(20), 2)) == 0
    assert response_code(tpm.execute(client.pcr_reset_command(17), 0)) == TPM_RC.LOCALITY
    # locality 4 resets the DRTM PCRs only through the _TPM_Hash sequence
    assert response_code(tpm.execute(client.pcr_reset_command(17), 4)) == TPM_RC.LOCALITY


def test_reset_sets_zero(tpm):
    client.check(tpm.execute(client.pcr_extend_command(16, {TPM_ALG.SHA256: b"\x05" * 32})))
    client.check(tpm.execute(client.pcr_reset_command(16)))
    assert read(tpm, TPM_ALG.SHA256, [16])[1][TPM_ALG.SHA256][16] == bytes(32)


def test_drtm_sequence(tpm):
    assert tpm.hash_start() and tpm.hash_data(b"mle") and tpm.hash_end()
    v = read(tpm, TPM_ALG.SHA256, [17, 18])[1][TPM_ALG.SHA256]
    assert v[18] == bytes(32)
    assert v[17] == hashlib.sha256(bytes(32) + hashlib.sha256(b"mle").digest()).digest()


def test_extend_with_unknown_hash_is_rc_hash(tpm):
    cmd = client.build_command(0x182, (0,), bytes.fromhex("00000001") + b"\x00\x99" + bytes(32),
                               [client.password_auth()])
    assert response_code(tpm.execute(cmd)) == 0x1C3


def test_extend_without_auth_is_auth_missing(tpm):
    cmd = client.build_command(0x182, (0,), bytes.fromhex("00000001000b") + bytes(32))
    assert response_code(tpm.execute(cmd)) == TPM_RC.AUTH_MISSING


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([TPM_ALG.SHA1, TPM_ALG.SHA256, TPM_ALG.SHA384,
                                           TPM_ALG.SHA512]),
                          st.binary(min_size=3, max_size=3)), max_size=4))
def test_pcr_read_answers_the_selected_pcrs_in_order_at_most_eight(selection):
    """PCR_Read walks the set bits of each bitmap: checked against a walk over
    every PCR number of every bitmap."""
    tpm = make_engine()
    for pcr in (0, 7, 16, 23):
        client.check(tpm.execute(client.pcr_extend_command(
            pcr, {TPM_ALG.SHA256: bytes([pcr]) * 32, TPM_ALG.SHA1: bytes([pcr]) * 20})))
    body = u32(len(selection)) + b"".join(u16(alg) + bytes([len(sel)]) + sel
                                          for alg, sel in selection)
    rsp = tpm.execute(header.pack(TPM_ST.NO_SESSIONS, TPM_CC.PCR_Read, body))
    digests, out_sel = [], []
    for alg, sel in selection:
        values, got = tpm.pcrs.banks.get(alg), bytearray(len(sel))
        for i in range(min(len(sel) * 8, len(values) if values is not None else 0)):
            if sel[i >> 3] >> (i & 7) & 1 and len(digests) < 8:
                digests.append(values[i])
                got[i >> 3] |= 1 << (i & 7)
        out_sel.append((alg, bytes(got)))
    expected = (u32(tpm.pcrs.update_counter) + u32(len(out_sel))
                + b"".join(u16(alg) + bytes([len(got)]) + got for alg, got in out_sel)
                + u32(len(digests)) + b"".join(tpm2b(d) for d in digests))
    assert rsp == header.pack(TPM_ST.NO_SESSIONS, 0, expected)


@pytest.mark.parametrize("sizeof_select, count, rc", [
    (0, 1, 0x1C4), (2, 1, 0x1C4), (4, 1, 0x1C4),     # TPM_RC_VALUE, parameter 1
    (3, 5, 0x1D5),                                    # TPM_RC_SIZE: more than HASH_COUNT
    (3, 4, 0)])
def test_pcr_selection_sizes_are_the_platforms(sizeof_select, count, rc):
    """A TPMS_PCR_SELECTION has exactly PCR_SELECT_MIN = PCR_SELECT_MAX = 3
    bytes here (24 PCRs), a TPML_PCR_SELECTION at most HASH_COUNT = 4 entries
    (Part 2, 10.6; libtpms answers the same)."""
    tpm = make_engine()
    body = u32(count) + (u16(TPM_ALG.SHA256) + bytes([sizeof_select, 1] + [0] * (sizeof_select - 1))
                         if sizeof_select else u16(TPM_ALG.SHA256) + b"\0") * count
    rsp = tpm.execute(header.pack(TPM_ST.NO_SESSIONS, TPM_CC.PCR_Read, body))
    assert response_code(rsp) == rc

"""simxen.tpm.header: the one reader and writer of the 10-byte TPM header."""

import doctest

from hypothesis import given, strategies as st

from simxen.tpm import client, header
from simxen.tpm.constants import TPM_CC, TPM_RC, TPM_ST


def test_doctests():
    assert doctest.testmod(header).failed == 0


@given(tag=st.integers(0, 0xFFFF), code=st.integers(0, 0xFFFFFFFF), body=st.binary(max_size=64))
def test_pack_then_read_back(tag, code, body):
    packet = header.pack(tag, code, body)
    assert header.unpack(packet) == (tag, 10 + len(body), code)
    assert header.code(packet) == code and header.tag(packet) == tag
    assert header.size(packet) == len(packet)
    assert header.with_tag(packet, 0x00C1)[2:] == packet[2:]


@given(st.binary(max_size=9))
def test_a_packet_shorter_than_a_header_has_no_code(packet):
    assert header.code(packet) is None and header.unpack(packet) is None
    assert header.size(packet) is None
    assert header.tag(packet) == (int.from_bytes(packet[:2], "big") if len(packet) >= 2 else None)


def test_the_client_and_the_engine_build_the_same_header():
    command = client.pcr_read_command({0x000B: [0]})
    assert header.unpack(command) == (TPM_ST.NO_SESSIONS, len(command), TPM_CC.PCR_Read)
    assert client.response_code(header.pack(TPM_ST.NO_SESSIONS, TPM_RC.INITIALIZE)) \
        == TPM_RC.INITIALIZE

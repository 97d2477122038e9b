"""simxen.tpm.header: the one reader and writer of the 10-byte TPM header."""

import doctest
import struct

from hypothesis import given, settings, strategies as st

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


def _outcome(call, raw):
    try:
        call(raw)
    except client.ResponseError as err:
        return ("rc", err.rc)
    except Exception as err:            # noqa: BLE001 -- the type is what is compared
        return (type(err),)
    return ("ok",)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=20),
                 st.tuples(st.sampled_from([0x8001, 0x8002, 0xC4]), st.integers(0, 40),
                           st.sampled_from([0, 0x101, 0x921]), st.binary(max_size=12))
                 .map(lambda t: struct.pack(">HII", t[0], t[1], t[2]) + t[3])))
def test_check_raises_what_parsing_the_response_raises(raw):
    """client.check reads the header instead of parsing the whole response: the same
    outcome as parse_response -- success, the ResponseError and its rc, or the error
    of a sessions response without its parameterSize."""
    assert _outcome(client.check, raw) == _outcome(client.parse_response, raw)

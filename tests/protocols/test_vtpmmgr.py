"""vTPM manager wire protocol: sizes, dispatch rules, deep quote."""

import hashlib
import struct

import pytest
from hypothesis import given, strategies as st

from simxen.protocols import vtpmmgr as m
from simxen.protocols.vtpmmgr import VtpmmgrError


def test_message_sizes_match_xen():
    assert len(m.save_hash_key_request(bytes(52))) == 62
    assert len(m.response()) == 10
    assert len(m.load_hash_key_request()) == 10
    assert len(m.load_hash_key_response(bytes(52))) == 62
    assert m.save_hash_key_request(b"\1" * 52)[:10] == bytes.fromhex("01c1" "0000003e" "00000001")


def test_load_hash_key_returns_64_only_when_the_tail_is_used():
    assert len(m.parse_load_hash_key_response(m.load_hash_key_response(b"k" * 52 + bytes(12)))) == 52
    assert len(m.parse_load_hash_key_response(m.load_hash_key_response(b"k" * 63 + b"\1"))) == 64


@pytest.mark.parametrize("size", [0, 51, 65, 100])
def test_save_hash_key_size_bounds(size):
    with pytest.raises(VtpmmgrError) as exc:
        m.parse_save_hash_key_request(m.pack_header(m.VTPM_TAG_REQ, m.VTPM_ORD_SAVEHASHKEY, bytes(size)))
    assert exc.value.rc == m.TPM_BAD_PARAMETER


@pytest.mark.parametrize("message,admin,rc", [
    (b"\x01\xc1\0\0", False, m.TPM_BAD_PARAMETER),
    (m.pack_header(m.VTPM_TAG_REQ, 99), False, m.TPM_BAD_ORDINAL),
    (m.pack_header(m.VTPM_TAG_REQ, m.VTPM_ORD_GET_QUOTE), False, m.TPM_SUCCESS),
    (m.pack_header(m.VTPM_TAG_REQ2, m.VTPM_ORD_GROUP_LIST), False, m.TPM_AUTHFAIL),
    (m.pack_header(m.VTPM_TAG_REQ2, m.VTPM_ORD_GROUP_LIST), True, m.TPM_SUCCESS),
    (m.pack_header(m.VTPM_TAG_REQ2, m.VTPM_ORD_GROUP_QUOTE), True, m.TPM_BAD_ORDINAL),
    (m.pack_header(m.TPM_TAG_RQU_COMMAND, m.TPM_ORD_GetRandom, b"\0\0\0\x10"), False, m.TPM_SUCCESS),
    (m.pack_header(m.TPM_TAG_RQU_COMMAND, m.TPM_ORD_PcrRead, b"\0\0\0\0"), False, m.TPM_SUCCESS),
    (m.pack_header(m.TPM_TAG_RQU_COMMAND, m.TPM_ORD_Extend, bytes(24)), False, m.TPM_DISABLED_CMD),
    (m.pack_header(m.TPM_TAG_RQU_COMMAND, m.TPM_ORD_Extend, bytes(24)), True, m.TPM_SUCCESS),
    (m.pack_header(m.TPM_TAG_RQU_AUTH1_COMMAND, 0x3E), True, m.TPM_DISABLED_CMD),
    (m.pack_header(0x8001, 0x17E), True, m.TPM_BADTAG),
])
def test_dispatch_rules(message, admin, rc):
    assert m.dispatch_check(message, is_admin=admin) == rc


def test_error_response_tag_is_request_tag_plus_3():
    assert m.error_response(m.VTPM_TAG_REQ2, m.TPM_AUTHFAIL) == bytes.fromhex("01c5" "0000000a" "00000001")
    assert m.error_response(m.TPM_TAG_RQU_COMMAND, m.TPM_DISABLED_CMD)[:2] == b"\x00\xc4"


def test_boot_hash_request_must_be_bare():
    m.parse_get_boot_hash_request(m.get_boot_hash_request())
    with pytest.raises(VtpmmgrError) as exc:
        m.parse_get_boot_hash_request(m.pack_header(m.VTPM_TAG_REQ, m.VTPM_ORD_GET_BOOT_HASH, b"x"))
    assert exc.value.rc == m.TPM_BAD_PARAMETER
    assert m.parse_get_boot_hash_response(m.get_boot_hash_response(b"h" * 20)) == b"h" * 20


def test_error_reply_raises_its_rc():
    with pytest.raises(VtpmmgrError) as exc:
        m.parse_load_hash_key_response(m.response(m.TPM_DISABLED))
    assert exc.value.rc == m.TPM_DISABLED


def test_pcr_selection_bytes():
    data = m.pack_pcr_selection([(0x000B, [0, 4, 5, 23])])
    assert data == bytes.fromhex("00000001" "000b" "03" "310080")
    assert m.unpack_pcr_selection(data) == ([(0x000B, (0, 4, 5, 23))], len(data))


def test_quote_flags_outside_the_four_are_invalid_request():
    body = struct.pack(">H", 4) + b"abcd" + m.pack_pcr_selection([]) + struct.pack(">I", 0x10)
    with pytest.raises(VtpmmgrError) as exc:
        m.parse_get_quote_request(m.pack_header(m.VTPM_TAG_REQ, m.VTPM_ORD_GET_QUOTE, body))
    assert exc.value.rc == m.VTPM_INVALID_REQUEST


def test_external_data_binds_flags_nonce_and_hashes():
    nonce = b"n" * 32
    hashes = m.deep_quote_hashes(0x3, uuid=b"u" * 16, kernel_hash=b"k" * 20)
    assert hashes == [hashlib.sha256(b"u" * 16).digest(), hashlib.sha256(b"k" * 20).digest()]
    expected = hashlib.sha256(b"\3\0\0\0" + nonce + hashlib.sha256(b"".join(hashes)).digest()).digest()
    assert m.deep_quote_external_data(nonce, 0x3, hashes) == expected
    assert m.deep_quote_external_data(nonce, 0) == hashlib.sha256(bytes(4) + nonce).digest()
    assert m.deep_quote_external_data(nonce, 0x1, hashes[:1]) != m.deep_quote_external_data(nonce, 0x2, hashes[1:])
    with pytest.raises(VtpmmgrError):
        m.deep_quote_external_data(nonce, 0x3, hashes[:1])


selections = st.lists(st.tuples(st.sampled_from([0x4, 0xB, 0xC]),
                                st.lists(st.integers(0, 23), unique=True).map(sorted).map(tuple)), max_size=3)


@given(st.binary(max_size=64), selections, st.integers(0, 15))
def test_quote_request_round_trip(nonce, selection, flags):
    request = m.parse_get_quote_request(m.get_quote_request(nonce, selection, flags))
    assert request == m.QuoteRequest(nonce, list(selection), flags)
    assert m.dispatch_check(m.get_quote_request(nonce, selection, flags), is_admin=False) == m.TPM_SUCCESS


@given(st.binary(max_size=200), st.binary(max_size=300), st.integers(0, 15),
       st.lists(st.binary(min_size=32, max_size=32), max_size=8))
def test_quote_response_round_trip(attest, signature, flags, pcrs):
    hashes = [bytes([i]) * 32 for i in range(bin(flags).count("1"))]
    reply = m.get_quote_response(attest, signature, hashes, pcrs)
    assert m.parse_get_quote_response(reply, flags) == m.QuoteResponse(attest, signature, tuple(hashes), tuple(pcrs))
    with pytest.raises(VtpmmgrError):
        m.parse_get_quote_response(reply[:-1], flags)


@given(st.binary(max_size=80))
def test_arbitrary_bytes_never_escape_as_other_errors(data):
    for parse in (m.parse_save_hash_key_request, m.parse_get_quote_request,
                  m.parse_get_boot_hash_request, m.parse_load_hash_key_response):
        try:
            parse(data)
        except VtpmmgrError:
            pass
    m.dispatch_check(data, is_admin=True)


def test_save_hash_key_reply():
    m.parse_save_hash_key_response(m.response())
    with pytest.raises(VtpmmgrError) as exc:
        m.parse_save_hash_key_response(m.response(m.TPM_BAD_PARAMETER))
    assert exc.value.rc == m.TPM_BAD_PARAMETER
    with pytest.raises(VtpmmgrError) as exc:
        m.parse_save_hash_key_response(m.error_response(m.VTPM_TAG_REQ, m.TPM_BAD_ORDINAL))
    assert exc.value.rc == m.TPM_BAD_ORDINAL  # VTPM_TAG_REQ + 3 is VTPM_TAG_RSP
    with pytest.raises(VtpmmgrError) as exc:
        m.parse_save_hash_key_response(m.error_response(m.TPM_TAG_RQU_COMMAND, m.TPM_DISABLED_CMD))
    assert exc.value.rc == m.TPM_BADTAG

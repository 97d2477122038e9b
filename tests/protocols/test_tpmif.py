"""tpmif v2 shared page: offsets, bounds, ownership and transitions."""

import errno
import struct

import pytest
from hypothesis import given, strategies as st

from simxen.protocols import tpmif
from simxen.protocols.tpmif import (
    BACKEND, FRONTEND, TPMIF_MAX_PAYLOAD, TPMIF_STATE_CANCEL, TPMIF_STATE_FINISH,
    TPMIF_STATE_IDLE, TPMIF_STATE_SUBMIT, TpmifError, TpmifHeader, XEN_PAGE_SIZE,
)


def new_pages(n_extra=0):
    return [bytearray(XEN_PAGE_SIZE) for _ in range(1 + n_extra)]


def test_constants_match_the_abi():
    assert tpmif.TPMIF_HEADER_SIZE == 8
    assert TPMIF_MAX_PAYLOAD == 4088
    assert tpmif.data_offset(0) == 8 and tpmif.data_offset(3) == 20
    assert tpmif.payload_capacity(0) == 4088
    assert tpmif.payload_capacity(1) == 2 * 4096 - 12


def test_field_offsets_in_the_page():
    page = bytearray(XEN_PAGE_SIZE)
    tpmif.write_header(page, TpmifHeader(length=0x11223344, state=2, locality=3,
                                         extra_pages=(0xAABBCCDD,)))
    assert page[:12] == bytes.fromhex("44332211" "02" "03" "00" "01" "DDCCBBAA")


def test_single_page_request_is_at_offset_8():
    page = bytearray(XEN_PAGE_SIZE)
    tpmif.write_request(page, b"\x80\x01abc", locality=2)
    assert page[8:13] == b"\x80\x01abc"
    assert struct.unpack_from("<I", page, 0)[0] == 5
    assert page[4] == TPMIF_STATE_SUBMIT and page[5] == 2
    assert tpmif.read_payload(page) == b"\x80\x01abc"


def test_full_page_payload_fits_and_one_more_byte_does_not():
    page = bytearray(XEN_PAGE_SIZE)
    tpmif.write_payload(page, b"x" * 4088)
    assert tpmif.read_payload(page) == b"x" * 4088
    with pytest.raises(TpmifError) as exc:
        tpmif.write_payload(page, b"y" * 4089)
    assert exc.value.errno == -errno.E2BIG
    assert tpmif.read_payload(page) == b"x" * 4088  # untouched


def test_length_beyond_the_granted_pages_is_rejected_on_read():
    page = bytearray(XEN_PAGE_SIZE)
    struct.pack_into("<I", page, 0, 4089)
    with pytest.raises(TpmifError) as exc:
        tpmif.read_payload(page)
    assert exc.value.errno == -errno.EINVAL


def test_extra_pages_announced_but_not_mapped():
    page = bytearray(XEN_PAGE_SIZE)
    tpmif.write_header(page, TpmifHeader(extra_pages=(7, 8)))
    with pytest.raises(TpmifError) as exc:
        tpmif.write_payload([page, bytearray(XEN_PAGE_SIZE)], b"abc")
    assert exc.value.errno == -errno.EINVAL


def test_extra_page_is_contiguous_after_the_first():
    pages = new_pages(1)
    tpmif.write_header(pages, TpmifHeader(extra_pages=(42,)))
    data = bytes(range(256)) * 20  # 5120 bytes
    tpmif.write_payload(pages, data)
    first_part = XEN_PAGE_SIZE - 12
    assert pages[0][12:] == data[:first_part]
    assert pages[1][:len(data) - first_part] == data[first_part:]


def test_wrong_page_size_is_rejected():
    with pytest.raises(TpmifError):
        tpmif.read_header(bytearray(100))


@pytest.mark.parametrize("writer,old,new", [
    (FRONTEND, TPMIF_STATE_IDLE, TPMIF_STATE_SUBMIT),
    (FRONTEND, TPMIF_STATE_FINISH, TPMIF_STATE_SUBMIT),
    (FRONTEND, TPMIF_STATE_SUBMIT, TPMIF_STATE_CANCEL),
    (BACKEND, TPMIF_STATE_SUBMIT, TPMIF_STATE_FINISH),
    (BACKEND, TPMIF_STATE_CANCEL, TPMIF_STATE_IDLE),
    (BACKEND, TPMIF_STATE_CANCEL, TPMIF_STATE_FINISH),
    (BACKEND, TPMIF_STATE_SUBMIT, TPMIF_STATE_IDLE),
])
def test_legal_transitions(writer, old, new):
    tpmif.check_transition(writer, old, new)


@pytest.mark.parametrize("writer,old,new", [
    (BACKEND, TPMIF_STATE_IDLE, TPMIF_STATE_SUBMIT),   # backend may not submit
    (FRONTEND, TPMIF_STATE_SUBMIT, TPMIF_STATE_FINISH),  # frontend may not finish
    (FRONTEND, TPMIF_STATE_SUBMIT, TPMIF_STATE_SUBMIT),  # one command at a time
    (FRONTEND, TPMIF_STATE_IDLE, TPMIF_STATE_CANCEL),  # nothing to cancel
    (BACKEND, TPMIF_STATE_IDLE, TPMIF_STATE_FINISH),  # nothing was submitted
])
def test_illegal_transitions(writer, old, new):
    with pytest.raises(TpmifError) as exc:
        tpmif.check_transition(writer, old, new)
    assert exc.value.errno == -errno.EPERM


def test_round_trip_request_then_response():
    page = bytearray(XEN_PAGE_SIZE)
    tpmif.write_request(page, b"cmd")
    with pytest.raises(TpmifError):
        tpmif.write_request(page, b"again")
    tpmif.write_response(page, b"response!")
    assert tpmif.read_state(page) == TPMIF_STATE_FINISH
    assert tpmif.read_payload(page) == b"response!"
    tpmif.write_request(page, b"next")
    assert tpmif.read_payload(page) == b"next"


def test_oversize_response_leaves_state_alone():
    page = bytearray(XEN_PAGE_SIZE)
    tpmif.write_request(page, b"cmd")
    with pytest.raises(TpmifError):
        tpmif.write_response(page, b"r" * 5000)
    assert tpmif.read_state(page) == TPMIF_STATE_SUBMIT


headers = st.builds(
    TpmifHeader,
    length=st.integers(0, 2**32 - 1),
    state=st.integers(0, 255),
    locality=st.integers(0, 255),
    pad=st.integers(0, 255),
    extra_pages=st.lists(st.integers(0, 2**32 - 1), max_size=255).map(tuple),
)


@given(headers)
def test_header_round_trip(header):
    page = bytearray(XEN_PAGE_SIZE)
    tpmif.write_header(page, header)
    assert tpmif.read_header(page) == header


@given(st.integers(0, 4), st.data())
def test_payload_round_trip_and_bound(n_extra, data):
    pages = new_pages(n_extra)
    tpmif.write_header(pages, TpmifHeader(extra_pages=tuple(range(1, n_extra + 1))))
    cap = tpmif.payload_capacity(n_extra)
    size = data.draw(st.integers(0, cap + 10))
    payload = data.draw(st.binary(min_size=size, max_size=size))
    if size <= cap:
        tpmif.write_payload(pages, payload)
        assert tpmif.read_payload(pages) == payload
        assert tpmif.read_header(pages).extra_pages == tuple(range(1, n_extra + 1))
    else:
        with pytest.raises(TpmifError) as exc:
            tpmif.write_payload(pages, payload)
        assert exc.value.errno == -errno.E2BIG


@given(st.integers(0, 3), st.integers(0, 3), st.sampled_from([FRONTEND, BACKEND]))
def test_transition_table_agrees_with_writer_rule(old, new, writer):
    allowed = tpmif.TPMIF_TRANSITIONS.get((old, new)) == writer
    assert not allowed or new in tpmif.TPMIF_WRITERS[writer]
    try:
        tpmif.check_transition(writer, old, new)
        assert allowed
    except TpmifError:
        assert not allowed

"""ring.h: layout, sizes, index wrap-around and notification suppression."""

import pytest
from hypothesis import given, settings, strategies as st

from simxen.protocols.ring import (
    MASK,
    REQ_EVENT,
    REQ_PROD,
    RSP_EVENT,
    RSP_PROD,
    SRING_HEADER,
    BackRing,
    FrontRing,
    read_index,
    ring_size,
    write_index,
)


@pytest.mark.parametrize("entry, size", [(112, 32), (12, 256), (8, 256), (64, 32), (4032, 1),
                                         (2016, 2), (1, 2048)])
def test_ring_size_is_largest_power_of_two_that_fits(entry, size):
    assert ring_size(entry) == size          # blkif 112 -> 32, netif 12/8 -> 256 (ring.h)


def test_ring_size_rejects_impossible_entries():
    with pytest.raises(ValueError):
        ring_size(4033)
    with pytest.raises(ValueError):
        ring_size(0)


def test_init_layout():
    page = bytearray(b"\xff" * 4096)
    FrontRing(page, 64, init=True)
    assert [read_index(page, o) for o in (REQ_PROD, REQ_EVENT, RSP_PROD, RSP_EVENT)] == [0, 1, 0, 1]
    assert page[16:SRING_HEADER] == bytes(48)


def test_entries_live_after_the_header_and_wrap_on_the_slot_mask():
    page = bytearray(4096)
    front = FrontRing(page, 112, init=True)
    assert front.entry_offset(0) == 64 and front.entry_offset(1) == 176
    assert front.entry_offset(32) == 64 and front.entry_offset(MASK) == 64 + 31 * 112


def attach_at(start, entry_size=64):
    """A fresh ring whose free-running indices all start at ``start``."""
    page = bytearray(4096)
    FrontRing(page, entry_size, init=True)
    for off in (REQ_PROD, RSP_PROD):
        write_index(page, off, start)
    for off in (REQ_EVENT, RSP_EVENT):
        write_index(page, off, start + 1)
    return page, FrontRing(page, entry_size), BackRing(page, entry_size)


@settings(max_examples=200, deadline=None)
@given(start=st.one_of(st.integers(0, MASK), st.integers(MASK - 300, MASK)),
       batches=st.lists(st.integers(1, 32), min_size=1, max_size=40))
def test_every_request_answered_in_order_across_wraparound(start, batches):
    page, front, back = attach_at(start)
    sent = received = 0
    for batch in batches:
        batch = min(batch, front.free_requests())
        for _ in range(batch):
            front.put_request(sent.to_bytes(8, "little"))
            sent += 1
        front.push_requests_and_check_notify()
        assert back.unconsumed_requests() == batch
        while back.unconsumed_requests():
            request = back.get_request()
            back.put_response(request[:8])
        back.push_responses_and_check_notify()
        while front.unconsumed_responses():
            assert int.from_bytes(front.get_response()[:8], "little") == received
            received += 1
        assert not front.final_check_for_responses()
        assert not back.final_check_for_requests()
    assert received == sent
    assert read_index(page, REQ_PROD) == (start + sent) & MASK      # wrapped modulo 2**32
    assert front.free_requests() == front.size


@settings(max_examples=200, deadline=None)
@given(start=st.integers(MASK - 40, MASK), outstanding=st.integers(0, 32))
def test_free_and_unconsumed_counts_are_modular(start, outstanding):
    page, front, back = attach_at(start)
    for i in range(outstanding):
        front.put_request(bytes(8))
    front.push_requests()
    assert front.free_requests() == 32 - outstanding
    assert back.unconsumed_requests() == outstanding
    assert front.full() == (outstanding == 32)
    if front.full():
        with pytest.raises(OverflowError):
            front.put_request(bytes(8))


def test_notify_only_when_consumer_asked():
    page, front, back = attach_at(0)
    front.put_request(b"a")
    assert front.push_requests_and_check_notify()          # req_event 1 in (0, 1]
    front.put_request(b"b")
    assert not front.push_requests_and_check_notify()      # backend has not re-armed: suppressed
    back.get_request()
    back.get_request()
    assert not back.final_check_for_requests()             # re-arms: req_event = cons + 1 = 3
    assert read_index(page, REQ_EVENT) == 3
    front.put_request(b"c")
    front.put_request(b"d")
    assert front.push_requests_and_check_notify()          # 3 in (2, 4]


def test_final_check_catches_a_racing_producer():
    page, front, back = attach_at(0)
    assert not back.final_check_for_requests()
    front.put_request(b"x")
    front.push_requests()                                   # published, notify decision skipped
    assert back.final_check_for_requests()                  # ...but the re-check sees it


def test_push_with_event_far_ahead_suppresses_until_reached():
    """A consumer wanting batches sets its event index further ahead."""
    page, front, back = attach_at(0)
    write_index(page, REQ_EVENT, 4)
    notes = []
    for i in range(5):
        front.put_request(b"r")
        notes.append(front.push_requests_and_check_notify())
    assert notes == [False, False, False, True, False]


def test_backend_detects_overflowing_frontend():
    page, front, back = attach_at(0)
    write_index(page, REQ_PROD, 33)                         # a malicious frontend
    assert back.request_prod_overflow()
    assert back.unconsumed_requests() == 32                 # never more than the ring holds
    for _ in range(32):
        back.consume_request()
    assert back.request_cons_overflow()


def test_final_check_with_a_full_ring_awaiting_responses_asks_for_a_notification():
    """ring.h's RING_FINAL_CHECK_FOR_REQUESTS tests RING_HAS_UNCONSUMED_REQUESTS, which is
    0 while a full ring awaits responses even if a rogue frontend published more: then
    it sets req_event = req_cons + 1 like any idle backend."""
    page, front, back = attach_at(0, entry_size=1008)         # 4 slots
    for _ in range(4):
        front.put_request(b"q")
    front.push_requests()
    while back.next_request() is not None:
        pass
    assert back.req_cons == 4 and read_index(page, REQ_EVENT) == 1
    write_index(page, REQ_PROD, 6)                          # two more than the ring holds
    assert not back.final_check_for_requests()
    assert read_index(page, REQ_EVENT) == 5


def test_entry_larger_than_slot_rejected():
    page, front, back = attach_at(0, entry_size=16)
    with pytest.raises(ValueError):
        front.put_request(bytes(17))


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.integers(0, MASK), min_size=4, max_size=4))
def test_header_words_alias_the_little_endian_fields(values):
    from simxen.protocols.ring import (REQ_EVENT_WORD, REQ_PROD_WORD, RSP_EVENT_WORD,
                                       RSP_PROD_WORD, _LittleEndianWords, header_words)

    page = bytearray(4096)
    offsets = (REQ_PROD, REQ_EVENT, RSP_PROD, RSP_EVENT)
    words = (REQ_PROD_WORD, REQ_EVENT_WORD, RSP_PROD_WORD, RSP_EVENT_WORD)
    for view in (header_words(page), _LittleEndianWords(page)):     # this host's, and struct's
        for off, value in zip(offsets, values):
            write_index(page, off, value)
        assert [view[w] for w in words] == values
        for w, value in zip(words, reversed(values)):
            view[w] = value
        assert [read_index(page, off) for off in offsets] == list(reversed(values))
        assert page[16:] == bytes(4096 - 16)                    # nothing past the indices


def test_a_read_only_buffer_gives_read_only_indices():
    from simxen.protocols.ring import header_words

    page = bytearray(4096)
    front = FrontRing(page, 64, init=True)
    back = BackRing(memoryview(page).toreadonly(), 64)
    front.put_request(b"x")
    front.push_requests()
    assert back.unconsumed_requests() == 1                       # reads work
    with pytest.raises(TypeError):
        header_words(memoryview(page).toreadonly())[REQ_PROD // 4] = 5


def test_an_oversized_entry_claims_no_slot():
    page, front, back = attach_at(0, entry_size=16)
    with pytest.raises(ValueError):
        front.put_request(bytes(17))
    assert front.free_requests() == front.size and front.unpublished() == 0
    front.put_request(b"ok")
    front.push_requests()
    with pytest.raises(ValueError):
        back.put_response(bytes(17))
    assert back.unpublished() == 0

"""The multi-slot vTPM transport's entry layout (simxen's what-if over ring.h)."""

import pytest
from hypothesis import given, strategies as st

from simxen.protocols import tpmif_ring


def test_slot_counts_follow_ring_h():
    # (4096 - 64) / entry, rounded down to a power of two (__RING_SIZE)
    assert [tpmif_ring.slots(n) for n in (64, 256, 512, 1024, 4032)] == [32, 8, 4, 2, 1]
    assert tpmif_ring.capacity(256) == 248


@given(st.integers(0, 0xFFFF), st.binary(max_size=248), st.integers(0, 4), st.integers(0, 1))
def test_entries_round_trip(ident, packet, locality, status):
    data = tpmif_ring.pack_entry(ident, packet, locality=locality, status=status)
    assert len(data) == tpmif_ring.ENTRY_HEADER + len(packet)
    assert tpmif_ring.unpack_entry(data + bytes(256 - len(data)), 256) == (ident, locality,
                                                                          status, packet)


def test_a_length_beyond_the_slot_is_cut_to_it():
    data = bytearray(tpmif_ring.pack_entry(1, b"x" * 40))
    data[4:8] = (10_000).to_bytes(4, "little")
    assert len(tpmif_ring.unpack_entry(bytes(data), 48)[3]) == 40


@pytest.mark.parametrize("size", [0, 17, 4033])
def test_unusable_entry_sizes_are_refused(size):
    with pytest.raises(ValueError):
        tpmif_ring.slots(size)

"""vTPM state disk: A/B slots, AES-256-GCM sealing, rollback detection, manager records."""

import hashlib

import pytest
from hypothesis import given, settings, strategies as st

from simxen.protocols import vtpm_disk as d
from simxen.protocols import vtpmmgr
from simxen.protocols.vtpm_disk import VtpmDiskError

KEY = bytes(range(32))
NONCE = bytes(range(12))


def test_slot_layout():
    sealed = d.seal_slot(b"state", KEY, NONCE)
    assert sealed[:4] == b"vTPM"
    assert sealed[4:8] == b"\0\0\0\1"
    assert int.from_bytes(sealed[8:12], "big") == 5 + 16
    assert sealed[12:24] == NONCE
    assert len(sealed) == 24 + 5 + 16
    assert d.open_slot(sealed + b"stale tail", KEY) == b"state"


def test_same_inputs_same_bytes():
    assert d.seal_slot(b"s" * 100, KEY, NONCE) == d.seal_slot(b"s" * 100, KEY, NONCE)


@pytest.mark.parametrize("position", [0, 5, 9, 15, 24, 30, -1])
def test_any_flipped_byte_is_refused(position):
    sealed = bytearray(d.seal_slot(b"the vTPM state", KEY, NONCE))
    sealed[position] ^= 0x01
    with pytest.raises(VtpmDiskError):
        d.open_slot(bytes(sealed), KEY)


def test_wrong_key_is_refused():
    with pytest.raises(VtpmDiskError):
        d.open_slot(d.seal_slot(b"x", KEY, NONCE), bytes(32))


def test_bad_key_and_nonce_sizes():
    with pytest.raises(VtpmDiskError):
        d.seal_slot(b"x", bytes(16), NONCE)
    with pytest.raises(VtpmDiskError):
        d.seal_slot(b"x", KEY, bytes(16))


def save(disk, index, state, n):
    key = hashlib.sha256(b"key%d" % n).digest()
    nonce = hashlib.sha256(b"nonce%d" % n).digest()[:12]
    sealed = d.seal_slot(state, key, nonce)
    d.write_slot(disk, index, sealed)
    return d.pack_hash_key(d.slot_hash(sealed), key)


def test_a_b_saves_and_rollback():
    disk = bytearray(2 * 4096)
    assert d.pick_slot(disk, bytes(32)) is None  # blank disk
    blob1 = save(disk, 0, b"state one", 1)
    old_disk = bytes(disk)
    blob2 = save(disk, d.other_slot(0), b"state two", 2)
    h, key = d.unpack_hash_key(blob2)
    index = d.pick_slot(disk, h)
    assert index == 1 and d.open_slot(d.read_slot(disk, index), key) == b"state two"
    # the manager keeps only the newest pair; the disk copied before save 2 matches nothing
    assert d.pick_slot(old_disk, h) is None
    # an older pair still finds its own slot on the current disk (it was not overwritten yet)
    assert d.pick_slot(disk, d.unpack_hash_key(blob1)[0]) == 0
    save(disk, 0, b"state three", 3)
    assert d.pick_slot(disk, d.unpack_hash_key(blob1)[0]) is None


def test_hash_key_blob_travels_in_savehashkey():
    blob = d.pack_hash_key(b"h" * 32, b"k" * 32)
    request = vtpmmgr.save_hash_key_request(blob)
    assert vtpmmgr.parse_save_hash_key_request(request) == blob
    # the manager answers 52 bytes when bytes 52..63 are zero; the pair still unpacks
    short = vtpmmgr.parse_load_hash_key_response(vtpmmgr.load_hash_key_response(b"h" * 32 + b"k" * 20 + bytes(12)))
    assert d.unpack_hash_key(short) == (b"h" * 32, b"k" * 20 + bytes(12))


def test_save_too_big_for_slot():
    with pytest.raises(VtpmDiskError):
        d.write_slot(bytearray(200), 0, d.seal_slot(bytes(100), KEY, NONCE))


def test_manager_records_round_trip_and_tamper():
    records = {bytes([i]) * 16: bytes([i]) * 64 for i in range(5)}
    sealed = d.seal_manager_records(records, KEY, NONCE)
    assert d.open_manager_records(sealed, KEY) == records
    broken = bytearray(sealed)
    broken[20] ^= 1
    with pytest.raises(VtpmDiskError):
        d.open_manager_records(bytes(broken), KEY)
    with pytest.raises(VtpmDiskError):
        d.open_manager_records(sealed, bytes(32))


@settings(max_examples=50)
@given(st.binary(max_size=2000), st.binary(min_size=32, max_size=32), st.binary(min_size=12, max_size=12),
       st.binary(max_size=100))
def test_seal_open_round_trip(state, key, nonce, tail):
    sealed = d.seal_slot(state, key, nonce)
    assert d.open_slot(sealed + tail, key) == state
    assert d.slot_hash(sealed + tail) == hashlib.sha256(sealed).digest()


@given(st.binary(max_size=120))
def test_garbage_slots_raise_only_vtpmdiskerror(data):
    try:
        d.open_slot(data, KEY)
    except VtpmDiskError:
        pass
    assert d.pick_slot(data.ljust(64, b"\0"), bytes(32)) is None

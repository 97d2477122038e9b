"""The vTPM stub domain's state disk (A/B slots) and the manager's key records.

After every successful command a vTPM saves its whole state: it seals the
state under a **fresh 256-bit key**, writes the result to the slot it did not
use last time, and sends ``(hash of the slot, key)`` to the vTPM manager
(VTPM_ORD_SAVEHASHKEY). At start it asks the manager for that pair
(LOADHASHKEY) and takes the slot whose hash matches. The disk itself thus
holds only ciphertext, and a copy of an older disk (a rollback) matches
neither slot once the manager has seen a newer save.

Disk: two equal slots, slot A at offset 0 and slot B at ``len(disk) // 2``
(Xen: each slot is half the disk image). One slot, big-endian::

    offset  size      field
         0     4      magic "vTPM"
         4     4      version = 1
         8     4      length  (bytes of sealed data that follow = len(state) + 16)
        12    12      nonce   (AES-GCM IV, fresh per save)
        24  length    AES-256-GCM(key, nonce, state, aad = bytes 0..23)  (ciphertext || 16-byte tag)
    24+length  ...    unused (stale bytes of older saves may remain)

``hash`` = SHA-256 over bytes ``0 .. 24+length`` of the slot. The pair sent to
the manager is ``hash(32) || key(32)`` = 64 bytes, the top of SAVEHASHKEY's
52..64-byte window. (The manager returns only 52 bytes if bytes 52..63 are all
zero; :func:`unpack_hash_key` zero-pads, so that case still works.)

**Deviation from Xen.** Xen's vtpmblk uses AES-256-CBC with a random IV whose
last 4 bytes carry the plaintext length, zero-pads the state to 16 bytes,
and sends ``SHA-1(IV || ciphertext) || key`` (52 bytes). CBC has no
integrity: the only tamper check is the SHA-1 comparison with the manager's
copy. Here AES-256-GCM authenticates the header and the ciphertext itself, so
:func:`open_slot` refuses a modified slot even without the manager's hash,
and the hash is SHA-256.

The manager's own record of its vTPMs (UUID -> 64-byte hash||key blob) is
sealed the same way under a 256-bit key that the manager in turn protects
with the physical TPM; :func:`seal_manager_records` and
:func:`open_manager_records` give that layout::

    nonce(12) | AES-256-GCM(mgr_key, nonce, table, aad = "vMGR" || u32 version)
    table = "vMGR" | u32 version=1 | u32 count | {uuid(16) | blob(64)} * count   (sorted by uuid)
"""

from __future__ import annotations

import bisect
import hashlib
import struct
from collections.abc import Mapping, MutableMapping
from typing import Optional

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "VTPM_SLOT_MAGIC", "VTPM_SLOT_VERSION", "VTPM_SLOT_HEADER_SIZE", "VTPM_KEY_SIZE",
    "VTPM_NONCE_SIZE", "VTPM_TAG_SIZE", "HASH_SIZE", "HASHKEY_BLOB_SIZE", "NUM_SLOTS",
    "MGR_RECORDS_MAGIC", "VtpmDiskError", "seal_slot", "open_slot", "slot_hash",
    "slot_offset", "slot_size", "read_slot", "write_slot", "other_slot", "pick_slot",
    "pack_hash_key", "unpack_hash_key", "ManagerRecords", "seal_manager_records",
    "open_manager_records",
]

VTPM_SLOT_MAGIC = b"vTPM"
VTPM_SLOT_VERSION = 1
VTPM_SLOT_HEADER_SIZE = 24
VTPM_KEY_SIZE = 32
VTPM_NONCE_SIZE = 12
VTPM_TAG_SIZE = 16
HASH_SIZE = 32
HASHKEY_BLOB_SIZE = HASH_SIZE + VTPM_KEY_SIZE
NUM_SLOTS = 2
MGR_RECORDS_MAGIC = b"vMGR"
_MGR_VERSION = 1
_UUID_SIZE = 16

_SLOT_HDR = struct.Struct(">4sII12s")


class VtpmDiskError(Exception):
    """A slot or record that cannot be sealed or opened (bad key, tamper, truncation)."""


def _check_key_nonce(key: bytes, nonce: bytes) -> None:
    if len(key) != VTPM_KEY_SIZE:
        raise VtpmDiskError(f"key must be {VTPM_KEY_SIZE} bytes, not {len(key)}")
    if len(nonce) != VTPM_NONCE_SIZE:
        raise VtpmDiskError(f"nonce must be {VTPM_NONCE_SIZE} bytes, not {len(nonce)}")


def seal_slot(state: bytes, key: bytes, nonce: bytes) -> bytes:
    """One save: header + AES-256-GCM of *state*; *key* and *nonce* must be fresh."""
    _check_key_nonce(key, nonce)
    header = _SLOT_HDR.pack(VTPM_SLOT_MAGIC, VTPM_SLOT_VERSION, len(state) + VTPM_TAG_SIZE, bytes(nonce))
    return header + AESGCM(bytes(key)).encrypt(bytes(nonce), bytes(state), header)


def _sealed_extent(slot: bytes) -> int:
    """Bytes of *slot* that belong to the save (header + sealed data)."""
    if len(slot) < VTPM_SLOT_HEADER_SIZE:
        raise VtpmDiskError("slot shorter than its header")
    magic, version, length, _ = _SLOT_HDR.unpack_from(slot)
    if magic != VTPM_SLOT_MAGIC:
        raise VtpmDiskError("slot has no vTPM magic (never written or overwritten)")
    if version != VTPM_SLOT_VERSION:
        raise VtpmDiskError(f"slot version {version} is not {VTPM_SLOT_VERSION}")
    if length < VTPM_TAG_SIZE or VTPM_SLOT_HEADER_SIZE + length > len(slot):
        raise VtpmDiskError(f"slot length {length} does not fit the slot")
    return VTPM_SLOT_HEADER_SIZE + length


def open_slot(slot: bytes, key: bytes) -> bytes:
    """The state saved in *slot* (trailing bytes ignored); any tamper raises."""
    end = _sealed_extent(slot)
    nonce = bytes(slot[12:24])
    _check_key_nonce(key, nonce)
    try:
        return AESGCM(bytes(key)).decrypt(nonce, bytes(slot[VTPM_SLOT_HEADER_SIZE:end]),
                                          bytes(slot[:VTPM_SLOT_HEADER_SIZE]))
    except InvalidTag:
        raise VtpmDiskError("slot authentication failed (wrong key or modified data)") from None


def slot_hash(slot: bytes) -> bytes:
    """SHA-256 of the save in *slot* (header + sealed data, not the stale tail)."""
    return hashlib.sha256(bytes(slot[:_sealed_extent(slot)])).digest()


def slot_size(disk_size: int) -> int:
    """Size of one slot: half the disk."""
    return disk_size // NUM_SLOTS


def slot_offset(disk_size: int, index: int) -> int:
    if index not in (0, 1):
        raise VtpmDiskError(f"slot index {index} is not 0 (A) or 1 (B)")
    return index * slot_size(disk_size)


def read_slot(disk: bytes, index: int) -> bytes:
    start = slot_offset(len(disk), index)
    return bytes(disk[start:start + slot_size(len(disk))])


def write_slot(disk: bytearray, index: int, sealed: bytes) -> None:
    """Place a sealed save at the start of slot *index* of *disk* (in place)."""
    if len(sealed) > slot_size(len(disk)):
        raise VtpmDiskError(f"{len(sealed)}-byte save does not fit a {slot_size(len(disk))}-byte slot")
    start = slot_offset(len(disk), index)
    disk[start:start + len(sealed)] = sealed


def other_slot(index: int) -> int:
    """The slot the next save goes to (A <-> B)."""
    return 1 - index


def pick_slot(disk: bytes, expected_hash: bytes) -> Optional[int]:
    """Index of the slot whose :func:`slot_hash` equals the manager's, else ``None``.

    Slots that are empty or malformed simply do not match; ``None`` is what a
    vTPM reports as "NVM Storage Checksum failed" (a rolled-back or foreign disk).
    """
    for index in range(NUM_SLOTS):
        try:
            if slot_hash(read_slot(disk, index)) == bytes(expected_hash):
                return index
        except VtpmDiskError:
            continue
    return None


def pack_hash_key(digest: bytes, key: bytes) -> bytes:
    """The SAVEHASHKEY body: ``hash(32) || key(32)``."""
    if len(digest) != HASH_SIZE or len(key) != VTPM_KEY_SIZE:
        raise VtpmDiskError("hash and key must be 32 bytes each")
    return bytes(digest) + bytes(key)


def unpack_hash_key(blob: bytes) -> tuple[bytes, bytes]:
    """``(hash, key)`` from a LOADHASHKEY body of 52 or 64 bytes (zero-padded to 64)."""
    if len(blob) not in (52, HASHKEY_BLOB_SIZE):
        raise VtpmDiskError(f"hash/key blob of {len(blob)} bytes, expected 52 or 64")
    blob = bytes(blob).ljust(HASHKEY_BLOB_SIZE, b"\0")
    return blob[:HASH_SIZE], blob[HASH_SIZE:]


_MGR_AAD = MGR_RECORDS_MAGIC + struct.pack(">I", _MGR_VERSION)


class ManagerRecords(MutableMapping):
    """The manager's ``uuid -> hash||key`` table, kept serialized as it changes.

    A dict to its users; beside the dict it keeps the table's bytes (entries
    in UUID order, each blob zero-padded to 64 bytes), so sealing after one
    vTPM's save re-encrypts the table but does not rebuild it: a new UUID is
    one insertion at its sorted place, a changed blob one 64-byte overwrite.
    """

    _ENTRY = _UUID_SIZE + HASHKEY_BLOB_SIZE

    def __init__(self, records=()):
        self._blobs = {}
        self._uuids = []            # sorted
        self._table = bytearray()   # the entries, in the order of _uuids
        for uuid, blob in dict(records).items():
            self[uuid] = blob

    def __setitem__(self, uuid, blob):
        uuid, blob = bytes(uuid), bytes(blob)
        if len(uuid) != _UUID_SIZE or len(blob) > HASHKEY_BLOB_SIZE:
            raise VtpmDiskError("records map 16-byte UUIDs to at most 64-byte blobs")
        i = bisect.bisect_left(self._uuids, uuid)
        at = i * self._ENTRY
        padded = blob.ljust(HASHKEY_BLOB_SIZE, b"\0")
        if uuid in self._blobs:
            self._table[at + _UUID_SIZE:at + self._ENTRY] = padded
        else:
            self._uuids.insert(i, uuid)
            self._table[at:at] = uuid + padded
        self._blobs[uuid] = blob

    def __delitem__(self, uuid):
        uuid = bytes(uuid)
        del self._blobs[uuid]
        i = bisect.bisect_left(self._uuids, uuid)
        del self._uuids[i]
        del self._table[i * self._ENTRY:(i + 1) * self._ENTRY]

    def __getitem__(self, uuid):
        return self._blobs[bytes(uuid)]

    def __iter__(self):
        return iter(self._uuids)

    def __len__(self):
        return len(self._uuids)

    def seal(self, key: bytes, nonce: bytes) -> bytes:
        """The sealed table: ``nonce || AES-256-GCM(table)`` with the magic and version as AAD."""
        _check_key_nonce(key, nonce)
        table = _MGR_AAD + struct.pack(">I", len(self._uuids)) + self._table
        return bytes(nonce) + AESGCM(bytes(key)).encrypt(bytes(nonce), bytes(table), _MGR_AAD)


def seal_manager_records(records: Mapping[bytes, bytes], key: bytes, nonce: bytes) -> bytes:
    """Seal the manager's ``uuid -> 64-byte hash||key`` table under *key*."""
    if not isinstance(records, ManagerRecords):
        records = ManagerRecords(records)
    return records.seal(key, nonce)


def open_manager_records(sealed: bytes, key: bytes) -> dict[bytes, bytes]:
    """The table sealed by :func:`seal_manager_records`; tamper or a wrong key raises."""
    if len(sealed) < VTPM_NONCE_SIZE + VTPM_TAG_SIZE:
        raise VtpmDiskError("sealed manager records are truncated")
    nonce = bytes(sealed[:VTPM_NONCE_SIZE])
    _check_key_nonce(key, nonce)
    try:
        table = AESGCM(bytes(key)).decrypt(nonce, bytes(sealed[VTPM_NONCE_SIZE:]), _MGR_AAD)
    except InvalidTag:
        raise VtpmDiskError("manager records authentication failed") from None
    (count,) = struct.unpack_from(">I", table, len(_MGR_AAD))
    entry = _UUID_SIZE + HASHKEY_BLOB_SIZE
    start = len(_MGR_AAD) + 4
    if table[:len(_MGR_AAD)] != _MGR_AAD or len(table) != start + count * entry:
        raise VtpmDiskError("manager record table is malformed")
    return ManagerRecords({table[p:p + _UUID_SIZE]: table[p + _UUID_SIZE:p + entry]
                           for p in range(start, len(table), entry)})

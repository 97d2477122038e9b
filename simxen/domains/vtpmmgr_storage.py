"""The vTPM manager's records of every vTPM's (hash, key): Xen's way, or sealed to disk.

Two stores, chosen by the manager's ``storage`` option:

``"xen"`` (:class:`XenTpm2Storage`, the default)
    What Xen's manager does on a TPM 2.0 host. At boot it finds no manager
    data on its disk (``vtpm_load_disk`` fails) and initialises afresh
    (``stubdom/vtpmmgr/init.c`` ``vtpmmgr2_init`` -> ``vtpmmgr2_create``):
    ``TPM2_CreatePrimary`` of an RSA-2048 storage root key in the owner
    hierarchy (``tpm2_take_ownership``), then ``TPM2_Create`` + ``TPM2_Load``
    of an RSA-2048 OAEP storage key under it -- every boot. A
    ``VTPM_ORD_SAVEHASHKEY`` updates the vTPM's record *in memory only*:
    ``vtpm_sync`` -> ``vtpm_sync_group`` -> ``vtpm_sync_disk``
    (``stubdom/vtpmmgr/vtpm_disk.c``) returns before writing anything when
    group 0 has no seals ("don't bother writing if we will never be able to
    read"), and a TPM 2.0 manager cannot get seals: the group commands that
    add them are TPM 1.2 commands (``docs/man/xen-vtpmmgr.7.pod``, Appendix
    B: "cannot create groups and therefore cannot persist vTPM contents").
    **Consequence:** nothing of a vTPM's key survives the manager -- after a
    manager restart or a host reboot every vTPM's ``LOADHASHKEY`` gets
    ``TPM_BAD_PARAMETER``, its saved state cannot be opened, and it starts
    as a new TPM (its PCRs, NV indices and keys are gone).
``"sealed"`` (:class:`ManagerStorage`)
    simxen's alternative, described below: the records are written and
    flushed on every save, sealed to the host's boot, so a vTPM survives a
    reboot of an unchanged host and a changed host boot is refused.

:class:`ManagerStorage`: the manager's own disk with every vTPM's (hash, key), sealed to the host's boot.

The manager keeps one record per vTPM, by UUID: the 64-byte ``hash || key``
the vTPM sent with its last ``VTPM_ORD_SAVEHASHKEY``. Whoever holds a
vTPM's record can open its state disk, so the records never touch the disk
in clear: they are sealed with AES-256-GCM under the *manager key*
(:func:`simxen.protocols.vtpm_disk.seal_manager_records`), and the manager
key itself is sealed by the physical TPM to the host's boot measurements
(:mod:`simxen.domains.ptpm_commands`: a PolicyPCR sealed object under the
owner-hierarchy primary key). A host that booted other firmware, another
Xen or another dom0 has other PCR values, the TPM refuses to unseal, and
the manager refuses to serve any vTPM's secrets (:attr:`ManagerStorage.error`)
-- while leaving the disk untouched, so the right boot can still open it.

**Two copies, A and B.** The image is split in two halves; copy A starts at
offset 0, copy B at ``size // 2``. Save number *n* (the ``sequence``) goes
to copy ``n % 2``, so it never overwrites the copy holding save *n - 1*,
the last one that completed. At open, each copy is checked on its own
(magic, version, lengths, and a SHA-256 over the header and the body); of
the intact copies the newest opens. A crash in the middle of a save thus
leaves the previous save readable, and a manager never starts blank while
an intact save exists: an image with the magic but no intact copy is
refused as damaged (:attr:`ManagerStorage.error`), not re-provisioned.
Xen's manager keeps its root sector the same way (two root copies with a
sequence number, ``stubdom/vtpmmgr/disk_read.c`` ``vtpm_load_disk`` tries
the newer and falls back to the older).

Layout of one copy (big-endian)::

    offset  size  field
         0     8  magic "vMGRdisk"
         8     4  version = 2
        12     4  PCR bitmap: bit i set = SHA-256 PCR i is in the seal policy
        16     8  sequence (incremented on every save; the copy is sequence % 2)
        24     4  length of the sealed object's TPM2B_PUBLIC bytes   (P)
        28     4  length of the sealed object's TPM2B_PRIVATE bytes  (Q)
        32     4  length of the sealed record table                 (R)
        36    32  SHA-256 of bytes 0..36 and of the body that follows
        68     P  public area of the sealed manager key
      68+P     Q  private area (encrypted by the TPM under its SRK)
    68+P+Q     R  nonce || AES-256-GCM(manager key, record table)

**Deviations from Xen**, on purpose: Xen's manager spreads records over
encrypted 4 KiB sectors with per-group keys and seals with TPM 1.2
``TPM_Seal`` (its TPM 2.0 mode "cannot persist data": Xen's
``docs/man/xen-vtpmmgr.7.pod``, appendix on TPM 2.0; ``stubdom/vtpmmgr/disk_tpm.c``
binds the key under a storage key it regenerates); here one table is rewritten on each save (one write
plus one flush, the ~3 sectors + flush of Xen's steady state in one
request), sealing is TPM 2.0 PolicyPCR, and there are no groups. The UUID
``00000000-0000-0000-0000-000000000000`` is reserved: its record holds the
UUID of the *admin* vTPM (the first one ever created, as in Xen's group 0).
"""

from __future__ import annotations

import hashlib
import struct

from simxen.domains import ptpm_commands as ptpm
from simxen.protocols.vtpm_disk import (VTPM_KEY_SIZE, VTPM_NONCE_SIZE, VtpmDiskError,
                                        open_manager_records, ManagerRecords)

__all__ = ["ManagerStorage", "XenTpm2Storage", "STORAGES", "DISK_MAGIC", "ADMIN_RECORD", "COPIES",
           "open_storage"]

DISK_MAGIC = b"vMGRdisk"
_VERSION = 2
_HDR = struct.Struct(">8sIIQIII")
_CHECK = 32                          # SHA-256 after the header
#: Number of copies of the manager's state on its image (A and B).
COPIES = 2
#: The reserved record naming the admin vTPM.
ADMIN_RECORD = bytes(16)


class _Records:
    """The in-memory table of vTPM records both stores keep (UUID -> 64 bytes)."""

    records: dict

    def get(self, uuid: bytes):
        return self.records.get(bytes(uuid))

    def _store(self, uuid: bytes, blob: bytes) -> bool:
        """Put *blob* for *uuid* (the first UUID ever becomes the admin); True if new."""
        uuid = bytes(uuid)
        new = uuid not in self.records
        self.records[uuid] = bytes(blob).ljust(64, b"\0")
        if new and ADMIN_RECORD not in self.records:
            self.records[ADMIN_RECORD] = uuid.ljust(64, b"\0")
        return new

    def is_admin(self, uuid: bytes) -> bool:
        admin = self.records.get(ADMIN_RECORD)
        return admin is not None and admin[:16] == bytes(uuid)

    @property
    def is_open(self) -> bool:
        return self.error is None

    @property
    def vtpm_count(self) -> int:
        return len(self.records) - (ADMIN_RECORD in self.records)


class XenTpm2Storage(_Records):
    """Xen's TPM 2.0 manager store (see the module doc): keys made every boot, records in memory.

    :param disk: the manager's disk; read once at boot (Xen looks for its data there).
    :param port: the physical TPM.
    :param keys: ``"rsa"`` (Xen's RSA-2048 SRK and storage key) or ``"ecc"`` (P-256 ones).
    """

    kind = "xen"

    def __init__(self, disk, port, pcrs=(), random_bytes=None, *, keys="rsa"):
        self.disk = disk
        self.port = port
        self.keys = keys
        self.records: dict[bytes, bytes] = {}
        self.srk = None
        self.storage_key = None
        self.error = "not opened"
        self.provisioned = False
        #: SaveHashKeys that wrote nothing (vtpm_sync_disk: group 0 has no seals)
        self.unsynced_saves = 0

    def open(self, *, flow=None):
        """Generator: look for manager data (there is none), then make this boot's keys."""
        self.disk.read(0, _HDR.size, flow=flow)      # vtpm_load_disk: nothing Xen can load
        self.srk, _, _ = yield from ptpm.create_primary(self.port, ptpm.SRK_TEMPLATES[self.keys],
                                                        flow=flow)
        self.storage_key = yield from ptpm.create_storage_key(
            self.port, self.srk, ptpm.STORAGE_KEY_TEMPLATES[self.keys], flow=flow)
        self.error = None
        self.provisioned = True                      # a new manager, every boot

    def put(self, uuid: bytes, blob: bytes, *, flow=None) -> bool:
        """Remember *blob* for *uuid*; nothing reaches the disk. True if *uuid* was new."""
        self.unsynced_saves += 1
        return self._store(uuid, blob)


class ManagerStorage(_Records):
    """The manager's records on *disk* (a :class:`~simxen.domains.disk.BlockDevice`),
    sealed through *port* (the physical TPM) to SHA-256 PCRs *pcrs*.

    :param random_bytes: the manager's own random stream (keys, nonces).
    """

    kind = "sealed"

    def __init__(self, disk, port, pcrs, random_bytes, *, keys="ecc"):
        self.disk = disk
        self.keys = keys
        self.port = port
        self.pcrs = tuple(sorted(set(pcrs)))
        self.random_bytes = random_bytes
        self.records = ManagerRecords()     #: uuid -> hash||key (a dict that stays serialized)
        self.key = None
        self.srk = None
        self.sealed = None          #: (public, private) of the sealed manager key
        self.sequence = 0
        #: ``None`` when open; else why the manager cannot serve secrets
        #: (``"unseal refused: TPM_RC_POLICY_FAIL ..."``).
        self.error = "not opened"
        self.provisioned = False    #: True when this boot created a new manager key

    def copy_offset(self, index: int) -> int:
        """Where copy ``index`` (0 = A, 1 = B) starts on the image."""
        return index * (self.disk.size // COPIES)

    def _read_copy(self, index, flow):
        """``(sequence, bitmap, public, private, sealed)`` of an intact copy;
        ``None`` if the copy was never written; ``"damaged"`` otherwise."""
        base = self.copy_offset(index)
        raw = self.disk.read(base, _HDR.size + _CHECK, flow=flow)
        magic, version, bitmap, seq, p, q, r = _HDR.unpack_from(raw)
        if magic != DISK_MAGIC:
            return None if not any(raw) else "damaged"
        room = self.disk.size // COPIES - _HDR.size - _CHECK
        if version != _VERSION or p + q + r > room:
            return "damaged"
        body = self.disk.read(base + _HDR.size + _CHECK, p + q + r, flow=flow)
        if hashlib.sha256(raw[:_HDR.size] + body).digest() != raw[_HDR.size:]:
            return "damaged"
        return seq, bitmap, body[:p], body[p:p + q], body[p + q:]

    def open(self, *, flow=None):
        """Generator: create the SRK, then unseal the manager key (or provision a new one).

        Sets :attr:`error` instead of raising when the TPM refuses to unseal
        or no copy on the disk is intact.
        """
        self.srk, _, _ = yield from ptpm.create_primary(self.port, ptpm.SRK_TEMPLATES[self.keys],
                                                        flow=flow)
        copies = [self._read_copy(i, flow) for i in range(COPIES)]
        intact = sorted((c for c in copies if isinstance(c, tuple)), key=lambda c: -c[0])
        if not intact:
            if all(c is None for c in copies):
                yield from self._provision(flow)       # a new image: nothing was ever saved
            else:
                self.error = "manager disk damaged: no intact copy of its state (A or B)"
            return
        for seq, bitmap, public, private, sealed in intact:     # newest first
            pcrs = tuple(i for i in range(32) if bitmap >> i & 1)
            try:
                key = yield from ptpm.unseal(self.port, self.srk, private, public, pcrs,
                                             self.random_bytes(16), flow=flow)
            except ptpm.PtpmError as exc:
                self.error = f"unseal refused: {exc}"
                return
            try:
                self.records = open_manager_records(sealed, key)
            except VtpmDiskError as exc:
                self.error = f"records do not open: {exc}"
                continue                                # as Xen: try the older copy
            self.key, self.sealed, self.sequence, self.pcrs = key, (public, private), seq, pcrs
            self.error = None
            return

    def _provision(self, flow):
        key = self.random_bytes(VTPM_KEY_SIZE)
        private, public = yield from ptpm.seal(self.port, self.srk, key, self.pcrs, flow=flow)
        self.key, self.sealed, self.records, self.sequence = key, (public, private), ManagerRecords(), 0
        self.error = None
        self.provisioned = True
        self.sync(flow=flow)

    def sync(self, *, flow=None) -> None:
        """Write the next save (sealed key + fresh-nonce record table) into the
        copy that does not hold the last one, and flush."""
        public, private = self.sealed
        table = self.records.seal(self.key, self.random_bytes(VTPM_NONCE_SIZE))
        sequence = self.sequence + 1
        bitmap = sum(1 << i for i in self.pcrs)
        body = public + private + table
        header = _HDR.pack(DISK_MAGIC, _VERSION, bitmap, sequence, len(public), len(private),
                           len(table))
        image = header + hashlib.sha256(header + body).digest() + body
        if len(image) > self.disk.size // COPIES:
            raise VtpmDiskError(f"{len(image)}-byte manager state does not fit half of the "
                                f"{self.disk.size}-byte image")
        self.disk.write(self.copy_offset(sequence % COPIES), image, flow=flow)
        self.disk.flush(flow=flow)
        self.sequence = sequence

    # -- records -----------------------------------------------------------
    def put(self, uuid: bytes, blob: bytes, *, flow=None) -> bool:
        """Store *blob* for *uuid* and sync; True if *uuid* was new (auto-created)."""
        new = self._store(uuid, blob)
        self.sync(flow=flow)
        return new


#: The manager's ``storage`` option: name -> store class.
STORAGES = {"xen": XenTpm2Storage, "sealed": ManagerStorage}


def open_storage(kind, disk, port, pcrs, random_bytes, *, keys="rsa"):
    """A store of kind *kind* (``"xen"`` or ``"sealed"``), not yet opened."""
    return STORAGES[kind](disk, port, pcrs, random_bytes, keys=keys)

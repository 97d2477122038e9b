"""A host that dies at any point of a vTPM save: after the restart every vTPM holds its
old state or its new one -- never a damaged one, never a blank one while a save completed.

The enumeration: one committed command (an NV write the guest saw answered) is run once
with every disk write recorded, cut into the 512-byte sectors a disk writes atomically.
That command's save is a vTPM save (the sealed state into the slot not in use) followed
by a manager save (its record table into the copy not in use, then a flush). For every
k from 0 to the number of sector writes, the host is rebooted from the images as they
were before the command plus the first k sector writes -- exactly what a power cut after
the k-th sector leaves on the disks -- with the physical TPM's state unchanged (a save
does not touch it).
"""

import pytest

from simxen.domains.disk import SECTOR_SIZE, DiskImage
from simxen.domains.stack import HostSpec, HostState, build_host
from simxen.tpm.client import ResponseError
from simxen.xen import Hypervisor

from domain_helpers import boot, make_profile, run

NV = 0x01500000
VTPM_IMAGE = "/var/vtpm-guest1.img"
MGR_IMAGE = "/var/vtpmmgr-stubdom.img"
SIZE = 1024                      # big enough that a vTPM save spans several sectors
OLD, NEW = b"old " * (SIZE // 4), b"new " * (SIZE // 4)
#: two guests, so the manager's record table holds two vTPMs
GUESTS = ("guest1", "guest2")
#: simxen's sealed manager store: the one that writes the manager's records to disk (Xen's
#: TPM 2.0 store, the default, writes nothing and loses every vTPM at a reboot anyway)
SEALED = {"vtpmmgr": {"storage": "sealed"}}


def sector_writes(monkeypatch, host, generator):
    """Run ``generator`` on ``host``; the ``(image path, offset, bytes)`` of every sector write."""
    writes = []
    original = DiskImage.write

    def recording(image, offset, data):
        data = bytes(data)
        pos = offset
        while pos < offset + len(data):                 # one record per sector touched
            step = min(SECTOR_SIZE - pos % SECTOR_SIZE, offset + len(data) - pos)
            writes.append((image.path, pos, data[pos - offset:pos - offset + step]))
            pos += step
        original(image, offset, data)

    monkeypatch.setattr(DiskImage, "write", recording)
    try:
        run(host.hv, generator)
    finally:
        monkeypatch.setattr(DiskImage, "write", original)
    return writes


def reboot(state):
    hv = Hypervisor(seed=3, profile=make_profile())
    host = build_host(hv, HostSpec.standard(GUESTS, previous=state, options=dict(SEALED)))
    hv.env.run(until=host.ready)
    return hv, host


def nv_contents(hv, host):
    def read():
        try:
            return (yield from host.guest("guest1").tpm.nv_read(NV, SIZE))
        except ResponseError as err:
            return f"TPM error {err.rc:#x}"
    return run(hv, read())


@pytest.mark.slow
def test_a_crash_at_every_sector_write_of_a_save_leaves_the_old_or_the_new_state(monkeypatch):
    hv, host = boot(HostSpec.standard(GUESTS, options=dict(SEALED)))
    guest = host.guest("guest1").tpm

    def provision():
        yield from guest.nv_define(NV, SIZE)
        yield from guest.nv_write(NV, OLD)
        yield from host.guest("guest2").tpm.get_random(8)      # guest2's vTPM has a record

    run(hv, provision())
    before = host.state()
    writes = sector_writes(monkeypatch, host, guest.nv_write(NV, NEW))
    images = {path for path, _, _ in writes}
    assert images == {VTPM_IMAGE, MGR_IMAGE}                  # a vTPM save and a manager save
    first_mgr = next(i for i, w in enumerate(writes) if w[0] == MGR_IMAGE)
    assert all(w[0] == VTPM_IMAGE for w in writes[:first_mgr])   # the slot first, then the record

    seen = []
    # k whole sectors, or k sectors and half of sector k+1 (a disk that tears a sector)
    points = [(k, False) for k in range(len(writes) + 1)] + [(k, True) for k in range(len(writes))]
    for k, torn in sorted(points):
        disks = {path: DiskImage(path, len(data)) for path, data in before.images.items()}
        for path, data in before.images.items():
            disks[path].restore(data)
        for path, offset, data in writes[:k]:
            disks[path].write(offset, data)
        if torn:
            path, offset, data = writes[k]
            disks[path].write(offset, data[:len(data) // 2])
        hv2, host2 = reboot(HostState({p: d.snapshot() for p, d in disks.items()},
                                      before.ptpm_state))
        vtpm = host2.vtpm("vtpm-guest1")
        assert host2.vtpmmgr.storage.is_open, (k, torn, host2.vtpmmgr.storage.error)
        assert vtpm.restore_status == "restored", (k, torn, vtpm.restore_status)
        assert host2.vtpm("vtpm-guest2").restore_status == "restored", (k, torn)
        contents = nv_contents(hv2, host2)
        assert contents in (OLD, NEW), (k, torn, contents[:32])
        seen.append((k, torn, contents == NEW))
    # the new state appears only once the manager's copy is completely written, and stays
    assert not seen[0][2] and seen[-1] == (len(writes), False, True)
    first_new = next(i for i, (_, _, new) in enumerate(seen) if new)
    assert all(new for _, _, new in seen[first_new:])
    assert seen[first_new] == (len(writes), False, True)
    assert first_mgr >= 2 and len(writes) - first_mgr >= 2      # multi-sector saves, both
    print(f"{len(points)} crash points over {len(writes)} sector writes ({first_mgr} of the "
          f"vTPM slot, {len(writes) - first_mgr} of the manager copy)")

"""The manager's sealed storage on its own: seal, reopen, refuse, tamper."""

import hashlib

from domain_helpers import make_profile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simxen.domains.disk import BlockDevice, DiskImage
from simxen.domains.drbg import HmacDrbg
from simxen.domains.host_boot import DEFAULT_BOOT, boot_with, expected_pcrs
from simxen.domains.vtpmmgr_storage import ADMIN_RECORD, ManagerStorage
from simxen.tpm import TpmEngine, client
from simxen.tpm.constants import TPM_ALG
from simxen.xen import Hypervisor


class EnginePort:
    """The physical TPM without the TIS window (the storage logic alone is under test)."""

    def __init__(self, engine):
        self.engine = engine
        self.sent = []

    def transmit(self, command, flow=None):
        self.sent.append(command)
        return self.engine.execute(command, 0)
        yield                                            # a generator, like the TIS driver


def powered_tpm(boot=DEFAULT_BOOT, state=None):
    tpm = TpmEngine.from_state(state) if state else TpmEngine(seed=b"host", powered=True)
    client.check(tpm.execute(client.startup_command()))
    for m in boot:
        client.check(tpm.execute(client.pcr_extend_command(m.pcr, {TPM_ALG.SHA256: m.digest})))
    return tpm


def open_storage(image, tpm, pcrs=range(10)):
    hv = Hypervisor(seed=5, profile=make_profile())
    dom = hv.domain_create("vtpmmgr")
    storage = ManagerStorage(BlockDevice(hv, dom, image, "hda"), EnginePort(tpm), pcrs,
                             HmacDrbg(b"entropy"))
    gen = storage.open()
    try:
        while True:
            next(gen)
    except StopIteration:
        pass
    return storage


def test_first_boot_provisions_and_the_same_boot_reopens():
    image = DiskImage("/var/vtpmmgr-stubdom.img")
    tpm = powered_tpm()
    first = open_storage(image, tpm)
    assert first.is_open and first.provisioned and first.vtpm_count == 0
    first.put(b"A" * 16, b"h" * 32 + b"k" * 32)
    first.put(b"B" * 16, b"x" * 52)
    again = open_storage(image, powered_tpm(state=tpm.save_state()))
    assert again.is_open and not again.provisioned
    assert again.get(b"A" * 16) == b"h" * 32 + b"k" * 32
    assert again.get(b"B" * 16) == b"x" * 52 + bytes(12)
    assert again.is_admin(b"A" * 16) and not again.is_admin(b"B" * 16)
    assert again.sequence == first.sequence


def test_the_disk_never_holds_a_record_in_clear():
    image = DiskImage("/var/m.img")
    storage = open_storage(image, powered_tpm())
    secret = hashlib.sha256(b"the vTPM's key").digest()
    storage.put(b"U" * 16, b"h" * 32 + secret)
    assert secret not in image.snapshot() and b"U" * 16 not in image.snapshot()


def test_a_changed_component_cannot_unseal():
    image = DiskImage("/var/m.img")
    tpm = powered_tpm()
    open_storage(image, tpm).put(b"A" * 16, b"k" * 64)
    saved = image.snapshot()
    changed = boot_with("dom0-kernel", b"vmlinuz-evil")
    assert expected_pcrs(changed)[9] != expected_pcrs(DEFAULT_BOOT)[9]
    other = TpmEngine.from_state(tpm.save_state())
    client.check(other.execute(client.startup_command()))
    for m in changed:
        client.check(other.execute(client.pcr_extend_command(m.pcr, {TPM_ALG.SHA256: m.digest})))
    refused = open_storage(image, other)
    assert not refused.is_open and "TPM_RC_POLICY_FAIL" in refused.error
    assert refused.records == {} and image.snapshot() == saved
    assert len(other.objects) == 1 and not other.sessions   # only the SRK: the rest was flushed


def test_another_tpm_cannot_unseal_either():
    image = DiskImage("/var/m.img")
    open_storage(image, powered_tpm()).put(b"A" * 16, b"k" * 64)
    stranger = TpmEngine(seed=b"another host", powered=True)
    client.check(stranger.execute(client.startup_command()))
    for m in DEFAULT_BOOT:
        client.check(stranger.execute(client.pcr_extend_command(m.pcr, {TPM_ALG.SHA256: m.digest})))
    assert not open_storage(image, stranger).is_open


def _flip_last_byte_of_copy(image, storage, index):
    base = storage.copy_offset(index)
    half = image.read(base, image.size // 2)
    end = base + len(half.rstrip(b"\0"))
    image.write(end - 5, bytes([image.read(end - 5, 1)[0] ^ 0xFF]))   # inside the sealed table


def test_a_damaged_newest_copy_falls_back_to_the_older_one():
    image = DiskImage("/var/m.img")
    tpm = powered_tpm()
    storage = open_storage(image, tpm)                  # save 1 (copy B)
    storage.put(b"A" * 16, b"k" * 64)                   # save 2 (copy A)
    storage.put(b"B" * 16, b"j" * 64)                   # save 3 (copy B)
    _flip_last_byte_of_copy(image, storage, 1)
    again = open_storage(image, powered_tpm(state=tpm.save_state()))
    assert again.is_open and again.sequence == 2
    assert again.get(b"A" * 16) == b"k" * 64 and again.get(b"B" * 16) is None


def test_no_intact_copy_is_refused_as_damaged_not_reprovisioned():
    image = DiskImage("/var/m.img")
    tpm = powered_tpm()
    storage = open_storage(image, tpm)
    storage.put(b"A" * 16, b"k" * 64)
    for index in (0, 1):
        _flip_last_byte_of_copy(image, storage, index)
    before = image.snapshot()
    damaged = open_storage(image, powered_tpm(state=tpm.save_state()))
    assert not damaged.is_open and "no intact copy" in damaged.error
    assert not damaged.provisioned and image.snapshot() == before


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.binary(min_size=16, max_size=16).filter(lambda u: u != ADMIN_RECORD),
                       st.binary(min_size=52, max_size=64), max_size=12))
def test_any_records_round_trip(records):
    image = DiskImage("/var/m.img", 64 * 1024)
    tpm = powered_tpm()
    storage = open_storage(image, tpm)
    for uuid, blob in records.items():
        storage.put(uuid, blob)
    again = open_storage(image, powered_tpm(state=tpm.save_state()))
    assert {u: again.get(u) for u in records} == {u: b.ljust(64, b"\0") for u, b in records.items()}
    assert again.vtpm_count == len(records)

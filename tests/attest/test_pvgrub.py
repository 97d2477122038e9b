"""pv-grub measures the exact bytes Xen's pv-grub hashed, into PCRs 4 and 5,
with one TPM2_PCR_Extend per item carrying SHA-1 and SHA-256, and its event
log replays to the vTPM's PCRs."""

import hashlib

import pytest

from simxen.domains import pvgrub
from simxen.domains.images import GuestImages
from simxen.protocols import tcg_eventlog as tl
from simxen.tpm import client
from simxen.tpm.constants import TPM_ALG

from attest_support import EngineFront, drive, new_engine, sample_images


@pytest.fixture
def images():
    return sample_images()


@pytest.fixture
def engine():
    return new_engine()


def read(engine, alg, pcrs):
    return client.parse_pcr_read(engine.execute(client.pcr_read_command({alg: pcrs})))[1][alg]


def extend(old, data, alg):
    return hashlib.new(alg, old + hashlib.new(alg, data).digest()).digest()


def test_measures_kernel_cmdline_initrd(engine, images):
    front = EngineFront(engine)
    result = drive(pvgrub.measure(front, images))
    assert result.measured and result.commands == 3
    assert (front.connects, front.closes, front.connected) == (1, 1, False)
    for alg, tpm_alg, size in (("sha1", TPM_ALG.SHA1, 20), ("sha256", TPM_ALG.SHA256, 32)):
        pcr4 = extend(bytes(size), images.kernel.data, alg)
        pcr5 = extend(extend(bytes(size), images.cmdline.encode(), alg), images.initrd.data, alg)
        assert read(engine, tpm_alg, [4, 5]) == {4: pcr4, 5: pcr5}
    _, events = tl.parse(result.log_bytes)
    assert tl.replay(events) == {"sha1": read(engine, TPM_ALG.SHA1, [4, 5]),
                                 "sha256": read(engine, TPM_ALG.SHA256, [4, 5])}
    assert [pvgrub.item_of_event(e) for e in events] == ["kernel", "cmdline", "initrd"]


def test_cmdline_has_no_path_and_no_nul_and_no_initrd_is_empty(engine, images):
    bare = GuestImages(images.kernel, None, images.cmdline, "/boot/vmlinuz-6.1")
    kernel, cmdline, initrd = pvgrub.measured_bytes(bare)
    assert cmdline == b"root=/dev/xvda1 ro console=hvc0" and initrd == b""
    drive(pvgrub.measure(EngineFront(engine), bare))
    sha1_empty = bytes.fromhex("da39a3ee5e6b4b0d3255bfef95601890afd80709")
    pcr5 = hashlib.sha1(extend(bytes(20), cmdline, "sha1") + sha1_empty).digest()
    assert read(engine, TPM_ALG.SHA1, [5]) == {5: pcr5}


def test_no_vtpm_means_no_measurement(engine, images):
    result = drive(pvgrub.measure(None, images))
    assert not result.measured and tl.parse(result.log_bytes)[1] == []
    assert read(engine, TPM_ALG.SHA256, [4, 5]) == {4: bytes(32), 5: bytes(32)}


def test_failed_extend_aborts_the_boot(engine, images):
    class Refusing(EngineFront):
        def transmit(self, command):
            return client.build_command(0, ())[:6] + (0x101).to_bytes(4, "big")
            yield
    front = Refusing(engine)
    with pytest.raises(pvgrub.PvGrubAbort, match="PCR 4"):
        drive(pvgrub.measure(front, images))
    assert front.closes == 1


def test_one_byte_changes_pcr4_only(engine, images):
    from simxen.domains.images import Image, flip
    tampered = GuestImages(Image("kernel", flip(images.kernel.data, 4096), "x"), images.initrd,
                           images.cmdline)
    e2 = new_engine(b"vtpm")
    drive(pvgrub.measure(EngineFront(engine), images))
    drive(pvgrub.measure(EngineFront(e2), tampered))
    a, b = read(engine, TPM_ALG.SHA256, [4, 5]), read(e2, TPM_ALG.SHA256, [4, 5])
    assert a[4] != b[4] and a[5] == b[5]


def test_a_vtpm_that_does_not_connect_means_an_unmeasured_boot(engine, images):
    from simxen.drivers.tpmfront import TpmFrontError

    class Absent(EngineFront):
        def connect(self):
            raise TpmFrontError(-19, "backend is Closed")
            yield
    result = drive(pvgrub.measure(Absent(engine), images))
    assert not result.measured and result.commands == 0
    assert read(engine, TPM_ALG.SHA256, [4]) == {4: bytes(32)}

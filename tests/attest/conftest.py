"""Fixtures of the attestation tests (helpers live in :mod:`attest_support`)."""

import pytest

from attest_support import new_engine
from simxen.domains.images import GuestImages, Image, initrd_bytes, kernel_bytes


@pytest.fixture
def engine():
    return new_engine()


@pytest.fixture
def images():
    return GuestImages(Image("kernel", kernel_bytes("linux", "6.1.0"), "t"),
                       Image("initrd", initrd_bytes("initramfs", "6.1.0"), "t"),
                       "root=/dev/xvda1 ro console=hvc0")

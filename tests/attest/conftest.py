"""Shared fixtures: a TPM engine reached the way a tpmfront reaches it.

:class:`EngineFront` has the three generators of
:class:`~simxen.drivers.tpmfront.TpmFront` (``connect``, ``transmit``,
``close``) over a :class:`~simxen.tpm.TpmEngine`, with no Xen underneath --
so pv-grub, IMA, the agent and the verifier are tested against the real
engine alone; the scenario tests run them over the whole split-driver stack.
"""

import hashlib

import pytest

from simxen.domains.images import GuestImages, Image, initrd_bytes, kernel_bytes
from simxen.tpm import TpmEngine, client


class EngineFront:
    def __init__(self, engine):
        self.engine = engine
        self.connected = False
        self.connects = self.closes = self.commands = 0

    def connect(self):
        self.connected = True
        self.connects += 1
        return
        yield

    def transmit(self, command):
        assert self.connected, "transmit on a closed front"
        self.commands += 1
        return self.engine.execute(command)
        yield

    def close(self):
        self.connected = False
        self.closes += 1
        return
        yield


def drive(gen):
    """Run a generator that never really waits; its return value."""
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        return stop.value


def new_engine(seed=b"vtpm"):
    tpm = TpmEngine(seed=seed, powered=True, random_bytes=_stream(seed))
    client.check(tpm.execute(client.startup_command()))
    return tpm


def _stream(seed):
    counter = [0]

    def random_bytes(n):
        out = b""
        while len(out) < n:
            counter[0] += 1
            out += hashlib.sha256(seed + counter[0].to_bytes(8, "big")).digest()
        return out[:n]
    return random_bytes


@pytest.fixture
def engine():
    return new_engine()


@pytest.fixture
def images():
    return GuestImages(Image("kernel", kernel_bytes("linux", "6.1.0"), "t"),
                       Image("initrd", initrd_bytes("initramfs", "6.1.0"), "t"),
                       "root=/dev/xvda1 ro console=hvc0")


stream = _stream

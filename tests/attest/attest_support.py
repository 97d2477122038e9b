"""Shared helpers of the attestation tests: a TPM engine reached the way a tpmfront reaches it.

:class:`EngineFront` has the three generators of
:class:`~simxen.drivers.tpmfront.TpmFront` (``connect``, ``transmit``,
``close``) over a :class:`~simxen.tpm.TpmEngine`, with no Xen underneath --
so pv-grub, IMA, the agent and the verifier are tested against the real
engine alone; the scenario tests run them over the whole split-driver stack.
"""

import hashlib

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


stream = _stream


def sample_images():
    """A kernel, an initrd and a command line (the unit tests' guest)."""
    from simxen.domains.images import GuestImages, Image, initrd_bytes, kernel_bytes
    return GuestImages(Image("kernel", kernel_bytes("linux", "6.1.0"), "t"),
                       Image("initrd", initrd_bytes("initramfs", "6.1.0"), "t"),
                       "root=/dev/xvda1 ro console=hvc0")


# -- a whole simulated host -------------------------------------------------
SCENARIO_IMAGES = {"kernel": {"name": "linux", "version": "6.1.0-13-amd64"},
                   "initrd": {"name": "initrd.img", "version": "6.1.0-13-amd64"},
                   "cmdline": "root=/dev/xvda1 ro console=hvc0"}
#: Costs the stack charges that the default profile may not define (as the scenarios do).
EXTRA_OPS = {"disk.request": 1e-4, "disk.read_per_byte": 2e-9, "disk.flush": 1e-3,
             "crypto.aead_per_byte": 1e-9, "net.link": 2.5e-4, "net.per_byte": 8e-10}


def booted_host(seed=1, images=SCENARIO_IMAGES):
    """``(hv, host, guest)``: the seed's stack with guest1 booted through pv-grub."""
    from simxen.domains.images import guest_images
    from simxen.domains.pvgrub import PVGRUB_IMAGE, PvGrub
    from simxen.domains.stack import (HostSpec, build_host, guest_config, vtpm_config,
                                      vtpmmgr_config)
    from simxen.xen import Hypervisor
    from simxen.xen.profile import Profile
    profile = Profile.load("default")
    missing = {op: {"dist": "fixed", "value": v} for op, v in EXTRA_OPS.items()
               if not profile.has(op)}
    hv = Hypervisor(profile=profile.with_overrides({"ops": missing}), seed=seed)
    spec = HostSpec(configs=[vtpmmgr_config(),
                             vtpm_config("vtpm-guest1", "ac0a5b9e-cbe2-4c07-b43b-1d69e46fb839"),
                             guest_config("guest1", kernel=f"/usr/lib/xen/boot/{PVGRUB_IMAGE}")],
                    kernels={PVGRUB_IMAGE: PvGrub},
                    options={"guest1": {"images": guest_images(images)}})
    host = build_host(hv, spec)
    hv.env.run(until=host.ready)
    return hv, host, host.guest("guest1")


def run_in(hv, gen):
    """Run generator ``gen`` as a SimPy process of ``hv`` to its end; its value."""
    proc = hv.env.process(gen)
    hv.env.run(until=proc)
    return proc.value

"""Shared set-up for the domain tests: a host built from the seed's configs."""

from simxen.domains.stack import HostSpec, build_host
from simxen.xen import Hypervisor
from simxen.xen.profile import Profile

#: Profile ops the domain models use that the default profile may not define yet.
DOMAIN_OPS = {
    "disk.request": {"dist": "fixed", "value": 1e-4},
    "disk.read_per_byte": {"dist": "fixed", "value": 2e-9},
    "disk.flush": {"dist": "fixed", "value": 1e-3},
    "crypto.aead_per_byte": {"dist": "fixed", "value": 1e-9},
}


def make_profile(ops=None, switches=None):
    base = Profile.load("default")
    missing = {k: v for k, v in DOMAIN_OPS.items() if not base.has(k)}
    return base.with_overrides({"ops": {**missing, **(ops or {})}, "switches": switches or {}})


def boot(spec=None, *, seed=1, ops=None, switches=None):
    """``(hv, host)`` with every kernel of *spec* (default: the seed's stack) ready."""
    hv = Hypervisor(seed=seed, profile=make_profile(ops, switches))
    host = build_host(hv, spec or HostSpec.standard())
    hv.env.run(until=host.ready)
    return hv, host


def run(hv, generator):
    """Run *generator* as a process to its end; return its value."""
    proc = hv.env.process(generator)
    hv.env.run(until=proc)
    return proc.value

"""Shared set-up for the domain tests: a host built from the seed's configs."""

from simxen.domains.stack import HostSpec, build_host
from simxen.xen import Hypervisor
from simxen.xen.profile import Profile


def make_profile(ops=None, switches=None):
    """The default profile with some ops and switches replaced."""
    return Profile.load("default").with_overrides({"ops": ops or {}, "switches": switches or {}})


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

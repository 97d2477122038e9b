import pytest

from simxen.xen import Hypervisor


@pytest.fixture
def hv():
    return Hypervisor(seed=1)


@pytest.fixture
def pair(hv):
    """Two unprivileged domains: (front, back)."""
    return hv.domain_create("front"), hv.domain_create("back")


@pytest.fixture
def run(hv):
    """``run(gen)``: run a generator as a process to completion; its value."""
    def run(gen):
        proc = hv.env.process(gen)
        hv.env.run()
        assert proc.triggered, "process did not finish"
        return proc.value
    return run

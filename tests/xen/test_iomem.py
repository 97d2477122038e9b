"""I/O memory: only the domain given a machine-frame range may map it."""

import pytest

from simxen.xen import IomemError
from simxen.xen import errno

TIS = 0xFED40


class Registers:
    """A tiny device model: a 5-frame register file that logs accesses."""

    def __init__(self):
        self.mem = bytearray(5 * 4096)
        self.log = []

    def mmio_read(self, offset, size):
        self.log.append(("r", offset, size))
        return bytes(self.mem[offset:offset + size])

    def mmio_write(self, offset, data):
        self.log.append(("w", offset, bytes(data)))
        self.mem[offset:offset + len(data)] = data


@pytest.fixture
def device(hv):
    dev = Registers()
    hv.iomem.register_device(TIS, 5, dev, "tpm-tis")
    return dev


def test_owner_maps_and_reaches_the_device(hv, device):
    mgr = hv.domain_create("vtpmmgr", iomem=[(TIS, 5)])
    window = hv.iomem.map(mgr, TIS, 5)
    window.write(0x1000 + 0x18, b"\x20")           # locality 1's TPM_STS
    assert device.mem[0x1018] == 0x20
    assert window.read(0x1018, 1) == b"\x20"
    one = hv.iomem.map(mgr, TIS + 2, 1)            # a single locality frame
    one.write(0, b"\x02")
    assert device.mem[0x2000] == 2
    kinds = [r.kind for r in hv.trace.select("mmio")]
    assert kinds.count("mmio.write") == 2 and kinds.count("mmio.read") == 1
    assert hv.trace.select("mmio.read")[0].fields["data"] == b"\x20"


def test_nobody_else_may_map_an_owned_range_not_even_dom0(hv, device):
    hv.domain_create("vtpmmgr", iomem=[(TIS, 5)])
    guest = hv.domain_create("guest")
    for dom in (guest, hv.dom0):
        with pytest.raises(IomemError) as e:
            hv.iomem.map(dom, TIS, 1)
        assert e.value.code == -errno.EPERM and "owned by dom1" in str(e.value)


def test_unowned_range_only_privileged(hv, device):
    guest = hv.domain_create("guest")
    with pytest.raises(IomemError) as e:
        hv.iomem.map(guest, TIS, 1)
    assert e.value.code == -errno.EPERM
    hv.iomem.map(hv.dom0, TIS, 1).read(0, 1)


def test_permission_is_privileged_exclusive_and_revocable(hv, device):
    a, b = hv.domain_create("a"), hv.domain_create("b")
    with pytest.raises(IomemError) as e:
        hv.iomem.permission(a, a.domid, TIS, 5)
    assert e.value.code == -errno.EPERM
    hv.iomem.permission(hv.dom0, a.domid, TIS, 5)
    with pytest.raises(IomemError) as e:
        hv.iomem.permission(hv.dom0, b.domid, TIS + 1, 1)
    assert e.value.code == -errno.EBUSY
    window = hv.iomem.map(a, TIS, 1)
    hv.iomem.permission(hv.dom0, a.domid, TIS, 5, allow=False)
    with pytest.raises(IomemError) as e:          # revoked: existing mapping stops working
        window.read(0, 1)
    assert e.value.code == -errno.EPERM
    hv.iomem.permission(hv.dom0, b.domid, TIS, 5)
    hv.iomem.map(b, TIS, 1)


def test_no_device_and_out_of_window(hv, device):
    a = hv.domain_create("a", iomem=[(0x1, 1)])
    with pytest.raises(IomemError) as e:
        hv.iomem.map(a, 0x1, 1)
    assert e.value.code == -errno.ENXIO
    with pytest.raises(IomemError) as e:
        hv.iomem.register_device(TIS + 4, 2, Registers(), "overlap")
    assert e.value.code == -errno.EBUSY
    mgr = hv.domain_create("mgr", iomem=[(TIS, 5)])
    window = hv.iomem.map(mgr, TIS, 1)
    with pytest.raises(IomemError) as e:
        window.read(4095, 2)
    assert e.value.code == -errno.EFAULT


def test_destroy_releases_the_range(hv, device):
    mgr = hv.domain_create("mgr", iomem=[(TIS, 5)])
    hv.domain_destroy(mgr.domid)
    assert hv.iomem.owner_of(TIS, 5) is None

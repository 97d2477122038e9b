"""I/O memory: machine frames that belong to a device, not to RAM.

A device model registers itself at a machine-frame range (the TPM's TIS
window is 5 frames at ``0xfed40``). The toolstack gives a domain permission
for a range (``iomem = [...]`` in an xl config, ``XEN_DOMCTL_iomem_permission``);
only then may that domain map the range and reach the device's registers::

    hv.iomem.register_device(0xfed40, 5, tis, "tpm-tis")
    mgr = hv.domain_create("vtpmmgr", iomem=[(0xfed40, 5)])
    window = hv.iomem.map(mgr, 0xfed40, 5)
    access = window.read(0x0, 1)            # TPM_ACCESS_0 via tis.mmio_read(0, 1)

Ownership is exclusive: on Xen the toolstack (and XSM) keeps a range
given to one domain from being mapped by another, so simxen records one
owner per range. Once the TPM window is given to the vTPM manager, no other
domain -- **dom0 included** -- can map it (``-EPERM``). A range nobody owns
may be mapped by a privileged domain only.
"""

from typing import NamedTuple

from simxen.xen import errno
from simxen.xen.domain import PAGE_SHIFT
from simxen.xen.errors import IomemError


class _Device(NamedTuple):
    first: int
    count: int
    device: object
    name: str


class MmioMapping:
    """A domain's mapping of device frames; reads and writes reach the device."""

    def __init__(self, iomem, dom, first_mfn, nr_mfns, dev):
        self._iomem = iomem
        self.dom = dom
        self.first_mfn = first_mfn
        self.nr_mfns = nr_mfns
        self._dev = dev
        #: byte offset of this mapping's start inside the device's window
        self.base = (first_mfn - dev.first) << PAGE_SHIFT
        self.size = nr_mfns << PAGE_SHIFT
        self.active = True

    def _check(self, offset, size):
        if not self.active:
            raise IomemError(-errno.EFAULT, f"dom{self.dom.domid}: MMIO mapping was removed")
        owner = self._iomem.owner_of(self.first_mfn, self.nr_mfns)
        if owner != self.dom.domid and not (owner is None and self.dom.privileged):
            raise IomemError(-errno.EPERM, f"dom{self.dom.domid} lost access to mfn "
                                           f"{self.first_mfn:#x}")
        if offset < 0 or size < 0 or offset + size > self.size:
            raise IomemError(-errno.EFAULT, f"MMIO access [{offset:#x}, +{size}) outside a "
                                            f"{self.size:#x}-byte window")

    def read(self, offset, size):
        """Read ``size`` bytes of device registers at ``offset`` (``device.mmio_read``)."""
        self._check(offset, size)
        self.dom.charge("mmio.access")
        data = bytes(self._dev.device.mmio_read(self.base + offset, size))
        self._iomem._trace.emit("mmio.read", self.dom.cursor, self.dom.domid, device=self._dev.name,
                                mfn=self.first_mfn, offset=offset, size=size, data=data)
        return data

    def write(self, offset, data):
        """Write ``data`` to device registers at ``offset`` (``device.mmio_write``)."""
        data = bytes(data)
        self._check(offset, len(data))
        self.dom.charge("mmio.access")
        self._iomem._trace.emit("mmio.write", self.dom.cursor, self.dom.domid, device=self._dev.name,
                                mfn=self.first_mfn, offset=offset, size=len(data), data=data)
        self._dev.device.mmio_write(self.base + offset, data)

    def unmap(self):
        """Remove the mapping."""
        self.active = False


class Iomem:
    """Device frames and who may map them: ``hv.iomem``."""

    def __init__(self, hv):
        self.hv = hv
        self._trace = hv.trace
        self._devices = []
        self._owners = {}   # (first_mfn, nr_mfns) -> domid

    def register_device(self, first_mfn, nr_mfns, device, name):
        """Put a device model (``mmio_read``/``mmio_write``) at machine frames."""
        if nr_mfns < 1:
            raise IomemError(-errno.EINVAL, f"device {name!r}: nr_mfns must be >= 1")
        for d in self._devices:
            if first_mfn < d.first + d.count and d.first < first_mfn + nr_mfns:
                raise IomemError(-errno.EBUSY, f"mfn {first_mfn:#x}+{nr_mfns} overlaps device "
                                               f"{d.name!r}")
        self._devices.append(_Device(first_mfn, nr_mfns, device, name))

    def owner_of(self, first_mfn, nr_mfns=1):
        """The domid owning any frame of the range, or ``None``."""
        for (first, count), domid in self._owners.items():
            if first_mfn < first + count and first < first_mfn + nr_mfns:
                return domid
        return None

    def permission(self, caller, domid, first_mfn, nr_mfns, allow=True):
        """``XEN_DOMCTL_iomem_permission``: give (or take back) a range."""
        caller.check_alive()
        caller.charge("hypercall")
        if not caller.privileged:
            raise IomemError(-errno.EPERM, f"dom{caller.domid} is not privileged")
        self.hv.live_domain(domid, IomemError, "iomem_permission")
        if nr_mfns < 1 or first_mfn < 0:
            raise IomemError(-errno.EINVAL, f"bad range {first_mfn:#x}+{nr_mfns}")
        self.grant(domid, first_mfn, nr_mfns, allow)
        self._trace.emit("iomem.permission", caller.cursor, caller.domid, domid=domid,
                         first_mfn=first_mfn, nr_mfns=nr_mfns, allow=bool(allow))

    def grant(self, domid, first_mfn, nr_mfns, allow):
        """Give (``allow``) or take back a range, with no hypercall around it (domain build)."""
        owner = self.owner_of(first_mfn, nr_mfns)
        if allow:
            if owner is not None and owner != domid:
                raise IomemError(-errno.EBUSY, f"mfn {first_mfn:#x}+{nr_mfns} already belongs to "
                                               f"dom{owner}")
            self._owners[(first_mfn, nr_mfns)] = domid
        else:
            for key, d in list(self._owners.items()):
                if d == domid and first_mfn < key[0] + key[1] and key[0] < first_mfn + nr_mfns:
                    del self._owners[key]

    def map(self, caller, first_mfn, nr_mfns=1):
        """Map device frames into the caller: an :class:`MmioMapping`."""
        caller.check_alive()
        caller.charge("hypercall")
        owner = self.owner_of(first_mfn, nr_mfns)
        if owner is None and not caller.privileged or owner not in (None, caller.domid):
            raise IomemError(-errno.EPERM, f"dom{caller.domid} has no iomem permission for mfn "
                                           f"{first_mfn:#x}+{nr_mfns}"
                                           + (f" (owned by dom{owner})" if owner is not None else ""))
        for d in self._devices:
            if d.first <= first_mfn and first_mfn + nr_mfns <= d.first + d.count:
                self._trace.emit("mmio.map", caller.cursor, caller.domid, device=d.name,
                                 first_mfn=first_mfn, nr_mfns=nr_mfns)
                return MmioMapping(self, caller, first_mfn, nr_mfns, d)
        raise IomemError(-errno.ENXIO, f"no device at mfn {first_mfn:#x}+{nr_mfns}")

    def release_domain(self, dom):
        """Take back every range of ``dom`` (domain destruction)."""
        for key, d in list(self._owners.items()):
            if d == dom.domid:
                del self._owners[key]

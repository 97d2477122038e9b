"""dom0's toolstack: ``xl create`` and ``xl destroy``.

The toolstack is the only part of the vTPM story that runs in dom0, and it
never touches the TPM itself (the seed's point: dom0 must not drive the
TPM while the manager owns it). What it does, as libxl does:

``create(config_text)``
    1. parse the config (:mod:`simxen.domains.xl_config`);
    2. resolve every ``vtpm=["backend=NAME"]`` to a *running* domain, and
       refuse the whole request otherwise (``XenError(-ESRCH)``, xl's
       "unable to find domain") -- a guest cannot be attached to a vTPM that
       is not there;
    3. build the domain (``hv.domain_create``), handing it the ``iomem=``
       ranges (``XEN_DOMCTL_iomem_permission``: the 5 TIS pages go to the
       manager alone);
    4. attach each ``disk=`` image (created on first use, kept across the
       domain's life) and write its ``vbd`` device entries;
    5. write each vTPM device's frontend and backend directories in one
       XenStore transaction, the backend's carrying the ``uuid`` (the
       config's, or a random version-4 UUID, as libxl generates);
    6. boot the kernel model the ``kernel=`` image names.

``destroy(name)``
    Stop the kernel, remove the backend directories of the domain's devices
    (libxl does; the frontend side goes with ``/local/domain/<id>``), then
    ``hv.domain_destroy``, which releases grants, channels and iomem.

Kernel models are chosen by the image's file name (see :data:`KERNELS`); a
scenario may map other images (``kernels={"pv-grub-x86_64.gz": PvGrub}``).
"""

from __future__ import annotations

import os
import uuid as _uuid

from simxen.domains.disk import DEFAULT_IMAGE_SIZE, BlockDevice, DiskImage
from simxen.domains.xl_config import XlConfig, parse
from simxen.drivers.xenbus import add_device
from simxen.protocols.xenbus import frontend_path
from simxen.xen import errno
from simxen.xen.errors import XenError

__all__ = ["Toolstack", "KERNELS", "DEFAULT_KERNEL", "kernel_model"]


def _kernel_classes():
    from simxen.domains.guest import Guest
    from simxen.domains.vtpm import Vtpm
    from simxen.domains.vtpmmgr import VtpmMgr
    return {"vtpmmgr-stubdom.gz": VtpmMgr, "vtpm-stubdom.gz": Vtpm}, Guest


#: Image file name -> kernel model, filled on first use (the models import
#: drivers that import this layer's siblings).
KERNELS: dict = {}
#: The model for any other image: a Linux guest with xen-tpmfront.
DEFAULT_KERNEL = None


def _load_models():
    global DEFAULT_KERNEL
    if not KERNELS:
        table, default = _kernel_classes()
        KERNELS.update(table)
        DEFAULT_KERNEL = default


def kernel_model(image_path, kernels=None):
    """The kernel model (class) ``xl create`` boots from the ``kernel=`` image
    ``image_path``: chosen by the image's file name, from ``kernels`` (extra
    ``{image file name: class}``, as :class:`Toolstack` takes them), then
    :data:`KERNELS`, else :data:`DEFAULT_KERNEL`. Known before any domain
    exists, so a command can check what a config will boot before booting it."""
    _load_models()
    name = os.path.basename(image_path)
    if kernels and name in kernels:
        return kernels[name]
    return KERNELS.get(name, DEFAULT_KERNEL)


class Toolstack:
    """The toolstack of host *hv* (it acts as ``hv.dom0``).

    :param kernels: extra ``{image file name: Kernel class}`` entries.
    :param image_size: size of a disk image created on first use.
    :param options: ``{domain name: {key: value}}`` handed to that domain's
        kernel model as ``kernel.options`` (simulation knobs that are not
        part of an xl config, e.g. the vTPM's ``strong_persistence``).
    """

    def __init__(self, hv, *, kernels=None, image_size: int = DEFAULT_IMAGE_SIZE, options=None):
        _load_models()
        self.hv = hv
        self.dom0 = hv.dom0
        self.kernel_table = {**KERNELS, **(kernels or {})}
        self.image_size = image_size
        self.options = dict(options or {})
        self.images: dict[str, DiskImage] = {}      #: path -> image (dom0's files)
        self.kernels: dict[str, object] = {}        #: domain name -> running kernel model
        self.configs: dict[str, XlConfig] = {}
        #: Host devices kernels may look up (``"tpm"``: the physical TPM chip).
        self.platform: dict = {}
        self._uuid_rng = hv.streams.rng("toolstack/uuid")

    # -- queries ---------------------------------------------------------
    def domain(self, name: str):
        """The live domain called *name*, or ``None``."""
        return self.hv.domain_named(name)

    def kernel(self, name: str):
        """The kernel model running in domain *name* (``KeyError`` if none)."""
        return self.kernels[name]

    def resolve(self, backend: str):
        """A ``backend=`` value (name or domid) -> the live domain, or ``None``."""
        if backend.isdigit():
            dom = self.hv.domains.get(int(backend))
            return dom if dom is not None and dom.alive else None
        return self.domain(backend)

    def image(self, path: str) -> DiskImage:
        """The image file at *path*, created (zeroed) on first use."""
        img = self.images.get(path)
        if img is None:
            img = self.images[path] = DiskImage(path, self.image_size)
        return img

    def new_uuid(self) -> str:
        """A random version-4 UUID from the toolstack's own stream (deterministic)."""
        raw = bytes(self._uuid_rng.integers(0, 256, 16, dtype="uint8"))
        return str(_uuid.UUID(bytes=raw, version=4))

    # -- xl create ---------------------------------------------------------
    def create(self, config, *, source: str = None):
        """``xl create``: build a domain from *config* (text or :class:`XlConfig`)
        and boot its kernel; return the kernel model.

        :raises InputError: the config text is malformed (naming the key).
        :raises XenError: ``-ESRCH`` a vTPM backend domain is not running;
            ``-EEXIST`` the name is taken; ``-EBUSY`` an iomem range belongs
            to another domain.
        """
        cfg = config if isinstance(config, XlConfig) else parse(config, source=source or "<config>")
        hv, dom0 = self.hv, self.dom0
        backends = []
        for i, spec in enumerate(cfg.vtpm):
            be = self.resolve(spec.backend)
            if be is None or (be.name in self.kernels and self.kernels[be.name].halted):
                hv.trace.emit("xl.refuse", dom0.now, 0, name=cfg.name, key=f"vtpm[{i}]",
                              backend=spec.backend, code=-errno.ESRCH)
                raise XenError(-errno.ESRCH, f"{cfg.source}: vtpm[{i}]: backend domain "
                                             f"{spec.backend!r} is not running; start it first")
            backends.append(be)
        if self.domain(cfg.name) is not None:
            raise XenError(-errno.EEXIST, f"{cfg.source}: name: a domain called {cfg.name!r} exists")
        for first, count in cfg.iomem:
            self._check_iomem_free(cfg, first, count)
        dom = hv.domain_create(cfg.name, vcpus=cfg.vcpus, iomem=cfg.iomem)
        if hv.scheduler is not None and (cfg.cpu_weight is not None or cfg.cap):
            # libxl sets the domain's scheduling parameters after building it
            # (XEN_DOMCTL_SCHEDOP_putinfo); without a scheduler they change nothing
            hv.scheduler.domain_set(dom.domid, weight=cfg.cpu_weight, cap=cfg.cap or None)
        hv.trace.emit("xl.create", dom0.now, 0, name=cfg.name, domid=dom.domid, kernel=cfg.kernel,
                      memory=cfg.memory)
        disks = []
        for devid, spec in enumerate(cfg.disk):
            image = self.image(spec.target)
            disks.append(BlockDevice(hv, dom, image, spec.vdev, writable=spec.writable))
            add_device(hv, dom0, dom.domid, 0, "vbd", 51712 + 256 * devid,
                       back_extra={"params": spec.target, "mode": "w" if spec.writable else "r",
                                   "dev": spec.vdev, "type": "file"})
        for devid, (spec, be) in enumerate(zip(cfg.vtpm, backends)):
            uuid = spec.uuid or self.new_uuid()
            add_device(hv, dom0, dom.domid, be.domid, "vtpm", devid,
                       back_extra={"uuid": uuid, "resume": "False"})
        cls = self._kernel_class(cfg.kernel)
        kernel = cls(self, dom, cfg, disks)
        self.kernels[cfg.name] = kernel
        self.configs[cfg.name] = cfg
        kernel.boot()
        return kernel

    def _check_iomem_free(self, cfg, first, count):
        """Refuse before building anything if another domain holds the range."""
        owner = self.hv.iomem.owner_of(first, count)
        if owner is not None:
            raise XenError(-errno.EBUSY, f"{cfg.source}: iomem: frames {first:#x}+{count} belong "
                                         f"to domain {owner}")

    def _kernel_class(self, image_path):
        return kernel_model(image_path, self.kernel_table)

    # -- xl destroy --------------------------------------------------------
    def destroy(self, name: str) -> None:
        """``xl destroy NAME``; an unknown name is ``XenError(-ESRCH)``."""
        hv, dom0 = self.hv, self.dom0
        dom = self.domain(name)
        if dom is None:
            raise XenError(-errno.ESRCH, f"xl destroy: no domain called {name!r}")
        kernel = self.kernels.pop(name, None)
        if kernel is not None:
            kernel.halt()
        for devtype in ("vtpm", "vbd"):
            base = frontend_path(dom.domid, devtype, 0).rsplit("/", 1)[0]
            if not hv.xs.exists(dom0, base):
                continue
            for devid in hv.xs.directory(dom0, base):
                key = f"{base}/{devid}/backend"
                if hv.xs.exists(dom0, key):
                    back = hv.xs.read(dom0, key)
                    if hv.xs.exists(dom0, back):
                        hv.xs.rm(dom0, back)
        hv.trace.emit("xl.destroy", dom0.now, 0, name=name, domid=dom.domid)
        hv.domain_destroy(dom.domid)

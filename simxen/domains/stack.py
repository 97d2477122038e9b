"""One host running the whole vTPM stack: the entry point for scenarios, ``simxen serve`` and benchmarks.

:func:`build_host` powers on the physical TPM, runs the host boot
(:mod:`simxen.domains.host_boot`), starts dom0's toolstack and creates every
domain of the :class:`HostSpec` from its xl config text -- vtpmmgr first,
then each vTPM stub domain, then each guest, as an administrator would::

    from simxen.xen import Hypervisor
    from simxen.domains.stack import HostSpec, build_host

    hv = Hypervisor(seed=1)
    host = build_host(hv, HostSpec.standard(guests=["guest1"]))
    hv.env.run(until=host.ready)                  # boot, create, connect (simulated seconds)

    def work():
        tpm = host.guest("guest1").tpm
        rsp = yield from tpm.transmit(command_bytes)     # one full-path round trip
        hops.command_hops(hv.trace.records(), flows=[tpm.last_flow])   # simxen.analysis.hops
    hv.env.run(until=hv.env.process(work()))

Handles: ``host.vtpmmgr`` (the manager's kernel), ``host.vtpm(name)``,
``host.guest(name)``, ``host.toolstack``, ``host.ptpm`` (the physical TPM
chip) and ``host.ptpm_engine``. Restarts are generators:
:meth:`Host.restart_vtpmmgr`, :meth:`Host.restart_vtpm` (re-creates the
guests attached to it, whose xen-tpmfront cannot follow a new backend), and
:meth:`Host.create` (``xl create`` + wait until the new kernel is ready).
:meth:`Host.state` captures what survives a power cycle (disk images, the
physical TPM's persistent state) for ``HostSpec(previous=...)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from simxen.domains.host_boot import DEFAULT_BOOT, measure
from simxen.domains.images import GuestImages
from simxen.domains.pvgrub import PVGRUB_IMAGE
from simxen.domains.toolstack import Toolstack, kernel_model
from simxen.domains.ptpm_commands import BOOT_KEYS
from simxen.domains.vtpm import GUEST_LOCALITY, RESTORE_FAILURE, SAVE_ON
from simxen.domains.vtpmmgr_storage import STORAGES
from simxen.drivers.tpmback import POLICIES
from simxen.errors import InputError, did_you_mean
from simxen.domains.xl_config import parse
from simxen.drivers.kernel_eras import check_era
from simxen.tpm import TpmEngine, client

__all__ = ["HostSpec", "HostState", "Host", "build_host", "check_spec", "roles", "vtpm_guests",
           "vtpm_guest", "vtpmmgr_config",
           "vtpm_config", "guest_config", "physical_tpm", "one_of", "COUNTED"]

#: Trace kinds :meth:`Host.op_counts` counts, with what they are (``"xs"`` = every ``xs.*``).
COUNTED = (
    ("evtchn.send", "event-channel notifications sent"),
    ("evtchn.deliver", "event-channel notifications delivered"),
    ("gnttab.grant", "grants made"),
    ("gnttab.map", "grant maps"),
    ("gnttab.unmap", "grant unmaps"),
    ("xs", "XenStore operations and watch events"),
    ("xs.watch_fire", "XenStore watch events"),
    ("page.read", "declared shared-page reads"),
    ("page.write", "declared shared-page writes"),
    ("mmio.read", "TIS MMIO reads"),
    ("mmio.write", "TIS MMIO writes"),
    ("disk.write", "disk writes"),
    ("disk.flush", "disk flushes"),
)


def vtpmmgr_config(name="vtpmmgr", *, locality=None, image="/var/vtpmmgr-stubdom.img") -> str:
    """The manager's config as the seed document writes it."""
    extra = f'\nextra="tpmlocality={locality}"' if locality is not None else ""
    return (f'name="{name}"\nkernel="/usr/lib/xen/boot/vtpmmgr-stubdom.gz"\nmemory=16\n'
            f'disk=["file:{image},hda,w"]\niomem=["fed40,5"]{extra}\n')


def vtpm_config(name, uuid, *, manager="vtpmmgr", image=None) -> str:
    """A vTPM stub domain's config (``vtpm=["backend=vtpmmgr,uuid=..."]``)."""
    image = image or f"/var/{name}.img"
    return (f'name="{name}"\nkernel="/usr/lib/xen/boot/vtpm-stubdom.gz"\nmemory=8\n'
            f'disk=["file:{image},hda,w"]\nvtpm=["backend={manager},uuid={uuid}"]\n')


def guest_config(name, vtpm=None, *, kernel="/boot/vmlinuz-domU", memory=512) -> str:
    """A guest's config; ``vtpm`` names its vTPM stub domain (``vtpm-<name>`` by default)."""
    vtpm = vtpm or f"vtpm-{name}"
    return f'name="{name}"\nkernel="{kernel}"\nmemory={memory}\nvtpm=["backend={vtpm}"]\n'


@dataclass
class HostState:
    """What survives a host power cycle: dom0's image files and the TPM's NV state."""

    images: dict
    ptpm_state: bytes


@dataclass
class HostSpec:
    """What :func:`build_host` builds.

    :param configs: xl config texts, created in this order (manager, vTPMs, guests).
    :param boot: the host measurements (:data:`~simxen.domains.host_boot.DEFAULT_BOOT`).
    :param options: ``{domain name: {option: value}}`` for the kernel models
        (``vtpmmgr``: ``policy``, ``storage``, ``boot_keys``, ``seal_pcrs``, ``locality``; a vTPM:
        ``strong_persistence``, ``save_on``, ``restore_failure``, ``policy``).
    :param ptpm_seed: the physical TPM's identity (its primary seeds).
    :param previous: a :class:`HostState` to boot from (a host reboot).
    :param kernels: extra ``{image file name: Kernel class}``.
    :param sources: how error messages name each config (default ``config[i]``),
        e.g. ``"s.toml: workload.stack.configs[2]"``.
    """

    configs: list
    boot: tuple = DEFAULT_BOOT
    options: dict = field(default_factory=dict)
    ptpm_seed: bytes = b"simxen physical TPM"
    previous: HostState = None
    kernels: dict = None
    image_size: int = 2 * 1024 * 1024
    sources: list = None
    #: ``(configs, sources, parsed)``: :func:`check_spec` parses each config once however
    #: often it is asked (a workload's check before the run, then :func:`build_host`'s,
    #: and ``xl create`` takes the same parse); the checks themselves run every time
    checked: tuple = field(default=None, init=False, repr=False, compare=False)

    def source(self, index) -> str:
        """The label of config *index* in error messages."""
        return self.sources[index] if self.sources else f"config[{index}]"

    @classmethod
    def standard(cls, guests=("guest1",), *, uuids=None, **kw) -> "HostSpec":
        """The seed's stack: one vtpmmgr, and per guest a vTPM ``vtpm-<guest>`` and the guest."""
        uuids = list(uuids or [])
        configs = [vtpmmgr_config()]
        for i, g in enumerate(guests):
            uuid = uuids[i] if i < len(uuids) else f"ac0a5b9e-cbe2-4c07-b43b-{0x1d69e46fb839 + i:012x}"
            configs.append(vtpm_config(f"vtpm-{g}", uuid))
        configs += [guest_config(g) for g in guests]
        return cls(configs=configs, **kw)


def physical_tpm(hv, engine):
    """The physical TPM chip (TIS at 0xfed40000, 5 localities) around *engine*."""
    from simxen.hw.tpm_chip import TpmChip
    return TpmChip(hv, engine)


class Host:
    """A built host (see the module doc). ``ready`` fires when every kernel is up."""

    def __init__(self, hv, spec: HostSpec, configs=None):
        self.hv = hv
        self.env = hv.env
        self.spec = spec
        self._configs = configs
        self.toolstack = Toolstack(hv, kernels=spec.kernels, image_size=spec.image_size,
                                   options=spec.options)
        if spec.previous is not None:
            for path, data in spec.previous.images.items():
                self.toolstack.image(path).restore(data)
        clock = lambda: hv.env.now * 1000.0                       # noqa: E731
        rand = hv.streams.random_bytes("host/ptpm")
        if spec.previous is not None:
            self.ptpm_engine = TpmEngine.from_state(spec.previous.ptpm_state, random_bytes=rand,
                                                    clock=clock, powered=True)
        else:
            self.ptpm_engine = TpmEngine(seed=spec.ptpm_seed, random_bytes=rand, clock=clock,
                                         powered=True, manufacturer="IFX ")
        client.check(self.ptpm_engine.execute(client.startup_command()))
        self.ptpm = physical_tpm(hv, self.ptpm_engine)
        self.toolstack.platform["tpm"] = self.ptpm
        self.boot_log = []
        self.started = self.env.now
        self.ready = self.env.event()
        self.process = self.env.process(self._boot())

    def _boot(self):
        self.boot_log = yield from measure(self.hv, self.ptpm_engine, self.spec.boot)
        dom0 = self.hv.dom0
        kernels = []
        for i, text in enumerate(self.spec.configs):
            # the parse check_spec made, if it was given: the same config, read once
            config = self._configs[i] if self._configs else text
            kernels.append(self.toolstack.create(config, source=self.spec.source(i)))
            yield dom0.elapse()
        yield self.env.all_of([k.ready for k in kernels])
        self.ready.succeed(self)
        return self

    def boot_progress(self) -> str:
        """How far the boot got, for a run that stopped before :attr:`ready`: the
        domains the toolstack had created and those whose kernels were ready."""
        if self.ready.triggered:
            return "The host had booted."
        wanted = len(self.spec.configs)
        created = self.toolstack.kernels.values()
        up = sum(1 for k in created if k.ready.triggered)
        said = (f"The host was still booting: dom0 had created {len(created):,} of its "
                f"{wanted:,} domains, one `xl create` after another, and {up:,} of them were "
                f"ready.")
        spent = self.env.now - self.started
        if created and spent > 0:
            each = spent / len(created)
            said += (f" At {each:.3g} s a domain the rest needs about "
                     f"{each * (wanted - len(created)):,.0f} s more")
        return said + " -- give the run more simulated time (--set scenario.until=SECONDS)."

    # -- handles -------------------------------------------------------------
    def _kernel(self, name, role):
        kernel = self.toolstack.kernels.get(name)
        if kernel is None or kernel.role != role:
            raise KeyError(f"no running {role} called {name!r} (running: "
                           f"{', '.join(sorted(self.toolstack.kernels)) or 'none'})")
        return kernel

    @property
    def vtpmmgr(self):
        for kernel in self.toolstack.kernels.values():
            if kernel.role == "vtpmmgr":
                return kernel
        raise KeyError("no vtpmmgr is running")

    def vtpm(self, name):
        return self._kernel(name, "vtpm")

    def guest(self, name):
        return self._kernel(name, "guest")

    def kernels(self, role=None) -> list:
        return [k for k in self.toolstack.kernels.values() if role is None or k.role == role]

    # -- lifecycle -------------------------------------------------------------
    def create(self, text, *, source=None):
        """Generator: ``xl create`` *text*, wait until its kernel is ready; return it."""
        kernel = self.toolstack.create(text, source=source)
        yield kernel.ready
        return kernel

    def destroy(self, name):
        self.toolstack.destroy(name)

    def _recreate(self, names):
        configs = [self.toolstack.configs[n] for n in names]
        kernels = []
        for cfg in configs:
            kernels.append(self.toolstack.create(cfg))
            yield self.hv.dom0.elapse()
        yield self.env.all_of([k.ready for k in kernels])
        return kernels

    def _settle(self, done, timeout=10.0, step=1e-3):
        """Generator: wait (simulated) until ``done()`` or *timeout* seconds (libxl's 10 s)."""
        dom0 = self.hv.dom0
        yield dom0.elapse()
        waited = 0.0
        while not done() and waited < timeout:
            yield dom0.sleep(step)
            waited += step

    def restart_vtpmmgr(self):
        """Generator: ``xl destroy`` the manager and create it again; returns the new kernel."""
        name = self.vtpmmgr.name
        self.destroy(name)
        yield self.hv.dom0.elapse()
        kernels = yield from self._recreate([name])
        return kernels[0]

    def guests_of(self, vtpm_name) -> list:
        """Names of the running guests whose vTPM backend is *vtpm_name*."""
        return [k.name for k in self.kernels("guest")
                if any(self.toolstack.resolve(v.backend) is not None
                       and self.toolstack.resolve(v.backend).name == vtpm_name for v in k.config.vtpm)]

    def restart_vtpm(self, name):
        """Generator: restart vTPM *name* (and its guests); returns the new vTPM kernel."""
        guests = self.guests_of(name)
        vtpm = self.vtpm(name)
        for g in guests:
            self.destroy(g)
        # As libxl waits for a removed device's backend: let the vTPM's tpmback
        # tear the guests' connections down before its own domain goes.
        yield from self._settle(lambda: vtpm.back is None or not vtpm.back.frontends)
        self.destroy(name)
        yield self.hv.dom0.elapse()
        kernels = yield from self._recreate([name] + guests)
        return kernels[0]

    def state(self) -> HostState:
        """Images and physical-TPM state, as a power cycle would leave them."""
        return HostState({p: img.snapshot() for p, img in self.toolstack.images.items()},
                         self.ptpm_engine.save_state())

    def host_aik(self):
        """Generator: the public area of the manager's deep-quote key (what a verifier trusts)."""
        return (yield from self.vtpmmgr.aik_public())

    # -- what happened -----------------------------------------------------------
    def op_counts(self) -> dict:
        """``{trace kind: count}`` of the split-driver operations so far (see :data:`COUNTED`):
        each kind with every kind under it (``"xs"`` counts ``xs.read``, ``xs.watch_fire``...),
        from one read of the trace's counts (:meth:`Trace.count_each
        <simxen.xen.trace.Trace.count_each>`), not one per kind."""
        return self.hv.trace.count_each([kind for kind, _ in COUNTED])


def build_host(hv, spec: HostSpec) -> Host:
    """Build *spec* on hypervisor *hv*; run the simulation until ``host.ready``.

    :func:`check_spec` runs first, so a config dom0's toolstack would refuse
    raises :class:`~simxen.errors.InputError` before anything starts.
    """
    return Host(hv, spec, check_spec(spec))


def check_spec(spec: HostSpec) -> list:
    """Check *spec* as dom0's toolstack will take it; return the parsed configs.

    Each config is parsed (:func:`~simxen.domains.xl_config.parse`), then
    checked against the ones created before it, in order, for what ``xl
    create`` would refuse at run time: a ``vtpm=`` backend that is not created
    earlier (libxl finds no such domain: ``ESRCH``), a name already used (here
``EEXIST``), an ``iomem=`` range another config holds
    (``XEN_DOMCTL_iomem_permission`` gives a range to one domain: ``EBUSY``);
    and for what the kernel models need: the vTPM manager must be given the
    TPM's TIS window (``iomem=["fed40,5"]``, as Xen's ``docs/misc/vtpm.txt``
    writes it), or it has no TPM to manage. Options are checked against
    :data:`OPTIONS`. Every problem is an :class:`~simxen.errors.InputError`
    naming the config (:meth:`HostSpec.source`) and the key.
    """
    from simxen.domains.vtpmmgr import TIS_BASE_MFN
    from simxen.protocols.tis import TIS_NUM_LOCALITIES
    checked = spec.checked
    if checked is not None and checked[0] == spec.configs and checked[1] == spec.sources:
        cfgs = checked[2]                         # the same texts: parsed already
    else:
        cfgs = [parse(text, source=spec.source(i)) for i, text in enumerate(spec.configs)]
        spec.checked = (list(spec.configs), spec.sources and list(spec.sources), cfgs)
    created = {}
    ranges = []                                   # (first, count, config source)
    for cfg in cfgs:
        if cfg.name in created:
            raise InputError(f"a domain named {cfg.name!r} is already created by "
                             f"{created[cfg.name].source} "
                             "(xl create would fail with EEXIST)", path=cfg.source, key="name")
        for i, vtpm in enumerate(cfg.vtpm):
            if not vtpm.backend.isdigit() and vtpm.backend not in created:
                later = [c.source for c in cfgs if c.name == vtpm.backend]
                where = (f"it is created later, by {later[0]}; configs are created in order"
                         if later else "no config creates it")
                raise InputError(f"backend domain {vtpm.backend!r} does not exist when this "
                                 f"config is created ({where}; xl create would fail with ESRCH)",
                                 path=cfg.source, key=f"vtpm[{i}]")
        for first, count in cfg.iomem:
            for other_first, other_count, other in ranges:
                if first < other_first + other_count and other_first < first + count:
                    raise InputError(f"frames {first:#x}+{count} overlap {other_first:#x}+"
                                     f"{other_count} given to {other} (one domain owns an I/O "
                                     "range; xl create would fail with EBUSY)",
                                     path=cfg.source, key="iomem")
            ranges.append((first, count, cfg.source))
        if os.path.basename(cfg.kernel) == "vtpmmgr-stubdom.gz" and not any(
                first <= TIS_BASE_MFN and TIS_BASE_MFN + TIS_NUM_LOCALITIES <= first + count
                for first, count in cfg.iomem):
            raise InputError(f'the vTPM manager needs the TPM\'s TIS window: iomem=["'
                             f'{TIS_BASE_MFN:x},{TIS_NUM_LOCALITIES}"] (frames {TIS_BASE_MFN:#x}'
                             f"..{TIS_BASE_MFN + TIS_NUM_LOCALITIES - 1:#x})",
                             path=cfg.source, key="iomem")
        created[cfg.name] = cfg
    roles = {cfg.name: os.path.basename(cfg.kernel) for cfg in cfgs}
    for name, opts in (spec.options or {}).items():
        # an image no model claims boots the Linux guest model (DEFAULT_KERNEL)
        allowed = OPTIONS.get(roles.get(name), GUEST_OPTIONS if name in roles else {})
        for key, value in opts.items():
            if key not in allowed:
                raise InputError(f"unknown option for a {roles.get(name, 'domain not in configs')!r} "
                                 f"domain (expected one of {sorted(allowed) or 'none'})",
                                 path="HostSpec.options", key=f"{name}.{key}")
            problem = allowed[key](value)
            if problem:
                raise InputError(problem, path="HostSpec.options", key=f"{name}.{key}")
    return cfgs


def roles(spec: HostSpec) -> dict:
    """``{domain name: role}`` of every domain *spec* creates, in creation order, before
    any exists: the :attr:`~simxen.domains.kernel.Kernel.role` of what runs in it once
    booted (``"vtpmmgr"``, ``"vtpm"``, ``"guest"`` -- a Linux kernel, or pv-grub, which
    loads one), from its ``kernel=`` image as the toolstack will choose the model
    (:func:`~simxen.domains.toolstack.kernel_model`). :func:`check_spec` runs first."""
    return _roles(spec, check_spec(spec))


def _roles(spec, cfgs) -> dict:
    return {cfg.name: kernel_model(cfg.kernel, spec.kernels).booted_role() for cfg in cfgs}


def vtpm_guests(spec: HostSpec) -> list:
    """The guests of *spec* with a vTPM frontend of their own (a ``vtpm=`` line), in
    creation order: the names :meth:`Host.guest` will give a kernel whose ``tpm`` is
    the guest's path to its vTPM (a vTPM stub domain's ``vtpm=`` is its own link to
    the manager, not a guest's)."""
    cfgs = check_spec(spec)
    return _vtpm_guests(cfgs, _roles(spec, cfgs))


def _vtpm_guests(cfgs, role) -> list:
    return [cfg.name for cfg in cfgs if role[cfg.name] == "guest" and cfg.vtpm]


def vtpm_guest(spec: HostSpec, name, *, path=None, key=None):
    """The parsed config of *name*, one of :func:`vtpm_guests`; otherwise an
    :class:`~simxen.errors.InputError` (at ``path``, ``key``) that says what *name*
    is -- no such domain (with the closest guest's name), a stub domain, a guest
    without a ``vtpm=`` line -- and which guests there are."""
    cfgs = check_spec(spec)
    role = _roles(spec, cfgs)
    guests = _vtpm_guests(cfgs, role)
    if name in guests:
        return next(cfg for cfg in cfgs if cfg.name == name)
    listed = _names(guests)
    if name not in role:
        counted = _counted(guests)
        # guest9 of guest1..guest4 is past the count, not a misspelt guest4
        hint = "" if counted and name.rstrip("0123456789") == counted else \
            did_you_mean(name, guests, cutoff=0.75)   # guest1, guest2...: a long shared start
        raise InputError(f"no domain called {name!r} in this scenario's host{hint} "
                         f"(guests with a vTPM: {listed}; domains: {_names(sorted(role))})",
                         path=path, key=key)
    raise InputError(f"domain {name!r} is a {role[name]} without a vTPM frontend of its own "
                     f"(guests with a vTPM: {listed})", path=path, key=key)


def _counted(names):
    """``"guest"`` when *names* are ``guest1`` .. ``guestN`` in order (a ``guest_count``'s),
    else None."""
    stem = names[0].rstrip("0123456789") if names else ""
    if not stem or len(names) < 2 or names != [f"{stem}{i}" for i in range(1, len(names) + 1)]:
        return None
    return stem


def _names(names, most=8) -> str:
    """``a, b, c`` -- or the first few and how many there are, for a fleet's thousands
    (``guest1 .. guest64`` for a count's)."""
    if not names:
        return "none"
    if _counted(names):
        return f"{names[0]} .. {names[-1]}"
    if len(names) <= most:
        return ", ".join(names)
    return f"{', '.join(names[:most - 2])}, ... {names[-1]} ({len(names)} in all)"


def one_of(*choices):
    """A check (``None``, or what is wrong) that a value is one of ``choices``."""
    return lambda v: None if v in choices else f"expected one of {list(choices)}, found {v!r}"


def _pcr_list(v):
    ok = isinstance(v, (list, tuple)) and v and all(isinstance(p, int) and 0 <= p < 24 for p in v)
    return None if ok else f"expected a non-empty list of PCR numbers 0..23, found {v!r}"


def _guest_images(v):
    return None if isinstance(v, GuestImages) else \
        f"expected simxen.domains.images.GuestImages, found {type(v).__name__}"


def _entry_size(v):
    from simxen.protocols import tpmif_ring
    try:
        tpmif_ring.slots(v)
    except (TypeError, ValueError) as err:
        return f"expected a ring entry size in bytes: {err}"
    return None


_BOOL = one_of(True, False)


def _hz(v):
    ok = isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 10000
    return None if ok else f"expected the guest kernel's HZ (e.g. 100, 250, 300, 1000), found {v!r}"


#: Options of a Linux guest kernel (any image no other model claims, and pv-grub's successor).
GUEST_OPTIONS = {"kernel_era": check_era, "hz": _hz}
#: Options each kernel image accepts in :attr:`HostSpec.options`, with their checks.
OPTIONS = {
    "vtpmmgr-stubdom.gz": {"policy": one_of(*POLICIES), "seal_pcrs": _pcr_list,
                           "locality": one_of(0, 1, 2, 3, 4),
                           "evtchn_abi": one_of("2-level", "fifo"), "storage": one_of(*STORAGES),
                           "boot_keys": one_of(*BOOT_KEYS)},
    "vtpm-stubdom.gz": {"strong_persistence": _BOOL, "save_on": one_of(*SAVE_ON),
                        "restore_failure": one_of(*RESTORE_FAILURE), "policy": one_of(*POLICIES),
                        "guest_locality": one_of(*GUEST_LOCALITY),
                        # serve simxen's multi-slot what-if transport too (not Xen's)
                        "multi_slot": _BOOL},
    PVGRUB_IMAGE: {"images": _guest_images, **GUEST_OPTIONS},
    # the guests of HostSpec.standard; "multi-slot" is simxen's what-if transport
    # (simxen.protocols.tpmif_ring), not Xen's
    "vmlinuz-domU": {"transport": one_of("tpmif", "multi-slot"),
                     "ring_entry_size": _entry_size, **GUEST_OPTIONS},
}

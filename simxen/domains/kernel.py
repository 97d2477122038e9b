"""What runs inside a domain: the base every kernel model shares.

``xl create`` builds a domain and boots the image named by ``kernel=``. In
simxen the image selects a *kernel model* (a Python class:
:class:`~simxen.domains.vtpmmgr.VtpmMgr` for ``vtpmmgr-stubdom.gz``,
:class:`~simxen.domains.vtpm.Vtpm` for ``vtpm-stubdom.gz``, a Linux guest
otherwise, see :mod:`simxen.domains.toolstack`), and the toolstack calls its
:meth:`Kernel.boot`. A kernel's work runs as SimPy processes started with
:meth:`Kernel.spawn`; ``xl destroy`` interrupts them all
(:meth:`Kernel.halt`), the way pulling the domain out from under its vCPU
stops whatever it was doing.
"""

from __future__ import annotations

import simpy

__all__ = ["Kernel"]


class Kernel:
    """One booted domain: ``hv``, ``dom`` (its :class:`~simxen.xen.domain.Domain`),
    ``config`` (its :class:`~simxen.domains.xl_config.XlConfig`) and the
    ``toolstack`` that created it. Subclasses implement :meth:`main`."""

    #: Short name of the model, shown in traces and reports.
    role = "kernel"

    @classmethod
    def booted_role(cls) -> str:
        """The :attr:`role` of what runs in the domain once it has booted: the
        model's own, unless it hands the domain to another (pv-grub loads Linux)."""
        return cls.role

    def __init__(self, toolstack, dom, config, disks=()):
        self.toolstack = toolstack
        self.hv = toolstack.hv
        self.env = toolstack.hv.env
        self.dom = dom
        self.config = config
        self.disks = list(disks)            #: BlockDevice per disk= entry, in order
        #: Simulation knobs of this kernel model (``Toolstack(options={name: {...}})``).
        self.options = dict(toolstack.options.get(config.name, {}))
        self.processes = []
        self.halted = False
        #: Triggered when :meth:`main` has finished its start-up (see ``ready``).
        self.ready = self.env.event()

    @property
    def name(self) -> str:
        return self.dom.name

    @property
    def domid(self) -> int:
        return self.dom.domid

    def boot(self) -> None:
        """Start :meth:`main` as the domain's first process."""
        self.spawn(self.main(), "main")

    def main(self):
        """The kernel's life (a generator); the default does nothing."""
        self.mark_ready()
        yield self.dom.elapse()

    def mark_ready(self, value=None) -> None:
        if not self.ready.triggered:
            self.ready.succeed(value)

    def spawn(self, generator, what: str = "process") -> simpy.Process:
        """Run *generator* as a process of this domain; :meth:`halt` stops it."""
        proc = self.env.process(self._guard(generator, what))
        self.processes.append(proc)
        return proc

    def _guard(self, generator, what):
        try:
            return (yield from generator)
        except simpy.Interrupt:
            return None

    def halt(self) -> None:
        """Stop every process of this kernel (the domain is being destroyed)."""
        self.halted = True
        for proc in self.processes:
            if proc.is_alive and proc is not self.env.active_process:
                proc.interrupt("domain destroyed")
        self.processes = []

    def disk(self, vdev: str = None):
        """The block device *vdev* (or the first one)."""
        for dev in self.disks:
            if vdev is None or dev.vdev == vdev:
                return dev
        return None

    def __repr__(self):
        return f"<{type(self).__name__} {self.name} (domid {self.domid})>"

"""The physical TPM: a TPM engine behind the TIS window, taking the time a real chip takes.

The same :class:`simxen.tpm.engine.TpmEngine` that runs inside every vTPM is
the discrete TPM of the host; what makes it *physical* is where it sits and
how long it takes. :class:`TpmChip` puts it behind a
:class:`simxen.hw.tis.TisDevice` registered with the hypervisor at machine
frames ``0xfed40`` .. ``0xfed44`` (one 4 KiB page per locality), so the only
way to reach it is an MMIO mapping of that window -- which Xen gives to
exactly one domain, the vTPM manager::

    chip = TpmChip(hv, TpmEngine(seed=b"host"))
    mgr = hv.domain_create("vtpmmgr", iomem=[(0xfed40, 5)])
    tis = TisDriver(hv, mgr, irq=chip.irq).open()

When the driver writes GO, the chip draws the command's latency from the
timing profile -- op ``tpm.ptpm.<CommandName>`` (``tpm.ptpm.PCR_Read``,
``tpm.ptpm.Quote``, ...) if the profile has it, else ``tpm.ptpm.default``;
a key creation (``CreatePrimary``, ``Create``) first tries the op named
after its template's algorithm, ``tpm.ptpm.CreatePrimary.rsa`` /
``.ecc`` (an RSA-2048 key generation costs a chip seconds, an ECC one a
fraction of that) -- and only after that much simulated time runs the engine and makes the
response readable (:meth:`TisDevice.complete`). Until then STS shows
neither dataAvail nor commandReady, which is what a polling driver sees on
real hardware. The latency counts from the driver's own clock at the GO
write: the cursor of the domain that owns the window (a window nobody owns,
which only a privileged domain can map, counts from the event loop's
``now``).

The chip serves one command at a time, as a TPM does; the FIFO enforces
it. When the driver enabled interrupts, :attr:`TpmChip.irq` fires as the
TPM raises dataAvail (and the other enabled conditions).

Trace: ``tpm.exec`` (``dom`` None: hardware) with ``tpm`` (the chip's
name), ``cc`` and ``cc_name``, ``rc``, ``duration``, ``locality``, and the
``command`` and ``response`` bytes.
"""

from __future__ import annotations

from simxen.hw.tis import TisDevice
from simxen.protocols import tis as reg
from simxen.tpm import header
from simxen.tpm.client import template_type
from simxen.tpm.constants import TPM_ALG, command_name

__all__ = ["TpmChip", "TisIrq", "TIS_FIRST_MFN"]

#: Machine frame of locality 0's page (0xFED40000 >> 12).
TIS_FIRST_MFN = reg.TIS_BASE >> 12
#: Suffix of a key-creation op by its template's algorithm.
_ALG_SUFFIX = {TPM_ALG.RSA: "rsa", TPM_ALG.ECC: "ecc", TPM_ALG.KEYEDHASH: "keyedhash",
               TPM_ALG.SYMCIPHER: "symcipher"}



def latency_op(profile, command: bytes, prefix: str = "tpm.ptpm") -> str:
    """The op of *profile* that times ``command`` on a chip whose ops start with *prefix*:
    ``<prefix>.<CommandName>[.<alg>]`` if the profile has it, else ``<prefix>.default``
    (see the module doc). :mod:`simxen.analysis.certainty` asks it which figure a traced
    command's time came from."""
    cc = header.code(command)
    if cc is not None:
        name = command_name(cc)
        op = f"{prefix}.{name[5:] if name.startswith('TPM2_') else name}"
        alg = template_type(command)
        if alg is not None:             # key creation: its cost depends on the algorithm
            keyed = f"{op}.{_ALG_SUFFIX.get(alg, 'other')}"
            if profile.has(keyed):
                return keyed
        if profile.has(op):
            return op
    return f"{prefix}.default"

class TisIrq:
    """The chip's interrupt line as a SimPy event source.

    :meth:`event` gives a fresh event that fires the next time the TPM
    raises an enabled interrupt; :attr:`raised` counts the assertions.
    """

    def __init__(self, env):
        self.env = env
        self.raised = 0
        self._waiting = []

    def event(self):
        """An event for the next interrupt."""
        ev = self.env.event()
        self._waiting.append(ev)
        return ev

    def fire(self, locality, status):
        """Assert the line: wake every waiter."""
        self.raised += 1
        waiting, self._waiting = self._waiting, []
        for ev in waiting:
            if not ev.triggered:
                ev.succeed((locality, status))


class TpmChip:
    """A discrete TPM at the TIS window.

    :param engine: anything with ``execute(command, locality) -> response``.
    :param profile_prefix: latency ops are ``<prefix>.<CommandName>`` and
        ``<prefix>.default``.
    :param name: the device's name in the iomem registry and the trace.
    :param burst_count: bytes per FIFO burst (a SPI TPM moves 64).
    """

    def __init__(self, hv, engine, *, profile_prefix="tpm.ptpm", name="tpm-tis",
                 first_mfn=TIS_FIRST_MFN, burst_count=64, max_command_size=4096):
        self.hv = hv
        self.env = hv.env
        self.engine = engine
        self.profile_prefix = profile_prefix
        self.name = name
        self.first_mfn = first_mfn
        self.irq = TisIrq(hv.env)
        self.device = TisDevice(self._execute, burst_count=burst_count,
                                max_command_size=max_command_size, on_go=self._on_go,
                                on_interrupt=self.irq.fire)
        hv.iomem.register_device(first_mfn, reg.TIS_NUM_LOCALITIES, self.device, name)
        self._rng = hv.streams.rng(f"hw/{name}/latency")
        self._latency = 0.0
        #: commands the engine executed
        self.commands = 0
        #: simulated seconds spent executing
        self.busy_time = 0.0

    def __repr__(self):
        return f"<TpmChip {self.name} at mfn {self.first_mfn:#x}>"

    def latency_op(self, command: bytes) -> str:
        """The profile op timing ``command``: its own if the profile has one, else default."""
        return latency_op(self.hv.profile, command, self.profile_prefix)

    def _driver_now(self):
        """The clock of the domain driving the window (it owns it), else the event loop's."""
        owner = self.hv.iomem.owner_of(self.first_mfn, reg.TIS_NUM_LOCALITIES)
        dom = self.hv.domains.get(owner) if owner is not None else None
        return dom.now if dom is not None else self.env.now

    def _on_go(self, command, locality):
        op = self.latency_op(command)
        self._latency = self.hv.profile.sample(op, self._rng)
        done_at = self._driver_now() + self._latency
        self.env.process(self._complete_at(done_at))

    def _complete_at(self, t):
        yield self.env.timeout(max(0.0, t - self.env.now))
        self.device.complete()

    def _execute(self, command, locality):
        response = self.engine.execute(command, locality)
        self.commands += 1
        self.busy_time += self._latency
        cc = header.code(command)
        rc = header.code(response)
        self.hv.trace.emit("tpm.exec", self.env.now, None, tpm=self.name,
                           cc=cc, cc_name=command_name(cc) if cc is not None else None, rc=rc,
                           duration=self._latency, locality=locality, command=command,
                           response=response)
        return response

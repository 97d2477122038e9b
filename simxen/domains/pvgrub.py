"""pv-grub: the boot loader that measures a guest's kernel into its vTPM.

A PV guest started with ``kernel = "pv-grub-x86_64.gz"`` first runs pv-grub
(GRUB legacy on mini-os) *inside its own domain*. pv-grub reads the real
kernel and initrd from the guest's disk, and -- since Xen commit d78dab3e
"stubdom/grub: send kernel measurements to vTPM" -- measures them before it
replaces itself with that kernel (Xen before commit 0724c68d85: ``stubdom/grub/kexec.c``):

1. connect mini-os tpmfront to ``device/vtpm/0`` (no vTPM: boot unmeasured);
2. extend **PCR 4** with the hash of the kernel file as stored;
3. extend **PCR 5** with the hash of the command line -- the ``kernel``
   line's arguments *without the kernel path* and *without the NUL*;
4. extend **PCR 5** with the hash of the initrd (no initrd: the empty
   string, so SHA-1 ``da39a3ee...``);
5. close tpmfront (Closing, Closed, back to Initialising), so the booted
   kernel's xen-tpmfront can connect to the same backend, which waits in
   InitWait.

Xen's pv-grub sent three TPM 1.2 ``TPM_Extend`` commands with SHA-1. Ours
talks TPM 2.0 and extends the SHA-1 and SHA-256 banks in one
``TPM2_PCR_Extend`` per measurement, as modern boot loaders do. A reply
with a non-zero response code aborts the boot, as pv-grub's assertion did.

It also writes the TCG crypto-agile event log (what Linux exposes as
``binary_bios_measurements``) and hands it to the kernel, so a verifier can
replay it. The event types are chosen so that ``tpm2_eventlog`` decodes each
record and re-hashes none of them (tpm2-tools ``lib/tpm2_eventlog.c``
``verify_digests`` re-hashes the data of EV_S_CRTM_VERSION, EV_SEPARATOR,
EV_EFI_VARIABLE_DRIVER_CONFIG, EV_EFI_GPT_EVENT and EV_IPL only; every other
event is replayed from its digests):

=====  =================================  ==========================================
PCR    event type                         event data
=====  =================================  ==========================================
4      EV_EFI_BOOT_SERVICES_APPLICATION   UEFI_IMAGE_LOAD_EVENT: load address, length
5      EV_EVENT_TAG 0x8F3B22ED            tagged event "LOADED_IMAGE::LoadOptions"
5      EV_EVENT_TAG 0x8F3B22EC            tagged event "Linux initrd"
=====  =================================  ==========================================

The two tag ids are the ones the Linux EFI stub uses when it measures the
command line and initrd (``drivers/firmware/efi/libstub/efistub.h``); the
digests are of the measured bytes, not of the event data, exactly as there.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field

from simxen.domains.kernel import Kernel
from simxen.protocols import tcg_eventlog as tl
from simxen.tpm import client
from simxen.tpm.constants import TPM_ALG

__all__ = ["KERNEL_PCR", "CONFIG_PCR", "INITRD_EVENT_TAG_ID", "LOAD_OPTIONS_EVENT_TAG_ID",
           "KERNEL_LOAD_ADDRESS", "measured_bytes", "boot_events", "BootMeasurement",
           "PvGrubAbort", "measure", "item_of_event", "PvGrub", "PVGRUB_IMAGE"]

KERNEL_PCR = 4
CONFIG_PCR = 5
INITRD_EVENT_TAG_ID = 0x8F3B22EC
LOAD_OPTIONS_EVENT_TAG_ID = 0x8F3B22ED
#: Guest-physical address the PV domain builder loads a kernel at (x86-64).
KERNEL_LOAD_ADDRESS = 0x200000
#: The kernel= image name that selects pv-grub (Xen's stubdom build output).
PVGRUB_IMAGE = "pv-grub-x86_64.gz"
_BANKS = (("sha1", TPM_ALG.SHA1), ("sha256", TPM_ALG.SHA256))


class PvGrubAbort(Exception):
    """pv-grub stopped the boot: a measurement failed (its assertion)."""


def measured_bytes(images) -> tuple[bytes, bytes, bytes]:
    """The exact bytes pv-grub hashes: ``(kernel, cmdline, initrd)``.

    The command line is UTF-8 without the kernel path and without a NUL;
    an absent initrd is ``b""``.
    """
    return images.kernel.data, images.cmdline.encode(), images.initrd_data


def _tagged(tag_id: int, description: bytes) -> bytes:
    """A TCG_PCClientTaggedEvent: taggedEventID u32, size u32, data (LE)."""
    return struct.pack("<II", tag_id, len(description)) + description


def boot_events(images) -> list[tuple[str, int, int, bytes, bytes]]:
    """``(item, pcr, event_type, event_data, measured_bytes)`` per measurement, in order."""
    kernel, cmdline, initrd = measured_bytes(images)
    image_load = struct.pack("<QQQQ", KERNEL_LOAD_ADDRESS, len(kernel), 0, 0)
    return [
        ("kernel", KERNEL_PCR, tl.EV_EFI_BOOT_SERVICES_APPLICATION, image_load, kernel),
        ("cmdline", CONFIG_PCR, tl.EV_EVENT_TAG,
         _tagged(LOAD_OPTIONS_EVENT_TAG_ID, b"LOADED_IMAGE::LoadOptions\0"), cmdline),
        ("initrd", CONFIG_PCR, tl.EV_EVENT_TAG, _tagged(INITRD_EVENT_TAG_ID, b"Linux initrd\0"),
         initrd),
    ]


def item_of_event(event) -> str:
    """What a pv-grub event measured ("kernel", "cmdline", "initrd"), or its type name."""
    if event.pcr == KERNEL_PCR and event.event_type == tl.EV_EFI_BOOT_SERVICES_APPLICATION:
        return "kernel"
    if event.event_type == tl.EV_EVENT_TAG and len(event.event) >= 4:
        tag = struct.unpack_from("<I", event.event)[0]
        if tag == LOAD_OPTIONS_EVENT_TAG_ID:
            return "cmdline"
        if tag == INITRD_EVENT_TAG_ID:
            return "initrd"
    return event.type_name


@dataclass
class BootMeasurement:
    """What pv-grub did: ``measured`` says whether a vTPM took the extends;
    ``log`` is the event log handed to the kernel (empty of events when
    unmeasured); ``digests`` maps item -> {bank: digest}."""

    measured: bool
    log: tl.EventLog
    digests: dict = field(default_factory=dict)
    commands: int = 0

    @property
    def log_bytes(self) -> bytes:
        return self.log.to_bytes()


def measure(front, images, *, trace=None, dom=None):
    """pv-grub's ``tpm_hash2pcr``: a SimPy generator returning a :class:`BootMeasurement`.

    ``front`` is a :class:`~simxen.drivers.tpmfront.TpmFront` of flavour
    ``"minios"`` for ``device/vtpm/0`` (not yet connected), or ``None`` when
    the guest has no vTPM -- then, as when the connection fails (pv-grub
    started without ``--vtpm-label``), nothing is measured and the log holds
    only its header. A failed extend raises :class:`PvGrubAbort`. A
    connected front is closed again before returning. ``trace``
    and ``dom`` (a :class:`~simxen.xen.domain.Domain`) add a ``pvgrub.measure``
    record per extend.
    """
    from simxen.drivers.tpmfront import DriverError
    log = tl.EventLog([name for name, _ in _BANKS])
    if front is None:
        return BootMeasurement(False, log)
    try:
        yield from front.connect()
    except DriverError as exc:          # init_tpmfront failed: boot unmeasured, as pv-grub does
        if trace is not None and dom is not None:
            trace.emit("pvgrub.no_vtpm", dom.now, dom.domid, error=str(exc))
        return BootMeasurement(False, log)
    result = BootMeasurement(True, log)
    for item, pcr, event_type, event_data, data in boot_events(images):
        digests = {alg: hashlib.new(name, data).digest() for name, alg in _BANKS}
        rsp = yield from front.transmit(client.pcr_extend_command(pcr, digests))
        result.commands += 1
        rc = client.response_code(rsp) if len(rsp) >= 10 else None
        if rc != 0:
            yield from front.close()
            what = "no response" if rc is None else f"response code {rc:#x}"
            raise PvGrubAbort(f"TPM2_PCR_Extend of PCR {pcr} ({item}) failed: {what}")
        log.append(pcr, event_type, event_data,
                   {name: digests[alg] for name, alg in _BANKS})
        result.digests[item] = {name: digests[alg] for name, alg in _BANKS}
        if trace is not None and dom is not None:
            trace.emit("pvgrub.measure", dom.now, dom.domid, pcr=pcr, item=item,
                       sha256=digests[TPM_ALG.SHA256], size=len(data))
    yield from front.close()
    return result


class PvGrub(Kernel):
    """pv-grub as the kernel model of a guest domain (image ``pv-grub-x86_64.gz``).

    The domain's config is the guest's own (``vtpm=["backend=vtpm-guest1"]``);
    the images pv-grub loads come from the toolstack option ``images`` (a
    :class:`~simxen.domains.images.GuestImages`). :meth:`main` measures, then
    does what pv-grub's ``kexec`` does: the Linux guest kernel
    (:class:`~simxen.domains.guest.Guest`) replaces it in the same domain and
    its xen-tpmfront reconnects to the vTPM. ``ready`` fires when that guest
    is ready (with the guest), or when pv-grub gave up (with ``None``;
    :attr:`aborted` says why); :attr:`measurement` (also
    ``guest.boot_measurement``) is what pv-grub measured and the event log it
    handed over.
    """

    role = "pv-grub"

    @classmethod
    def booted_role(cls) -> str:
        """A Linux guest's: :meth:`main` ends by handing the domain to one."""
        from simxen.domains.guest import Guest
        return Guest.role

    def __init__(self, toolstack, dom, config, disks=()):
        super().__init__(toolstack, dom, config, disks)
        self.measurement = None
        self.aborted = None              #: why pv-grub stopped the boot, if it did
        self.guest = None

    def main(self):
        from simxen.domains.guest import Guest
        from simxen.drivers.tpmfront import TpmFront
        images = self.options.get("images")
        if images is None:
            raise ValueError(f"{self.name}: pv-grub needs the toolstack option 'images'")
        front = TpmFront(self.hv, self.dom, 0, flavour="minios") if self.config.vtpm else None
        try:
            self.measurement = yield from measure(front, images, trace=self.hv.trace, dom=self.dom)
        except PvGrubAbort as exc:       # pv-grub's assertion: the domain crashes, no kernel runs
            self.aborted = str(exc)
            self.hv.trace.emit("pvgrub.abort", self.dom.now, self.domid, error=self.aborted)
            self.mark_ready(None)
            return
        self.hv.trace.emit("pvgrub.kexec", self.dom.now, self.domid, measured=self.measurement.measured,
                           kernel_size=len(images.kernel.data), log_size=len(self.measurement.log_bytes))
        guest = self.guest = Guest(self.toolstack, self.dom, self.config, self.disks)
        guest.boot_measurement = self.measurement
        if self.toolstack.kernels.get(self.name) is self:
            self.toolstack.kernels[self.name] = guest
        guest.boot()
        yield guest.ready
        self.mark_ready(guest)

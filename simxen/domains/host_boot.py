"""Host boot: what the platform measures into the physical TPM before Xen runs.

Before any domain exists, the firmware, the boot loader and Xen's loader
extend the physical TPM's PCRs with digests of what they are about to run
(the static root of trust). The vTPM manager seals its key to these PCRs,
so they are what makes "a changed host cannot unseal" true: boot another
firmware, another ``xen.gz`` or another dom0 kernel and the PCR values --
hence the PolicyPCR digest -- differ.

A boot is a list of :class:`Measurement` (PCR, component name, the bytes
measured). :data:`DEFAULT_BOOT` follows the PC Client conventions that a
UEFI + GRUB + Xen host produces:

====  ======================================================  ================
PCR   what                                                     measured by
====  ======================================================  ================
0     firmware code (SRTM, UEFI)                               firmware
1     firmware configuration                                   firmware
2     option ROMs                                              firmware
4     boot loader (GRUB's EFI image)                           firmware
5     boot-loader configuration (GPT)                          firmware
8     Xen and dom0 command lines                               GRUB
9     ``xen.gz``, dom0 kernel and initrd                       GRUB
====  ======================================================  ================

Each measurement is one ``TPM2_PCR_Extend`` of the SHA-256 bank with
``SHA-256(data)``, costing the profile's physical-TPM time (op
``tpm.ptpm.PCR_Extend`` if defined, else ``tpm.ptpm.default``) and traced
as ``host.measure`` (``pcr``, ``component``, ``digest``). :func:`measure`
runs the sequence against a TPM engine directly: the firmware drives the TPM
before Xen exists, so no domain and no TIS driver are involved.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from simxen.tpm import client
from simxen.tpm.constants import TPM_ALG, TPM_CC

__all__ = ["Measurement", "DEFAULT_BOOT", "measure", "boot_with", "expected_pcrs"]


@dataclass(frozen=True)
class Measurement:
    """One extend: *data* is hashed (SHA-256) into SHA-256 PCR *pcr*."""

    pcr: int
    component: str
    data: bytes

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(self.data).digest()


#: A UEFI + GRUB + Xen 4.19 host with a Linux dom0 (the bytes stand for the images).
DEFAULT_BOOT = (
    Measurement(0, "firmware", b"UEFI firmware 1.0 (SRTM + PEI + DXE)"),
    Measurement(1, "firmware-config", b"setup: secure boot on, TPM on, VT-d on"),
    Measurement(2, "option-roms", b"no option ROMs"),
    Measurement(4, "bootloader", b"grubx64.efi 2.12"),
    Measurement(5, "gpt", b"GPT: ESP, /boot, root"),
    Measurement(8, "xen-cmdline", b"xen.gz dom0_mem=4096M,max:4096M"),
    Measurement(8, "dom0-cmdline", b"vmlinuz root=/dev/sda2 ro"),
    Measurement(9, "xen", b"xen.gz 4.19.0"),
    Measurement(9, "dom0-kernel", b"vmlinuz-6.1.0-xen-dom0"),
    Measurement(9, "dom0-initrd", b"initrd.img-6.1.0-xen-dom0"),
)


def boot_with(component: str, data: bytes, boot=DEFAULT_BOOT) -> tuple:
    """*boot* with *component*'s measured bytes replaced (a changed host)."""
    if component not in {m.component for m in boot}:
        raise KeyError(f"no component {component!r} in this boot")
    return tuple(Measurement(m.pcr, m.component, data) if m.component == component else m
                 for m in boot)


def expected_pcrs(boot=DEFAULT_BOOT) -> dict:
    """``{pcr: SHA-256 value}`` a TPM reset and then *boot* leaves (a verifier's golden values)."""
    values = {}
    for m in boot:
        old = values.get(m.pcr, bytes(32))
        values[m.pcr] = hashlib.sha256(old + m.digest).digest()
    return values


def measure(hv, engine, boot=DEFAULT_BOOT):
    """Generator: extend each measurement into *engine* (a powered, started TPM).

    Time passes in the SimPy environment (no domain exists yet); returns the
    list of ``(pcr, component, digest)`` -- the host's event log.
    """
    env = hv.env
    op = "tpm.ptpm.PCR_Extend" if hv.profile.has("tpm.ptpm.PCR_Extend") else "tpm.ptpm.default"
    rng = hv.streams.rng("host/boot")
    log = []
    for m in boot:
        if not 0 <= m.pcr < 24:
            raise ValueError(f"measurement {m.component!r}: PCR {m.pcr} outside 0..23")
        rsp = engine.execute(client.pcr_extend_command(m.pcr, {TPM_ALG.SHA256: m.digest}), 0)
        client.check(rsp)
        yield env.timeout(hv.profile.sample(op, rng))
        hv.trace.emit("host.measure", env.now, None, pcr=m.pcr, component=m.component,
                      digest=m.digest, cc=int(TPM_CC.PCR_Extend), cc_name="TPM2_PCR_Extend")
        log.append((m.pcr, m.component, m.digest))
    return log

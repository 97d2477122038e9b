"""The TCG PC Client crypto-agile event log (``binary_bios_measurements``).

Firmware and boot loaders record every PCR extend in this log so that a
verifier can *replay* it and compare the result with PCR values a TPM signed
in a quote. Linux exposes the log as
``/sys/kernel/security/tpm0/binary_bios_measurements``; ``tpm2_eventlog``
prints it. All integers are little-endian.

The first record is the legacy SHA-1 format ``TCG_PCClientPCREvent`` and
carries the *Spec ID* header (``TCG_EfiSpecIDEvent``)::

    offset  size  field
    ------  ----  ------------------------------------------------
         0     4  pcrIndex = 0
         4     4  eventType = EV_NO_ACTION (3)
         8    20  digest = 20 zero bytes
        28     4  eventSize
        32    16  signature "Spec ID Event03\\0"
        48     4  platformClass (0 = client)
        52     1  specVersionMinor = 0
        53     1  specVersionMajor = 2
        54     1  specErrata
        55     1  uintnSize = 2 (UINTN is 64-bit)
        56     4  numberOfAlgorithms = k
        60  4*k   {algorithmId u16, digestSize u16} ...
           1     vendorInfoSize, then vendorInfo

Every further record is a ``TCG_PCR_EVENT2``::

    pcrIndex u32 | eventType u32 | count u32 | {hashAlg u16 | digest}*count
                 | eventSize u32 | event[eventSize]

with one digest per algorithm of the header, in the header's order.

:class:`EventLog` writes such a log (computing each bank's digest of the
event data unless told otherwise), :func:`parse` reads one back, and
:func:`replay` computes the PCR values the log claims. A log whose first
record is not a Spec ID event is read as an old SHA-1-only log (every record
in the 32-byte-header SHA-1 format), as ``tpm2_eventlog`` does.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Iterable, Mapping, Optional, Sequence

from simxen.errors import InputError

__all__ = [
    "TPM_ALG_SHA1", "TPM_ALG_SHA256", "TPM_ALG_SHA384", "TPM_ALG_SHA512", "TPM_ALG_SM3_256",
    "HASH_ALGORITHMS", "SPEC_ID_SIGNATURE", "STARTUP_LOCALITY_SIGNATURE", "TPM2_MAX_PCRS",
    "EVENT_TYPE_NAMES", "EventLogError", "SpecIdEvent", "Event", "EventLog",
    "parse", "replay", "alg_id", "alg_name", "event_type_name", "startup_locality_event",
]

TPM_ALG_SHA1 = 0x0004
TPM_ALG_SHA256 = 0x000B
TPM_ALG_SHA384 = 0x000C
TPM_ALG_SHA512 = 0x000D
TPM_ALG_SM3_256 = 0x0012

#: ``algorithmId -> (name tpm2-tools prints, digest size)``.
HASH_ALGORITHMS = {
    TPM_ALG_SHA1: ("sha1", 20),
    TPM_ALG_SHA256: ("sha256", 32),
    TPM_ALG_SHA384: ("sha384", 48),
    TPM_ALG_SHA512: ("sha512", 64),
    TPM_ALG_SM3_256: ("sm3_256", 32),
}
_HASHLIB_NAME = {"sm3_256": "sm3"}

SPEC_ID_SIGNATURE = b"Spec ID Event03\0"
STARTUP_LOCALITY_SIGNATURE = b"StartupLocality\0"
#: tpm2_eventlog refuses PCR indexes of 32 and above.
TPM2_MAX_PCRS = 32

# Event types, TCG PC Client Platform Firmware Profile names.
EV_PREBOOT_CERT = 0x0
EV_POST_CODE = 0x1
EV_UNUSED = 0x2
EV_NO_ACTION = 0x3
EV_SEPARATOR = 0x4
EV_ACTION = 0x5
EV_EVENT_TAG = 0x6
EV_S_CRTM_CONTENTS = 0x7
EV_S_CRTM_VERSION = 0x8
EV_CPU_MICROCODE = 0x9
EV_PLATFORM_CONFIG_FLAGS = 0xA
EV_TABLE_OF_DEVICES = 0xB
EV_COMPACT_HASH = 0xC
EV_IPL = 0xD
EV_IPL_PARTITION_DATA = 0xE
EV_NONHOST_CODE = 0xF
EV_NONHOST_CONFIG = 0x10
EV_NONHOST_INFO = 0x11
EV_OMIT_BOOT_DEVICE_EVENTS = 0x12
EV_EFI_EVENT_BASE = 0x80000000
EV_EFI_VARIABLE_DRIVER_CONFIG = EV_EFI_EVENT_BASE + 0x1
EV_EFI_VARIABLE_BOOT = EV_EFI_EVENT_BASE + 0x2
EV_EFI_BOOT_SERVICES_APPLICATION = EV_EFI_EVENT_BASE + 0x3
EV_EFI_BOOT_SERVICES_DRIVER = EV_EFI_EVENT_BASE + 0x4
EV_EFI_RUNTIME_SERVICES_DRIVER = EV_EFI_EVENT_BASE + 0x5
EV_EFI_GPT_EVENT = EV_EFI_EVENT_BASE + 0x6
EV_EFI_ACTION = EV_EFI_EVENT_BASE + 0x7
EV_EFI_PLATFORM_FIRMWARE_BLOB = EV_EFI_EVENT_BASE + 0x8
EV_EFI_HANDOFF_TABLES = EV_EFI_EVENT_BASE + 0x9
EV_EFI_PLATFORM_FIRMWARE_BLOB2 = EV_EFI_EVENT_BASE + 0xA
EV_EFI_HANDOFF_TABLES2 = EV_EFI_EVENT_BASE + 0xB
EV_EFI_VARIABLE_BOOT2 = EV_EFI_EVENT_BASE + 0xC
EV_EFI_VARIABLE_AUTHORITY = EV_EFI_EVENT_BASE + 0xE0

#: ``eventType -> spec name``.
EVENT_TYPE_NAMES = {value: name for name, value in globals().items()
                    if name.startswith("EV_") and name != "EV_EFI_EVENT_BASE"}
__all__ += sorted(EVENT_TYPE_NAMES.values()) + ["EV_EFI_EVENT_BASE"]


class EventLogError(InputError, ValueError):
    """A log that cannot be read or written; the message names the byte offset.

    An :class:`~simxen.errors.InputError` (*key* is ``"offset 0x..."``), so a
    bad log file reaches a user as one line; pass *path* to name the file.
    """

    def __init__(self, message: str, offset: Optional[int] = None, *, path=None):
        self.offset = offset
        super().__init__(message, path=path, key=None if offset is None else f"offset {offset:#x}")


def alg_id(alg) -> int:
    """``TPM_ALG_*`` of *alg*, given as an id or a name (``"sha256"``)."""
    if isinstance(alg, int):
        if alg in HASH_ALGORITHMS:
            return alg
    else:
        for ident, (name, _) in HASH_ALGORITHMS.items():
            if name == alg or (name == "sm3_256" and alg == "sm3"):
                return ident
    raise EventLogError(f"unknown hash algorithm {alg!r}")


def alg_name(alg: int) -> str:
    """The name tpm2-tools prints for ``TPM_ALG_*`` *alg*."""
    return HASH_ALGORITHMS[alg_id(alg)][0]


def event_type_name(event_type: int) -> str:
    """Spec name of *event_type*, or its hex value if unknown."""
    return EVENT_TYPE_NAMES.get(event_type, f"{event_type:#x}")


def _hash(alg: int, data: bytes) -> bytes:
    name = HASH_ALGORITHMS[alg][0]
    try:
        return hashlib.new(_HASHLIB_NAME.get(name, name), data).digest()
    except ValueError:
        raise EventLogError(f"hash algorithm {name} is not available here") from None


@dataclass(frozen=True)
class SpecIdEvent:
    """The ``TCG_EfiSpecIDEvent`` of the first record."""

    algorithms: tuple[tuple[int, int], ...] = ((TPM_ALG_SHA1, 20), (TPM_ALG_SHA256, 32))
    platform_class: int = 0
    spec_version_minor: int = 0
    spec_version_major: int = 2
    spec_errata: int = 0
    uintn_size: int = 2
    vendor_info: bytes = b""

    def to_bytes(self) -> bytes:
        """The ``event`` bytes of the header record."""
        out = bytearray(SPEC_ID_SIGNATURE)
        out += struct.pack("<IBBBBI", self.platform_class, self.spec_version_minor,
                           self.spec_version_major, self.spec_errata, self.uintn_size,
                           len(self.algorithms))
        for ident, size in self.algorithms:
            out += struct.pack("<HH", ident, size)
        out += bytes([len(self.vendor_info)]) + self.vendor_info
        return bytes(out)

    @property
    def digest_sizes(self) -> dict[int, int]:
        return dict(self.algorithms)


@dataclass(frozen=True)
class Event:
    """One ``TCG_PCR_EVENT2``: ``digests`` maps ``TPM_ALG_*`` to digest, in log order."""

    pcr: int
    event_type: int
    digests: Mapping[int, bytes]
    event: bytes = b""

    @property
    def type_name(self) -> str:
        return event_type_name(self.event_type)

    def to_bytes(self) -> bytes:
        out = bytearray(struct.pack("<III", self.pcr, self.event_type, len(self.digests)))
        for ident, digest in self.digests.items():
            out += struct.pack("<H", ident) + digest
        out += struct.pack("<I", len(self.event)) + self.event
        return bytes(out)


def startup_locality_event(locality: int, algorithms: Sequence[int]) -> Event:
    """The EV_NO_ACTION record that says from which locality TPM2_Startup came."""
    return Event(0, EV_NO_ACTION, {a: bytes(HASH_ALGORITHMS[a][1]) for a in algorithms},
                 STARTUP_LOCALITY_SIGNATURE + bytes([locality]))


class EventLog:
    """A crypto-agile event log being written.

    :param algorithms: the PCR banks recorded, ids or names, e.g.
        ``["sha1", "sha256"]``; each event carries one digest per bank.
    :param spec_errata: ``specErrata`` of the header (0 here; real firmware often 2).
    :param vendor_info: optional vendor bytes (at most 255).
    """

    def __init__(self, algorithms: Iterable = ("sha1", "sha256"), *, spec_errata: int = 0,
                 platform_class: int = 0, vendor_info: bytes = b""):
        ids = [alg_id(a) for a in algorithms]
        if not ids or len(set(ids)) != len(ids):
            raise EventLogError("a log needs one or more distinct algorithms")
        if len(vendor_info) > 255:
            raise EventLogError("vendorInfo is at most 255 bytes")
        self.header = SpecIdEvent(tuple((a, HASH_ALGORITHMS[a][1]) for a in ids),
                                  platform_class=platform_class, spec_errata=spec_errata,
                                  vendor_info=bytes(vendor_info))
        self.events: list[Event] = []

    @property
    def algorithms(self) -> list[int]:
        return [a for a, _ in self.header.algorithms]

    def append(self, pcr: int, event_type: int, event_data: bytes = b"",
               digests: Optional[Mapping] = None, *, measured: Optional[bytes] = None) -> Event:
        """Record one extend and return the record.

        Without *digests* each bank's digest is the hash of *event_data*
        (the usual rule; EV_NO_ACTION records get zero digests), or of
        *measured* when the bytes extended are not the event data itself (a
        kernel image described by its path). *digests* (``{alg: digest}``,
        ids or names) gives the digests outright and must cover every bank
        with the right sizes.
        """
        if not 0 <= pcr < TPM2_MAX_PCRS:
            raise EventLogError(f"PCR index {pcr} is not below {TPM2_MAX_PCRS}")
        if not 0 <= event_type < 2 ** 32:
            raise EventLogError(f"event type {event_type} does not fit in u32")
        event_data = bytes(event_data)
        if measured is not None:
            if digests is not None:
                raise EventLogError("give either digests or measured bytes, not both")
            digests = {a: _hash(a, bytes(measured)) for a in self.algorithms}
        if digests is None:
            if event_type == EV_NO_ACTION:
                values = {a: bytes(size) for a, size in self.header.algorithms}
            else:
                values = {a: _hash(a, event_data) for a in self.algorithms}
        else:
            given = {alg_id(a): bytes(d) for a, d in digests.items()}
            if set(given) != set(self.algorithms):
                raise EventLogError(
                    f"digests for {sorted(alg_name(a) for a in given)} do not match the log's banks "
                    f"{[alg_name(a) for a in self.algorithms]}")
            for a, size in self.header.algorithms:
                if len(given[a]) != size:
                    raise EventLogError(f"{alg_name(a)} digest is {len(given[a])} bytes, not {size}")
            values = {a: given[a] for a in self.algorithms}
        event = Event(pcr, event_type, values, event_data)
        self.events.append(event)
        return event

    def to_bytes(self) -> bytes:
        """The binary log: the Spec ID header record, then every event."""
        spec = self.header.to_bytes()
        out = bytearray(struct.pack("<II", 0, EV_NO_ACTION) + bytes(20) + struct.pack("<I", len(spec)))
        out += spec
        for event in self.events:
            out += event.to_bytes()
        return bytes(out)


class _Reader:
    """Cursor over *data*, whose first byte is at offset *base* of the whole log."""

    def __init__(self, data: bytes, base: int = 0):
        self.data = memoryview(bytes(data))
        self.pos = 0
        self.base = base

    @property
    def offset(self) -> int:
        return self.base + self.pos

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise EventLogError(f"{what}: needs {n} bytes, {len(self.data) - self.pos} left", self.offset)
        out = bytes(self.data[self.pos:self.pos + n])
        self.pos += n
        return out

    def u(self, fmt: str, what: str) -> int:
        return struct.unpack("<" + fmt, self.take(struct.calcsize(fmt), what))[0]

    @property
    def left(self) -> int:
        return len(self.data) - self.pos


def _parse_spec_id(event: bytes, base: int) -> SpecIdEvent:
    r = _Reader(event, base)
    if r.take(16, "signature") != SPEC_ID_SIGNATURE:
        raise EventLogError("Spec ID header without the 'Spec ID Event03' signature", base)
    platform_class = r.u("I", "platformClass")
    minor, major, errata, uintn = (r.u("B", n) for n in ("minor", "major", "errata", "uintnSize"))
    count = r.u("I", "numberOfAlgorithms")
    if count < 1 or count > r.left // 4:
        raise EventLogError(f"numberOfAlgorithms {count} does not fit the header", r.offset - 4)
    algs = []
    for _ in range(count):
        ident, size = r.u("H", "algorithmId"), r.u("H", "digestSize")
        if ident in HASH_ALGORITHMS and HASH_ALGORITHMS[ident][1] != size:
            raise EventLogError(f"{alg_name(ident)} announced with digestSize {size}", r.offset - 2)
        if size == 0 or ident in dict(algs):
            raise EventLogError(f"bad algorithm entry {ident:#06x}/{size}", r.offset - 4)
        algs.append((ident, size))
    vendor = r.take(r.u("B", "vendorInfoSize"), "vendorInfo")
    return SpecIdEvent(tuple(algs), platform_class, minor, major, errata, uintn, vendor)


def parse(data: bytes) -> tuple[Optional[SpecIdEvent], list[Event]]:
    """Read a binary log: ``(header, events)``.

    ``header`` is ``None`` for an old SHA-1-only log; then every event's
    digests are ``{TPM_ALG_SHA1: digest}``. Raises :class:`EventLogError`
    naming the offset of the first byte that does not make sense.
    """
    r = _Reader(data)
    if r.left == 0:
        raise EventLogError("empty event log", 0)
    first = r.pos
    pcr, etype = r.u("I", "pcrIndex"), r.u("I", "eventType")
    digest = r.take(20, "SHA-1 digest")
    size = r.u("I", "eventSize")
    body_at = r.pos
    body = r.take(size, "event data")
    header = None
    events: list[Event] = []
    if etype == EV_NO_ACTION:
        if pcr != 0 or digest != bytes(20):
            raise EventLogError("Spec ID header must be on PCR 0 with a zero digest", first)
        header = _parse_spec_id(body, body_at)
    else:
        events.append(_checked_event(pcr, etype, {TPM_ALG_SHA1: digest}, body, first))
    while r.left:
        at = r.pos
        pcr, etype = r.u("I", "pcrIndex"), r.u("I", "eventType")
        if header is None:
            digests = {TPM_ALG_SHA1: r.take(20, "SHA-1 digest")}
        else:
            count = r.u("I", "digest count")
            sizes = header.digest_sizes
            if count != len(sizes):
                raise EventLogError(f"{count} digests, the header announced {len(sizes)}", r.offset - 4)
            digests = {}
            for _ in range(count):
                ident = r.u("H", "hashAlg")
                if ident not in sizes:
                    raise EventLogError(f"digest algorithm {ident:#06x} not in the header", r.offset - 2)
                if ident in digests:
                    raise EventLogError(f"second {alg_name(ident)} digest", r.offset - 2)
                digests[ident] = r.take(sizes[ident], f"digest {ident:#06x}")
        event = r.take(r.u("I", "eventSize"), "event data")
        events.append(_checked_event(pcr, etype, digests, event, at))
    return header, events


def _checked_event(pcr, etype, digests, event, at) -> Event:
    if pcr >= TPM2_MAX_PCRS:
        raise EventLogError(f"PCR index {pcr} is not below {TPM2_MAX_PCRS}", at)
    return Event(pcr, etype, digests, event)


def _initial_pcr(pcr: int, size: int, locality: int) -> bytes:
    """Reset value of a PC Client PCR: zeros; 17..22 all 0xFF; PCR 0 holds the startup locality."""
    if 17 <= pcr <= 22:
        return b"\xff" * size
    if pcr == 0:
        return bytes(size - 1) + bytes([locality])
    return bytes(size)


def replay(events: Iterable[Event], *, algorithms: Optional[Iterable] = None,
           tpm2_tools_54_quirk: bool = False) -> dict[str, dict[int, bytes]]:
    """PCR values the log claims: ``{"sha256": {pcr: value}}`` for every PCR touched.

    Extend is ``new = H(old || digest)`` per bank, each bank fed its own
    digest. EV_NO_ACTION records are not extended (a TPM never sees them); a
    StartupLocality record sets PCR 0's reset value to ``0...0 || locality``.

    With *tpm2_tools_54_quirk* the rule of tpm2-tools 5.4 is reproduced
    instead: every EV_NO_ACTION record extends its (zero) digests and
    StartupLocality is not honoured — use it only to predict what that tool
    prints.
    """
    events = list(events)
    wanted = None if algorithms is None else [alg_id(a) for a in algorithms]
    locality = 0
    if not tpm2_tools_54_quirk:
        for ev in events:
            if ev.event_type == EV_NO_ACTION and ev.pcr == 0 \
                    and ev.event[:16] == STARTUP_LOCALITY_SIGNATURE and len(ev.event) == 17:
                locality = ev.event[16]
    banks: dict[str, dict[int, bytes]] = {}
    for ev in events:
        if ev.event_type == EV_NO_ACTION and not tpm2_tools_54_quirk:
            continue
        for ident, digest in ev.digests.items():
            if ident not in HASH_ALGORITHMS or (wanted is not None and ident not in wanted):
                continue
            name, size = HASH_ALGORITHMS[ident]
            bank = banks.setdefault(name, {})
            old = bank.get(ev.pcr)
            if old is None:
                old = _initial_pcr(ev.pcr, size, locality)
            bank[ev.pcr] = _hash(ident, old + digest)
    return {name: dict(sorted(bank.items())) for name, bank in banks.items()}

"""Linux IMA measurement lists in the ``ima-ng`` template.

The Integrity Measurement Architecture measures every file the policy names
(executables, libraries, ...) before use: it hashes the file, builds a
*template entry*, extends PCR 10 with the entry's digest and appends a line to
``/sys/kernel/security/ima/ascii_runtime_measurements``::

    10 <template hash, sha1 hex> ima-ng <algo>:<file digest hex> <path>

Template data (what the template hash covers). For every template other
than the original ``ima``, each field is preceded by its length as a u32 in
little-endian (the host order of x86; ``ima_canonical_fmt`` forces LE
everywhere)::

    u32 len(d-ng) | d-ng | u32 len(n-ng) | n-ng

    d-ng = "<algo>" ":" "\\0" <raw file digest>     e.g. 6+2+32 = 40 bytes for sha256
    n-ng = "<path>" "\\0"                            len(path)+1 bytes

Per-bank rule (read in Linux ``ima_calc_field_array_hash`` and
``ima_add_template_entry``, kernels since 5.8): the template data is hashed
**once per PCR bank with that bank's own algorithm**, and each bank of PCR 10
is extended with its own digest; the printed template hash is the SHA-1 one.
A bank whose algorithm the kernel's crypto API lacks gets the SHA-1 digest
zero-padded to the bank's size. A *violation* (ToMToU, open-writers) is
listed with an all-zero template hash but extends **all-0xFF** into every
bank. Older kernels (< 5.8) extended the zero-padded SHA-1 digest into every
bank; ``replay(..., legacy_padded_sha1=True)`` reproduces that.

The binary list, ``/sys/kernel/security/ima/binary_runtime_measurements``
(Linux ``ima_fs.c``, ``ima_measurements_show``), holds the same entries, one
after another with no separator; integers are little-endian on x86 (and
everywhere with ``ima_canonical_fmt``)::

    u32 PCR | template hash[20] | u32 len(name) | name | u32 len(data) | template data

The template hash is the SHA-1 one (all zeros for a violation); the name is
``ima-ng`` here, without a NUL; the template data is exactly what the hash
covers. (Only the original ``ima`` template omits the data length.)
A violation's file digest is zeros of the ``ima_hash`` algorithm's size
(``ima_eventdigest_init_common``, Linux 5.19 and later). Earlier kernels
recorded every violation as ``sha1:`` and 20 zero bytes -- ``violation(path,
"sha1")``; a 5.19 release candidate wrote ``sha256:`` with 20 zero bytes, a
form this module refuses.

The first entry is ``boot_aggregate``: a digest over PCRs 0..7 of one bank
(and PCRs 8, 9 too when that bank is not SHA-1), the bank chosen as the one
matching ``ima_hash`` if allocated, else SHA-256, else SHA-1
(``ima_calc_boot_aggregate``).
"""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass
from typing import Iterable, Mapping, Optional

from simxen.errors import InputError

__all__ = [
    "IMA_PCR", "IMA_TEMPLATE_NG", "BOOT_AGGREGATE_NAME", "DIGEST_SIZES",
    "ImaListError", "ImaEntry", "d_ng", "n_ng", "template_data", "measure",
    "violation", "boot_aggregate", "boot_aggregate_entry", "format_list",
    "parse_list", "bank_digest", "replay", "binary_entry", "format_binary",
    "parse_template_data", "parse_binary", "pcrs_text",
]

#: The PCR IMA extends by default (CONFIG_IMA_MEASURE_PCR_IDX).
IMA_PCR = 10
IMA_TEMPLATE_NG = "ima-ng"
BOOT_AGGREGATE_NAME = "boot_aggregate"
#: Digest sizes of the algorithm names this module accepts.
DIGEST_SIZES = {"sha1": 20, "sha256": 32, "sha384": 48, "sha512": 64}
#: A binary entry's head: PCR, SHA-1 template hash, length of the template name.
BINARY_HEAD = struct.Struct("<I20sI")
#: The u32 little-endian length before the template data and before each field.
U32 = struct.Struct("<I")
#: The SHA-1 size of every template hash, whatever the PCR banks.
TEMPLATE_HASH_SIZE = 20


class ImaListError(InputError, ValueError):
    """A measurement list line that is not a valid ``ima-ng`` entry."""

    def __init__(self, message: str, *, path=None, line: Optional[int] = None):
        self.line = line
        super().__init__(message, path=path, key=None if line is None else f"line {line}")


def _check_algo(algo: str) -> int:
    if algo not in DIGEST_SIZES:
        raise ImaListError(f"unsupported hash algorithm {algo!r} (expected one of {sorted(DIGEST_SIZES)})")
    return DIGEST_SIZES[algo]


def d_ng(algo: str, digest: bytes) -> bytes:
    """The ``d-ng`` field: ``algo ':' '\\0' digest``."""
    if len(digest) != _check_algo(algo):
        raise ImaListError(f"{algo} digest must be {DIGEST_SIZES[algo]} bytes, not {len(digest)}")
    return algo.encode() + b":\0" + bytes(digest)


def n_ng(path: str) -> bytes:
    """The ``n-ng`` field: the path and its terminating NUL."""
    if "\0" in path or "\n" in path:
        raise ImaListError(f"path {path!r} contains NUL or newline")
    return path.encode() + b"\0"


def template_data(algo: str, file_digest: bytes, path: str) -> bytes:
    """The ``ima-ng`` template data: each field preceded by its u32 LE length."""
    out = bytearray()
    for field in (d_ng(algo, file_digest), n_ng(path)):
        out += U32.pack(len(field)) + field
    return bytes(out)


@dataclass(frozen=True)
class ImaEntry:
    """One line of the ascii measurement list."""

    pcr: int
    template_hash: bytes          # SHA-1 of template_data (zeros for a violation)
    algo: str                     # algorithm of the file digest
    file_digest: bytes
    path: str
    template_name: str = IMA_TEMPLATE_NG

    @property
    def template_data(self) -> bytes:
        return template_data(self.algo, self.file_digest, self.path)

    @property
    def is_violation(self) -> bool:
        return self.template_hash == bytes(20)

    def line(self) -> str:
        """The line as ``ascii_runtime_measurements`` prints it (no newline)."""
        return (f"{self.pcr} {self.template_hash.hex()} {self.template_name} "
                f"{self.algo}:{self.file_digest.hex()} {self.path}")

    def binary(self) -> bytes:
        """The entry as ``binary_runtime_measurements`` holds it."""
        return binary_entry(self)


def measure(path: str, file_digest: bytes, algo: str = "sha256", *, pcr: int = IMA_PCR) -> ImaEntry:
    """The entry IMA adds after hashing a file with *algo* (``ima_hash``)."""
    data = template_data(algo, file_digest, path)
    return ImaEntry(pcr, hashlib.sha1(data).digest(), algo, bytes(file_digest), path)


def violation(path: str, algo: str = "sha256", *, pcr: int = IMA_PCR) -> ImaEntry:
    """A ToMToU/open-writers violation: zero file digest, zero template hash."""
    return ImaEntry(pcr, bytes(20), algo, bytes(_check_algo(algo)), path)


def boot_aggregate(pcrs: Mapping[str, Mapping[int, bytes]], ima_hash: str = "sha256") -> tuple[str, bytes]:
    """``(algo, digest)`` of the boot aggregate over the TPM's PCR values.

    *pcrs* maps bank name to ``{index: value}``; PCRs missing from a bank
    count as all-zero (what a reset PCR reads). The bank is *ima_hash* if
    present, else sha256, else sha1.
    """
    for bank in (ima_hash, "sha256", "sha1"):
        if bank in pcrs:
            break
    else:
        raise ImaListError("boot_aggregate needs a sha1 or sha256 PCR bank")
    size = _check_algo(bank)
    last = 8 if bank == "sha1" else 10
    h = hashlib.new(bank)
    for index in range(last):
        value = pcrs[bank].get(index, bytes(size))
        if len(value) != size:
            raise ImaListError(f"PCR {index} of bank {bank} is {len(value)} bytes, not {size}")
        h.update(value)
    return bank, h.digest()


def boot_aggregate_entry(pcrs: Mapping[str, Mapping[int, bytes]], ima_hash: str = "sha256") -> ImaEntry:
    """The first entry of every list: ``boot_aggregate`` measured into PCR 10."""
    algo, digest = boot_aggregate(pcrs, ima_hash)
    return measure(BOOT_AGGREGATE_NAME, digest, algo)


def format_list(entries: Iterable[ImaEntry]) -> str:
    """The whole ``ascii_runtime_measurements`` text."""
    return "".join(entry.line() + "\n" for entry in entries)


_HEX = re.compile(r"[0-9a-f]*\Z")


def parse_list(text: str, *, source: str = "ascii_runtime_measurements",
               verify: bool = True) -> list[ImaEntry]:
    """Read an ascii measurement list.

    Everything after the file digest is the path (so a path may hold
    spaces, and any character but NUL and newline: entries end at ``\\n``
    alone, as Linux's ``ima_ascii_measurements_show`` ends them -- a carriage
    return or another Unicode line break belongs to the path). With *verify*,
    each template hash must equal SHA-1 of the entry's template data (or be
    all zeros: a violation). Errors are
    :class:`ImaListError` naming *source* and the 1-based line.
    """
    entries = []
    for number, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        def fail(message):
            return ImaListError(message, path=source, line=number)
        parts = raw.split(" ", 4)
        if len(parts) != 5:
            raise fail(f"expected 5 space-separated fields, found {len(parts)}")
        pcr_s, thash_s, name, digest_s, path = parts
        if not pcr_s.isdigit() or int(pcr_s) > 23:
            raise fail(f"PCR {pcr_s!r} is not 0..23")
        if name != IMA_TEMPLATE_NG:
            raise fail(f"template {name!r} is not {IMA_TEMPLATE_NG}")
        if len(thash_s) != 40 or not _HEX.match(thash_s):
            raise fail(f"template hash {thash_s!r} is not 40 lowercase hex digits")
        algo, sep, hex_digest = digest_s.partition(":")
        if not sep or algo not in DIGEST_SIZES:
            raise fail(f"file digest {digest_s[:20]!r} is not <algo>:<hex> with algo in {sorted(DIGEST_SIZES)}")
        if len(hex_digest) != 2 * DIGEST_SIZES[algo] or not _HEX.match(hex_digest):
            raise fail(f"{algo} digest must be {2 * DIGEST_SIZES[algo]} lowercase hex digits")
        if not path:
            raise fail("empty path")
        entry = ImaEntry(int(pcr_s), bytes.fromhex(thash_s), algo, bytes.fromhex(hex_digest), path)
        if verify and not entry.is_violation and hashlib.sha1(entry.template_data).digest() != entry.template_hash:
            raise fail("template hash does not match the template data")
        entries.append(entry)
    return entries


def binary_entry(entry: ImaEntry) -> bytes:
    """One ``binary_runtime_measurements`` entry (see the module's layout)."""
    name = entry.template_name.encode()
    data = entry.template_data
    return (BINARY_HEAD.pack(entry.pcr, entry.template_hash, len(name)) + name
            + U32.pack(len(data)) + data)


def format_binary(entries: Iterable[ImaEntry]) -> bytes:
    """The whole ``binary_runtime_measurements`` file: the entries back to back."""
    return b"".join(binary_entry(entry) for entry in entries)


def parse_template_data(data: bytes) -> tuple[str, bytes, str]:
    """``(algo, file digest, path)`` of ``ima-ng`` template data.

    The inverse of :func:`template_data`: two length-prefixed fields, ``d-ng``
    (``algo ':' '\\0' digest``) and ``n-ng`` (the path and its NUL), and
    nothing after them. Raises :class:`ImaListError` naming what is wrong.
    """
    fields = []
    at = 0
    for name in ("d-ng", "n-ng"):
        if len(data) - at < U32.size:
            raise ImaListError(f"template data ends before the length of its {name} field")
        (size,) = U32.unpack_from(data, at)
        at += U32.size
        if size > len(data) - at:
            raise ImaListError(f"{name} field says {size} bytes but {len(data) - at} remain")
        fields.append(bytes(data[at:at + size]))
        at += size
    if at != len(data):
        raise ImaListError(f"{len(data) - at} bytes after the n-ng field of the template data")
    digest_field, name_field = fields
    algo, sep, digest = digest_field.partition(b":\0")
    if not sep:
        raise ImaListError("d-ng field has no 'algo:' followed by a NUL")
    try:
        algo_name = algo.decode("ascii")
    except UnicodeDecodeError:
        raise ImaListError(f"d-ng algorithm {algo[:20]!r} is not ASCII") from None
    if algo_name not in DIGEST_SIZES:
        raise ImaListError(f"d-ng algorithm {algo_name!r} is not one of {sorted(DIGEST_SIZES)}")
    if len(digest) != DIGEST_SIZES[algo_name]:
        raise ImaListError(f"{algo_name} digest in d-ng is {len(digest)} bytes, "
                           f"not {DIGEST_SIZES[algo_name]}")
    if not name_field.endswith(b"\0") or b"\0" in name_field[:-1]:
        raise ImaListError("n-ng field is not one NUL-terminated path")
    try:
        path = name_field[:-1].decode()
    except UnicodeDecodeError:
        raise ImaListError("n-ng path is not UTF-8") from None
    if not path or "\n" in path:
        raise ImaListError("n-ng path is empty or holds a newline")
    return algo_name, digest, path


def parse_binary(data: bytes, *, source: str = "binary_runtime_measurements",
                 verify: bool = True) -> list[ImaEntry]:
    """Read a binary measurement list (the module's layout), entry by entry.

    With *verify*, each template hash must equal SHA-1 of the template data
    (or be all zeros: a violation), as for :func:`parse_list`. Errors are
    :class:`ImaListError` naming *source*, the 1-based entry and its byte
    offset.
    """
    entries = []
    view = memoryview(bytes(data))
    at = 0
    while at < len(view):
        start, number = at, len(entries) + 1

        def fail(message):
            return ImaListError(f"entry {number} at byte {start}: {message}", path=source)
        if len(view) - at < BINARY_HEAD.size:
            raise fail(f"{len(view) - at} bytes left, an entry's head is {BINARY_HEAD.size}")
        pcr, thash, name_len = BINARY_HEAD.unpack_from(view, at)
        at += BINARY_HEAD.size
        if pcr > 23:
            raise fail(f"PCR {pcr} is not 0..23")
        name = bytes(view[at:at + name_len])
        at += name_len
        if name != IMA_TEMPLATE_NG.encode():
            raise fail(f"template {name[:32]!r} is not {IMA_TEMPLATE_NG}")
        if len(view) - at < U32.size:
            raise fail("the list ends before the template data length")
        (size,) = U32.unpack_from(view, at)
        at += U32.size
        if size > len(view) - at:
            raise fail(f"template data says {size} bytes but {len(view) - at} remain")
        template = view[at:at + size]
        at += size
        try:
            algo, digest, path = parse_template_data(template)
        except ImaListError as exc:
            raise fail(exc.message) from None
        if verify and thash != bytes(TEMPLATE_HASH_SIZE) and hashlib.sha1(template).digest() != thash:
            raise fail("template hash does not match the template data")
        entries.append(ImaEntry(pcr, thash, algo, digest, path))
    return entries


def pcrs_text(values: Mapping[int, bytes]) -> str:
    """One PCR bank as ``evmctl ima_measurement --pcrs <bank>,<file>`` reads it.

    The TPM 1.2 sysfs ``pcrs`` form (Linux ``tpm-sysfs.c``, ``pcrs_show``):
    ``PCR-NN: `` then each byte as two upper-case hex digits and a space, one
    line per PCR. evmctl (``read_one_bank``) takes the lines in order from
    PCR-00 and skips one out of place, so *values* must hold PCRs 0..n with
    none missing.
    """
    out = []
    for index in range(max(values, default=-1) + 1):
        if index not in values:
            raise ImaListError(f"PCR {index} is missing: evmctl reads PCR-00 onwards in order")
        out.append(f"PCR-{index:02d}: " + "".join(f"{b:02X} " for b in values[index]) + "\n")
    return "".join(out)


def bank_digest(entry: ImaEntry, bank: str, *, legacy_padded_sha1: bool = False) -> bytes:
    """What IMA extends into PCR bank *bank* for *entry*.

    The bank's own hash of the template data; all-0xFF for a violation;
    with *legacy_padded_sha1* (kernels before 5.8), the SHA-1 template hash
    zero-padded to the bank's size -- and for a violation 20 bytes of 0xFF
    zero-padded, since those kernels set only a SHA-1-sized digest to 0xFF
    (``ima_add_template_entry``) and ``tpm_pcr_extend`` copied those 20 bytes
    into each bank's zeroed digest.
    """
    size = _check_algo(bank)
    if entry.is_violation:
        if legacy_padded_sha1:
            return b"\xff" * TEMPLATE_HASH_SIZE + bytes(size - TEMPLATE_HASH_SIZE)
        return b"\xff" * size
    if legacy_padded_sha1 or bank == "sha1":
        return entry.template_hash + bytes(size - 20)
    return hashlib.new(bank, entry.template_data).digest()


def replay(entries: Iterable[ImaEntry], banks: Iterable[str] = ("sha1", "sha256"), *,
           legacy_padded_sha1: bool = False) -> dict[str, dict[int, bytes]]:
    """PCR values the list claims, ``{bank: {pcr: value}}``, each PCR starting at zero."""
    entries = list(entries)
    out = {}
    for bank in banks:
        size = _check_algo(bank)
        values: dict[int, bytes] = {}
        for entry in entries:
            old = values.get(entry.pcr, bytes(size))
            values[entry.pcr] = hashlib.new(bank, old + bank_digest(
                entry, bank, legacy_padded_sha1=legacy_padded_sha1)).digest()
        out[bank] = values
    return out

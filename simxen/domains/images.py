"""Guest boot images: the kernel, the initrd and the command line as bytes.

pv-grub measures *bytes* -- the kernel file as stored, the command line
without the kernel path and without its NUL, the initrd (absent = the empty
string) -- so a simulated guest needs real content: change one byte and the
measurement changes. A scenario describes each image in one of two ways::

    kernel = { name = "linux", version = "6.1.0-13" }         # generated
    kernel = { file = "images/vmlinuz" }                       # read from a file
    initrd = { name = "initramfs", version = "6.1.0-13", size = 65536 }
    cmdline = "root=/dev/xvda1 ro console=hvc0"

Generated content is a pure function of ``(kind, name, version, size)``:
SHA-256 in counter mode over a label, wrapped in the header a real file of
that kind starts with (a bzImage "HdrS" setup header for a kernel, a cpio
"070701" record for an initrd), so that tools that sniff a file see what they
expect. ``flip_byte = N`` inverts byte *N* of the content -- the smallest
possible tampering, and a completely different digest::

    >>> a = kernel_bytes("linux", "6.1.0", 8192)
    >>> a == kernel_bytes("linux", "6.1.0", 8192), a[0x202:0x206]
    (True, b'HdrS')
    >>> flip(a, 100) == a
    False

Paths in a scenario are relative to the scenario file's folder.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from simxen.errors import InputError

__all__ = ["Image", "GuestImages", "generate", "kernel_bytes", "initrd_bytes", "flip",
           "image_from_spec", "guest_images", "DEFAULT_KERNEL_SIZE", "DEFAULT_INITRD_SIZE"]

#: Default sizes of generated images: small enough to hash quickly, big
#: enough to be more than a header.
DEFAULT_KERNEL_SIZE = 64 * 1024
DEFAULT_INITRD_SIZE = 32 * 1024
#: Offset of the "HdrS" magic in a Linux x86 boot sector (boot protocol 2.00+).
_BZIMAGE_MAGIC_OFFSET = 0x202
_SPEC_KEYS = {"name", "version", "size", "file", "flip_byte"}


def generate(kind: str, name: str, version: str, size: int) -> bytes:
    """``size`` deterministic pseudo-random bytes labelled by kind, name and version."""
    label = f"simxen image\0{kind}\0{name}\0{version}\0".encode()
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(label + struct.pack(">Q", counter)).digest()
        counter += 1
    return bytes(out[:size])


def kernel_bytes(name: str, version: str, size: int = DEFAULT_KERNEL_SIZE) -> bytes:
    """A generated kernel: boot sector with the bzImage "HdrS" magic, then the
    version string as the kernel's banner, then generated text."""
    if size < 0x400:
        raise ValueError("a kernel image is at least 1 KiB (its setup header)")
    body = bytearray(generate("kernel", name, version, size))
    body[0x1FE:0x200] = b"\x55\xaa"                       # boot sector signature
    body[_BZIMAGE_MAGIC_OFFSET:_BZIMAGE_MAGIC_OFFSET + 4] = b"HdrS"
    banner = f"Linux version {version} ({name})\0".encode()[:256]
    body[0x200 + 0x40:0x200 + 0x40 + len(banner)] = banner
    return bytes(body)


def initrd_bytes(name: str, version: str, size: int = DEFAULT_INITRD_SIZE) -> bytes:
    """A generated initrd: a cpio "newc" header naming ``init``, then generated data."""
    header = b"070701" + b"0" * 104 + b"init\0"
    if size < len(header):
        raise ValueError(f"an initrd is at least {len(header)} bytes")
    return header + generate("initrd", name, version, size - len(header))


def flip(data: bytes, offset: int) -> bytes:
    """``data`` with byte ``offset`` inverted (xor 0xFF)."""
    out = bytearray(data)
    out[offset] ^= 0xFF
    return bytes(out)


@dataclass(frozen=True)
class Image:
    """One boot file: its bytes and where they came from (for reports)."""

    kind: str
    data: bytes
    source: str

    def digest(self, alg: str = "sha256") -> bytes:
        return hashlib.new(alg, self.data).digest()


@dataclass(frozen=True)
class GuestImages:
    """What a guest boots: kernel, optional initrd, command line, and the path
    the boot loader's ``kernel`` line names (pv-grub skips it when measuring)."""

    kernel: Image
    initrd: Optional[Image]
    cmdline: str
    kernel_path: str = "/boot/vmlinuz"

    @property
    def initrd_data(self) -> bytes:
        """What pv-grub hashes for the initrd: the module bytes, or b"" without one."""
        return self.initrd.data if self.initrd is not None else b""

    @property
    def grub_kernel_line(self) -> str:
        """The arguments of grub's ``kernel`` line: the path, then the command line."""
        return f"{self.kernel_path} {self.cmdline}".rstrip()


def image_from_spec(kind: str, spec, *, base: Optional[Path] = None, path=None,
                    key: str = "") -> Image:
    """An :class:`Image` from a scenario table (see the module doc).

    Problems raise :class:`~simxen.errors.InputError` naming ``path`` and ``key``.
    """
    if not isinstance(spec, dict):
        raise InputError("expected a table with name and version, or file", path=path, key=key)
    unknown = sorted(set(spec) - _SPEC_KEYS)
    if unknown:
        raise InputError(f"unknown key {unknown[0]!r} (expected one of {sorted(_SPEC_KEYS)})",
                         path=path, key=f"{key}.{unknown[0]}")
    if "file" in spec:
        if "name" in spec or "version" in spec:
            raise InputError("give either file or name and version, not both", path=path, key=key)
        file = spec["file"]
        if not isinstance(file, str):
            raise InputError("expected a path (a string)", path=path, key=f"{key}.file")
        where = Path(base or ".") / file
        try:
            data = where.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read {where}: {exc.strerror}", path=path,
                             key=f"{key}.file") from None
        source = f"file {file}"
    else:
        for need in ("name", "version"):
            if not isinstance(spec.get(need), str):
                raise InputError("expected a string", path=path, key=f"{key}.{need}")
        default = DEFAULT_KERNEL_SIZE if kind == "kernel" else DEFAULT_INITRD_SIZE
        size = spec.get("size", default)
        make = kernel_bytes if kind == "kernel" else initrd_bytes
        if not isinstance(size, int) or isinstance(size, bool):
            raise InputError("expected an integer number of bytes", path=path, key=f"{key}.size")
        try:
            data = make(spec["name"], spec["version"], size)
        except ValueError as exc:
            raise InputError(str(exc), path=path, key=f"{key}.size") from None
        source = f"{spec['name']} {spec['version']} (generated, {size} bytes)"
    if "flip_byte" in spec:
        offset = spec["flip_byte"]
        if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset < len(data):
            raise InputError(f"expected a byte offset below {len(data)}", path=path,
                             key=f"{key}.flip_byte")
        data = flip(data, offset)
        source += f", byte {offset} flipped"
    return Image(kind, data, source)


def guest_images(table: dict, *, base: Optional[Path] = None, path=None,
                 key: str = "images") -> GuestImages:
    """The :class:`GuestImages` of a scenario's ``images`` table:
    ``kernel`` (required), ``initrd`` (optional), ``cmdline`` (default ""),
    ``kernel_path`` (default "/boot/vmlinuz")."""
    if not isinstance(table, dict):
        raise InputError("expected a table", path=path, key=key)
    unknown = sorted(set(table) - {"kernel", "initrd", "cmdline", "kernel_path"})
    if unknown:
        raise InputError("unknown key (expected kernel, initrd, cmdline, kernel_path)",
                         path=path, key=f"{key}.{unknown[0]}")
    if "kernel" not in table:
        raise InputError("missing; every guest boots a kernel", path=path, key=f"{key}.kernel")
    kernel = image_from_spec("kernel", table["kernel"], base=base, path=path, key=f"{key}.kernel")
    initrd = None
    if table.get("initrd") is not None:
        initrd = image_from_spec("initrd", table["initrd"], base=base, path=path,
                                 key=f"{key}.initrd")
    cmdline = table.get("cmdline", "")
    kernel_path = table.get("kernel_path", "/boot/vmlinuz")
    for name, value in (("cmdline", cmdline), ("kernel_path", kernel_path)):
        if not isinstance(value, str) or "\0" in value:
            raise InputError("expected a string without NUL", path=path, key=f"{key}.{name}")
    if not kernel_path or " " in kernel_path:
        raise InputError("expected one path without spaces", path=path, key=f"{key}.kernel_path")
    return GuestImages(kernel, initrd, cmdline, kernel_path)

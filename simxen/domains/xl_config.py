"""The ``xl`` domain configuration file: parse the text an administrator writes.

``xl create FILE`` reads a small language of ``key = value`` lines
(``xl.cfg(5)``): values are quoted strings, numbers, or ``[ ... ]`` lists of
them, ``#`` starts a comment, a list may span lines and end with a comma.
The vTPM documentation (``docs/misc/vtpm.txt``, the seed of this project)
uses exactly these keys::

    name="vtpmmgr"
    kernel="/usr/lib/xen/boot/vtpmmgr-stubdom.gz"
    memory=16
    disk=["file:/var/vtpmmgr-stubdom.img,hda,w"]
    iomem=["fed40,5"]
    extra="tpmlocality=2"

    vtpm=["backend=vtpmmgr,uuid=ac0a5b9e-cbe2-4c07-b43b-1d69e46fb839"]   # a vTPM stub domain
    vtpm=["backend=vtpm-guest1"]                                          # a guest

:func:`parse` turns such text into an :class:`XlConfig`; anything it cannot
accept is an :class:`~simxen.errors.InputError` naming the config (its file
name or the label the caller gives) and the key, never a traceback::

    >>> cfg = parse('name="g"\\nkernel="/boot/vmlinuz"\\nvtpm=["backend=vtpm-g"]', source="g.cfg")
    >>> cfg.vtpm[0].backend
    'vtpm-g'

Values follow libxl's readings: ``iomem`` entries are ``START,PAGES`` with
both numbers in hexadecimal (``libxl_parse_iomem``: ``fed40,5`` = machine
frames 0xfed40..0xfed44); ``disk`` entries are the positional
``target,vdev,access`` form (``file:`` / ``phy:`` prefixes allowed) or
``key=value`` pairs; a ``vtpm`` entry is ``key=value`` pairs of ``backend``
(a domain name or domid), ``uuid`` (optional: libxl makes a random one) and
``backendtype``. Unlike ``xl``, which ignores keys it does not know, an
unknown key is an error here (with a suggestion), because a typo in a
simulated config should not silently change what is simulated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

from simxen.errors import InputError, did_you_mean
from simxen.xen.hypervisor import vcpus_problem

__all__ = ["XlConfig", "DiskSpec", "VtpmSpec", "parse", "name_problem", "KNOWN_KEYS", "UUID_RE"]

#: An RFC 4122 UUID in its 36-character text form.
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


def name_problem(name) -> Optional[str]:
    """Why *name* cannot name a domain (``None`` if it can): libxl refuses an
    empty name, and simxen keeps names to what XenStore paths and xl's
    command line carry without quoting."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        return (f"{name!r} is not a usable domain name (1 to 64 letters, digits, '.', '_', '-', "
                "starting with a letter or digit)")
    return None


@dataclass(frozen=True)
class DiskSpec:
    """One ``disk=`` entry: ``target`` is the image path (``/var/vtpm.img``)."""

    target: str
    vdev: str
    access: str = "rw"          #: "r" or "rw"
    format: str = "raw"

    @property
    def writable(self) -> bool:
        return "w" in self.access


@dataclass(frozen=True)
class VtpmSpec:
    """One ``vtpm=`` entry: the backend domain and (optionally) the vTPM's UUID."""

    backend: str
    uuid: Optional[str] = None
    backendtype: str = "tpm"


@dataclass(frozen=True)
class XlConfig:
    """A parsed configuration. ``source`` names it in error messages."""

    name: str
    kernel: str
    memory: int = 128
    vcpus: int = 1
    cpu_weight: Optional[int] = None    #: scheduler weight (None: the scheduler's default, 256)
    cap: int = 0                        #: CPU cap, percent of one pCPU; 0 = none
    disk: tuple = ()
    iomem: tuple = ()           #: ((first_mfn, nr_mfns), ...)
    vtpm: tuple = ()
    extra: str = ""
    ramdisk: str = ""
    seclabel: str = ""          #: the XSM (FLASK) label, e.g. "system_u:system_r:vtpm_t"
    source: str = "<config>"
    text: str = field(default="", repr=False, compare=False)

    def cmdline_options(self) -> dict:
        """``extra`` split into ``{key: value}`` (a bare word maps to ``""``)."""
        out = {}
        for word in self.extra.split():
            key, _, value = word.partition("=")
            out[key] = value
        return out


#: Every key :func:`parse` accepts, with what it expects (for messages).
KNOWN_KEYS = {
    "name": "a domain name string",
    "kernel": "a kernel image path string",
    "memory": "memory in MiB (an integer)",
    "maxmem": "maximum memory in MiB (an integer)",
    "vcpus": "number of virtual CPUs (an integer, 1 to 8192: Xen's MAX_VIRT_CPUS for a PV domain)",
    "cpu_weight": "the credit/credit2 scheduler weight, 1 to 65535 (an integer; default 256)",
    "cap": "a CPU cap in percent of one physical CPU, 0 = none (an integer)",
    "disk": "a list of disk specification strings",
    "iomem": 'a list of "START,PAGES" strings (hexadecimal)',
    "vtpm": 'a list of "backend=DOMAIN[,uuid=UUID]" strings',
    "extra": "the kernel command line string",
    "cmdline": "the kernel command line string",
    "ramdisk": "an initrd path string",
    "type": 'the guest type string ("pv", "pvh", "hvm")',
    "on_crash": "an action string",
    "on_reboot": "an action string",
    "on_poweroff": "an action string",
    "seclabel": "an XSM label string",
}

_TOKEN = re.compile(r"""
    (?P<ws>[ \t\r]+) | (?P<comment>\#[^\n]*) | (?P<nl>\n|;) |
    (?P<str>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*') |
    (?P<num>0[xX][0-9a-fA-F]+|\d+) |
    (?P<ident>[A-Za-z_][A-Za-z0-9_]*) |
    (?P<punct>[=\[\],]) |
    (?P<bad>.)
""", re.VERBOSE)


def _tokens(text, source):
    line = 1
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        value = m.group()
        if kind == "bad":
            raise InputError(f"line {line}: unexpected character {value!r}", path=source)
        if kind == "str" and value[0] == value[-1] and len(value) >= 2:
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        if kind not in ("ws", "comment"):
            yield kind, value, line
        if kind == "nl" and value == "\n":
            line += 1
        elif kind == "str":
            line += m.group().count("\n")
    yield "eof", "", line


class _Parser:
    def __init__(self, text, source):
        self.toks = list(_tokens(text, source))
        self.pos = 0
        self.source = source

    def peek(self):
        return self.toks[self.pos]

    def take(self):
        tok = self.toks[self.pos]
        self.pos += 1
        return tok

    def fail(self, message, key=None, line=None):
        where = f"line {line}: " if line is not None else ""
        raise InputError(where + message, path=self.source, key=key)

    def skip_newlines(self):
        while self.peek()[0] == "nl":
            self.take()

    def value(self, key):
        kind, value, line = self.take()
        if kind == "str":
            return value
        if kind == "num":
            return int(value, 16) if value[:2] in ("0x", "0X") else int(value, 10)
        if kind == "punct" and value == "[":
            items = []
            while True:
                self.skip_newlines()
                kind, v, line = self.peek()
                if kind == "punct" and v == "]":
                    self.take()
                    return items
                if kind == "eof":
                    self.fail("list is not closed with ']'", key, line)
                items.append(self.value(key))
                self.skip_newlines()
                kind, v, line = self.take()
                if kind == "punct" and v == "]":
                    return items
                if not (kind == "punct" and v == ","):
                    self.fail(f"expected ',' or ']' in the list, found {v!r}", key, line)
        self.fail(f"expected a quoted string, a number or a [list], found {value or kind!r}", key, line)

    def entries(self):
        out = {}
        while True:
            self.skip_newlines()
            kind, key, line = self.take()
            if kind == "eof":
                return out
            if kind != "ident":
                self.fail(f"expected a key, found {key!r}", line=line)
            kind, eq, _ = self.take()
            if eq != "=":
                self.fail("expected '=' after the key", key, line)
            if key in out:
                self.fail("key is set twice", key, line)
            out[key] = (self.value(key), line)
            kind, v, line = self.take()
            if kind not in ("nl", "eof"):
                self.fail(f"unexpected {v!r} after the value", key, line)
            if kind == "eof":
                return out


def parse(text: str, *, source: str = "<config>") -> XlConfig:
    """Parse xl configuration *text*; *source* names it in error messages."""
    if not isinstance(text, str):
        raise InputError("an xl config must be text", path=source)
    raw = _Parser(text, source).entries()
    for key in raw:
        if key not in KNOWN_KEYS:
            raise InputError(f"unknown key{did_you_mean(key, KNOWN_KEYS)}", path=source, key=key)

    def get(key, kind, default=None, required=False):
        if key not in raw:
            if required:
                raise InputError(f"missing required key: expected {KNOWN_KEYS[key]}", path=source, key=key)
            return default
        value, line = raw[key]
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value) if kind is list \
            else isinstance(value, kind)
        if not ok:
            raise InputError(f"line {line}: expected {KNOWN_KEYS[key]}, found {value!r}", path=source, key=key)
        return value

    name = get("name", str, required=True)
    if name_problem(name):
        raise InputError(name_problem(name), path=source, key="name")
    kernel = get("kernel", str, required=True)
    memory = get("memory", int, 128)
    vcpus = get("vcpus", int, 1)
    if memory < 1:
        raise InputError(f"must be at least 1, found {memory}", path=source, key="memory")
    if vcpus_problem(vcpus):
        raise InputError(vcpus_problem(vcpus), path=source, key="vcpus")
    cpu_weight = get("cpu_weight", int, None)
    if cpu_weight is not None and not 1 <= cpu_weight <= 65535:
        raise InputError(f"expected a weight from 1 to 65535 (xl.cfg(5)), found {cpu_weight}",
                         path=source, key="cpu_weight")
    cap = get("cap", int, 0)
    if cap < 0:
        raise InputError(f"expected a percentage >= 0 (0 = no cap), found {cap}", path=source,
                         key="cap")
    extra = get("extra", str, "") or get("cmdline", str, "")
    disks = tuple(_disk(s, source, i) for i, s in enumerate(get("disk", list, [])))
    iomem = tuple(_iomem(s, source, i) for i, s in enumerate(get("iomem", list, [])))
    vtpms = tuple(_vtpm(s, source, i) for i, s in enumerate(get("vtpm", list, [])))
    return XlConfig(name=name, kernel=kernel, memory=memory, vcpus=vcpus, cpu_weight=cpu_weight,
                    cap=cap, disk=disks, iomem=iomem,
                    vtpm=vtpms, extra=extra, ramdisk=get("ramdisk", str, ""),
                    seclabel=get("seclabel", str, ""), source=source, text=text)


def _pairs(spec, source, key):
    out = {}
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        k, eq, v = part.partition("=")
        if not eq:
            raise InputError(f"{part!r} is not key=value", path=source, key=key)
        k = k.strip()
        if k in out:
            raise InputError(f"{k!r} given twice", path=source, key=key)
        out[k] = v.strip()
    return out


def _disk(spec, source, index):
    key = f"disk[{index}]"
    if "=" in spec.split(",")[0]:
        kv = _pairs(spec, source, key)
        unknown = set(kv) - {"target", "vdev", "access", "format"}
        if unknown:
            raise InputError(f"unknown disk parameter(s) {sorted(unknown)}", path=source, key=key)
        target, vdev, access, fmt = kv.get("target"), kv.get("vdev"), kv.get("access", "rw"), \
            kv.get("format", "raw")
    else:
        parts = [p.strip() for p in spec.split(",")]
        if len(parts) not in (3, 4):
            raise InputError(f"{spec!r}: expected TARGET,VDEV,ACCESS (e.g. "
                             f"'file:/var/vtpm.img,hda,w')", path=source, key=key)
        if len(parts) == 4:          # FORMAT,TARGET,VDEV,ACCESS is not xl's order; be explicit
            raise InputError(f"{spec!r}: expected three fields TARGET,VDEV,ACCESS", path=source, key=key)
        target, vdev, access = parts
        fmt = "raw"
        for prefix in ("file:", "phy:", "aio:", "tap:aio:"):
            if target.startswith(prefix):
                target = target[len(prefix):]
                break
    if not target:
        raise InputError(f"{spec!r}: no target (image path)", path=source, key=key)
    if not vdev:
        raise InputError(f"{spec!r}: no virtual device name (hda, xvda...)", path=source, key=key)
    access = {"w": "rw", "rw": "rw", "r": "r", "ro": "r"}.get(access)
    if access is None:
        raise InputError(f"{spec!r}: access must be r or w", path=source, key=key)
    return DiskSpec(target=target, vdev=vdev, access=access, format=fmt)


def _iomem(spec, source, index):
    key = f"iomem[{index}]"
    m = re.fullmatch(r"\s*(?:0[xX])?([0-9a-fA-F]+)\s*,\s*(?:0[xX])?([0-9a-fA-F]+)\s*", spec)
    if not m:
        raise InputError(f"{spec!r}: expected START,PAGES in hexadecimal (e.g. 'fed40,5')",
                         path=source, key=key)
    first, count = int(m.group(1), 16), int(m.group(2), 16)
    if count == 0:
        raise InputError(f"{spec!r}: zero pages", path=source, key=key)
    return first, count


def _vtpm(spec, source, index):
    key = f"vtpm[{index}]"
    kv = _pairs(spec, source, key)
    unknown = set(kv) - {"backend", "uuid", "backendtype"}
    if unknown:
        raise InputError(f"unknown vtpm parameter(s) {sorted(unknown)} (expected backend, uuid, "
                         f"backendtype)", path=source, key=key)
    backend = kv.get("backend", "0")
    if not backend:
        raise InputError("backend= is empty", path=source, key=key)
    uuid = kv.get("uuid")
    if uuid is not None and not UUID_RE.match(uuid):
        raise InputError(f"uuid {uuid!r} is not a UUID (8-4-4-4-12 hexadecimal digits)",
                         path=source, key=key)
    backendtype = kv.get("backendtype", "tpm")
    if backendtype != "tpm":
        raise InputError(f"backendtype {backendtype!r}: only 'tpm' exists", path=source, key=key)
    return VtpmSpec(backend=backend, uuid=uuid.lower() if uuid else None)

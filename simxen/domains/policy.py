"""The verifier's golden-values policy: what a trustworthy guest measures.

A policy is a TOML file the verifier's operator writes once per approved
guest build. Every digest is written ``"<alg>:<hex>"``::

    [policy]
    name = "web-frontend 6.1.0-13"
    description = "the approved kernel, initrd and command line"

    [quote]                      # what the verifier asks the vTPM to quote
    bank = "sha256"
    pcrs = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]

    [boot]                       # what pv-grub must have measured
    kernel = "sha256:3f5a..."    # PCR 4: the kernel file as stored
    cmdline = "sha256:9c1e..."   # PCR 5: the command line without path and NUL
    initrd = "sha256:e3b0..."    # PCR 5: the initrd (sha256 of "" when absent)

    [pcrs.sha256]                # optional: final PCR values to insist on
    4 = "a1b2..."

    [ima]                        # every file the guest executes must be listed
    "/usr/bin/bash" = "sha256:0d4f..."
    "/usr/sbin/sshd" = "sha256:77aa..."

    [host.pcrs.sha256]           # the deep quote: the host's physical PCRs
    0 = "d0c2..."

:func:`load` reads and checks such a file; every problem is one
:class:`~simxen.errors.InputError` naming the file and the dotted key.
:func:`golden_boot` computes the ``[boot]`` digests of a set of images, and
:func:`dumps` writes a policy back as TOML (how ``scenarios/policies/`` was
made).
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from simxen.errors import TOO_DEEP, InputError

__all__ = ["Policy", "load", "parse", "golden_boot", "dumps", "parse_digest", "format_digest",
           "BOOT_ITEMS", "DEFAULT_QUOTE_PCRS"]

#: The three things pv-grub measures, in the order it extends them.
BOOT_ITEMS = ("kernel", "cmdline", "initrd")
#: PCRs 0-7 feed IMA's boot_aggregate (plus 8-9 for a SHA-256 list), 4-5 are
#: pv-grub's, 10 is IMA's.
DEFAULT_QUOTE_PCRS = tuple(range(11))
_HASH_SIZES = {"sha1": 20, "sha256": 32, "sha384": 48, "sha512": 64}
_TOP_KEYS = {"policy", "quote", "boot", "pcrs", "ima", "host"}


@dataclass
class Policy:
    """A parsed policy. Digests are ``(alg, bytes)`` pairs; PCR tables are
    ``{bank: {pcr: bytes}}``."""

    name: str
    description: str = ""
    bank: str = "sha256"
    quote_pcrs: tuple = DEFAULT_QUOTE_PCRS
    boot: dict = field(default_factory=dict)
    pcrs: dict = field(default_factory=dict)
    ima: dict = field(default_factory=dict)
    host_pcrs: dict = field(default_factory=dict)
    path: Optional[str] = None


def parse_digest(text, *, path=None, key: str = "") -> tuple[str, bytes]:
    """``"sha256:<hex>"`` -> ``("sha256", bytes)``; an InputError otherwise."""
    if not isinstance(text, str) or ":" not in text:
        raise InputError(f"expected '<alg>:<hex digest>', found {text!r}", path=path, key=key)
    alg, _, hexdigest = text.partition(":")
    if alg not in _HASH_SIZES:
        raise InputError(f"unknown hash {alg!r} (expected one of {sorted(_HASH_SIZES)})",
                         path=path, key=key)
    return alg, _hex(hexdigest, _HASH_SIZES[alg], path=path, key=key)


def format_digest(alg: str, digest: bytes) -> str:
    return f"{alg}:{digest.hex()}"


def _hex(text, size, *, path, key) -> bytes:
    try:
        value = bytes.fromhex(text)
    except (TypeError, ValueError):
        raise InputError(f"expected {size} bytes of hex, found {text!r}", path=path,
                         key=key) from None
    if len(value) != size:
        raise InputError(f"expected {size} bytes of hex, found {len(value)}", path=path, key=key)
    return value


def _table(doc, key, path) -> dict:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise InputError("expected a table", path=path, key=key)
    return value


def _pcr_tables(doc, key, path) -> dict:
    out = {}
    for bank, values in doc.items():
        if bank not in _HASH_SIZES:
            raise InputError(f"unknown bank (expected one of {sorted(_HASH_SIZES)})",
                             path=path, key=f"{key}.{bank}")
        if not isinstance(values, dict):
            raise InputError("expected a table of PCR index = hex value", path=path,
                             key=f"{key}.{bank}")
        bank_out = {}
        for index, hexvalue in values.items():
            k = f"{key}.{bank}.{index}"
            if not index.isdigit() or not 0 <= int(index) < 24:
                raise InputError("expected a PCR index 0-23", path=path, key=k)
            if not isinstance(hexvalue, str):
                raise InputError("expected a hex string", path=path, key=k)
            bank_out[int(index)] = _hex(hexvalue, _HASH_SIZES[bank], path=path, key=k)
        out[bank] = dict(sorted(bank_out.items()))
    return out


def parse(doc: dict, *, path=None) -> Policy:
    """A :class:`Policy` from an already-read TOML document."""
    unknown = sorted(set(doc) - _TOP_KEYS)
    if unknown:
        raise InputError(f"unknown table (expected {', '.join(sorted(_TOP_KEYS))})",
                         path=path, key=unknown[0])
    meta = _table(doc, "policy", path)
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise InputError("expected a non-empty string", path=path, key="policy.name")
    description = meta.get("description", "")
    if not isinstance(description, str):
        raise InputError("expected a string", path=path, key="policy.description")
    quote = _table(doc, "quote", path)
    bank = quote.get("bank", "sha256")
    if bank not in _HASH_SIZES:
        raise InputError(f"expected one of {sorted(_HASH_SIZES)}", path=path, key="quote.bank")
    pcrs = quote.get("pcrs", list(DEFAULT_QUOTE_PCRS))
    if (not isinstance(pcrs, list) or not pcrs
            or not all(isinstance(p, int) and not isinstance(p, bool) and 0 <= p < 24 for p in pcrs)
            or len(set(pcrs)) != len(pcrs)):
        raise InputError("expected a non-empty array of distinct PCR indexes 0-23",
                         path=path, key="quote.pcrs")
    boot = {}
    for item, text in _table(doc, "boot", path).items():
        if item not in BOOT_ITEMS:
            raise InputError(f"unknown boot item (expected {', '.join(BOOT_ITEMS)})",
                             path=path, key=f"boot.{item}")
        boot[item] = parse_digest(text, path=path, key=f"boot.{item}")
    ima = {}
    for file_path, text in _table(doc, "ima", path).items():
        if not file_path.startswith("/"):
            raise InputError("expected an absolute path", path=path, key=f"ima.{file_path}")
        ima[file_path] = parse_digest(text, path=path, key=f"ima.{file_path}")
    host = _table(doc, "host", path)
    bad = sorted(set(host) - {"pcrs"})
    if bad:
        raise InputError("unknown key (expected pcrs)", path=path, key=f"host.{bad[0]}")
    return Policy(name, description, bank, tuple(sorted(pcrs)), boot,
                  _pcr_tables(_table(doc, "pcrs", path), "pcrs", path), ima,
                  _pcr_tables(_table(host, "pcrs", path), "host.pcrs", path),
                  None if path is None else str(path))


def load(path) -> Policy:
    """Read and check the policy file at ``path``."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_bytes().decode("utf-8-sig"))    # (a BOM is left out)
    except OSError as exc:
        raise InputError(f"cannot read the policy: {exc.strerror}", path=path) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (byte {exc.start})", path=path) from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"not valid TOML: {exc}", path=path) from None
    except RecursionError:
        raise InputError(f"not a policy: {TOO_DEEP}", path=path) from None
    return parse(doc, path=path)


def golden_boot(images, alg: str = "sha256") -> dict:
    """``{"kernel"|"cmdline"|"initrd": (alg, digest)}`` of a
    :class:`~simxen.domains.images.GuestImages`: what pv-grub will measure."""
    from simxen.domains.pvgrub import measured_bytes
    return {item: (alg, hashlib.new(alg, data).digest())
            for item, data in zip(BOOT_ITEMS, measured_bytes(images))}


def _toml_str(text: str) -> str:
    """A TOML basic string: backslash, quote and control characters escaped."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def dumps(policy: Policy) -> str:
    """The policy as TOML text that :func:`load` reads back to an equal policy."""
    out = ["[policy]", f"name = {_toml_str(policy.name)}"]
    if policy.description:
        out.append(f"description = {_toml_str(policy.description)}")
    out += ["", "[quote]", f"bank = {_toml_str(policy.bank)}",
            "pcrs = [" + ", ".join(str(p) for p in policy.quote_pcrs) + "]"]
    if policy.boot:
        out += ["", "[boot]"]
        out += [f"{item} = {_toml_str(format_digest(*policy.boot[item]))}"
                for item in BOOT_ITEMS if item in policy.boot]
    for bank, values in policy.pcrs.items():
        out += ["", f"[pcrs.{bank}]"] + [f"{i} = {_toml_str(v.hex())}" for i, v in values.items()]
    if policy.ima:
        out += ["", "[ima]"]
        out += [f"{_toml_str(p)} = {_toml_str(format_digest(*d))}" for p, d in policy.ima.items()]
    for bank, values in policy.host_pcrs.items():
        out += ["", f"[host.pcrs.{bank}]"]
        out += [f"{i} = {_toml_str(v.hex())}" for i, v in values.items()]
    return "\n".join(out) + "\n"

"""The vTPM manager's wire protocol (``stubdom/vtpmmgr/vtpm_manager.h``).

A vTPM stub domain talks to the vTPM manager through its own tpmfront, in the
same tpmif shared page a guest uses (:mod:`simxen.protocols.tpmif`); the
bytes in that page are *manager messages*, shaped like TPM 1.2 commands. All
integers are big-endian. Every message starts with a 10-byte header::

    offset  size  field
         0     2  tag        VTPM_TAG_REQ / VTPM_TAG_REQ2 / TPM_TAG_RQU_* / *_RSP*
         2     4  paramSize  total length of the message, header included
         6     4  ordinal    (request) or return code (response)

vTPM-level requests (tag ``VTPM_TAG_REQ`` 0x01C1) and their bodies::

    VTPM_ORD_SAVEHASHKEY  1  req: 52..64-byte blob (hash||key)    rsp: empty
    VTPM_ORD_LOADHASHKEY  2  req: empty                            rsp: 52 (or 64) bytes
    VTPM_ORD_GET_BOOT_HASH 3 req: empty (exactly 10 bytes)         rsp: 20-byte kernel hash
    VTPM_ORD_GET_QUOTE    4  req/rsp: see below (TPM 2.0 variant)

Management requests use tag ``VTPM_TAG_REQ2`` 0x01C2 and are refused with
TPM_AUTHFAIL unless the caller is the admin vTPM. Requests with a TPM 1.2 tag
(0x00C1..0x00C3) are *passthrough* to the physical TPM, allowed only for
TPM_GetRandom, TPM_PcrRead and (admin only) TPM_Extend; anything else is
TPM_DISABLED_CMD. An unknown tag is TPM_BADTAG, an unknown vTPM or management
ordinal TPM_BAD_ORDINAL. Errors from the dispatcher are 10-byte replies
with ``tag = request tag + 3``; a handler's own errors use ``VTPM_TAG_RSP``.
Bodies with missing or trailing bytes are TPM_BAD_PARAMETER (Xen's
``UNPACK_IN``/``UNPACK_DONE``). Like Xen, the parsers trust the transport
length (tpmif ``length``), not ``paramSize``; :class:`Header` exposes
``param_size`` so a stricter manager can compare.

Deep quote, TPM 2.0 variant (**deviation from Xen**). Xen's manager drives a
TPM 1.2 TPM_Quote: request ``nonce[20] | TPM_PCR_SELECTION | u32 flags``,
response ``signature[256] | hashes | PCR values``, externalData =
SHA-1(flags || nonce || SHA-1(hashes)). simxen's physical TPM speaks TPM 2.0,
so GET_QUOTE here carries TPM 2.0 structures and SHA-256::

    request body:  TPM2B nonce (u16 size, 0..64 bytes)
                   | TPML_PCR_SELECTION (u32 count, {u16 hash, u8 sizeofSelect, bitmap})
                   | u32 flags
    response body: TPM2B_ATTEST (u16 size | TPMS_ATTEST bytes)
                   | u16 size | TPMT_SIGNATURE bytes   (size prefix added for framing)
                   | one 32-byte SHA-256 hash per flag set, in flag-bit order
                   | TPML_DIGEST of the selected pTPM PCR values (u32 count, {u16 size, digest})

    qualifyingData = SHA-256(u32 LE flags | nonce | [SHA-256(hash || hash ...)] if flags)

The optional hashes are, in order: VTPM_QUOTE_FLAGS_HASH_UUID ->
SHA-256(vTPM UUID); _VTPM_MEASUREMENTS -> SHA-256(kernel hash);
_GROUP_INFO -> SHA-256(group configuration list); _GROUP_PUBKEY ->
SHA-256(SAA public key). Any other flag bit is VTPM_INVALID_REQUEST.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from typing import Sequence

__all__ = [
    "VTPM_COMMAND_HEADER_SIZE", "VTPM_TAG_REQ", "VTPM_TAG_REQ2", "VTPM_TAG_RSP", "VTPM_TAG_RSP2",
    "TPM_TAG_RQU_COMMAND", "TPM_TAG_RQU_AUTH1_COMMAND", "TPM_TAG_RQU_AUTH2_COMMAND",
    "TPM_TAG_RSP_COMMAND", "TPM_TAG_RSP_AUTH1_COMMAND", "TPM_TAG_RSP_AUTH2_COMMAND",
    "VTPM_ORD_SAVEHASHKEY", "VTPM_ORD_LOADHASHKEY", "VTPM_ORD_GET_BOOT_HASH", "VTPM_ORD_GET_QUOTE",
    "TPM_ORD_Extend", "TPM_ORD_PcrRead", "TPM_ORD_GetRandom", "TPM_VENDOR_COMMAND",
    "MANAGEMENT_ORDINALS", "MANAGEMENT_ORDINALS_DISPATCHED",
    "TPM_SUCCESS", "TPM_AUTHFAIL", "TPM_BADINDEX", "TPM_BAD_PARAMETER", "TPM_DISABLED",
    "TPM_DISABLED_CMD", "TPM_FAIL", "TPM_BAD_ORDINAL", "TPM_SIZE", "TPM_BADTAG", "TPM_IOERROR",
    "VTPM_SUCCESS", "VTPM_FAIL", "VTPM_UNSUPPORTED", "VTPM_FORBIDDEN",
    "VTPM_RESTORE_CONTEXT_FAILED", "VTPM_INVALID_REQUEST",
    "VTPM_QUOTE_FLAGS_HASH_UUID", "VTPM_QUOTE_FLAGS_VTPM_MEASUREMENTS",
    "VTPM_QUOTE_FLAGS_GROUP_INFO", "VTPM_QUOTE_FLAGS_GROUP_PUBKEY", "VTPM_QUOTE_FLAGS_ALL",
    "HASHKEY_MIN", "HASHKEY_MAX", "TCPA_MAX_BUFFER_LENGTH",
    "VtpmmgrError", "Header", "QuoteRequest", "QuoteResponse",
    "pack_header", "unpack_header", "response", "error_response", "response_code",
    "dispatch_check", "passthrough_check",
    "save_hash_key_request", "parse_save_hash_key_request", "parse_save_hash_key_response",
    "load_hash_key_request", "load_hash_key_response", "parse_load_hash_key_response",
    "get_boot_hash_request", "parse_get_boot_hash_request", "get_boot_hash_response",
    "parse_get_boot_hash_response",
    "pack_pcr_selection", "unpack_pcr_selection",
    "get_quote_request", "parse_get_quote_request", "get_quote_response",
    "parse_get_quote_response", "deep_quote_hashes", "deep_quote_external_data",
    "TPM2_CC_DeepQuote", "deep_quote_command", "parse_deep_quote_command", "deep_quote_response",
]

VTPM_COMMAND_HEADER_SIZE = 10
#: Largest message the manager builds (TCPA_MAX_BUFFER_LENGTH); only 4088 fit the page.
TCPA_MAX_BUFFER_LENGTH = 0x2000

VTPM_TAG_REQ = 0x01C1
VTPM_TAG_REQ2 = 0x01C2
VTPM_TAG_RSP = 0x01C4
VTPM_TAG_RSP2 = 0x01C5
TPM_TAG_RQU_COMMAND = 0x00C1
TPM_TAG_RQU_AUTH1_COMMAND = 0x00C2
TPM_TAG_RQU_AUTH2_COMMAND = 0x00C3
TPM_TAG_RSP_COMMAND = 0x00C4
TPM_TAG_RSP_AUTH1_COMMAND = 0x00C5
TPM_TAG_RSP_AUTH2_COMMAND = 0x00C6
_PASSTHROUGH_TAGS = (TPM_TAG_RQU_COMMAND, TPM_TAG_RQU_AUTH1_COMMAND, TPM_TAG_RQU_AUTH2_COMMAND)

VTPM_ORD_SAVEHASHKEY = 1
VTPM_ORD_LOADHASHKEY = 2
VTPM_ORD_GET_BOOT_HASH = 3
VTPM_ORD_GET_QUOTE = 4
_VTPM_ORDINALS = (VTPM_ORD_SAVEHASHKEY, VTPM_ORD_LOADHASHKEY, VTPM_ORD_GET_BOOT_HASH, VTPM_ORD_GET_QUOTE)

# TPM 1.2 ordinals the passthrough admits.
TPM_ORD_Extend = 0x14
TPM_ORD_PcrRead = 0x15
TPM_ORD_GetRandom = 0x46

TPM_VENDOR_COMMAND = 0x02000000
#: Management ordinals (tag VTPM_TAG_REQ2), name -> value.
MANAGEMENT_ORDINALS = {
    "VTPM_ORD_GROUP_LIST": TPM_VENDOR_COMMAND | 0x101,
    "VTPM_ORD_GROUP_NEW": TPM_VENDOR_COMMAND | 0x102,
    "VTPM_ORD_GROUP_DEL": TPM_VENDOR_COMMAND | 0x103,
    "VTPM_ORD_GROUP_ACTIVATE": TPM_VENDOR_COMMAND | 0x104,
    "VTPM_ORD_GROUP_REGISTER": TPM_VENDOR_COMMAND | 0x105,
    "VTPM_ORD_GROUP_UPDATE": TPM_VENDOR_COMMAND | 0x106,
    "VTPM_ORD_GROUP_SHOW": TPM_VENDOR_COMMAND | 0x107,
    "VTPM_ORD_GROUP_QUOTE": TPM_VENDOR_COMMAND | 0x108,
    "VTPM_ORD_GROUP_RECOVER1": TPM_VENDOR_COMMAND | 0x109,
    "VTPM_ORD_GROUP_RECOVER2": TPM_VENDOR_COMMAND | 0x10A,
    "VTPM_ORD_VTPM_LIST": TPM_VENDOR_COMMAND | 0x201,
    "VTPM_ORD_VTPM_SHOW": TPM_VENDOR_COMMAND | 0x202,
    "VTPM_ORD_VTPM_EDIT": TPM_VENDOR_COMMAND | 0x203,
    "VTPM_ORD_VTPM_NEW": TPM_VENDOR_COMMAND | 0x204,
    "VTPM_ORD_VTPM_DEL": TPM_VENDOR_COMMAND | 0x205,
    "VTPM_ORD_MakeIdentity": TPM_VENDOR_COMMAND | 0x301,
    "VTPM_ORD_ActivateIdentity": TPM_VENDOR_COMMAND | 0x302,
    "VTPM_ORD_ReadPubek": TPM_VENDOR_COMMAND | 0x303,
    "VTPM_ORD_NV_DefineSpace": TPM_VENDOR_COMMAND | 0x304,
    "VTPM_ORD_NV_WriteValue": TPM_VENDOR_COMMAND | 0x305,
    "VTPM_ORD_NV_ReadValue": TPM_VENDOR_COMMAND | 0x306,
}
globals().update(MANAGEMENT_ORDINALS)
__all__ += list(MANAGEMENT_ORDINALS)
#: The management ordinals Xen's dispatcher actually handles; the rest answer TPM_BAD_ORDINAL.
MANAGEMENT_ORDINALS_DISPATCHED = frozenset(
    MANAGEMENT_ORDINALS[n] for n in (
        "VTPM_ORD_GROUP_LIST", "VTPM_ORD_GROUP_NEW", "VTPM_ORD_GROUP_DEL", "VTPM_ORD_GROUP_ACTIVATE",
        "VTPM_ORD_GROUP_REGISTER", "VTPM_ORD_GROUP_UPDATE", "VTPM_ORD_GROUP_SHOW",
        "VTPM_ORD_VTPM_LIST", "VTPM_ORD_VTPM_NEW", "VTPM_ORD_VTPM_DEL"))
#: Every ordinal of the manager's protocol, value -> name (a vTPM's own
#: requests and the management ordinals; not TPM 2.0 command codes).
ORDINAL_NAMES = {
    VTPM_ORD_SAVEHASHKEY: "VTPM_ORD_SAVEHASHKEY", VTPM_ORD_LOADHASHKEY: "VTPM_ORD_LOADHASHKEY",
    VTPM_ORD_GET_BOOT_HASH: "VTPM_ORD_GET_BOOT_HASH", VTPM_ORD_GET_QUOTE: "VTPM_ORD_GET_QUOTE",
    TPM_ORD_Extend: "TPM_ORD_Extend", TPM_ORD_PcrRead: "TPM_ORD_PcrRead",
    TPM_ORD_GetRandom: "TPM_ORD_GetRandom",
    **{code: name for name, code in MANAGEMENT_ORDINALS.items()},
}
__all__.append("ORDINAL_NAMES")

# Return codes (TPM 1.2 numbering, as the manager answers).
TPM_SUCCESS = 0
TPM_AUTHFAIL = 1
TPM_BADINDEX = 2
TPM_BAD_PARAMETER = 3
TPM_DISABLED = 7
TPM_DISABLED_CMD = 8
TPM_FAIL = 9
TPM_BAD_ORDINAL = 10
TPM_SIZE = 23
TPM_BADTAG = 30
TPM_IOERROR = 31
VTPM_SUCCESS = 0
VTPM_FAIL = 1
VTPM_UNSUPPORTED = 2
VTPM_FORBIDDEN = 3
VTPM_RESTORE_CONTEXT_FAILED = 4
VTPM_INVALID_REQUEST = 5

VTPM_QUOTE_FLAGS_HASH_UUID = 0x1
VTPM_QUOTE_FLAGS_VTPM_MEASUREMENTS = 0x2
VTPM_QUOTE_FLAGS_GROUP_INFO = 0x4
VTPM_QUOTE_FLAGS_GROUP_PUBKEY = 0x8
VTPM_QUOTE_FLAGS_ALL = 0xF

#: SAVEHASHKEY body bounds: 20-byte hash + 32-byte key, at most 64 stored.
HASHKEY_MIN = 52
HASHKEY_MAX = 64
#: Largest TPM2B nonce accepted in GET_QUOTE (sizeof(TPMT_HA) for SHA-512).
QUOTE_NONCE_MAX = 64
#: A TPM 2.0 TPMS_PCR_SELECTION bitmap is at most PCR_SELECT_MAX bytes.
PCR_SELECT_MAX = 4
_DEEP_QUOTE_HASH_SIZE = 32

_HDR = struct.Struct(">HII")


class VtpmmgrError(Exception):
    """A message the manager refuses; :attr:`rc` is the return code it answers with."""

    def __init__(self, rc: int, message: str):
        self.rc = rc
        super().__init__(f"rc {rc}: {message}")


@dataclass(frozen=True)
class Header:
    """The 10-byte header: ``code`` is the ordinal of a request or rc of a response."""

    tag: int
    param_size: int
    code: int


def pack_header(tag: int, code: int, body: bytes = b"") -> bytes:
    """A whole message: header with ``paramSize = 10 + len(body)``, then *body*."""
    return _HDR.pack(tag, VTPM_COMMAND_HEADER_SIZE + len(body), code) + bytes(body)


def unpack_header(message: bytes) -> Header:
    """Decode the header; shorter than 10 bytes is TPM_BAD_PARAMETER."""
    return Header(*_header_fields(message))


def _header_fields(message: bytes) -> tuple:
    """``(tag, paramSize, code)`` as a plain tuple (what the per-message checks below
    read: no :class:`Header` object made for them); short is TPM_BAD_PARAMETER."""
    if len(message) < VTPM_COMMAND_HEADER_SIZE:
        raise VtpmmgrError(TPM_BAD_PARAMETER, f"{len(message)}-byte message is shorter than its header")
    return _HDR.unpack_from(message)


def response(rc: int = TPM_SUCCESS, body: bytes = b"") -> bytes:
    """A handler's reply (tag VTPM_TAG_RSP); a failed one carries no body."""
    return pack_header(VTPM_TAG_RSP, rc, body if rc == TPM_SUCCESS else b"")


def error_response(request_tag: int, rc: int) -> bytes:
    """The dispatcher's 10-byte error reply: ``tag = request tag + 3``."""
    return _HDR.pack((request_tag + 3) & 0xFFFF, VTPM_COMMAND_HEADER_SIZE, rc)


def response_code(message: bytes) -> int:
    """Return code of a reply (TPM_BAD_PARAMETER if it is not even a header)."""
    return _header_fields(message)[2]


def passthrough_check(ordinal: int, *, is_admin: bool) -> int:
    """TPM_SUCCESS if the manager forwards TPM 1.2 *ordinal* to the pTPM, else its rc."""
    if ordinal in (TPM_ORD_GetRandom, TPM_ORD_PcrRead):
        return TPM_SUCCESS
    if ordinal == TPM_ORD_Extend and is_admin:
        return TPM_SUCCESS
    return TPM_DISABLED_CMD


def dispatch_check(message: bytes, *, is_admin: bool) -> int:
    """What the dispatcher answers before any handler runs.

    TPM_SUCCESS means a handler (or the passthrough) takes the request;
    anything else is the rc of :func:`error_response` with the request's tag.
    A message shorter than the header is TPM_BAD_PARAMETER.
    """
    try:
        tag, _, code = _header_fields(message)
    except VtpmmgrError as exc:
        return exc.rc
    if tag == VTPM_TAG_REQ:
        return TPM_SUCCESS if code in _VTPM_ORDINALS else TPM_BAD_ORDINAL
    if tag == VTPM_TAG_REQ2:
        if not is_admin:
            return TPM_AUTHFAIL
        return TPM_SUCCESS if code in MANAGEMENT_ORDINALS_DISPATCHED else TPM_BAD_ORDINAL
    if tag in _PASSTHROUGH_TAGS:
        return passthrough_check(code, is_admin=is_admin)
    return TPM_BADTAG


def _body(message: bytes, ordinal: int) -> bytes:
    tag, _, code = _header_fields(message)
    if tag != VTPM_TAG_REQ or code != ordinal:
        raise VtpmmgrError(TPM_BAD_ORDINAL, f"not a vTPM request for ordinal {ordinal}")
    return bytes(message[VTPM_COMMAND_HEADER_SIZE:])


def _rsp_body(message: bytes) -> bytes:
    tag, _, code = _header_fields(message)
    if tag != VTPM_TAG_RSP:
        raise VtpmmgrError(TPM_BADTAG, f"reply tag {tag:#06x} is not VTPM_TAG_RSP")
    if code != TPM_SUCCESS:
        raise VtpmmgrError(code, "the manager answered with an error")
    return bytes(message[VTPM_COMMAND_HEADER_SIZE:])


# --- SAVEHASHKEY / LOADHASHKEY -------------------------------------------

def save_hash_key_request(blob: bytes) -> bytes:
    """VTPM_ORD_SAVEHASHKEY carrying the 52..64-byte hash||key blob."""
    _check_hashkey(blob)
    return pack_header(VTPM_TAG_REQ, VTPM_ORD_SAVEHASHKEY, blob)


def _check_hashkey(blob: bytes) -> None:
    if not HASHKEY_MIN <= len(blob) <= HASHKEY_MAX:
        raise VtpmmgrError(TPM_BAD_PARAMETER,
                           f"hash/key blob of {len(blob)} bytes, expected {HASHKEY_MIN}..{HASHKEY_MAX}")


def parse_save_hash_key_request(message: bytes) -> bytes:
    """The blob of a SAVEHASHKEY request (TPM_BAD_PARAMETER outside 52..64 bytes)."""
    blob = _body(message, VTPM_ORD_SAVEHASHKEY)
    _check_hashkey(blob)
    return blob


def parse_save_hash_key_response(message: bytes) -> None:
    """Accept the 10-byte success reply to SAVEHASHKEY; an error reply raises with its rc."""
    if _rsp_body(message):
        raise VtpmmgrError(TPM_BAD_PARAMETER, "SAVEHASHKEY reply carries a body")


def load_hash_key_request() -> bytes:
    return pack_header(VTPM_TAG_REQ, VTPM_ORD_LOADHASHKEY)


def load_hash_key_response(stored: bytes) -> bytes:
    """The reply to LOADHASHKEY from the 64 bytes the manager stores.

    52 bytes are returned unless one of bytes 52..63 is non-zero (then all 64).
    """
    stored = bytes(stored).ljust(HASHKEY_MAX, b"\0")
    if len(stored) != HASHKEY_MAX:
        raise VtpmmgrError(TPM_BAD_PARAMETER, "stored hash/key data is longer than 64 bytes")
    return response(TPM_SUCCESS, stored if any(stored[HASHKEY_MIN:]) else stored[:HASHKEY_MIN])


def parse_load_hash_key_response(message: bytes) -> bytes:
    """The blob of a LOADHASHKEY reply; an error reply raises with its rc."""
    blob = _rsp_body(message)
    if len(blob) not in (HASHKEY_MIN, HASHKEY_MAX):
        raise VtpmmgrError(TPM_BAD_PARAMETER, f"LOADHASHKEY reply of {len(blob)} bytes")
    return blob


# --- GET_BOOT_HASH -----------------------------------------------------------

def get_boot_hash_request() -> bytes:
    return pack_header(VTPM_TAG_REQ, VTPM_ORD_GET_BOOT_HASH)


def parse_get_boot_hash_request(message: bytes) -> None:
    """Accept only the bare 10-byte request (UNPACK_DONE)."""
    if _body(message, VTPM_ORD_GET_BOOT_HASH):
        raise VtpmmgrError(TPM_BAD_PARAMETER, "GET_BOOT_HASH takes no parameters")


def get_boot_hash_response(kernel_hash: bytes) -> bytes:
    if len(kernel_hash) != 20:
        raise VtpmmgrError(TPM_FAIL, "kernel hash must be 20 bytes")
    return response(TPM_SUCCESS, kernel_hash)


def parse_get_boot_hash_response(message: bytes) -> bytes:
    body = _rsp_body(message)
    if len(body) != 20:
        raise VtpmmgrError(TPM_BAD_PARAMETER, f"GET_BOOT_HASH reply of {len(body)} bytes")
    return body


# --- TPML_PCR_SELECTION ------------------------------------------------------

def pack_pcr_selection(selection: Sequence[tuple[int, Sequence[int]]], size_of_select: int = 3) -> bytes:
    """TPML_PCR_SELECTION from ``[(TPM_ALG_x, [pcr, ...]), ...]``."""
    out = bytearray(struct.pack(">I", len(selection)))
    for alg, pcrs in selection:
        bitmap = bytearray(size_of_select)
        for pcr in pcrs:
            if not 0 <= pcr < 8 * size_of_select:
                raise VtpmmgrError(TPM_BAD_PARAMETER, f"PCR {pcr} outside a {size_of_select}-byte selection")
            bitmap[pcr // 8] |= 1 << (pcr % 8)
        out += struct.pack(">HB", alg, size_of_select) + bitmap
    return bytes(out)


def unpack_pcr_selection(data: bytes, offset: int = 0) -> tuple[list[tuple[int, tuple[int, ...]]], int]:
    """``(selection, new offset)``; short or oversized input is TPM_BAD_PARAMETER."""
    def need(n):
        if offset + n > len(data):
            raise VtpmmgrError(TPM_BAD_PARAMETER, "TPML_PCR_SELECTION is truncated")
    need(4)
    (count,) = struct.unpack_from(">I", data, offset)
    offset += 4
    if count > 16:
        raise VtpmmgrError(TPM_BAD_PARAMETER, f"TPML_PCR_SELECTION count {count} > 16")
    selection = []
    for _ in range(count):
        need(3)
        alg, size = struct.unpack_from(">HB", data, offset)
        offset += 3
        if size > PCR_SELECT_MAX:
            raise VtpmmgrError(TPM_BAD_PARAMETER, f"sizeofSelect {size} > {PCR_SELECT_MAX}")
        need(size)
        bitmap = data[offset:offset + size]
        offset += size
        selection.append((alg, tuple(8 * i + b for i in range(size) for b in range(8) if bitmap[i] >> b & 1)))
    return selection, offset


# --- GET_QUOTE (TPM 2.0 deep quote) ----------------------------------------

@dataclass(frozen=True)
class QuoteRequest:
    nonce: bytes
    pcr_selection: list = field(default_factory=list)
    flags: int = 0


@dataclass(frozen=True)
class QuoteResponse:
    attest: bytes            # TPMS_ATTEST bytes (contents of the TPM2B_ATTEST)
    signature: bytes         # TPMT_SIGNATURE bytes
    hashes: tuple = ()       # one 32-byte hash per flag set
    pcr_values: tuple = ()   # selected pTPM PCR values


def get_quote_request(nonce: bytes, pcr_selection=(), flags: int = 0) -> bytes:
    """VTPM_ORD_GET_QUOTE: TPM2B nonce | TPML_PCR_SELECTION | u32 flags."""
    _check_quote(nonce, flags)
    return pack_header(VTPM_TAG_REQ, VTPM_ORD_GET_QUOTE, _quote_body(nonce, pcr_selection, flags))


def _quote_body(nonce: bytes, pcr_selection, flags: int) -> bytes:
    """TPM2B nonce | TPML_PCR_SELECTION | u32 flags: GET_QUOTE's body and the deep quote's."""
    return struct.pack(">H", len(nonce)) + bytes(nonce) + pack_pcr_selection(list(pcr_selection)) \
        + struct.pack(">I", flags)


def _check_quote(nonce: bytes, flags: int) -> None:
    if len(nonce) > QUOTE_NONCE_MAX:
        raise VtpmmgrError(TPM_BAD_PARAMETER, f"nonce of {len(nonce)} bytes > {QUOTE_NONCE_MAX}")
    if flags & ~VTPM_QUOTE_FLAGS_ALL or flags < 0:
        raise VtpmmgrError(VTPM_INVALID_REQUEST, f"unknown quote flags {flags:#x}")


def parse_get_quote_request(message: bytes) -> QuoteRequest:
    return _parse_quote_body(_body(message, VTPM_ORD_GET_QUOTE))


def _parse_quote_body(body: bytes) -> QuoteRequest:
    if len(body) < 2:
        raise VtpmmgrError(TPM_BAD_PARAMETER, "GET_QUOTE without a nonce")
    (size,) = struct.unpack_from(">H", body)
    if size > QUOTE_NONCE_MAX or 2 + size > len(body):
        raise VtpmmgrError(TPM_BAD_PARAMETER, f"nonce size {size} does not fit")
    nonce = body[2:2 + size]
    selection, pos = unpack_pcr_selection(body, 2 + size)
    if len(body) - pos != 4:
        raise VtpmmgrError(TPM_BAD_PARAMETER, "GET_QUOTE flags missing or trailing bytes")
    (flags,) = struct.unpack_from(">I", body, pos)
    _check_quote(nonce, flags)
    return QuoteRequest(nonce, selection, flags)


def _flag_count(flags: int) -> int:
    return bin(flags & VTPM_QUOTE_FLAGS_ALL).count("1")


def get_quote_response(attest: bytes, signature: bytes, hashes: Sequence[bytes] = (),
                       pcr_values: Sequence[bytes] = ()) -> bytes:
    """The successful GET_QUOTE reply (see the module doc for the layout)."""
    out = bytearray(struct.pack(">H", len(attest)) + attest)
    out += struct.pack(">H", len(signature)) + signature
    for h in hashes:
        if len(h) != _DEEP_QUOTE_HASH_SIZE:
            raise VtpmmgrError(TPM_FAIL, "deep-quote hashes are 32 bytes")
        out += h
    out += struct.pack(">I", len(pcr_values))
    for value in pcr_values:
        out += struct.pack(">H", len(value)) + value
    if VTPM_COMMAND_HEADER_SIZE + len(out) > TCPA_MAX_BUFFER_LENGTH:
        raise VtpmmgrError(TPM_SIZE, "quote reply exceeds the manager's buffer")
    return response(TPM_SUCCESS, bytes(out))


def parse_get_quote_response(message: bytes, flags: int) -> QuoteResponse:
    """Decode a GET_QUOTE reply to a request made with *flags*."""
    body = _rsp_body(message)
    pos = 0

    def take(n, what):
        nonlocal pos
        if pos + n > len(body):
            raise VtpmmgrError(TPM_BAD_PARAMETER, f"GET_QUOTE reply truncated in {what}")
        out = body[pos:pos + n]
        pos += n
        return out

    attest = take(struct.unpack(">H", take(2, "attest size"))[0], "attest")
    signature = take(struct.unpack(">H", take(2, "signature size"))[0], "signature")
    hashes = tuple(take(_DEEP_QUOTE_HASH_SIZE, "hashes") for _ in range(_flag_count(flags)))
    (count,) = struct.unpack(">I", take(4, "PCR count"))
    values = tuple(take(struct.unpack(">H", take(2, "PCR size"))[0], "PCR value") for _ in range(count))
    if pos != len(body):
        raise VtpmmgrError(TPM_BAD_PARAMETER, "trailing bytes after the PCR values")
    return QuoteResponse(attest, signature, hashes, values)


def deep_quote_hashes(flags: int, *, uuid: bytes = b"", kernel_hash: bytes = b"",
                      group_info: bytes = b"", saa_pubkey: bytes = b"") -> list[bytes]:
    """The optional hashes selected by *flags*, in flag-bit order (SHA-256 each)."""
    _check_quote(b"", flags)
    parts = ((VTPM_QUOTE_FLAGS_HASH_UUID, uuid), (VTPM_QUOTE_FLAGS_VTPM_MEASUREMENTS, kernel_hash),
             (VTPM_QUOTE_FLAGS_GROUP_INFO, group_info), (VTPM_QUOTE_FLAGS_GROUP_PUBKEY, saa_pubkey))
    return [hashlib.sha256(data).digest() for bit, data in parts if flags & bit]


def deep_quote_external_data(nonce: bytes, flags: int, hashes: Sequence[bytes] = ()) -> bytes:
    """qualifyingData of the pTPM TPM2_Quote: SHA-256(flags LE | nonce | [SHA-256(hashes)]).

    A verifier recomputes this from its nonce and the hashes in the reply
    and compares it with ``extraData`` of the signed TPMS_ATTEST.
    """
    _check_quote(nonce, flags)
    if len(hashes) != _flag_count(flags):
        raise VtpmmgrError(TPM_BAD_PARAMETER, f"{len(hashes)} hashes for flags {flags:#x}")
    h = hashlib.sha256(struct.pack("<I", flags) + bytes(nonce))
    if flags:
        h.update(hashlib.sha256(b"".join(hashes)).digest())
    return h.digest()


# --- the vTPM's TPM2_CC_DeepQuote (a guest's way to GET_QUOTE) ---------------

#: The vTPM's vendor command for a deep quote: TPMA_CC's vendor bit (bit 29)
#: | TPM2_CC_Quote (0x158). A guest sends it to its vTPM, which turns it into
#: VTPM_ORD_GET_QUOTE for the manager and returns the manager's reply.
TPM2_CC_DeepQuote = 0x20000000 | 0x158
#: TPM 2.0's TPM_ST_NO_SESSIONS and TPM_ALG_SHA256 (the deep quote is a TPM 2.0 command)
_TPM2_ST_NO_SESSIONS = 0x8001
_TPM2_ALG_SHA256 = 0x000B


def deep_quote_command(data: bytes, host_pcrs=range(10), flags: int = 0, *, alg=None) -> bytes:
    """The guest's ``TPM2_CC_DeepQuote``: TPM 2.0 header, then GET_QUOTE's body --
    TPM2B ``data`` | TPML_PCR_SELECTION of ``host_pcrs`` in bank ``alg`` (SHA-256) | u32
    ``flags``. Not checked here: the vTPM refuses what the manager would."""
    selection = [(alg or _TPM2_ALG_SHA256, list(host_pcrs))]
    return pack_header(_TPM2_ST_NO_SESSIONS, TPM2_CC_DeepQuote, _quote_body(data, selection, flags))


def parse_deep_quote_command(command: bytes) -> QuoteRequest:
    """The GET_QUOTE a deep quote asks for (the vTPM has checked the TPM 2.0 header).

    Raises :class:`VtpmmgrError` for a body GET_QUOTE would refuse.
    """
    return _parse_quote_body(command[VTPM_COMMAND_HEADER_SIZE:])


def deep_quote_response(reply: bytes) -> bytes:
    """The vTPM's TPM 2.0 answer to a deep quote: success, then TPM2B(the manager's reply)."""
    return pack_header(_TPM2_ST_NO_SESSIONS, TPM_SUCCESS, struct.pack(">H", len(reply)) + reply)

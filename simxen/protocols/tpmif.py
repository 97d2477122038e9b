"""The vTPM shared page: ``struct tpmif_shared_page`` (tpmif v2).

This module is the layout of Xen's ``xen/include/public/io/tpmif.h`` and
nothing else: where each field lives, who may write it, and which state
changes are legal. Both ends of a vTPM connection (a guest's tpmfront and
the vTPM stub domain's tpmback, or the vTPM's own tpmfront and the vTPM
manager's tpmback) read and write the *same* granted 4 KiB page through the
functions below.

Layout (all integers little-endian, the host order of x86)::

     offset  size  field            written by
     ------  ----  ---------------  -----------------------------------------
          0     4  length           frontend (request) / backend (response)
          4     1  state            see TPMIF_WRITERS
          5     1  locality         frontend
          6     1  pad              nobody (0)
          7     1  nr_extra_pages   frontend
          8   4*n  extra_pages[n]   frontend (grant refs, u32 each)
      8+4*n   ...  TPM packet       frontend (command) / backend (response)

``sizeof(struct tpmif_shared_page)`` is 8, so the packet starts at
``8 + 4*nr_extra_pages``. The comment table in ``tpmif.h`` says the grant
list starts at 16 and the data at ``16 + 4*n``; that table is wrong — it
predates the final structure, and every implementation (Linux
``shr_data_offset``, mini-os ``get_request``/``send_response``) uses the
structure, i.e. 8. The commit that introduced the ABI also states a single
page carries 4088 bytes of packet, which is ``4096 - 8``.

Extra pages are granted by the frontend and mapped by the backend "as if
contiguous after the first page": byte ``4096 + k`` of the packet space lives
at byte ``k`` of extra page 0, and so on. Linux never sets
``nr_extra_pages`` and mini-os tpmback never maps extra grants, so in practice
``nr_extra_pages`` is 0; the layout supports them so a simulation can model
both.

Errors are :class:`TpmifError` carrying a negative errno, the way the Xen
drivers report them (``-E2BIG`` for a packet that does not fit,
``-EINVAL`` for a malformed header, ``-EPERM`` for a state write by the wrong
side or an illegal transition).
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass
from typing import Sequence, Union

__all__ = [
    "XEN_PAGE_SIZE", "TPMIF_HEADER_SIZE", "TPMIF_MAX_PAYLOAD", "TPMIF_MAX_EXTRA_PAGES",
    "TPMIF_OFF_LENGTH", "TPMIF_OFF_STATE", "TPMIF_OFF_LOCALITY", "TPMIF_OFF_PAD",
    "TPMIF_OFF_NR_EXTRA_PAGES", "TPMIF_OFF_EXTRA_PAGES",
    "TPMIF_STATE_IDLE", "TPMIF_STATE_SUBMIT", "TPMIF_STATE_FINISH", "TPMIF_STATE_CANCEL",
    "TPMIF_STATE_NAMES", "FRONTEND", "BACKEND", "TPMIF_WRITERS", "TPMIF_TRANSITIONS",
    "TpmifError", "TpmifHeader", "data_offset", "payload_capacity", "check_transition",
    "HEADER", "pack_submit", "pack_finish", "unpack_length", "pack_extra_pages",
    "unpack_extra_pages", "spans",
    "read_header", "write_header", "read_state", "write_state",
    "read_payload", "write_payload", "write_request", "write_response",
]

#: Size of one Xen page (x86), the unit of a grant.
XEN_PAGE_SIZE = 4096
#: ``sizeof(struct tpmif_shared_page)``: the fixed header before ``extra_pages``.
TPMIF_HEADER_SIZE = 8
#: Largest TPM packet that fits in one page with no extra pages: 4096 - 8.
TPMIF_MAX_PAYLOAD = XEN_PAGE_SIZE - TPMIF_HEADER_SIZE
#: ``nr_extra_pages`` is a u8.
TPMIF_MAX_EXTRA_PAGES = 255

TPMIF_OFF_LENGTH = 0
TPMIF_OFF_STATE = 4
TPMIF_OFF_LOCALITY = 5
TPMIF_OFF_PAD = 6
TPMIF_OFF_NR_EXTRA_PAGES = 7
TPMIF_OFF_EXTRA_PAGES = 8

#: no contents / vTPM idle / cancel finished
TPMIF_STATE_IDLE = 0
#: request ready / vTPM working
TPMIF_STATE_SUBMIT = 1
#: response ready / vTPM idle
TPMIF_STATE_FINISH = 2
#: cancel requested / vTPM still working
TPMIF_STATE_CANCEL = 3

TPMIF_STATE_NAMES = {
    TPMIF_STATE_IDLE: "IDLE",
    TPMIF_STATE_SUBMIT: "SUBMIT",
    TPMIF_STATE_FINISH: "FINISH",
    TPMIF_STATE_CANCEL: "CANCEL",
}

FRONTEND = "frontend"
BACKEND = "backend"

#: Which side may store which state value: the frontend asks (SUBMIT, CANCEL),
#: the backend answers (IDLE, FINISH).
TPMIF_WRITERS = {
    FRONTEND: frozenset({TPMIF_STATE_SUBMIT, TPMIF_STATE_CANCEL}),
    BACKEND: frozenset({TPMIF_STATE_IDLE, TPMIF_STATE_FINISH}),
}

#: Legal state changes, ``(old, new) -> writer``. A backend checks a
#: frontend's store against this table (and vice versa in a careful frontend).
#:
#: * IDLE/FINISH -> SUBMIT: the frontend wrote a command.
#: * SUBMIT -> FINISH: the backend wrote the response.
#: * SUBMIT -> CANCEL: the frontend gave up waiting.
#: * CANCEL -> IDLE: the backend acknowledged the cancel (nothing was running).
#: * CANCEL -> FINISH: the backend finished the command anyway.
#: * SUBMIT -> IDLE: a backend cancelled the command for its own reason.
TPMIF_TRANSITIONS = {
    (TPMIF_STATE_IDLE, TPMIF_STATE_SUBMIT): FRONTEND,
    (TPMIF_STATE_FINISH, TPMIF_STATE_SUBMIT): FRONTEND,
    (TPMIF_STATE_SUBMIT, TPMIF_STATE_CANCEL): FRONTEND,
    (TPMIF_STATE_SUBMIT, TPMIF_STATE_FINISH): BACKEND,
    (TPMIF_STATE_CANCEL, TPMIF_STATE_IDLE): BACKEND,
    (TPMIF_STATE_CANCEL, TPMIF_STATE_FINISH): BACKEND,
    (TPMIF_STATE_SUBMIT, TPMIF_STATE_IDLE): BACKEND,
}

#: The fixed header, ``length, state, locality, pad, nr_extra_pages``: the one
#: copy of this layout (the drivers read and store through it and the helpers below).
HEADER = struct.Struct("<IBBBB")
#: its leading fields, for the drivers' single stores after a packet
_LENGTH = struct.Struct("<I")
_LENGTH_STATE = struct.Struct("<IB")
_LENGTH_STATE_LOCALITY = struct.Struct("<IBB")

Page = Union[bytearray, memoryview]
Pages = Union[Page, Sequence[Page]]


class TpmifError(Exception):
    """A shared-page operation that Xen's drivers would refuse.

    :attr:`errno` is the negative errno a Xen driver returns for it
    (``-errno.E2BIG``, ``-errno.EINVAL``, ``-errno.EPERM``).
    """

    def __init__(self, err: int, message: str):
        self.errno = err
        super().__init__(f"{errno.errorcode.get(-err, err)}: {message}")


@dataclass(frozen=True)
class TpmifHeader:
    """The fixed fields plus the extra-page grant list, as one value."""

    length: int = 0
    state: int = TPMIF_STATE_IDLE
    locality: int = 0
    pad: int = 0
    extra_pages: tuple[int, ...] = ()

    @property
    def nr_extra_pages(self) -> int:
        return len(self.extra_pages)

    @property
    def data_offset(self) -> int:
        """Offset of the TPM packet in the first page: ``8 + 4*nr_extra_pages``."""
        return data_offset(self.nr_extra_pages)


def data_offset(nr_extra_pages: int) -> int:
    """Where the packet starts: ``8 + 4*nr_extra_pages`` (not 16 + 4n, see module doc)."""
    _check_nr_extra(nr_extra_pages)
    return TPMIF_OFF_EXTRA_PAGES + 4 * nr_extra_pages


def payload_capacity(nr_extra_pages: int) -> int:
    """Largest packet with *nr_extra_pages* extra pages mapped after the first.

    ``4088`` for none; each extra page adds 4096 bytes of packet space and
    costs 4 bytes of grant list in the first page.
    """
    return (1 + nr_extra_pages) * XEN_PAGE_SIZE - data_offset(nr_extra_pages)


def check_transition(writer: str, old: int, new: int) -> None:
    """Raise ``-EPERM`` unless *writer* may change the state from *old* to *new*."""
    if writer not in TPMIF_WRITERS:
        raise TpmifError(-errno.EINVAL, f"unknown writer {writer!r}")
    if new not in TPMIF_WRITERS[writer]:
        raise TpmifError(-errno.EPERM,
                         f"the {writer} may not write state {_state_name(new)}")
    if TPMIF_TRANSITIONS.get((old, new)) != writer:
        raise TpmifError(-errno.EPERM,
                         f"illegal transition {_state_name(old)} -> {_state_name(new)}")


def _state_name(state: int) -> str:
    return TPMIF_STATE_NAMES.get(state, f"unknown({state})")


def _check_nr_extra(n: int) -> None:
    if not 0 <= n <= TPMIF_MAX_EXTRA_PAGES:
        raise TpmifError(-errno.EINVAL, f"nr_extra_pages {n} outside 0..255")


def _page_list(pages: Pages) -> list:
    if isinstance(pages, (bytearray, memoryview, bytes)):
        pages = [pages]
    pages = list(pages)
    if not pages:
        raise TpmifError(-errno.EINVAL, "no shared page")
    for i, page in enumerate(pages):
        if len(page) != XEN_PAGE_SIZE:
            raise TpmifError(-errno.EINVAL, f"page {i} is {len(page)} bytes, not {XEN_PAGE_SIZE}")
    return pages


def pack_submit(length: int, locality: int) -> bytes:
    """Bytes 0..5, ``length``, ``state = SUBMIT``, ``locality``: a frontend's one store
    after it wrote the command (Linux ``vtpm_send`` orders the same fields after the data)."""
    return _LENGTH_STATE_LOCALITY.pack(length, TPMIF_STATE_SUBMIT, locality)


def pack_finish(length: int) -> bytes:
    """Bytes 0..4, ``length`` and ``state = FINISH``: a backend's one store after the response."""
    return _LENGTH_STATE.pack(length, TPMIF_STATE_FINISH)


def unpack_length(data: bytes) -> int:
    """The ``length`` field from the header's first 4 bytes."""
    return _LENGTH.unpack_from(data)[0]


def pack_extra_pages(refs: Sequence[int]) -> bytes:
    """The ``extra_pages[]`` grant list (u32 each), stored at ``TPMIF_OFF_EXTRA_PAGES``."""
    return struct.pack(f"<{len(refs)}I", *refs)


def unpack_extra_pages(data: bytes, nr_extra_pages: int, offset: int = 0) -> tuple:
    """``nr_extra_pages`` grant refs from the grant list at ``offset`` of ``data``."""
    return struct.unpack_from(f"<{nr_extra_pages}I", data, offset)


def spans(nr_extra_pages: int, length: int):
    """Where a packet of ``length`` bytes lies: ``(page_index, start, stop, pos)`` pieces.

    Page ``page_index`` (0 = the shared page, 1.. = the extra pages "as if
    contiguous") holds bytes ``[start, stop)`` of itself, which are bytes
    ``[pos, pos + stop - start)`` of the packet. The one copy of this walk:
    both drivers and :func:`read_payload`/:func:`write_payload` use it.
    """
    pos = data_offset(nr_extra_pages)  # position in the "contiguous" space of all pages
    first = pos
    end = pos + length
    while pos < end:
        index, start = divmod(pos, XEN_PAGE_SIZE)
        stop = min(XEN_PAGE_SIZE, start + (end - pos))
        yield index, start, stop, pos - first
        pos += stop - start


def read_header(pages: Pages) -> TpmifHeader:
    """Decode the header of the first page (the grant list included).

    Does not validate ``length`` against the pages; :func:`read_payload` does.
    """
    first = _page_list(pages)[0]
    length, state, locality, pad, n = HEADER.unpack_from(first, 0)
    refs = unpack_extra_pages(first, n, TPMIF_OFF_EXTRA_PAGES)
    return TpmifHeader(length, state, locality, pad, tuple(refs))


def write_header(pages: Pages, header: TpmifHeader) -> None:
    """Store every header field (the whole grant list too) into the first page."""
    first = _page_list(pages)[0]
    _check_nr_extra(header.nr_extra_pages)
    _check_u(header.length, 32, "length")
    for name in ("state", "locality", "pad"):
        _check_u(getattr(header, name), 8, name)
    for ref in header.extra_pages:
        _check_u(ref, 32, "extra_pages[]")
    HEADER.pack_into(first, 0, header.length, header.state, header.locality, header.pad,
                     header.nr_extra_pages)
    refs = pack_extra_pages(header.extra_pages)
    first[TPMIF_OFF_EXTRA_PAGES:TPMIF_OFF_EXTRA_PAGES + len(refs)] = refs


def _check_u(value: int, bits: int, name: str) -> None:
    if not isinstance(value, int) or not 0 <= value < (1 << bits):
        raise TpmifError(-errno.EINVAL, f"{name} {value!r} does not fit in u{bits}")


def read_state(pages: Pages) -> int:
    """The ``state`` byte (offset 4)."""
    return _page_list(pages)[0][TPMIF_OFF_STATE]


def write_state(pages: Pages, new: int, writer: str, *, check: bool = True) -> None:
    """Store ``state``; with *check*, refuse a store :func:`check_transition` forbids."""
    first = _page_list(pages)[0]
    if check:
        check_transition(writer, first[TPMIF_OFF_STATE], new)
    _check_u(new, 8, "state")
    first[TPMIF_OFF_STATE] = new


def _mapped(pages: Pages, nr_extra: int) -> list:
    pages = _page_list(pages)
    if len(pages) < 1 + nr_extra:
        raise TpmifError(-errno.EINVAL,
                         f"nr_extra_pages is {nr_extra} but only {len(pages) - 1} extra pages are mapped")
    return pages


def read_payload(pages: Pages) -> bytes:
    """The packet the header's ``length`` announces, across extra pages if any.

    Raises ``-EINVAL`` if ``length`` reaches beyond the granted pages (what
    mini-os tpmback logs as "Command size too long").
    """
    hdr = read_header(pages)
    pages = _mapped(pages, hdr.nr_extra_pages)
    cap = payload_capacity(hdr.nr_extra_pages)
    if hdr.length > cap:
        raise TpmifError(-errno.EINVAL,
                         f"length {hdr.length} exceeds the {cap} bytes of {1 + hdr.nr_extra_pages} page(s)")
    return b"".join(bytes(pages[i][a:b]) for i, a, b, _ in spans(hdr.nr_extra_pages, hdr.length))


def write_payload(pages: Pages, data: bytes) -> None:
    """Store *data* at the data offset and set ``length``; state is untouched.

    The grant list already in the first page decides the data offset, so the
    frontend writes the header (with its extra pages) first. Raises ``-E2BIG``
    when *data* does not fit (Linux xen-tpmfront's answer to an oversize send).
    """
    hdr = read_header(pages)
    pages = _mapped(pages, hdr.nr_extra_pages)
    cap = payload_capacity(hdr.nr_extra_pages)
    if len(data) > cap:
        raise TpmifError(-errno.E2BIG,
                         f"{len(data)}-byte packet exceeds the {cap} bytes of {1 + hdr.nr_extra_pages} page(s)")
    for i, a, b, pos in spans(hdr.nr_extra_pages, len(data)):
        pages[i][a:b] = data[pos:pos + b - a]
    _LENGTH.pack_into(pages[0], TPMIF_OFF_LENGTH, len(data))


def write_request(pages: Pages, command: bytes, *, locality: int = 0, check: bool = True) -> None:
    """Frontend: command bytes, ``length``, ``locality``, then ``state = SUBMIT``.

    The order is the driver's (payload, length, barrier, state); the caller
    notifies the event channel afterwards.
    """
    if check:
        check_transition(FRONTEND, read_state(pages), TPMIF_STATE_SUBMIT)
    _check_u(locality, 8, "locality")
    write_payload(pages, command)
    _page_list(pages)[0][TPMIF_OFF_LOCALITY] = locality
    write_state(pages, TPMIF_STATE_SUBMIT, FRONTEND, check=False)


def write_response(pages: Pages, response: bytes, *, check: bool = True) -> None:
    """Backend: response bytes, ``length``, then ``state = FINISH``.

    On an oversize response nothing is changed (mini-os neither changes the
    state nor notifies, so the frontend times out) and ``-E2BIG`` is raised.
    """
    if check:
        check_transition(BACKEND, read_state(pages), TPMIF_STATE_FINISH)
    write_payload(pages, response)
    write_state(pages, TPMIF_STATE_FINISH, BACKEND, check=False)

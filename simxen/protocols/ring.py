"""Xen's generic shared ring (``xen/include/public/io/ring.h``) over a page.

A split driver's frontend and backend share one page laid out as::

    offset  size  field
    0       4     req_prod    requests published by the frontend
    4       4     req_event   backend: "notify me when req_prod passes this"
    8       4     rsp_prod    responses published by the backend
    12      4     rsp_event   frontend: "notify me when rsp_prod passes this"
    16      48    pvt + padding
    64      ...   ring[size], each entry a request/response union

``size`` is the largest power of two of entries that fit after the header
(:func:`ring_size`): 112-byte blkif entries give 36, rounded down to 32.
Indices are free-running unsigned 32-bit counters; a slot is ``idx &
(size - 1)``, and every difference is taken modulo 2**32, so the ring keeps
working when the counters wrap.

Each side keeps private counters (the frontend ``req_prod_pvt`` and
``rsp_cons``; the backend ``rsp_prod_pvt`` and ``req_cons``) and publishes
a batch by writing its shared producer index. Notification suppression is
``ring.h``'s: after publishing, notify only if the consumer's event index
lies in ``(old, new]`` (:meth:`FrontRing.push_requests_and_check_notify`);
a consumer about to sleep sets its event index to ``cons + 1`` and checks
once more (:meth:`BackRing.final_check_for_requests`), so a producer that
raced with it is not missed.

These classes are pure: they read and write the buffer they are given (a
``bytearray``, or a grant mapping's view of one) and know nothing of time
or domains. :mod:`simxen.drivers.ring` puts them to work between domains.

The four shared indices are read and written through :func:`header_words`,
a view of the header as u32 words: ``words[RSP_PROD_WORD]`` is the same
little-endian field ``read_index(buf, RSP_PROD)`` unpacks, read without a
function call (indices are touched several times per request).
"""

import struct
import sys

SRING_HEADER = 64
MASK = 0xFFFFFFFF
_U32 = struct.Struct("<I")
#: byte offsets of the shared header's fields
REQ_PROD, REQ_EVENT, RSP_PROD, RSP_EVENT = 0, 4, 8, 12
#: the same fields as indices into :func:`header_words`
REQ_PROD_WORD, REQ_EVENT_WORD, RSP_PROD_WORD, RSP_EVENT_WORD = 0, 1, 2, 3


class _LittleEndianWords:
    """``header_words`` on a big-endian host: the same indexing, through struct."""

    __slots__ = ("buf",)

    def __init__(self, buf):
        self.buf = buf

    def __getitem__(self, word):
        return _U32.unpack_from(self.buf, 4 * word)[0]

    def __setitem__(self, word, value):
        _U32.pack_into(self.buf, 4 * word, value)


def header_words(buf):
    """The four u32 index fields of ``buf``'s header as an indexable view.

    ``words[REQ_PROD_WORD]`` reads ``req_prod``; assigning a value in
    ``[0, 2**32)`` stores it. The view aliases ``buf`` (the peer's writes are
    seen at once). ring.h's indices are little-endian, the byte order of the
    hosts Xen runs on; on a little-endian host this is a ``memoryview`` cast
    to ``"I"`` (indexing costs no Python call). A read-only ``buf`` gives a
    read-only view (storing raises ``TypeError``).
    """
    if sys.byteorder == "little":
        return memoryview(buf)[:16].cast("I")
    return _LittleEndianWords(buf)


def ring_size(entry_size, page_size=4096):
    """Entries in a ring of ``entry_size``-byte entries in one page (a power of two)."""
    if entry_size < 1:
        raise ValueError(f"entry_size must be positive, not {entry_size}")
    fit = (page_size - SRING_HEADER) // entry_size
    if fit < 1:
        raise ValueError(f"a {entry_size}-byte entry does not fit in a {page_size}-byte page")
    return 1 << (fit.bit_length() - 1)


def sring_init(buf):
    """``SHARED_RING_INIT``: producers 0, events 1, padding zeroed (frontend only)."""
    buf[0:SRING_HEADER] = bytes(SRING_HEADER)
    _U32.pack_into(buf, REQ_EVENT, 1)
    _U32.pack_into(buf, RSP_EVENT, 1)


def read_index(buf, offset):
    """One u32 field of the shared header."""
    return _U32.unpack_from(buf, offset)[0]


def write_index(buf, offset, value):
    """Store one u32 field of the shared header (modulo 2**32)."""
    _U32.pack_into(buf, offset, value & MASK)


class _Ring:
    def __init__(self, buf, entry_size, page_size):
        self.buf = buf
        self.words = header_words(buf)      #: the shared indices, see header_words()
        self.entry_size = entry_size
        self.size = ring_size(entry_size, page_size)
        self._mask = self.size - 1

    def entry_offset(self, idx):
        """Byte offset of the entry that index ``idx`` uses."""
        return SRING_HEADER + (idx & self._mask) * self.entry_size

    def _push_and_check(self, prod_word, event_word, new):
        """Publish producer index ``new``; notify iff the peer's event is in ``(old, new]``."""
        words = self.words
        old = words[prod_word]
        words[prod_word] = new
        return ((new - words[event_word]) & MASK) < ((new - old) & MASK)

    def _final_check(self, prod_word, event_word, cons):
        """Work at ``cons``? If none, set the event index to ``cons + 1`` and look again."""
        words = self.words
        if words[prod_word] != cons:
            return True
        words[event_word] = (cons + 1) & MASK
        return words[prod_word] != cons

    def _put(self, offset, data):
        if len(data) > self.entry_size:
            raise ValueError(f"{len(data)}-byte entry for a ring of {self.entry_size}-byte entries")
        self.buf[offset:offset + len(data)] = data

    # shared header, by name
    req_prod = property(lambda self: self.words[REQ_PROD_WORD])
    req_event = property(lambda self: self.words[REQ_EVENT_WORD])
    rsp_prod = property(lambda self: self.words[RSP_PROD_WORD])
    rsp_event = property(lambda self: self.words[RSP_EVENT_WORD])


class FrontRing(_Ring):
    """The frontend's view: produces requests, consumes responses.

    ``init=True`` is ``SHARED_RING_INIT`` + ``FRONT_RING_INIT``; otherwise
    ``FRONT_RING_ATTACH`` picks up the indices already in the page.
    """

    def __init__(self, buf, entry_size, *, init=False, page_size=4096):
        if init:
            sring_init(buf)
        super().__init__(buf, entry_size, page_size)
        self.req_prod_pvt = self.req_prod
        self.rsp_cons = self.rsp_prod

    def free_requests(self):
        """``RING_FREE_REQUESTS``: slots the frontend may still fill."""
        return self.size - ((self.req_prod_pvt - self.rsp_cons) & MASK)

    def full(self):
        """``RING_FULL``."""
        return self.free_requests() == 0

    def produce_request(self):
        """Claim the next request slot: its byte offset (``RING_GET_REQUEST`` + ``req_prod_pvt++``)."""
        pvt = self.req_prod_pvt
        if ((pvt - self.rsp_cons) & MASK) >= self.size:
            raise OverflowError("request ring is full")
        self.req_prod_pvt = (pvt + 1) & MASK
        return SRING_HEADER + (pvt & self._mask) * self.entry_size

    def put_request(self, data):
        """Write ``data`` into the next request slot (not yet published)."""
        if len(data) > self.entry_size:     # checked before a slot is claimed
            raise ValueError(f"{len(data)}-byte entry for a ring of {self.entry_size}-byte entries")
        self._put(self.produce_request(), data)

    def push_requests(self):
        """``RING_PUSH_REQUESTS``: publish without deciding about a notification."""
        self.words[REQ_PROD_WORD] = self.req_prod_pvt

    def push_requests_and_check_notify(self):
        """``RING_PUSH_REQUESTS_AND_CHECK_NOTIFY``: publish; should the backend be notified?"""
        return self._push_and_check(REQ_PROD_WORD, REQ_EVENT_WORD, self.req_prod_pvt)

    def unpublished(self):
        """Requests written but not yet pushed."""
        return (self.req_prod_pvt - self.words[REQ_PROD_WORD]) & MASK

    push_and_check_notify = push_requests_and_check_notify
    private_prod = property(lambda self: self.req_prod_pvt)
    peer_event = property(lambda self: self.req_event)

    def unconsumed_responses(self):
        """``RING_HAS_UNCONSUMED_RESPONSES``: how many."""
        return (self.words[RSP_PROD_WORD] - self.rsp_cons) & MASK

    def consume_response(self):
        """Byte offset of the next response; advances ``rsp_cons``."""
        offset = SRING_HEADER + (self.rsp_cons & self._mask) * self.entry_size
        self.rsp_cons = (self.rsp_cons + 1) & MASK
        return offset

    def next_response(self):
        """Byte offset of the next unconsumed response (advancing ``rsp_cons``), or ``None``."""
        cons = self.rsp_cons
        if self.words[RSP_PROD_WORD] == cons:
            return None
        self.rsp_cons = (cons + 1) & MASK
        return SRING_HEADER + (cons & self._mask) * self.entry_size

    def get_response(self):
        """The next response entry's bytes (the whole entry)."""
        offset = self.consume_response()
        return bytes(self.buf[offset:offset + self.entry_size])

    def final_check_for_responses(self):
        """``RING_FINAL_CHECK_FOR_RESPONSES``: work left? If none, ask for a notification."""
        return self._final_check(RSP_PROD_WORD, RSP_EVENT_WORD, self.rsp_cons)


class BackRing(_Ring):
    """The backend's view: consumes requests, produces responses (``BACK_RING_ATTACH``)."""

    def __init__(self, buf, entry_size, *, page_size=4096):
        super().__init__(buf, entry_size, page_size)
        self.rsp_prod_pvt = self.rsp_prod
        self.req_cons = self.rsp_prod_pvt

    def unconsumed_requests(self):
        """``RING_HAS_UNCONSUMED_REQUESTS``: how many, never more than the ring holds."""
        req = (self.words[REQ_PROD_WORD] - self.req_cons) & MASK
        rsp = self.size - ((self.req_cons - self.rsp_prod_pvt) & MASK)
        return req if req < rsp else rsp

    def request_cons_overflow(self, cons=None):
        """``RING_REQUEST_CONS_OVERFLOW``: has ``cons`` run a full ring ahead of responses?"""
        cons = self.req_cons if cons is None else cons
        return ((cons - self.rsp_prod_pvt) & MASK) >= self.size

    def request_prod_overflow(self, prod=None):
        """``RING_REQUEST_PROD_OVERFLOW``: a frontend publishing more than a ring's worth."""
        prod = self.req_prod if prod is None else prod
        return ((prod - self.rsp_prod_pvt) & MASK) > self.size

    def consume_request(self):
        """Byte offset of the next request; advances ``req_cons``."""
        offset = SRING_HEADER + (self.req_cons & self._mask) * self.entry_size
        self.req_cons = (self.req_cons + 1) & MASK
        return offset

    def next_request(self):
        """Byte offset of the next unconsumed request (advancing ``req_cons``), or ``None``.

        Raises ``ValueError`` if the frontend published more requests than
        the ring holds (``RING_REQUEST_PROD_OVERFLOW``: a buggy or malicious
        frontend).
        """
        prod = self.words[REQ_PROD_WORD]
        cons = self.req_cons
        if prod == cons:
            return None
        pvt = self.rsp_prod_pvt
        if ((prod - pvt) & MASK) > self.size:
            raise ValueError(f"frontend req_prod {prod} overflows the ring "
                             f"(rsp_prod_pvt {pvt}, size {self.size})")
        if ((cons - pvt) & MASK) >= self.size:
            return None         # a full ring's worth awaits responses
        self.req_cons = (cons + 1) & MASK
        return SRING_HEADER + (cons & self._mask) * self.entry_size

    def get_request(self):
        """A private copy of the next request entry (``RING_COPY_REQUEST``)."""
        offset = self.consume_request()
        return bytes(self.buf[offset:offset + self.entry_size])

    def produce_response(self):
        """Claim the next response slot: its byte offset."""
        pvt = self.rsp_prod_pvt
        self.rsp_prod_pvt = (pvt + 1) & MASK
        return SRING_HEADER + (pvt & self._mask) * self.entry_size

    def put_response(self, data):
        """Write ``data`` into the next response slot (not yet published)."""
        if len(data) > self.entry_size:     # checked before a slot is claimed
            raise ValueError(f"{len(data)}-byte entry for a ring of {self.entry_size}-byte entries")
        self._put(self.produce_response(), data)

    def push_responses(self):
        """``RING_PUSH_RESPONSES``."""
        self.words[RSP_PROD_WORD] = self.rsp_prod_pvt

    def push_responses_and_check_notify(self):
        """``RING_PUSH_RESPONSES_AND_CHECK_NOTIFY``: publish; should the frontend be notified?"""
        return self._push_and_check(RSP_PROD_WORD, RSP_EVENT_WORD, self.rsp_prod_pvt)

    def unpublished(self):
        """Responses written but not yet pushed."""
        return (self.rsp_prod_pvt - self.words[RSP_PROD_WORD]) & MASK

    push_and_check_notify = push_responses_and_check_notify
    private_prod = property(lambda self: self.rsp_prod_pvt)
    peer_event = property(lambda self: self.rsp_event)

    def final_check_for_requests(self):
        """``RING_FINAL_CHECK_FOR_REQUESTS``: work left? If none, ask for a notification."""
        return self._final_check(REQ_PROD_WORD, REQ_EVENT_WORD, self.req_cons) and bool(
            self.unconsumed_requests())

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


def _alias(name, doc):
    return property(lambda self: getattr(self, name),
                    lambda self, value: setattr(self, name, value), doc=doc)


class _Ring:
    """What both ends share.

    Each end produces on one half of the ring and consumes the other; a
    subclass names the header words of its halves: ``PROD_WORD`` (its own
    producer index), ``EVENT_WORD`` (the peer's "notify me past this" for
    it), ``PEER_PROD_WORD`` (the peer's producer index) and
    ``CONS_EVENT_WORD`` (its own "notify me" for that). ``prod_pvt`` is its
    private producer counter and ``cons`` its consumer counter (Xen's
    ``req_prod_pvt``/``rsp_cons`` in a front ring, ``rsp_prod_pvt``/
    ``req_cons`` in a back ring -- both names work).
    """

    PROD_WORD = EVENT_WORD = PEER_PROD_WORD = CONS_EVENT_WORD = None

    def __init__(self, buf, entry_size, page_size):
        self.buf = buf
        self.words = header_words(buf)      #: the shared indices, see header_words()
        self.entry_size = entry_size
        self.size = ring_size(entry_size, page_size)
        self._mask = self.size - 1
        self.prod_pvt = self.words[self.PROD_WORD]
        self.cons = self.words[self.PEER_PROD_WORD]

    def entry_offset(self, idx):
        """Byte offset of the entry that index ``idx`` uses."""
        return SRING_HEADER + (idx & self._mask) * self.entry_size

    def push_and_check_notify(self):
        """Publish ``prod_pvt``; notify iff the peer's event index is in ``(old, new]``.

        ``RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`` on a front ring,
        ``RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`` on a back ring.
        """
        words = self.words
        new = self.prod_pvt
        old = words[self.PROD_WORD]
        words[self.PROD_WORD] = new
        return ((new - words[self.EVENT_WORD]) & MASK) < ((new - old) & MASK)

    def unpublished(self):
        """Entries produced but not yet pushed."""
        return (self.prod_pvt - self.words[self.PROD_WORD]) & MASK

    def final_check(self):
        """``RING_FINAL_CHECK_FOR_*``: work at ``cons``? If none, set the event to ``cons + 1``
        and look again (a producer that raced with us is then seen)."""
        words = self.words
        cons = self.cons
        if words[self.PEER_PROD_WORD] != cons:
            return True
        words[self.CONS_EVENT_WORD] = (cons + 1) & MASK
        return words[self.PEER_PROD_WORD] != cons

    def _check_entry(self, data):
        if len(data) > self.entry_size:
            raise ValueError(f"{len(data)}-byte entry for a ring of {self.entry_size}-byte entries")

    def _produce(self):
        pvt = self.prod_pvt
        self.prod_pvt = (pvt + 1) & MASK
        return SRING_HEADER + (pvt & self._mask) * self.entry_size

    def _consume(self):
        cons = self.cons
        self.cons = (cons + 1) & MASK
        return SRING_HEADER + (cons & self._mask) * self.entry_size

    private_prod = property(lambda self: self.prod_pvt)
    peer_event = property(lambda self: self.words[self.EVENT_WORD])

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

    PROD_WORD, EVENT_WORD = REQ_PROD_WORD, REQ_EVENT_WORD
    PEER_PROD_WORD, CONS_EVENT_WORD = RSP_PROD_WORD, RSP_EVENT_WORD
    req_prod_pvt = _alias("prod_pvt", "Requests produced (published or not).")
    rsp_cons = _alias("cons", "Responses consumed.")

    def __init__(self, buf, entry_size, *, init=False, page_size=4096):
        if init:
            sring_init(buf)
        super().__init__(buf, entry_size, page_size)

    def free_requests(self):
        """``RING_FREE_REQUESTS``: slots the frontend may still fill."""
        return self.size - ((self.prod_pvt - self.cons) & MASK)

    def full(self):
        """``RING_FULL``."""
        return self.free_requests() == 0

    def produce_request(self):
        """Claim the next request slot: its byte offset (``RING_GET_REQUEST`` + ``req_prod_pvt++``)."""
        if ((self.prod_pvt - self.cons) & MASK) >= self.size:
            raise OverflowError("request ring is full")
        return self._produce()

    def put_request(self, data):
        """Write ``data`` into the next request slot (not yet published)."""
        self._check_entry(data)             # before a slot is claimed
        offset = self.produce_request()
        self.buf[offset:offset + len(data)] = data

    def push_requests(self):
        """``RING_PUSH_REQUESTS``: publish without deciding about a notification."""
        self.words[REQ_PROD_WORD] = self.prod_pvt

    push_requests_and_check_notify = _Ring.push_and_check_notify

    def unconsumed_responses(self):
        """``RING_HAS_UNCONSUMED_RESPONSES``: how many."""
        return (self.words[RSP_PROD_WORD] - self.cons) & MASK

    def consume_response(self):
        """Byte offset of the next response; advances ``rsp_cons``."""
        return self._consume()

    def next_response(self):
        """Byte offset of the next unconsumed response (advancing ``rsp_cons``), or ``None``."""
        if self.words[RSP_PROD_WORD] == self.cons:
            return None
        return self._consume()

    def get_response(self):
        """The next response entry's bytes (the whole entry)."""
        offset = self._consume()
        return bytes(self.buf[offset:offset + self.entry_size])

    final_check_for_responses = _Ring.final_check


class BackRing(_Ring):
    """The backend's view: consumes requests, produces responses (``BACK_RING_ATTACH``)."""

    PROD_WORD, EVENT_WORD = RSP_PROD_WORD, RSP_EVENT_WORD
    PEER_PROD_WORD, CONS_EVENT_WORD = REQ_PROD_WORD, REQ_EVENT_WORD
    rsp_prod_pvt = _alias("prod_pvt", "Responses produced (published or not).")
    req_cons = _alias("cons", "Requests consumed.")

    def __init__(self, buf, entry_size, *, page_size=4096):
        super().__init__(buf, entry_size, page_size)
        self.cons = self.prod_pvt           # BACK_RING_ATTACH: req_cons = rsp_prod

    def unconsumed_requests(self):
        """``RING_HAS_UNCONSUMED_REQUESTS``: how many, never more than the ring holds."""
        cons = self.cons
        req = (self.words[REQ_PROD_WORD] - cons) & MASK
        rsp = self.size - ((cons - self.prod_pvt) & MASK)
        return req if req < rsp else rsp

    def request_cons_overflow(self, cons=None):
        """``RING_REQUEST_CONS_OVERFLOW``: has ``cons`` run a full ring ahead of responses?"""
        cons = self.cons if cons is None else cons
        return ((cons - self.prod_pvt) & MASK) >= self.size

    def request_prod_overflow(self, prod=None):
        """``RING_REQUEST_PROD_OVERFLOW``: a frontend publishing more than a ring's worth."""
        prod = self.req_prod if prod is None else prod
        return ((prod - self.prod_pvt) & MASK) > self.size

    def consume_request(self):
        """Byte offset of the next request; advances ``req_cons``."""
        return self._consume()

    def next_request(self):
        """Byte offset of the next unconsumed request (advancing ``req_cons``), or ``None``.

        Raises ``ValueError`` if the frontend published more requests than
        the ring holds (``RING_REQUEST_PROD_OVERFLOW``: a buggy or malicious
        frontend).
        """
        prod = self.words[REQ_PROD_WORD]
        cons = self.cons
        if prod == cons:
            return None
        pvt = self.prod_pvt
        if ((prod - pvt) & MASK) > self.size:
            raise ValueError(f"frontend req_prod {prod} overflows the ring "
                             f"(rsp_prod_pvt {pvt}, size {self.size})")
        if ((cons - pvt) & MASK) >= self.size:
            return None         # a full ring's worth awaits responses
        return self._consume()

    def get_request(self):
        """A private copy of the next request entry (``RING_COPY_REQUEST``)."""
        offset = self._consume()
        return bytes(self.buf[offset:offset + self.entry_size])

    def produce_response(self):
        """Claim the next response slot: its byte offset."""
        return self._produce()

    def put_response(self, data):
        """Write ``data`` into the next response slot (not yet published)."""
        self._check_entry(data)             # before a slot is claimed
        offset = self._produce()
        self.buf[offset:offset + len(data)] = data

    def push_responses(self):
        """``RING_PUSH_RESPONSES``."""
        self.words[RSP_PROD_WORD] = self.prod_pvt

    push_responses_and_check_notify = _Ring.push_and_check_notify

    def final_check_for_requests(self):
        """``RING_FINAL_CHECK_FOR_REQUESTS``: work left? If none, ask for a notification.

        Requests the backend may not take yet (a full ring's worth awaits
        responses) do not count: as in ring.h, whose test is
        ``RING_HAS_UNCONSUMED_REQUESTS``, the backend then sets ``req_event``
        too. (Only a frontend that publishes more than a ring's worth gets
        there: a well-behaved one cannot have requests published while a
        full ring awaits responses.)
        """
        words = self.words
        cons = self.cons
        # with requests published, bool(unconsumed_requests()) is "room to take one"
        if words[REQ_PROD_WORD] != cons and ((cons - self.prod_pvt) & MASK) != self.size:
            return True
        words[REQ_EVENT_WORD] = (cons + 1) & MASK
        return words[REQ_PROD_WORD] != cons and ((cons - self.prod_pvt) & MASK) != self.size

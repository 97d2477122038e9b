"""tpmfront: the guest half of a vTPM, one TPM command at a time over a granted page.

A domain that wants a TPM (a guest kernel, pv-grub, or a vTPM stub domain
talking to the vTPM manager) runs a :class:`TpmFront`. It shares **one 4 KiB
page** with its backend -- not a ring: the page holds a single command or a
single response (:mod:`simxen.protocols.tpmif`) -- and one event channel::

    hv = Hypervisor(seed=1)
    guest = hv.domain_create("guest")
    ...                                     # dom0 wrote device/vtpm/0 (add_device)

    def kernel():
        tpm = TpmFront(hv, guest)
        yield from tpm.connect()            # grant, alloc_unbound, xenbus handshake
        rsp = yield from tpm.transmit(pcr_extend_command(16, {TPM_ALG.SHA256: digest}))
        yield from tpm.close()

A round trip is: copy the command into the page at ``8 + 4*nr_extra_pages``,
store ``length`` (and ``locality``), store ``state = SUBMIT``, notify the
event channel; wait until the backend stores FINISH (or IDLE: cancelled);
copy the response out.

Two flavours, because Xen has two frontends and they wait differently
(Linux ``drivers/char/tpm/xen-tpmfront.c``; mini-os ``tpmfront.c``):

``"linux"``
    Linux ``xen-tpmfront``. Publishes ``ring-ref``, ``event-channel`` and
    ``feature-protocol-v2`` in one transaction and goes Initialised. Its wait
    for the response depends on the guest's **kernel era**
    (:mod:`simxen.drivers.kernel_eras`; ``kernel=`` or the profile switch
    ``tpmfront.kernel``): current kernels (``"linux-6"``, the default)
    **poll the page** after sleeps of 4.7-5.0 ms each (``usleep_range``:
    nothing sets ``TPM_CHIP_FLAG_IRQ``), the 4.x polling era sleeps whole
    jiffies (``msleep(5)``, ``hz=``), and 3.12 sleeps until the event
    channel fires. A response already present at the first check costs
    nothing extra; otherwise the guest sees it after its next sleep. On
    timeout it stores CANCEL, notifies and fails with ``-ETIME``; a wait
    ended by IDLE (not FINISH) fails with ``-ECANCELED``.
``"minios"``
    mini-os ``tpmfront``, used by the vTPM stub domain towards the manager and
    by pv-grub. Writes ``feature-protocol-v2`` first, ring-ref and
    event-channel in a transaction, then goes **Connected directly**; waits
    on the interrupt **with no timeout**; never cancels; a wait ended by IDLE
    returns an empty response.

Timeouts come from the profile: ``timeout`` (default switch
``tpmfront.timeout``, else 120 s -- Linux's duration for a command whose
class it does not know) bounds the wait for the response; ``timeout_c``
(switch ``tpmfront.timeout_c``, else 750 ms, TIS timeout C) bounds the wait
for the page to become free before sending.

Extra pages (``extra_pages=n``) are the part of the ABI that neither Linux
nor mini-os implements: ``n`` more pages are granted and their grefs listed
in the header, so a command or response may be up to
``payload_capacity(n)`` bytes instead of 4088.

Every command carries a ``flow`` id, put on each trace record of its hops
(``tpm.front.submit``, ``tpm.back.take``, ``tpm.back.respond``,
``tpm.front.complete``). The flow travels beside the bytes, never in them:
the frontend tags its shared page in a per-hypervisor side table
(:func:`page_tag`) that a backend reads only to label its own trace
records. The same table records *when* a backend's response becomes
visible, so a polling frontend cannot see a FINISH that its backend has not
yet (in simulated time) written.
"""

from __future__ import annotations

import errno
import weakref

from simxen.drivers.command_names import cc_name
from simxen.drivers import kernel_eras
from simxen.drivers.xenbus import XenbusFrontend
from simxen.protocols import tpmif
from simxen.protocols.xenbus import XenbusState
from simxen.tpm import header
from simxen.xen.errors import XenError

__all__ = ["TpmFront", "TpmFrontError", "DriverError", "PageTag", "page_tag", "open_vtpm_device",
           "backend_not_connected", "DEFAULT_TIMEOUT", "DEFAULT_TIMEOUT_C"]

#: Wait for a response when the profile says nothing (Linux's fallback
#: duration for an unknown ordinal, 2 minutes; mini-os uses 120 s too).
DEFAULT_TIMEOUT = 120.0
#: Wait for the page to become free (TIS default timeout C, 750 ms).
DEFAULT_TIMEOUT_C = 0.75

_FLAVOURS = ("linux", "minios")
_DONE = (tpmif.TPMIF_STATE_IDLE, tpmif.TPMIF_STATE_FINISH)
_OFF_STATE = tpmif.TPMIF_OFF_STATE
_IDLE = tpmif.TPMIF_STATE_IDLE


class DriverError(Exception):
    """A driver operation that fails with a negative (Linux) errno in :attr:`errno`."""

    def __init__(self, err: int, message: str):
        super().__init__(err, message)       # both kept in args: SimPy re-raises copies
        self.errno = err
        self.message = message

    def __str__(self):
        return f"{errno.errorcode.get(-self.errno, self.errno)}: {self.message}"


class TpmFrontError(DriverError):
    """A transmit or connect that the real driver fails; :attr:`errno` is negative.

    ``-ETIME`` timeout, ``-ECANCELED`` the backend cancelled, ``-EINVAL``
    the command does not fit, ``-ENODEV`` not connected, ``-EIO`` a
    response the driver cannot read.
    """


class PageTag:
    """Simulation metadata hung on a shared page, never visible to the peer's logic.

    ``flow`` labels the command now in the page. ``submitted_at`` and
    ``visible_at`` are the simulated times of the frontend's last SUBMIT
    store and of the backend's last FINISH/IDLE store. A domain's code runs
    ahead of ``env.now`` by the work it has charged, so the peer may execute
    "earlier" in simulated time than a store it can already see in the
    bytes; the peer treats a store dated after its own clock as not yet made.
    """

    __slots__ = ("flow", "submitted_at", "visible_at")

    def __init__(self):
        self.flow = None
        self.submitted_at = 0.0
        self.visible_at = 0.0


_TAGS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def page_tag(hv, mfn: int) -> PageTag:
    """The :class:`PageTag` of machine frame ``mfn`` in hypervisor ``hv``."""
    tags = _TAGS.get(hv)
    if tags is None:
        tags = _TAGS[hv] = {}
    tag = tags.get(mfn)
    if tag is None:
        tag = tags[mfn] = PageTag()
    return tag


def open_vtpm_device(hv, dom, devid: int) -> XenbusFrontend:
    """The xenbus half of ``dom``'s vTPM device ``devid``: the first step of every vTPM
    frontend's connect (:class:`TpmFront`, and the multi-slot
    :class:`~simxen.drivers.tpmfront_ring.TpmRingFront`).

    It reads the frontend directory ``device/vtpm/<devid>`` the toolstack wrote
    (``backend``, ``backend-id``). A missing or unreadable directory is Linux's
    "no such device": :class:`TpmFrontError` ``-ENODEV`` naming the device and why.
    """
    try:
        return XenbusFrontend(hv, dom, "vtpm", devid)
    except (XenError, ValueError) as err:
        raise TpmFrontError(-errno.ENODEV, f"dom{dom.domid} has no usable device/vtpm/"
                                           f"{devid} ({err})") from None


def backend_not_connected(bus: XenbusFrontend, state) -> TpmFrontError:
    """The :class:`TpmFrontError` ``-ENODEV`` of a vTPM frontend whose backend did not connect.

    ``state`` is the backend's :class:`~simxen.protocols.xenbus.XenbusState` that ended
    the wait (Closing, Closed), or ``None`` when the wait timed out. The caller
    releases what it set up, then raises it.
    """
    why = state.name if state is not None else "not connected in time"
    return TpmFrontError(-errno.ENODEV, f"dom{bus.dom.domid} vtpm/{bus.devid}: backend "
                                        f"{bus.otherend} is {why}")


class TpmFront:
    """The frontend of vTPM device ``devid`` in domain ``dom``.

    :param flavour: ``"linux"`` (xen-tpmfront) or ``"minios"`` (mini-os tpmfront).
    :param kernel: Linux only: the kernel era (``"linux-3.12"``, ``"linux-4.4"``,
        ``"linux-6"``); ``None`` = the profile's ``tpmfront.kernel`` switch.
    :param hz: Linux 4.4 era only: the guest's ``HZ``.
    :param extra_pages: extra pages granted for packets longer than 4088 bytes.
    """

    def __init__(self, hv, dom, devid=0, *, flavour="linux", extra_pages=0, kernel=None, hz=None):
        if flavour not in _FLAVOURS:
            raise ValueError(f"flavour must be one of {_FLAVOURS}, not {flavour!r}")
        if not 0 <= extra_pages <= tpmif.TPMIF_MAX_EXTRA_PAGES:
            raise ValueError(f"extra_pages {extra_pages} outside 0..{tpmif.TPMIF_MAX_EXTRA_PAGES}")
        self.hv = hv
        self.dom = dom
        self.devid = devid
        self.flavour = flavour
        #: Linux: the kernel era whose wait it models (None: the profile's ``tpmfront.kernel``)
        self.kernel = kernel
        self.hz = hz
        self.extra_pages = extra_pages
        #: bytes a packet may have: 4088 without extra pages
        self.capacity = tpmif.payload_capacity(extra_pages)
        self.connected = False
        self.backend_id = None
        self.bus = None
        self.page = None
        self.pages = []
        self.grefs = []
        self.port = None
        self._tag = None
        self._seq = 0
        self._linux = flavour == "linux"
        self._ports = None               # frozenset((port,)): what the interrupt wait polls
        self._read_switches()
        # counters
        self.commands = 0            #: round trips completed
        self.timeouts = 0            #: transmits that failed with -ETIME
        self.cancels = 0             #: CANCELs stored
        self.cancelled = 0           #: transmits the backend cancelled (IDLE)
        self.polls = 0               #: looks at the page's state while waiting
        self.bytes_sent = 0
        self.bytes_received = 0

    def __repr__(self):
        return (f"<TpmFront dom{self.dom.domid} vtpm/{self.devid} {self.flavour} "
                f"{'connected' if self.connected else 'not connected'}>")

    # -- connection ---------------------------------------------------------

    def connect(self, timeout=None):
        """Grant the page(s), allocate the event channel, run the xenbus handshake.

        A generator. Reads ``backend-id`` from the frontend directory the
        toolstack wrote; raises :class:`TpmFrontError` ``-ENODEV`` when that
        directory is missing, when the backend closes instead of connecting,
        does not connect within ``timeout``, or lacks ``feature-protocol-v2``.
        """
        hv, dom = self.hv, self.dom
        if self.connected:
            return
        bus = self.bus = open_vtpm_device(hv, dom, self.devid)
        self.backend_id = bus.otherend_id
        self.page = dom.alloc_page()
        self.pages = [self.page] + [dom.alloc_page() for _ in range(self.extra_pages)]
        self.grefs = [hv.gnttab.grant_foreign_access(dom, self.backend_id, p.gfn)
                      for p in self.pages]
        self._tag = page_tag(hv, self.page.mfn)
        if self.extra_pages:
            refs = tpmif.pack_extra_pages(self.grefs[1:])
            dom.page_write(self.page, tpmif.TPMIF_OFF_NR_EXTRA_PAGES, bytes([self.extra_pages]),
                           what="tpmif.nr_extra_pages")
            dom.page_write(self.page, tpmif.TPMIF_OFF_EXTRA_PAGES, refs, what="tpmif.extra_pages")
        self.port = hv.evtchn.alloc_unbound(dom, self.backend_id)
        self._ports = frozenset((self.port,))

        def publish(tx):
            bus.write("ring-ref", self.grefs[0], tx=tx)
            bus.write("event-channel", self.port, tx=tx)
            if self.flavour == "linux":
                bus.write("feature-protocol-v2", "1", tx=tx)

        S = XenbusState
        bus.watch_otherend()
        if self.flavour == "linux":
            bus.publish(publish)
            bus.switch_state(S.Initialised)
        else:
            bus.write("feature-protocol-v2", "1")
            bus.publish(publish)
            bus.switch_state(S.Connected)
        state = yield from bus.wait_otherend({S.Connected, S.Closing, S.Closed}, timeout)
        if state != S.Connected:
            self._release()
            raise backend_not_connected(bus, state)
        if not self._backend_speaks_v2():
            bus.switch_state(S.Closing)
            self._release()
            raise TpmFrontError(-errno.ENODEV, f"dom{dom.domid} vtpm/{self.devid}: vTPM "
                                               "protocol 2 required")
        bus.switch_state(S.Connected)
        self._read_switches()
        self.connected = True
        hv.trace.emit("tpm.front.connect", dom.now, dom.domid, devid=self.devid,
                      backend=self.backend_id, flavour=self.flavour, gref=self.grefs[0],
                      port=self.port, extra_pages=self.extra_pages)

    def _read_switches(self):
        """The profile's waiting switches, read once per connection."""
        switch = self.hv.profile.switch
        self._timeout = switch("tpmfront.timeout", DEFAULT_TIMEOUT)
        self._timeout_c = switch("tpmfront.timeout_c", DEFAULT_TIMEOUT_C)
        self._poll_delay = None                   # mini-os: on the event channel
        if self.flavour == "linux":
            legacy = switch("tpmfront.wait", "era")
            if legacy == "poll":                   # a fixed grid, as profiles used to say
                interval = switch("tpmfront.poll_interval", 0.005)
                self._poll_delay = lambda now: interval
            elif legacy != "interrupt":
                era = self.kernel or switch("tpmfront.kernel", kernel_eras.DEFAULT_ERA)
                self._poll_delay = kernel_eras.poll_delay(era, self.dom, self.hv.profile,
                                                          hz=self.hz)

    def _backend_speaks_v2(self):
        try:
            value = self.bus.read_otherend("feature-protocol-v2")
        except XenError:
            return False
        if self.flavour == "minios":
            return value == "1"
        try:                               # Linux: any non-zero integer
            return int(value) != 0
        except ValueError:
            return False

    def close(self):
        """mini-os shutdown: Closing, Closed, wait for the backend, back to Initialising.

        A generator. Removes ``ring-ref`` and ``event-channel``, then closes the
        event channel and ends the grants, so a later kernel (pv-grub's
        successor) can connect to the same backend with :meth:`connect`.
        """
        if self.bus is None:
            return
        self.connected = False
        yield from self.bus.close(remove_keys=("ring-ref", "event-channel"))
        self.hv.trace.emit("tpm.front.close", self.dom.now, self.dom.domid, devid=self.devid,
                           backend=self.backend_id)
        self._release()

    def _release(self):
        """Close the event channel and end every grant the backend no longer maps."""
        hv, dom = self.hv, self.dom
        if not dom.alive:
            return
        if self.port is not None:
            hv.evtchn.close(dom, self.port)
            self.port = None
        for gref in self.grefs:
            if not hv.gnttab.end_foreign_access_ref(dom, gref):
                hv.trace.emit("tpm.front.grant_busy", dom.now, dom.domid, gref=gref)
        self.grefs = []
        self.bus.unwatch_otherend()
        self.bus = None

    # -- one command ----------------------------------------------------------

    def transmit(self, command: bytes, *, locality=0, flow=None, timeout=None):
        """Send ``command``, wait for the backend, return the response bytes.

        A generator: ``rsp = yield from front.transmit(cmd)``. ``flow``
        labels the trace records of this command (one is made up when
        omitted). ``timeout`` overrides the profile's (ignored by mini-os,
        which waits forever).
        """
        hv, dom = self.hv, self.dom
        if not self.connected or not dom.alive:
            raise TpmFrontError(-errno.ENODEV, f"dom{dom.domid} vtpm/{self.devid} is not connected")
        command = bytes(command)
        n = len(command)
        if n > self.capacity:
            raise TpmFrontError(-errno.EINVAL, f"{n}-byte command exceeds the "
                                               f"{self.capacity} bytes of {1 + self.extra_pages} "
                                               "page(s)")
        if not 0 <= locality <= 0xFF:
            raise TpmFrontError(-errno.EINVAL, f"locality {locality} does not fit in a u8")
        linux = self._linux
        if flow is None:
            self._seq += 1
            flow = f"{dom.name}/vtpm{self.devid}/{self._seq}"
        now = dom.now
        busy = self._state(now) not in _DONE
        if linux:
            if timeout is None:
                timeout = self._timeout
            if busy and not (yield from self._wait_done(self._timeout_c)):
                self._cancel(flow)
                raise TpmFrontError(-errno.ETIME, "the vTPM is still busy with an earlier command")
        elif busy:
            raise TpmFrontError(-errno.EINPROGRESS, "a command is already in flight")

        # The round trip.
        page, tag, port = self.page, self._tag, self.port
        start = dom.now if busy else now        # (no charge since, unless it waited)
        tag.flow = flow
        self._write_packet(command, flow)
        # length, state = SUBMIT and locality (bytes 0..5) in one store after the packet
        dom.page_write(page, tpmif.TPMIF_OFF_LENGTH,
                       tpmif.pack_submit(n, locality),
                       what="tpmif.header", flow=flow)
        now = tag.submitted_at = dom.cursor     # == dom.now: the store just charged the cursor
        cc = header.code(command)
        hv.trace.emit("tpm.front.submit", now, dom.domid, flow=flow, devid=self.devid,
                      backend=self.backend_id, length=n, cc=cc, cc_name=cc_name(cc),
                      locality=locality)
        dom.evtchn_clear(port)
        hv.evtchn.send(dom, port)
        self.bytes_sent += n

        # (the send just charged the cursor: it is the domain's now)
        done = yield from self._wait_done(timeout if linux else None, dom.cursor)
        if not done:
            self.timeouts += 1
            self._cancel(flow)
            hv.trace.emit("tpm.front.timeout", dom.now, dom.domid, flow=flow, devid=self.devid,
                          waited=dom.now - start)
            raise TpmFrontError(-errno.ETIME, f"no response within {timeout} s")
        # _wait_done() saw IDLE or FINISH at this very time: the state byte alone tells which
        if page.data[_OFF_STATE] == _IDLE:
            self.cancelled += 1
            now = dom.now
            hv.trace.emit("tpm.front.complete", now, dom.domid, flow=flow, devid=self.devid,
                          length=0, rc=None, cancelled=True, latency=now - start)
            if linux:
                raise TpmFrontError(-errno.ECANCELED, "the backend cancelled the command")
            return b""
        response = self._read_response(flow)
        n = len(response)
        self.commands += 1
        self.bytes_received += n
        now = dom.cursor                        # == dom.now: the reads just charged the cursor
        hv.trace.emit("tpm.front.complete", now, dom.domid, flow=flow, devid=self.devid,
                      length=n, rc=header.code(response),
                      latency=now - start)
        return response

    def _state(self, now=None):
        """The page's state byte as the frontend sees it at ``now``, the domain's time
        (given when the caller has it), a plain load: free."""
        state = self.page.data[_OFF_STATE]
        if state in _DONE and (self.dom.now if now is None else now) < self._tag.visible_at:
            return tpmif.TPMIF_STATE_SUBMIT     # the backend's store has not happened yet
        return state

    def _wait_done(self, timeout, now=None):
        """Wait until the state is IDLE or FINISH; False on timeout. A generator.

        Polls as the guest's kernel era does (Linux; :mod:`simxen.drivers.kernel_eras`)
        or sleeps on the event channel (mini-os, Linux 3.12), ignoring notifications
        that leave the state SUBMIT/CANCEL (the IRQ handler does).

        The Linux flavour fails with ``-ENODEV`` at its next wake-up once the
        backend domain is gone, instead of waiting out ``timeout``. Linux
        itself would wait: ``xen-tpmfront``'s ``backend_changed`` unregisters
        the chip on the backend's Closing/Closed (a destroyed domain's state
        node just disappears, which it ignores), and the unregistration waits
        for the command in flight, which holds the chip until
        ``tpm_try_transmit``'s deadline -- up to 120 s (``TPM2_DURATION_DEFAULT``)
        -- and then fails with ``-ETIME``. mini-os waits forever, as modelled.

        ``now`` is the domain's time if the caller knows it (:attr:`Domain.now`).
        """
        dom = self.dom
        next_delay = self._poll_delay
        poll = next_delay is not None
        if now is None:
            now = dom.now
        deadline = None if timeout is None else now + timeout
        while True:
            self.polls += 1
            # (now: the domain's time; nothing below charges it before the yield)
            if self._state(now) in _DONE:
                if poll:
                    dom.evtchn_clear(self.port)     # the IRQ handler ran, nobody was waiting
                return True
            remaining = None if deadline is None else deadline - now
            if remaining is not None and remaining <= 0:
                return False
            if poll:
                # the era's sleep, cut at the deadline
                interval = next_delay(now)
                yield dom.sleep(interval if remaining is None or not remaining < interval
                                else remaining)
            else:
                yield dom.poll(self._ports, remaining)
            if not dom.alive:
                raise TpmFrontError(-errno.ENODEV, f"dom{dom.domid} was destroyed while waiting")
            if self._linux:
                back = self.hv.domains.get(self.backend_id)
                if back is None or not back.alive:
                    # Linux would wait out the command's duration (see _wait_done's doc)
                    raise TpmFrontError(-errno.ENODEV, f"backend dom{self.backend_id} was "
                                                       "destroyed while the command waited")
            if not poll:
                dom.evtchn_clear(self.port)
            now = dom.now

    def _cancel(self, flow):
        """Store CANCEL and notify (Linux on timeout)."""
        self.cancels += 1
        self.dom.page_write(self.page, tpmif.TPMIF_OFF_STATE, bytes([tpmif.TPMIF_STATE_CANCEL]),
                            what="tpmif.state", flow=flow)
        self.hv.evtchn.send(self.dom, self.port)

    def _write_packet(self, data, flow):
        if not self.extra_pages:
            self.dom.page_write(self.page, tpmif.TPMIF_HEADER_SIZE, data, what="tpmif.command",
                                flow=flow)
            return
        for i, a, b, pos in tpmif.spans(self.extra_pages, len(data)):
            self.dom.page_write(self.pages[i], a, data[pos:pos + b - a], what="tpmif.command",
                                flow=flow)

    def _read_response(self, flow):
        length = tpmif.unpack_length(self.dom.page_read(self.page, tpmif.TPMIF_OFF_LENGTH, 4,
                                                        what="tpmif.length", flow=flow))
        if length > self.capacity:
            if self.flavour == "minios":
                raise TpmFrontError(-errno.EIO, f"response length {length} exceeds the "
                                                f"{self.capacity}-byte page")
            length = self.capacity                  # Linux copies what fits
        if not self.extra_pages:
            return self.dom.page_read(self.page, tpmif.TPMIF_HEADER_SIZE, length,
                                      what="tpmif.response", flow=flow)
        return b"".join(self.dom.page_read(self.pages[i], a, b - a, what="tpmif.response",
                                           flow=flow)
                        for i, a, b, _ in tpmif.spans(self.extra_pages, length))

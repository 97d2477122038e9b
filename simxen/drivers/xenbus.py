"""The xenbus handshake: how a frontend and a backend find and connect to each other.

Both halves talk only through XenStore. The toolstack (dom0) creates the two
device directories (:func:`add_device`); then each side drives its own
``state`` node and watches the other's::

    frontend  Initialising ──publish ring-ref, event-channel──> Initialised ──> Connected
    backend   Initialising ──> InitWait ──map, bind──> Connected

:class:`XenbusFrontend` and :class:`XenbusBackend` are reusable halves: the
device-specific work is passed in as callables (``publish`` for the
frontend, ``connect``/``disconnect`` for the backend). Their long-running
parts are generators to ``yield from`` inside a domain's SimPy process.
A backend returns to InitWait after its frontend closes, ready for a new
connection -- what pv-grub relies on when it hands the vTPM over to the
kernel it boots.
"""

import inspect

from simxen.protocols.xenbus import XenbusState, backend_path, frontend_path
from simxen.xen import errno
from simxen.xen.errors import XenError, XenStoreError


class XenbusError(Exception):
    """The other end went somewhere the handshake cannot continue from."""

    def __init__(self, message, state=None):
        super().__init__(message)
        self.state = state


def add_device(hv, caller, fe, be, devtype, devid=0, *, front_extra=None, back_extra=None):
    """Create a device's frontend and backend directories (the toolstack's part).

    In one transaction (retried on ``EAGAIN``), as libxl does: the
    frontend dir gets ``backend``, ``backend-id``, ``state`` = 1 and
    ``handle``; the backend dir ``frontend``, ``frontend-id``, ``online`` =
    1, ``state`` = 1 and ``handle``; ``front_extra``/``back_extra`` add
    device keys (the vTPM's ``uuid``). Each side owns its directory and the
    other may read it. Returns ``(front_path, back_path)``.
    """
    fpath = frontend_path(fe, devtype, devid)
    bpath = backend_path(be, devtype, fe, devid)
    front = {"backend": bpath, "backend-id": str(be), "state": str(int(XenbusState.Initialising)),
             "handle": str(devid), **(front_extra or {})}
    back = {"frontend": fpath, "frontend-id": str(fe), "online": "1",
            "state": str(int(XenbusState.Initialising)), "handle": str(devid), **(back_extra or {})}

    def create(tx):
        for path, keys, owner, reader in ((fpath, front, fe, be), (bpath, back, be, fe)):
            hv.xs.mkdir(caller, path, tx=tx)
            hv.xs.set_perms(caller, path, [f"n{owner}", f"r{reader}"], tx=tx)
            for key, value in keys.items():
                hv.xs.write(caller, f"{path}/{key}", str(value), tx=tx)

    in_transaction(hv.xs, caller, create)
    return fpath, bpath


def in_transaction(xs, dom, body):
    """Run ``body(tx)`` in a XenStore transaction of ``dom``, redoing it all on ``EAGAIN``.

    The loop Linux's and libxl's xenbus code writes around every
    transaction. A ``body`` that raises aborts the transaction.
    """
    while True:
        tx = xs.transaction_start(dom)
        try:
            body(tx)
        except BaseException:
            xs.transaction_end(dom, tx, commit=False)
            raise
        try:
            xs.transaction_end(dom, tx)
            return
        except XenStoreError as err:
            if err.code != -errno.EAGAIN:
                raise


class XenbusDevice:
    """What both halves share: their own directory, the other end's, and states."""

    def __init__(self, hv, dom, nodename, otherend_key):
        self.hv = hv
        self.dom = dom
        self.nodename = nodename
        xs = hv.xs
        #: the other end's directory and domid, as the toolstack wrote them
        self.otherend = xs.read(dom, f"{nodename}/{otherend_key}")
        self.otherend_id = int(xs.read(dom, f"{nodename}/{otherend_key}-id"))
        self.state = XenbusState.parse(xs.read(dom, f"{nodename}/state"))
        self.token = f"xenbus:{nodename}"
        self._watching = False

    def read(self, key, tx=None):
        """Read a key of our own directory."""
        return self.hv.xs.read(self.dom, f"{self.nodename}/{key}", tx=tx)

    def write(self, key, value, tx=None):
        """Write a key of our own directory."""
        self.hv.xs.write(self.dom, f"{self.nodename}/{key}", str(value), tx=tx)

    def read_otherend(self, key, tx=None):
        """Read a key of the other end's directory."""
        return self.hv.xs.read(self.dom, f"{self.otherend}/{key}", tx=tx)

    def otherend_state(self):
        """The other end's state; ``Unknown`` if its node is gone or unreadable.

        A number no :class:`XenbusState` names is returned as a plain ``int``
        (:meth:`XenbusState.number`): no handshake waits for it, so it is ignored
        rather than taken for a vanished peer."""
        try:
            return XenbusState.number(self.read_otherend("state"))
        except XenStoreError:
            return XenbusState.Unknown

    def switch_state(self, state):
        """Write our ``state`` node (``xenbus_switch_state``; no-op if unchanged)."""
        state = XenbusState(state)
        if state == self.state:
            return
        self.write("state", int(state))
        self.state = state

    def watch_otherend(self):
        """Start watching the other end's ``state`` (idempotent)."""
        if not self._watching:
            self.hv.xs.watch(self.dom, f"{self.otherend}/state", self.token)
            self._watching = True

    def unwatch_otherend(self):
        """Stop watching the other end."""
        if self._watching:
            self.hv.xs.unwatch(self.dom, f"{self.otherend}/state", self.token)
            self._watching = False
            while self.dom.xs_read_watch(self.token) is not None:
                pass

    def wait_otherend(self, states, timeout=None):
        """Wait until the other end is in one of ``states``; return it (``None`` on timeout).

        A generator: ``state = yield from dev.wait_otherend({Connected})``.
        """
        self.watch_otherend()
        dom = self.dom
        deadline = None if timeout is None else dom.now + timeout
        while True:
            while dom.xs_read_watch(self.token) is not None:
                pass
            state = self.otherend_state()
            if state in states:
                return state
            remaining = None if deadline is None else deadline - dom.now
            if remaining is not None and remaining <= 0:
                return None
            yield dom.wait_watch(self.token, remaining)


class XenbusFrontend(XenbusDevice):
    """The frontend half, in domain ``dom``, of device ``devtype``/``devid``."""

    def __init__(self, hv, dom, devtype, devid=0):
        super().__init__(hv, dom, frontend_path(dom.domid, devtype, devid), "backend")
        self.devtype = devtype
        self.devid = devid

    def publish(self, publish):
        """Run ``publish(tx)`` in a transaction, redoing it on ``EAGAIN`` (Linux does)."""
        in_transaction(self.hv.xs, self.dom, publish)

    def connect(self, publish, timeout=None):
        """Publish, go Initialised, wait for the backend to connect, go Connected.

        A generator. ``publish(tx)`` writes the ring-ref / event-channel
        keys. Raises :class:`XenbusError` if the backend goes Closing,
        Closed or Unknown instead, or does not connect within ``timeout``.
        """
        self.watch_otherend()
        self.publish(publish)
        self.switch_state(XenbusState.Initialised)
        state = yield from self.wait_otherend(
            {XenbusState.Connected, XenbusState.Closing, XenbusState.Closed}, timeout)
        if state != XenbusState.Connected:
            self.switch_state(XenbusState.Closing)
            raise XenbusError(f"{self.nodename}: backend {self.otherend} is "
                              f"{state.name if state is not None else 'not connected in time'}",
                              state)
        self.switch_state(XenbusState.Connected)

    def close(self, remove_keys=()):
        """Close as mini-os does: Closing, Closed, wait for the backend, Initialising.

        A generator. ``remove_keys`` (e.g. ``("ring-ref", "event-channel")``)
        are removed after Closing. Ends in Initialising so that a later
        frontend (the kernel pv-grub boots) can reconnect.
        """
        self.switch_state(XenbusState.Closing)
        for key in remove_keys:
            self.hv.xs.rm(self.dom, f"{self.nodename}/{key}")
        self.switch_state(XenbusState.Closed)
        yield from self.wait_otherend({XenbusState.Closed, XenbusState.InitWait,
                                       XenbusState.Unknown})
        self.switch_state(XenbusState.Initialising)
        self.unwatch_otherend()


class XenbusBackend(XenbusDevice):
    """The backend half, in domain ``dom``, serving frontend domain ``fe_domid``."""

    def __init__(self, hv, dom, fe_domid, devtype, devid=0):
        super().__init__(hv, dom, backend_path(dom.domid, devtype, fe_domid, devid), "frontend")
        self.devtype = devtype
        self.devid = devid
        self.connections = 0

    def serve(self, connect, disconnect=None):
        """Run the backend's state machine until the frontend goes away.

        A generator. Goes InitWait, then on frontend Initialised/Connected
        calls ``connect()`` (map the ring, bind the channel; a plain function
        or a generator) and goes Connected; a failing ``connect`` (any
        :class:`~simxen.xen.errors.XenError` or ``ValueError``) makes it go
        Closed, as mini-os tpmback does. On frontend Closing it goes
        Closing; on frontend Closed it calls ``disconnect()`` and returns
        to **InitWait** for the next frontend. Returns when the frontend's
        state node is gone (Unknown), after ``disconnect()`` and Closed.
        """
        self.watch_otherend()
        self.switch_state(XenbusState.InitWait)
        S = XenbusState
        while True:
            state = yield from self.wait_otherend({S.Initialised, S.Connected, S.Unknown})
            if state == S.Unknown:
                break
            try:
                result = connect()
                if inspect.isgenerator(result):
                    yield from result
            except (XenError, ValueError) as err:
                self.write("error", f"connect failed: {err}")
                self.switch_state(S.Closed)
                state = yield from self.wait_otherend({S.Closed, S.Unknown, S.Initialising})
                if state == S.Unknown:
                    break
                self.switch_state(S.InitWait)
                continue
            self.connections += 1
            self.switch_state(S.Connected)
            state = yield from self.wait_otherend({S.Closing, S.Closed, S.Unknown,
                                                   S.Initialising})
            if state == S.Closing:
                self.switch_state(S.Closing)
                state = yield from self.wait_otherend({S.Closed, S.Unknown, S.Initialising})
            if disconnect is not None:
                result = disconnect()
                if inspect.isgenerator(result):
                    yield from result
            if state == S.Unknown:
                break
            self.switch_state(S.InitWait)
        self.switch_state(S.Closed)
        self.unwatch_otherend()

"""Load generators that run inside guests: open and closed loops over a command mix.

A guest's user space issues TPM commands through ``/dev/tpm0``; the Linux
TPM core lets **one command at a time** reach the chip: every transmit goes
through ``tpm_try_get_ops()``, which takes the chip's ``tpm_mutex``
(``drivers/char/tpm/tpm-chip.c``), so commands from several processes of one
guest queue in the guest before xen-tpmfront ever sees them.
:class:`GuestLoad` models exactly that: a FIFO lock per chip (``chip_lock``)
in front of the guest's real :class:`~simxen.domains.guest.TpmClient`, whose
commands cross the real tpmfront -> vTPM -> (manager -> physical TPM) path::

    load = GuestLoad(host.guest("guest1"), mix={"pcr_extend": 5, "get_random": 2},
                     rng=hv.streams.rng("load/guest1"), index=0)
    yield from load.setup()                         # NV index / AK the mix needs
    env.process(load.open_loop(rate=50.0, until=10.0, poisson=True))
    env.process(load.closed_loop(think_time=0.02, until=10.0))   # one client process

Every command becomes one :class:`Request` in :attr:`GuestLoad.requests`
with its four instants: ``arrived`` (the process asked), ``started`` (it got
the chip lock and handed the command to tpmfront), ``done`` (the response
came back) -- so ``started - arrived`` is the wait in the guest and
``done - started`` the round trip through the split driver.

Arrivals: *open loop* draws the gap to the next command from an exponential
distribution with mean ``1/rate`` (Poisson arrivals) or uses ``1/rate``
exactly (deterministic) and does not wait for earlier commands -- each
arrival is a new process that queues on the chip lock. *Closed loop* is
``clients`` processes per guest, each waiting for its command's response,
then thinking (exponential or fixed time) before the next one.

Commands (one or more TPM commands, real TPM 2.0 marshalling):

=================  =========================================================
``pcr_extend``     ``TPM2_PCR_Extend`` of the SHA-256 bank of PCR ``pcr``
``pcr_read``       ``TPM2_PCR_Read`` of PCR ``pcr``
``get_random``     ``TPM2_GetRandom`` of 32 bytes (the vTPM's own DRBG)
``nv_write``       ``TPM2_NV_Write`` of 8 bytes to the guest's NV index
                   (changes persistent state: the vTPM saves and sends
                   ``VTPM_ORD_SAVEHASHKEY`` to the manager)
``nv_read``        ``TPM2_NV_Read`` of that index
``quote``          ``TPM2_Quote`` of PCR ``pcr`` with an ECC attestation key
``deep_quote``     the vTPM's ``TPM2_CC_DeepQuote``: a physical-TPM quote
                   by the manager (``VTPM_ORD_GET_QUOTE``)
``host_random``    a TPM 1.2 ``TPM_GetRandom`` tagged ``VTPM_TAG_REQ``: the
                   vTPM forwards it as a passthrough, the manager runs
                   ``TPM2_GetRandom`` on the physical TPM (one manager
                   request, one physical-TPM command: the cleanest way to
                   load the manager)
=================  =========================================================
"""

from __future__ import annotations

import bisect
import collections
import struct
from dataclasses import dataclass

import numpy as np
import simpy

from simxen.drivers.tpmfront import TpmFrontError
from simxen.protocols import vtpmmgr as mgr
from simxen.tpm.client import ResponseError

__all__ = ["GuestLoad", "ChipLock", "Request", "COMMANDS", "NV_BASE"]

#: Command names a mix may use, in a fixed order (the order of the mix draw).
COMMANDS = ("pcr_extend", "pcr_read", "get_random", "nv_write", "nv_read", "quote",
            "deep_quote", "host_random")
#: NV index of guest number ``i`` is ``NV_BASE + i``.
NV_BASE = 0x01500000


class _Arrivals(collections.deque):
    """The arrivals waiting for a :class:`ChipLock`, oldest first.

    SimPy's ``Resource`` keeps its waiting requests in ``PutQueue`` -- a list
    unless a subclass names another type that can be indexed, measured, and
    appended and popped -- and grants the lock to the head with ``pop(0)``.
    A list moves every other waiting request to do that; a deque takes its
    head in constant time.
    """

    def pop(self, index=-1):
        if index == 0:
            return self.popleft()
        value = self[index]
        del self[index]
        return value


class ChipLock(simpy.Resource):
    """Linux's ``chip->tpm_mutex`` as the arrivals of an open loop meet it: a FIFO lock
    (SimPy's ``Resource``) whose queue stays cheap however long it grows.

    An open loop that offers more commands than its guest's chip serves -- the
    point of a sweep past saturation -- queues ever more arrivals here, and
    with a list each grant cost the length of the queue. Grants happen in the
    same order at the same times either way.
    """

    PutQueue = _Arrivals


@dataclass
class Request:
    """One command of the load: who, what, and the instants of its life (seconds)."""

    guest: str
    command: str
    arrived: float
    started: float = None
    done: float = None
    ok: bool = None
    flow: str = None

    @property
    def wait(self):
        """Time queued in the guest for the chip lock."""
        return self.started - self.arrived

    @property
    def latency(self):
        """Time from the request to its response (wait in the guest included)."""
        return self.done - self.arrived


class GuestLoad:
    """Load generation in one guest (see the module doc).

    :param guest: a ready :class:`~simxen.domains.guest.Guest` with a TPM.
    :param mix: ``{command: weight}``; each command is drawn with probability
        weight / sum of weights.
    :param rng: this guest's own ``numpy.random.Generator``.
    :param index: the guest's number (its NV index is ``NV_BASE + index``).
    :param pcr: the PCR that ``pcr_extend``, ``pcr_read`` and the quotes use.
    """

    def __init__(self, guest, mix, rng, *, index=0, pcr=16, in_flight=1):
        unknown = sorted(set(mix) - set(COMMANDS))
        if unknown:
            raise ValueError(f"unknown command(s) {unknown}; expected some of {list(COMMANDS)}")
        self.guest = guest
        self.name = guest.name
        self.env = guest.hv.env
        self.tpm = guest.tpm
        self.rng = rng
        self.pcr = pcr
        self.nv_index = NV_BASE + index
        self.ak = None
        self._names = [c for c in COMMANDS if mix.get(c, 0) > 0]
        total = float(sum(mix[c] for c in self._names))
        self._p = [mix[c] / total for c in self._names]
        # Generator.choice(n, p=p)'s cumulative table, made once: choice builds it on
        # every call (cumsum, then divided by its last entry) and then bisects one
        # uniform draw rng.random() in it -- :meth:`draw_command` does that bisection
        cdf = np.cumsum(np.asarray(self._p, dtype=np.float64))
        cdf /= cdf[-1]
        self._cdf = cdf.tolist()
        #: Linux's ``chip->tpm_mutex``: one command at a time reaches tpmfront
        #: (``in_flight`` > 1 models a TPM stack that lets that many through,
        #: for the multi-slot transport)
        self.chip_lock = ChipLock(self.env, capacity=in_flight)
        #: every :class:`Request` issued, in arrival order
        self.requests = []
        self._seq = 0

    # -- set-up ---------------------------------------------------------------
    def setup(self):
        """Generator: what the mix needs before the load starts (NV index, attestation key)."""
        if "nv_write" in self._names or "nv_read" in self._names:
            yield from self.tpm.nv_define(self.nv_index, 8)
            yield from self.tpm.nv_write(self.nv_index, b"%08d" % 0)
        if "quote" in self._names:
            self.ak, _ = yield from self.tpm.create_ak()

    # -- generators -------------------------------------------------------------
    def open_loop(self, rate, until, *, poisson=True):
        """Generator: arrivals at ``rate`` per second until simulated time ``until``.

        Each arrival is its own process queueing on :attr:`chip_lock`; the
        generator returns once the last arrival's command has completed.
        """
        env = self.env
        mean_gap = 1.0 / rate
        procs = []
        while True:
            gap = self.rng.exponential(mean_gap) if poisson else mean_gap
            # (a tolerance of 1 ns: a deterministic grid summed in floats must not let an
            # arrival at ``until`` itself in or out depending on when the window started)
            if env.now + gap >= until - 1e-9:
                break
            yield env.timeout(gap)
            procs.append(env.process(self.issue()))
        if procs:
            yield env.all_of(procs)

    def closed_loop(self, until, *, think_time=0.0, exponential_think=True):
        """Generator: one client process -- think, send, wait for the response -- until ``until``."""
        env = self.env
        while True:
            if think_time:
                think = self.rng.exponential(think_time) if exponential_think else think_time
                if env.now + think >= until:
                    return
                yield env.timeout(think)
            elif env.now >= until:
                return
            yield from self.issue()

    def draw_command(self) -> str:
        """The next command of the mix: the draw ``rng.choice(len(names), p=weights)``
        makes (one ``rng.random()`` bisected in the cumulative weights), without
        building the cumulative table again each time. A mix of one command draws nothing."""
        names = self._names
        if len(names) == 1:
            return names[0]
        return names[bisect.bisect_right(self._cdf, self.rng.random())]

    def issue(self, command=None):
        """Generator: one command (drawn from the mix unless given), through the chip lock."""
        if command is None:
            command = self.draw_command()
        req = Request(self.name, command, self.env.now)
        self.requests.append(req)
        turn = self.chip_lock.request()
        # Waited for outside the ``with``: SimPy's request, left by a process that never got
        # the lock, takes itself out of the queue (``Put.cancel``, a search of the queue). The
        # only such exit here is the end of a run that stopped with arrivals still queued,
        # whose processes Python closes one by one -- a search of the queue each, and an
        # overloaded run's queue holds up to a million arrivals.
        yield turn
        with turn:
            req.started = self.guest.dom.now
            req.flow = self.tpm.new_flow()
            req.ok = yield from self._run(command, req.flow)
            req.done = self.guest.dom.now
        return req

    def _run(self, name, flow):
        """Generator: run command *name* labelled *flow*; True on success, False on a TPM or
        transport error."""
        tpm = self.tpm
        self._seq += 1
        i = self._seq
        try:
            if name == "pcr_extend":
                yield from tpm.pcr_extend(self.pcr, b"load %d" % i, flow=flow)
            elif name == "pcr_read":
                yield from tpm.pcr_read([self.pcr], flow=flow)
            elif name == "get_random":
                yield from tpm.get_random(32, flow=flow)
            elif name == "nv_write":
                yield from tpm.nv_write(self.nv_index, b"%08d" % i, flow=flow)
            elif name == "nv_read":
                yield from tpm.nv_read(self.nv_index, 8, flow=flow)
            elif name == "quote":
                yield from tpm.quote(self.ak, b"nonce %d" % i, [self.pcr], flow=flow)
            elif name == "deep_quote":
                reply = yield from tpm.deep_quote(b"nonce %d" % i, flow=flow)
                return mgr.response_code(reply) == 0
            else:                                   # host_random
                return (yield from self._host_random(16, flow))
        except (ResponseError, TpmFrontError):
            return False
        return True

    def _host_random(self, n, flow):
        """``TPM_GetRandom`` with the vTPM's ``VTPM_TAG_REQ``: a passthrough to the physical TPM."""
        rsp = yield from self.tpm.transmit(mgr.pack_header(mgr.VTPM_TAG_REQ, mgr.TPM_ORD_GetRandom,
                                                           struct.pack(">I", n)), flow=flow)
        return len(rsp) >= 10 and mgr.response_code(rsp) == 0

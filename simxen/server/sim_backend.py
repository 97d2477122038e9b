"""A TPM backend whose commands travel through a running simulation.

The TCP servers (:mod:`simxen.server.mssim`, :mod:`simxen.server.swtpm`)
and the :class:`~simxen.server.resource_manager.ResourceManager` accept any
object with ``execute(command, locality) -> bytes``. :class:`SimulatedPath`
is one whose TPM is at the far end of a simulated Xen host: each command is
injected at a guest's tpmfront by a fresh SimPy process, and the simulation
is advanced -- in simulated time, as fast as the host computes it -- until
that process has the response::

    path = SimulatedPath.for_guest(host.guest("guest1"))   # a booted Guest kernel
    rsp = path.execute(command)          # guest tpmfront -> vtpm -> (vtpmmgr) -> back

Everything else in the simulation (the vTPM's state save, the manager's
physical TPM, other guests' workloads) runs as far as that takes, and no
further: between two tool runs the simulated clock stands still.

SimPy is single-threaded and the servers are not, so one lock serialises
commands (a real TPM serialises them too). Each command gets a ``flow`` id
from the guest's TPM client, so its trace records can be found afterwards;
``on_exchange(Exchange)`` is called, still under the lock, after every
command -- ``simxen serve --hops`` prints each command's per-hop breakdown
from there.

A command the guest kernel refuses before it reaches the driver -- empty,
shorter than its header's ``commandSize`` (truncated), over 4096 bytes, or
too big for the shared page -- fails Linux's ``write()`` to ``/dev/tpm0`` with
``-EINVAL``, ``-ENODATA`` or ``-E2BIG`` (see
:meth:`simxen.domains.guest.TpmClient.transmit`). The path answers it with
the 10-byte ``TPM_RC_COMMAND_SIZE`` response, the code a TPM gives for a
``commandSize`` that does not match the bytes it received (and what
``simxen tpm serve``'s engine answers for the same bytes), so the tool sees
a TPM error and its connection stays open.

When the path itself fails (the guest's tpmfront times out, the vTPM is
gone -- promptly, see :class:`~simxen.drivers.tpmfront.TpmFront`), the
guest's ``/dev/tpm0`` would fail the write with an errno; here
:meth:`SimulatedPath.execute` raises :class:`PathError`, a
``ConnectionError``, so the server drops the tool's connection and the tool
reports an I/O error -- no TPM response is made up. The same happens, with
the exception's text, if some other process of the simulation fails while
the command is in flight (a model bug), so the server keeps running.
"""

from __future__ import annotations

import errno
import threading
from dataclasses import dataclass

from simpy.core import EmptySchedule

from simxen.tpm.constants import TPM_RC
from simxen.tpm.engine import error_response

__all__ = ["SimulatedPath", "Exchange", "PathError"]

#: errnos with which the guest kernel refuses a malformed write to /dev/tpm0
_REFUSED_WRITE = frozenset((-errno.EINVAL, -errno.E2BIG, -errno.ENODATA))


class PathError(ConnectionError):
    """The simulated path could not deliver a command (``errno`` is negative, or None)."""

    def __init__(self, message, err=None):
        super().__init__(message)
        self.err = err


@dataclass(frozen=True)
class Exchange:
    """One command through the path, as :attr:`SimulatedPath.on_exchange` sees it."""

    flow: object          #: the trace flow id of the command
    command: bytes
    response: bytes       #: ``b""`` when the path failed
    locality: int
    started: float        #: simulated time when the command was injected
    finished: float       #: simulated time when the guest had the response
    error: object = None  #: the :class:`PathError` text, if the path failed

    @property
    def latency(self) -> float:
        return self.finished - self.started


class SimulatedPath:
    """``execute(command, locality)`` through a simulation.

    :param env: the SimPy environment of the simulated host.
    :param transmit: a generator function ``transmit(command, locality, flow)``
        returning the response bytes (the guest TPM client's ``transmit``).
    :param new_flow: a callable giving the flow id of the next command.
    :param clock: a callable giving the guest's simulated time (``dom.now``).
    :param on_exchange: called with an :class:`Exchange` after each command.
    """

    def __init__(self, env, transmit, new_flow, *, clock=None, on_exchange=None):
        self.env = env
        self.transmit = transmit
        self.new_flow = new_flow
        self.clock = clock if clock is not None else (lambda: env.now)
        self.on_exchange = on_exchange
        self.lock = threading.RLock()
        self.commands = 0           #: commands delivered
        self.failures = 0           #: commands the path could not deliver
        self.refused = 0            #: commands the guest kernel refused (answered COMMAND_SIZE)

    @classmethod
    def for_guest(cls, guest, **kw):
        """The path into a booted guest kernel (``guest.tpm`` is its TPM client)."""
        tpm = guest.tpm
        if tpm is None:
            raise ValueError(f"{guest.name} has no vTPM")

        def transmit(command, locality, flow):
            return (yield from tpm.transmit(command, locality=locality, flow=flow))
        return cls(guest.env, transmit, tpm.new_flow, clock=lambda: guest.dom.now, **kw)

    def execute(self, command: bytes, locality: int = 0) -> bytes:
        """Inject ``command`` at the guest, run the simulation until it is answered."""
        with self.lock:
            flow = self.new_flow()
            started = self.clock()
            outcome = {}
            command = bytes(command)
            proc = self.env.process(self._one(command, locality, flow, outcome))
            step = self.env.step
            try:
                # not env.run(until=proc): a failed run would leave its stop
                # callback on proc
                while not proc.triggered:
                    step()
            except EmptySchedule:
                outcome.setdefault("error", "the simulation ran out of events before the "
                                            "response came back")
            except Exception as exc:                # noqa: BLE001 -- becomes a PathError
                # another process of the model failed (a bug there): report it, keep serving
                outcome.setdefault("error", f"the simulation stopped: {type(exc).__name__}: {exc}")
            error = outcome.get("error")
            response = outcome.get("response", b"")
            if error is not None and outcome.get("errno") in _REFUSED_WRITE:
                # the guest kernel refused the write (see the module doc): answer as a TPM
                error, response = None, error_response(TPM_RC.COMMAND_SIZE)
                self.refused += 1
            elif error is None:
                self.commands += 1
            else:
                self.failures += 1
            if self.on_exchange is not None:
                self.on_exchange(Exchange(flow, command, response, locality, started,
                                          self.clock(), error))
            if error is not None:
                raise PathError(f"{flow}: {error}", outcome.get("errno"))
            return response

    def _one(self, command, locality, flow, outcome):
        """The injected process: one transmit; failures become data, never a crash."""
        try:
            outcome["response"] = yield from self.transmit(command, locality, flow)
        except Exception as exc:                    # noqa: BLE001 -- reported as a PathError
            outcome["error"] = f"{type(exc).__name__}: {exc}"
            outcome["errno"] = getattr(exc, "errno", None)


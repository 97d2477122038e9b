"""The one place simxen steps around SimPy's public API.

A blocked domain yields one event (:class:`simxen.xen.domain.Domain.block`).
What wakes it -- a notification, a watch, a timeout -- is known only later,
and it wakes the domain at a *future* time: the delivery time plus the
upcall. SimPy's public calls cannot say that of an existing event:
``Event.succeed()`` fires it now, ``env.timeout(delay)`` is a new event
(a second event per wake-up, on the hottest path there is). And SimPy cannot
unschedule: when something earlier arrives, the process must be handed to a
new, earlier event.

:func:`succeed_at` does both with SimPy's private fields. It is tested with
the SimPy versions ``setup.cfg`` pins (``simpy >= 4.1, < 4.2``); a SimPy that
renames these fields fails ``tests/xen`` at once. ``tests/test_private_access.py``
checks that no other code touches SimPy's private fields.
"""

from simpy.core import NORMAL
from simpy.events import Process


def succeed_at(event, delay, *, instead_of=None):
    """Schedule the untriggered ``event`` to succeed (value ``None``) ``delay`` seconds from now.

    ``Event.succeed()`` with a delay. With ``instead_of``, an event already
    scheduled (later) for the same waiters: ``event`` takes over its
    callbacks -- the processes waiting on it resume on ``event`` instead --
    and ``instead_of`` is left to fire with nobody listening.
    """
    if instead_of is not None:
        event.callbacks, instead_of.callbacks = instead_of.callbacks, []
        for callback in event.callbacks:
            owner = getattr(callback, "__self__", None)
            if isinstance(owner, Process) and owner._target is instead_of:
                owner._target = event     # what Process.interrupt() unhooks from
    # what Event.succeed(None) sets, then its env.schedule() with a delay
    event._ok = True
    event._value = None
    event.env.schedule(event, NORMAL, delay)

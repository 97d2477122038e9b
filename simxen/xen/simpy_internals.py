"""The one place simxen steps around SimPy's public API.

A blocked domain yields one event (:class:`simxen.xen.domain.Domain.block`).
What wakes it -- a notification, a watch, a timeout -- is known only later,
and it wakes the domain at a *future* time: the delivery time plus the
upcall. SimPy's public calls cannot say that of an existing event:
``Event.succeed()`` fires it now, ``env.timeout(delay)`` is a new event
(a second event per wake-up, on the hottest path there is). And SimPy cannot
unschedule: when something earlier arrives, the process must be handed to a
new, earlier event.

:func:`succeed_at` does both with SimPy's private fields. A driver's loop
blocks again and again for the same thing; :func:`rearm` lets the domain hand
it the event it woke on last time, made untriggered again, instead of a new
event per wake-up. Under a CPU
scheduler (:mod:`simxen.xen.scheduler`) two more are needed: a woken domain
that finds no free pCPU must not resume yet (:func:`defer_callbacks` hands its
waiting processes to a later event), and a pCPU looks at the end of a burst
only after everything else due at that time (:func:`schedule_late`). They are
tested with the SimPy versions ``setup.cfg`` pins (``simpy >= 4.1, < 4.2``); a
SimPy that renames these fields fails ``tests/xen`` at once. ``tests/test_private_access.py``
checks that no other code touches SimPy's private fields.
"""

from operator import attrgetter

from simpy.core import NORMAL
from simpy.events import PENDING, Process

#: ``now(env)`` is ``env.now`` -- SimPy's clock field, read by a C getter instead
#: of the property's Python call (a domain reads the clock several times for every
#: page access and notification)
now = attrgetter("_now")


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


def rearm(event):
    """Make the processed ``event`` untriggered again, as ``Event.__init__`` leaves a new one.

    ``event`` must be *processed* (``event.callbacks is None``: fired, and its
    callbacks run), so it is in no queue and nothing waits on it; afterwards it
    is pending (``triggered`` and ``processed`` false), and a process may yield
    it and :func:`succeed_at` may schedule it again, exactly as a new event.
    (``ok`` keeps its last value until it fires again: only read once triggered.)
    """
    event.callbacks = []
    event._value = PENDING


#: a priority after SimPy's NORMAL: an event scheduled with it is processed after
#: every NORMAL event of the same time, including those scheduled while it waits
#: (the credit2 scheduler looks at a pCPU once everything due at that time has run)
LATE = NORMAL + 1


def schedule_late(event, delay):
    """Schedule the untriggered ``event`` to succeed ``delay`` seconds from now, after
    every NORMAL event of that time (:data:`LATE`)."""
    event._ok = True
    event._value = None
    event.env.schedule(event, LATE, delay)


def defer_callbacks(event, callbacks, hook, gate):
    """Hand the callbacks after ``hook`` to the untriggered ``gate``.

    Called from ``hook``, the first callback of ``event``, while SimPy runs
    ``event``'s callbacks: ``callbacks`` is the list being run (``event``'s
    list, which SimPy has already detached). The rest -- the processes
    waiting for ``event`` -- are removed from it, so they do not resume now,
    and resume when ``gate`` fires instead (the events a domain waits on carry
    no value: ``gate.succeed()`` resumes them as ``event`` would). This is
    how the credit2 scheduler keeps a woken domain off the CPU until it is
    dispatched (:mod:`simxen.xen.scheduler`).
    """
    for i, callback in enumerate(callbacks):
        if callback is hook:
            break
    rest = callbacks[i + 1:]
    del callbacks[i + 1:]
    gate.callbacks.extend(rest)
    for callback in rest:
        owner = getattr(callback, "__self__", None)
        if isinstance(owner, Process) and owner._target is event:
            owner._target = gate

"""simxen.xen.simpy_internals.succeed_at: the one function using SimPy's private fields.

If a SimPy release renames them, these fail first (setup.cfg pins the tested series).
"""

import simpy

from simxen.xen.simpy_internals import succeed_at


def test_succeed_at_fires_an_existing_event_later_with_none():
    env = simpy.Environment()
    seen = []

    def waiter(event):
        seen.append((yield event))
        seen.append(env.now)
    event = env.event()
    env.process(waiter(event))
    env.run(until=1)
    succeed_at(event, 2.5)
    assert event.triggered and not event.processed
    env.run()
    assert seen == [None, 3.5]


def test_instead_of_moves_the_process_to_the_earlier_event():
    env = simpy.Environment()
    seen = []

    def waiter(event):
        yield event
        seen.append(env.now)
    late = env.event()
    proc = env.process(waiter(late))
    env.run(until=1)
    succeed_at(late, 10)
    early = env.event()
    succeed_at(early, 2, instead_of=late)
    assert late.callbacks == [] and proc.target is early
    env.run()
    assert seen == [3]          # woken once, by the earlier event


def test_a_process_moved_to_an_earlier_event_can_still_be_interrupted():
    env = simpy.Environment()
    seen = []

    def waiter(event):
        try:
            yield event
        except simpy.Interrupt as why:
            seen.append(why.cause)
    late = env.event()
    proc = env.process(waiter(late))
    env.run(until=1)
    succeed_at(late, 10)
    early = env.event()
    succeed_at(early, 5, instead_of=late)

    def interrupter():
        yield env.timeout(1)
        proc.interrupt("stop")
    env.process(interrupter())
    env.run()
    assert seen == ["stop"]

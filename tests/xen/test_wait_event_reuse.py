"""A domain hands a process that waits again for the same thing its last wait
event back, made pending again (``simpy_internals.rearm``). That reused event
must behave exactly as a new one: same wake-ups, same trace. The driver loop's
usual case -- poll one port, then clear it -- also takes short paths in the
domain (``poll`` rearming without ``_wait``'s search, ``evtchn_clear``
delivering its port's one queued notification itself); they must give what the
general paths give."""

from hypothesis import given, settings
from hypothesis import strategies as st
from simpy.events import Event

from simxen.xen import Hypervisor
from simxen.xen import domain as domain_module
from simxen.xen.simpy_internals import rearm, succeed_at


def test_rearm_makes_a_processed_event_pending_again():
    hv = Hypervisor(seed=1)
    env = hv.env
    event = Event(env)
    seen = []

    def proc():
        yield event
        seen.append(env.now)
        rearm(event)
        assert not event.triggered and not event.processed
        succeed_at(event, 3.0)
        yield event
        seen.append(env.now)

    env.process(proc())
    succeed_at(event, 1.0)
    env.run()
    assert seen == [1.0, 4.0] and event.processed and event.value is None


#: one step of a domain's program: (what, a number)
steps = st.lists(st.tuples(st.sampled_from(["send", "poll", "poll_timeout", "block", "charge",
                                            "sleep", "two", "clear"]),
                           st.integers(0, 3)), min_size=1, max_size=14)


def _run(programs, reuse, general=False):
    """Run each domain's program, with or without reused wait events; the
    trace's export, what each process saw, and whether an event was reused.
    ``general``: every ``evtchn_clear`` comes after a ``deliver_due`` (so it
    never delivers itself)."""
    before, rearmed = domain_module.REUSE_WAIT_EVENTS, []

    def counted(event):
        rearmed.append(event)
        rearm(event)
    domain_module.REUSE_WAIT_EVENTS, domain_module.rearm = reuse, counted
    try:
        trace, seen = _programs(programs, general)
    finally:
        domain_module.REUSE_WAIT_EVENTS, domain_module.rearm = before, rearm
    return trace, seen, bool(rearmed)


def _programs(programs, general=False):
    hv = Hypervisor(seed=7)
    env = hv.env
    a, b = hv.domain_create("a"), hv.domain_create("b")
    ports = {}
    for i in range(2):          # two channels between a and b
        pa = hv.evtchn.alloc_unbound(a, b.domid)
        pb = hv.evtchn.bind_interdomain(b, a.domid, pa)
        ports[a, i], ports[b, i] = pa, pb
    seen = []

    def waits(dom, what, k):
        mine = (ports[dom, k % 2],)
        if what == "poll":
            return dom.poll(mine)
        if what == "poll_timeout":
            return dom.poll(mine, (k + 1) * 0.1)
        return dom.block((k + 1) * 0.25)

    def program(dom, prog, name):
        for what, k in prog:
            if what == "send":
                hv.evtchn.send(dom, ports[dom, k % 2])
            elif what == "charge":
                dom.charge("hypercall", k + 1)
            elif what == "sleep":
                yield dom.sleep(k * 0.3)       # (b starts ~0.7 s after a)
            elif what == "clear":           # a ring's loop: poll one port, clear it
                for _ in range(k + 1):
                    yield dom.poll((ports[dom, 0],))
                    if general:
                        dom.deliver_due()
                    seen.append((name, env.now, dom.evtchn_clear(ports[dom, 0])))
            elif what == "two":             # the same wait twice in a row
                for _ in range(2):
                    yield waits(dom, "poll_timeout", k)
                    seen.append((name, env.now, dom.evtchn_clear(ports[dom, k % 2])))
            else:
                yield waits(dom, what, k)
                seen.append((name, env.now, tuple(dom.evtchn_take_pending())))
        seen.append((name, "done", env.now))

    for dom, progs in ((a, programs[0]), (b, programs[1])):
        for j, prog in enumerate(progs):
            env.process(program(dom, prog, f"{dom.name}{j}"))

    def stop():     # a program that waits forever must not hang the test
        yield env.timeout(max(a.now, b.now) + 10)   # (creating the domains took ~2 s)
    env.run(until=env.process(stop()))
    return hv.trace.dumps_jsonl(), seen


@settings(max_examples=80, deadline=None)
@given(st.tuples(st.lists(steps, min_size=1, max_size=2), st.lists(steps, min_size=1, max_size=2)))
def test_a_reused_wait_event_gives_the_same_run_as_a_new_one(programs):
    trace, seen, reused = _run(programs, True)
    fresh_trace, fresh_seen, fresh_reused = _run(programs, False, general=True)
    assert not fresh_reused
    assert (trace, seen) == (fresh_trace, fresh_seen)


def test_a_driver_loop_polls_on_one_event_it_gets_back():
    """Two polls of the same port in a row, the first one fired: the same event,
    pending again (and a new one each time with reuse off)."""
    for reuse in (True, False):
        programs = ([[("sleep", 3), ("send", 0), ("sleep", 1), ("send", 0)]],
                    [[("poll", 0), ("two", 2)]])     # the first poll takes bind's pending bits
        trace, seen, reused = _run(programs, reuse)
        assert reused == reuse
        # the first of the two polls woke for a's send (the second ends by its timeout)
        assert [s[2] for s in seen if s[0] == "b0"][:3] == [(1, 2), True, False]


def test_the_driver_loop_takes_the_short_paths():
    """A ring's loop (poll one port, clear it) rearms its event in ``poll`` and
    has its notification delivered by ``evtchn_clear`` -- the short paths the
    property test above compares with the general ones really are taken."""
    programs = ([[("sleep", 3), ("send", 0), ("sleep", 1), ("send", 0)]],
                [[("clear", 2)]])
    delivered, general = [], []
    Domain = domain_module.Domain
    evtchn_clear, deliver_due = Domain.evtchn_clear, Domain.deliver_due

    def clear(dom, port):
        queued = dom.earliest_queued()
        general.clear()
        result = evtchn_clear(dom, port)
        delivered.append((queued is not None and dom.earliest_queued() is None,
                          bool(general), result))
        return result

    def due(dom):
        general.append(dom)
        deliver_due(dom)
    Domain.evtchn_clear, Domain.deliver_due = clear, due
    try:
        trace, seen, reused = _run(programs, True)
    finally:
        Domain.evtchn_clear, Domain.deliver_due = evtchn_clear, deliver_due
    assert reused
    # bind's own pending bit, then each of a's two sends: delivered by the clear
    # itself, not by deliver_due()
    assert delivered == [(False, False, True), (True, False, True), (True, False, True)]
    assert [record for record in trace.splitlines() if '"evtchn.deliver"' in record]

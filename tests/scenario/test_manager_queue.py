"""vtpm-stack's queue at the manager: its mean, deepest and waits, checked against the
plain definition (every arrival +1, every take -1, in time order, a take first at a tie)."""

from hypothesis import given, settings, strategies as st

from simxen.analysis.hops import Request, RequestTable
from simxen.scenario.workloads.vtpm_stack import _manager_queue

times = st.integers(0, 40).map(lambda n: n / 8)      # few distinct values: many ties


def by_events(reqs, manager, start, end):
    waits, events = [], []
    for r in reqs:
        if r.back_dom != manager or r.take is None or r.submit < start or r.submit > end:
            continue
        waits.append(r.take - r.submit)
        events += [(r.submit, 1), (r.take, -1)]
    depth = deepest = 0
    for _, step in sorted(events):
        depth += step
        deepest = max(deepest, depth)
    span = end - start
    return (sum(waits) / span if span > 0 else 0.0), deepest, waits


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(times, st.one_of(st.none(), times), st.sampled_from([1, 2])),
                max_size=30),
       times, times)
def test_deepest_queue_is_the_event_walk(rows, start, end):
    reqs = [Request(i, 9, s, take=d, back_dom=dom) for i, (s, d, dom) in enumerate(rows)]
    mean, deepest, waits = _manager_queue(RequestTable(reqs), 1, start, end)
    assert (mean, deepest, waits.tolist()) == by_events(reqs, 1, start, end)

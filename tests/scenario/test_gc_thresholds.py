"""The run's garbage-collector thresholds against the trace's buffer.

A trace holds :data:`~simxen.xen.trace.BUFFER_ROWS` kept rows (and as many
counted kinds) before it spills them; every row is a tracked tuple, an emitted
one also a fields dict, and the commands and events that made them are
allocated between them. If the young generation is smaller than that, every
buffer survives young collections, is walked again by middle ones and is
promoted into the old generation, where it brings on full collections of the
whole heap: 45 s of a 10,000-guest fleet's run before the young generation
was made ten times larger (see :func:`simxen.scenario.runner.fewer_collections`).
"""

import gc

from simxen.scenario import runner
from simxen.xen.trace import BUFFER_ROWS, Trace


def test_the_young_generation_outlasts_a_trace_buffer():
    young = runner.GC_THRESHOLDS[0]
    assert young >= 4 * BUFFER_ROWS, (young, BUFFER_ROWS)


def test_a_trace_spills_after_this_many_rows_by_default():
    trace = Trace(level="full")
    for i in range(BUFFER_ROWS - 1):
        trace.row(float(i), "x.y", 0, ("n",), i)
    assert trace.spilled_runs() == 0
    trace.row(float(BUFFER_ROWS), "x.y", 0, ("n",), BUFFER_ROWS)
    assert trace.spilled_runs() == 1


def test_fewer_collections_sets_and_restores_the_thresholds():
    before = gc.get_threshold()
    with runner.fewer_collections():
        assert gc.get_threshold() == runner.GC_THRESHOLDS
    assert gc.get_threshold() == before
    with runner.fewer_collections(runner.END_OF_RUN_GC):
        assert gc.get_threshold() == runner.END_OF_RUN_GC
    assert gc.get_threshold() == before


class _Cycle:
    def __init__(self):
        self.me = self


def test_what_the_body_built_leaves_in_the_oldest_generation_and_cycles_are_still_freed():
    """Leaving fewer_collections hands everything to the oldest generation (no collection
    walks it when the low thresholds come back); garbage cycles are still collected by
    the next full collection."""
    import weakref

    with runner.fewer_collections():
        kept = [[i] for i in range(1000)]
        garbage = _Cycle()
        gone = weakref.ref(garbage)
        del garbage
    oldest = {id(o) for o in gc.get_objects(generation=2)}
    assert id(kept) in oldest and all(id(k) in oldest for k in kept)
    assert gone() is not None           # a cycle: only a collection frees it
    gc.collect()
    assert gone() is None

"""A read of some kinds (``Trace.iter_records(kinds=...)`` / ``prefix``) of a spilled
trace: the kinds not asked for are left out before the merge (a spilled block keeps
each kind's rows apart, so they are not even unpickled) -- the records that come out
are exactly those of the whole read, in its order."""

import io

from hypothesis import given, settings, strategies as st

from simxen.xen.trace import Trace

KINDS = ["tpm.front.submit", "tpm.back.take", "tpm.exec", "tis.go", "vtpm.save", "a", "a.b"]


def record(trace, t, kind, hot):
    if hot:
        trace.row(t, kind, 1, ("n", "absent"), int(t * 4), None)
    else:
        trace.emit(kind, t, None, n=int(t * 4), data=b"\x00\x01")


def selections(recs, kinds):
    return [r for r in recs if r.kind in kinds]


rows = st.lists(st.tuples(st.integers(0, 40), st.sampled_from(KINDS), st.booleans()),
                max_size=150)
wanted = st.frozensets(st.sampled_from(KINDS))


@settings(max_examples=60, deadline=None)
@given(rows, st.integers(1, 9), wanted)
def test_a_read_of_some_kinds_is_the_whole_read_filtered(steps, buffer, kinds):
    plain, spilled = Trace(), Trace(buffer_rows=buffer)
    for trace in (plain, spilled):
        for t, kind, hot in steps:
            record(trace, t / 4, kind, hot)
    whole = plain.records()
    assert spilled.records() == whole
    assert list(spilled.iter_records(kinds=kinds)) == selections(whole, kinds)
    assert spilled.select("a") == [r for r in whole if r.kind in ("a", "a.b")]
    assert list(spilled.iter_records(("tis", "tpm.back"))) == \
        [r for r in whole if r.kind.startswith(("tis.", "tpm.back."))]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 5), st.sampled_from(KINDS),
                          st.booleans(), st.integers(0, 12)), max_size=150),
       st.integers(1, 12), wanted)
def test_a_read_of_some_kinds_while_the_trace_streams(steps, buffer, kinds):
    """Rows stamped up to 5 ticks ahead of the mark (as in test_trace_stream); the
    trace is read, some kinds of it, now and then while it streams and at the end."""
    now = [0]
    plain, streamed, out = Trace(), Trace(buffer_rows=buffer), io.StringIO()
    streamed.stream_to(out, lambda: now[0] / 4, strict=True)
    for dt, ahead, kind, hot, read in steps:
        now[0] += dt
        if read == 0:
            assert list(streamed.iter_records(kinds=kinds)) == \
                selections(plain.records(), kinds)
        for trace in (plain, streamed):
            record(trace, (now[0] + ahead) / 4, kind, hot)
    streamed.finish_stream()
    assert out.getvalue() == plain.dumps_jsonl()
    assert list(streamed.iter_records(kinds=kinds)) == selections(plain.records(), kinds)


def test_a_spilled_run_that_holds_none_of_the_kinds_is_stepped_over():
    trace = Trace(buffer_rows=4)
    for i in range(12):                 # three runs of "a", then "b" in memory
        trace.emit("a", i / 10, None, n=i)
    trace.emit("b", 0.05, None, n=99)
    assert trace.spilled_runs() == 3
    assert [r.fields["n"] for r in trace.iter_records(kinds={"b"})] == [99]
    assert [r.seq for r in trace.iter_records(kinds={"a", "b"})] == \
        [0, 12, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    assert list(trace.iter_records(kinds=set())) == []


def test_a_spilled_trace_left_to_the_collector_closes_its_file():
    """A run is a cycle of objects: its trace is freed by the collector, not when the
    last name goes. Its spill file was then an unclosed file (a ResourceWarning, 44 of
    them in one CI log); the trace closes it itself now."""
    import gc
    import warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        trace = Trace(buffer_rows=4)
        trace.cycle = trace                             # freed by the collector only
        for t in range(20):
            trace.emit("a.kind", float(t), 1, n=t)
        assert trace.kept() == 20 and len(list(trace.records())) == 20
        del trace
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []

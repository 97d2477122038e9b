"""A read of the records emitted since some ``seq`` (``Trace.iter_records(since=...)``):
exactly those records of the whole read, in its order -- and its cost depends on how
many they are, not on how long the trace is (what ``simxen serve --hops`` needs after
every command it serves)."""

import io

from hypothesis import given, settings, strategies as st

from simxen.xen import trace as trace_module
from simxen.xen.trace import Trace

KINDS = ["tpm.front.submit", "tpm.back.take", "tis.go", "a", "a.b"]


def record(trace, t, kind, hot):
    if hot:
        trace.row(t, kind, 1, ("n", "absent"), int(t * 4), None)
    else:
        trace.emit(kind, t, None, n=int(t * 4), data=b"\x00\x01")


def since(recs, seq, kinds=None):
    return [r for r in recs if r.seq >= seq and (kinds is None or r.kind in kinds)]


steps = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 5), st.sampled_from(KINDS),
                           st.booleans(), st.integers(0, 8)), max_size=150)


@settings(max_examples=80, deadline=None)
@given(steps, st.integers(1, 12), st.booleans(), st.frozensets(st.sampled_from(KINDS)))
def test_a_read_since_a_seq_is_the_whole_read_from_there(steps, buffer, stream, kinds):
    """Rows up to 5 ticks ahead of the clock (out of time order, as deliveries are),
    a small buffer (many spilled runs, runs partly used up by streaming), read now and
    then from a seq noted a few records earlier."""
    now = [0]
    plain, spilled = Trace(), Trace(buffer_rows=buffer)
    if stream:
        spilled.stream_to(io.StringIO(), lambda: now[0] / 4, strict=True)
    marks = [0]
    for dt, ahead, kind, hot, read in steps:
        now[0] += dt
        if read == 0:
            whole = plain.records()
            for mark in marks[-3:]:
                assert list(spilled.iter_records(since=mark)) == since(whole, mark)
                assert list(spilled.iter_records(kinds=kinds, since=mark)) == \
                    since(whole, mark, kinds)
            marks.append(len(spilled))
        for trace in (plain, spilled):
            record(trace, (now[0] + ahead) / 4, kind, hot)
    if stream:
        spilled.finish_stream()
    whole = plain.records()
    for mark in marks + [len(spilled)]:
        assert list(spilled.iter_records(since=mark)) == since(whole, mark)
        assert list(spilled.iter_records(kinds=kinds, since=mark)) == since(whole, mark, kinds)


def rows_unpickled(monkeypatch):
    """Count the rows every spilled block read gives back."""
    seen = [0]
    load = trace_module._load_block

    def counting(file, wanted=None):
        rows = load(file, wanted)
        seen[0] += len(rows)
        return rows
    monkeypatch.setattr(trace_module, "_load_block", counting)
    return seen


def test_a_read_since_unpickles_no_run_that_ended_before(monkeypatch):
    """After many spills, each read of the last few records costs the same: the
    runs before the mark are stepped over, the buffer is bisected."""
    for stream in (False, True):
        trace = Trace(buffer_rows=64)
        if stream:
            trace.stream_to(io.StringIO(), lambda: 1e9)
        seen = rows_unpickled(monkeypatch)
        costs = []
        for batch in range(200):
            mark = len(trace)
            for i in range(10):
                trace.emit("a", batch + i / 10, None, n=i)
            seen[0] = 0
            got = list(trace.iter_records(since=mark))
            assert [r.seq for r in got] == list(range(mark, mark + 10))
            costs.append(seen[0])
        assert trace.spilled_runs() > 25
        # a batch that straddles a spill reads that one run (up to a buffer of rows),
        # once; the others read none (a read from 0 unpickles every run, each time)
        assert max(costs) <= 64 and sum(costs) <= 64 * trace.spilled_runs()
        assert costs[-40:].count(0) >= 30

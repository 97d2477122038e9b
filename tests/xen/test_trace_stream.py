"""The trace streamed to its output file as the run goes (``Trace.stream_to``):
the file gets every record below the hypervisor's low-water mark each time
the buffer fills, memory holds no more than the buffer, and the finished
file is byte for byte the export a trace kept whole would write."""

import enum
import errno
import io
import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from simxen.domains.pingpong import run_pingpong
from simxen.scenario import runner, scenario_file
from simxen.xen import Hypervisor
from simxen.xen.trace import Trace, TraceOrderError

ROOT = Path(__file__).resolve().parents[2]


def pingpong(trace, requests=30, sink=None, watch=None):
    hv = Hypervisor(seed=11, trace=trace)
    if sink is not None:
        trace.stream_to(sink, hv.low_water, strict=True)
    front, back = hv.domain_create("front"), hv.domain_create("back")
    hv.env.process(run_pingpong(hv, front, back, requests=requests, window=4))
    if watch is not None:
        hv.env.process(watch(hv))
    hv.env.run()
    return hv.trace


def test_streamed_file_is_the_export_of_the_whole_trace():
    whole = pingpong(Trace(), requests=60)
    out = io.StringIO()
    streamed = pingpong(Trace(buffer_rows=40), requests=60, sink=out)
    written = streamed.streamed()
    assert 0 < written < len(streamed) == len(whole)        # some, not all, during the run
    assert out.getvalue().count("\n") == written
    streamed.finish_stream()
    assert out.getvalue() == whole.dumps_jsonl()
    assert streamed.stream_fallback() is None
    # still readable, and its own export is the same
    assert streamed.records() == whole.records()
    assert streamed.dumps_jsonl() == out.getvalue()
    assert streamed.select("evtchn.deliver") == whole.select("evtchn.deliver")
    assert streamed.kept() == whole.kept()


class Watched(io.StringIO):
    """The output file, noting at each flush (each time the trace writes) the
    simulated time, the rows the trace holds in memory and the file's size."""

    def __init__(self, hv):
        super().__init__()
        self.hv, self.samples = hv, []

    def flush(self):
        self.samples.append((self.hv.env.now, self.hv.trace.buffered(), self.tell()))


def test_memory_stays_within_the_buffer_while_the_file_grows():
    """A long run: the trace writes many times while it runs, never holding
    more rows than its buffer; in the end the file is complete and sorted."""
    buffer = 100
    hv = Hypervisor(seed=11, trace=Trace(buffer_rows=buffer))
    out = Watched(hv)
    hv.trace.stream_to(out, hv.low_water, strict=True)
    front, back = hv.domain_create("front"), hv.domain_create("back")
    hv.env.process(run_pingpong(hv, front, back, requests=1000, window=4))
    hv.env.run()
    during = list(out.samples)
    hv.trace.finish_stream()
    trace = hv.trace
    assert len(trace) > 50 * buffer
    assert len(during) > 40 and max(rows for _, rows, _ in during) <= buffer
    times = [t for t, _, _ in during]
    sizes = [size for _, _, size in during]
    assert times == sorted(times) and times[-1] - times[0] > 0.5 * (hv.env.now - times[0])
    assert sizes == sorted(sizes) and sizes[-1] > 0.8 * len(out.getvalue())
    keys = [(r["t"], r["seq"]) for r in map(json.loads, out.getvalue().splitlines())]
    assert keys == sorted(keys)
    assert sorted(seq for _, seq in keys) == list(range(len(trace)))   # level full: every one


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 5), st.booleans(),
                          st.integers(0, 20)), max_size=150),
       st.integers(1, 12))
def test_any_rows_above_the_mark_stream_to_the_sorted_export(steps, buffer):
    """Time advances by ``dt``; each row is stamped up to 5 ticks ahead of it
    (a domain's clock runs ahead); the mark is the current time. Now and then
    the trace is read while it runs (a workload reading its records)."""
    now = [0]
    plain, streamed, out = Trace(), Trace(buffer_rows=buffer), io.StringIO()
    streamed.stream_to(out, lambda: now[0] / 4, strict=True)
    for dt, ahead, hot, read in steps:
        now[0] += dt
        if read == 0:
            assert streamed.records() == plain.records()
        for trace in (plain, streamed):
            if hot:
                trace.row((now[0] + ahead) / 4, "page.read", 1, ("n", "absent"), ahead, None)
            else:
                trace.emit("xs.write", (now[0] + ahead) / 4, None, n=ahead, data=b"\x00\x01")
    streamed.finish_stream()
    assert out.getvalue() == plain.dumps_jsonl()
    assert streamed.records() == plain.records()


def late_row(trace):
    """Fill a buffer of 4 with rows at t = 1..4 (mark 10: all written), then one at 0.5."""
    for t in (1.0, 2.0, 3.0, 4.0):
        trace.emit("a.x", t, None, n=t)
    trace.emit("a.x", 0.5, None, n=0.5)


def test_a_row_below_what_was_written_is_an_error_when_strict():
    trace = Trace(buffer_rows=4)
    trace.stream_to(io.StringIO(), lambda: 10.0, strict=True)
    with pytest.raises(TraceOrderError, match="t=0.5 s came after the records up to t=4.0"):
        late_row(trace)
        trace.finish_stream()


def test_a_row_below_what_was_written_rewrites_a_seekable_file():
    plain, trace, out = Trace(), Trace(buffer_rows=4), io.StringIO()
    trace.stream_to(out, lambda: 10.0)
    late_row(plain)
    late_row(trace)
    for t in (5.0, 6.0, 7.0, 8.0):       # more after the fallback: spilled, not streamed
        plain.emit("a.x", t, None, n=t)
        trace.emit("a.x", t, None, n=t)
    trace.finish_stream()
    assert "t=0.5 s" in trace.stream_fallback()
    assert out.getvalue() == plain.dumps_jsonl()
    assert trace.records() == plain.records()


class Pipe:
    """A sink that cannot seek back, as standard output into a pipe."""

    def __init__(self):
        self.text = ""

    def write(self, s):
        self.text += s

    def flush(self):
        pass

    def seek(self, pos):
        raise io.UnsupportedOperation("seek")


def test_a_row_below_what_was_written_to_a_pipe_is_an_error_not_a_wrong_file():
    trace = Trace(buffer_rows=4)
    trace.stream_to(Pipe(), lambda: 10.0)
    late_row(trace)
    with pytest.raises(TraceOrderError, match="cannot seek back"):
        trace.finish_stream()


def test_a_domain_named_after_its_rows_were_written_rewrites_them():
    plain, trace, out = Trace(), Trace(buffer_rows=2), io.StringIO()
    trace.stream_to(out, lambda: 10.0)
    for t in (plain, trace):
        t.emit("a.x", 1.0, 7, n=1)
        t.emit("a.x", 2.0, 7, n=2)
        t.name_domain(7, "late")
        t.emit("a.x", 3.0, 7, n=3)
    trace.finish_stream()
    assert "named 'late'" in trace.stream_fallback()
    assert out.getvalue() == plain.dumps_jsonl()
    assert '"dom_name":"late"' in out.getvalue().splitlines()[0]


class Full(io.StringIO):
    def write(self, s):
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_failing_write_keeps_the_rows_and_is_raised_at_the_end():
    trace = Trace(buffer_rows=4)
    trace.stream_to(Full(), lambda: 10.0)
    for t in range(10):
        trace.emit("a.x", float(t), None, n=t)
    assert "No space left" in trace.stream_fallback()
    with pytest.raises(OSError, match="No space left"):
        trace.finish_stream()
    assert [r.t for r in trace.records()] == [float(t) for t in range(10)]


SCENARIOS = ["vtpm-rollback", "many-guests", "validation/priority-multislot"]


@pytest.mark.slow
@pytest.mark.parametrize("name", SCENARIOS)
def test_shipped_scenarios_stream_the_bytes_of_the_whole_export(name):
    """Small buffers force many flushes (and runs kept back above the mark):
    the streamed file is still the export of the same run kept whole, and most
    of it was written while the run went -- vtpm-rollback's destroyed vTPM
    leaves notifications in its inbox that no longer hold the mark back."""
    scenario = scenario_file.load(ROOT / "scenarios" / f"{name}.toml")
    whole = runner.run(scenario).trace.dumps_jsonl()
    sim = runner.prepare(scenario, trace_buffer=300)
    out = io.StringIO()
    sim.hv.trace.stream_to(out, sim.hv.low_water, strict=True)
    runner.execute(sim)
    assert sim.hv.trace.streamed() > 0.8 * sim.hv.trace.kept()
    sim.hv.trace.finish_stream()
    assert out.getvalue() == whole


scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**70), st.text(max_size=6),
                    st.floats(allow_nan=False), st.binary(max_size=6),
                    st.binary(max_size=6).map(bytearray), st.binary(max_size=6).map(memoryview))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                     st.lists(inner, max_size=3).map(tuple)),
                      max_leaves=6)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["data", "n", "what", "seq", "dom_name", "z"]),
                       values, max_size=5),
       st.sampled_from([None, 0, 3, 9]), st.booleans())
def test_an_exported_line_is_the_records_json(fields, dom, hot):
    """The export's fast line (no Record, bytes hexed by the encoder) is
    ``json.dumps`` of ``Record.as_dict`` -- whatever the values."""
    trace = Trace()
    trace.name_domain(3, "guest")
    trace.name_domain(0, "Domain-0")
    if hot:
        names = tuple(fields)
        trace.row(1.5, "page.read", dom, names, *(fields[n] for n in names))
    else:
        trace.emit("xs.write", 1.5, dom, **fields)
    record, = trace.records()
    assert trace.dumps_jsonl() == json.dumps(record.as_dict(trace.domain_names()),
                                             sort_keys=True, separators=(",", ":")) + "\n"


class Code(enum.IntEnum):
    """An enum member, as a field value: JSON writes it as its number."""
    A = 7


def same(a, b):
    """Equal values of the same classes, in the same key order, nested (nan equals nan)."""
    if a.__class__ is not b.__class__:
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


any_values = st.recursive(
    st.one_of(scalars, st.floats(), st.just(Code.A), st.integers().map(str)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.lists(inner, max_size=3).map(tuple),
                            st.dictionaries(st.text(max_size=2), inner, max_size=2),
                            st.dictionaries(st.integers(0, 3), inner, max_size=2)),
    max_leaves=6)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["data", "n", "what", "seq", "dom_name", "z"]),
                       any_values, max_size=5),
       st.sampled_from([None, 0, 3, 9]), st.booleans(), st.sampled_from([1.5, 0, 2.0 ** 60]))
def test_a_records_dict_is_its_exported_line_parsed_back(fields, dom, hot, t):
    """``Trace.iter_dicts`` (what ``simxen trace`` reads a run through) gives each
    record as ``json.loads`` of its export line gives it -- same keys in the same
    order, same values of the same classes -- without making the line."""
    trace = Trace()
    trace.name_domain(3, "guest")
    trace.name_domain(0, "Domain-0")
    if hot:
        names = tuple(fields)
        trace.row(t, "page.read", dom, names, *(fields[n] for n in names))
    else:
        trace.emit("xs.write", t, dom, **fields)
    got, = trace.iter_dicts()
    want = json.loads(trace.dumps_jsonl())
    assert same(got, want), (got, want)

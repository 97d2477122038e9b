"""The end-of-run certainty pass reads the trace once, in the trace's own order (by time,
then seq), matching requests as the records go by (simxen.analysis.hops.Matching) --
and gives exactly what matching them in emission order (hops.requests) gives.

The traces here are made up but causal, as a run's are: guests' commands served by their
vTPMs, which ask one manager (one request at a time) that drives the physical TPM; each
record is emitted after the records it answers and after its own domain's earlier ones,
and otherwise as early as its domain's clock running ahead allows -- so emission order and
time order disagree across domains, which is the case the streaming pass must get right."""

from hypothesis import given, settings
from hypothesis import strategies as st

from simxen.analysis import certainty, hops
from simxen.xen.profile import Profile
from simxen.xen.trace import Record, Trace

MANAGER = 1
#: a TPM2_GetRandom(16) header, what the manager's TIS driver sends the chip
GET_RANDOM = bytes.fromhex("80010000000c0000017b0010")

PROFILE = Profile.load("default")


class _Causal:
    """Records with the records they follow; :meth:`records` numbers them in an emission
    order that respects that and lets each one out up to ``lag`` before its time."""

    def __init__(self, lags):
        self.items = []             # (t, kind, dom, fields, predecessors)
        self.last = {}              # dom -> index of its latest record
        self.lags = lags

    def add(self, t, kind, dom, after=None, **fields):
        preds = [p for p in (self.last.get(dom), after) if p is not None]
        self.items.append((t, kind, dom, fields, preds))
        self.last[dom] = len(self.items) - 1
        return len(self.items) - 1

    def records(self):
        keys = []
        for i, (t, _, _, _, preds) in enumerate(self.items):
            key = t - self.lags[i % len(self.lags)]
            for p in preds:
                key = max(key, keys[p] + 1e-9)
            keys.append(key)
        order = sorted(range(len(self.items)), key=lambda i: (keys[i], i))
        return [Record(seq, self.items[i][0], *self.items[i][1:4]) for seq, i in enumerate(order)]


@st.composite
def fleets(draw):
    """A causal trace of a few guests, each with a few commands, each with a few manager
    requests, each with a few physical-TPM commands."""
    delay = st.integers(1, 9).map(lambda n: n * 1e-4)
    lags = draw(st.lists(st.integers(0, 40).map(lambda n: n * 1e-4), min_size=1, max_size=7))
    trace = _Causal(lags)
    manager_clock = 0.0
    for g in range(draw(st.integers(1, 4))):
        guest, vtpm = 20 + g, 10 + g
        clock = draw(delay)
        for c in range(draw(st.integers(1, 3))):
            flow = f"g{g}/{c}"
            submit = clock + draw(delay)
            s = trace.add(submit, "tpm.front.submit", guest, flow=flow, cc=0x17E)
            t = submit + draw(delay)
            take = trace.add(t, "tpm.back.take", vtpm, after=s, flow=flow, domid=guest)
            took = t
            t += draw(delay)
            trace.add(t, "tpm.exec", vtpm, flow=flow, cc=0x17E, duration=draw(delay))
            for n in range(draw(st.integers(0, 2))):
                inner = f"{flow}/m{n}"
                t += draw(delay)
                # the frontend's copy before its submit -- after the vTPM took the command
                # it serves (the vTPM asks the manager while serving it)
                began = max(t - draw(delay) / 2, took + 1e-5)
                s2 = trace.add(t, "tpm.front.submit", vtpm, flow=inner, cc=0x0C)
                m = max(t + draw(delay), manager_clock)
                tk = trace.add(m, "tpm.back.take", MANAGER, after=s2, flow=inner, domid=vtpm)
                for _ in range(draw(st.integers(0, 2))):
                    m += draw(delay)
                    trace.add(m, "tis.go", MANAGER)
                    drawn = draw(delay)
                    trace.add(m + drawn / 2, "tpm.exec", None, command=GET_RANDOM, duration=drawn)
                    m += drawn + draw(delay)
                    trace.add(m, "tis.complete", MANAGER)
                m += draw(delay)
                r2 = trace.add(m, "tpm.back.respond", MANAGER, after=tk, flow=inner, domid=vtpm)
                manager_clock = m
                t = m + draw(delay)
                trace.add(t, "tpm.front.complete", vtpm, after=r2, flow=inner, rc=0,
                          latency=t - began)
            t += draw(delay)
            r = trace.add(t, "tpm.back.respond", vtpm, after=take, flow=flow, domid=guest)
            clock = t + draw(delay)
            trace.add(clock, "tpm.front.complete", guest, after=r, flow=flow, rc=0,
                      latency=clock - submit + draw(delay) / 2)
    return trace.records()


def _key(reqs):
    at = {id(q): i for i, q in enumerate(reqs)}
    return [(q.flow, q.front_dom, q.submit, q.cc, q.back_dom, q.take, q.respond, q.complete,
             q.rc, q.cancelled, [at[id(c)] for c in q.children], list(q.ptpm),
             at.get(id(q.parent))) for q in reqs]


def _by_time(records):
    return sorted(records, key=lambda r: (r.t, r.seq))


@settings(max_examples=60, deadline=None)
@given(fleets())
def test_matching_in_time_order_is_matching_in_emission_order(records):
    expected = hops.requests(records)
    matching = hops.Matching()
    for r in _by_time(records):
        matching.add(r)
    assert _key(matching.requests()) == _key(expected)
    assert any(q.parent is not None for q in expected) or not any(
        r.dom == MANAGER for r in records)


@settings(max_examples=60, deadline=None)
@given(fleets())
def test_the_streamed_attribution_gives_the_same_figures(records):
    """One pass over the trace's records as they stream by == the records in memory and
    their requests matched in emission order (the pass before it streamed): every
    command's split, every hop's total, the manager's service and the windows, exactly."""
    in_memory = _by_time(records)
    before = certainty.Attribution(in_memory, PROFILE, requests=hops.requests(records))
    streamed = certainty.Attribution(iter(in_memory), PROFILE)
    assert streamed.commands == before.commands
    assert streamed.hop_totals == before.hop_totals
    guests = {r.dom for r in records if r.kind == "tpm.front.submit" and r.dom >= 20}
    flows = [r.fields["flow"] for r in records if r.kind == "tpm.front.submit"]
    assert streamed.service_share(MANAGER, flows) == before.service_share(MANAGER, flows)
    end = max(r.t for r in records) + 1
    spans = [(0.0, end, {g}) for g in guests] + [(0.0, end / 2, guests)]
    assert streamed.windows(spans) == before.windows(spans)


def test_a_trace_reads_several_families_in_one_pass():
    trace = Trace(level="full")
    for t, kind in enumerate(("tpm.exec", "tis.go", "tpmx.other", "tis", "xs.read")):
        trace.emit(kind, float(t), 0)
    assert [r.kind for r in trace.iter_records(("tpm", "tis"))] == ["tpm.exec", "tis.go", "tis"]
    assert [r.kind for r in trace.iter_records("tis")] == ["tis.go", "tis"]


def _windows_one_by_one(attr, spans):
    """:meth:`Attribution.windows` as it was written first: every command of every
    domain of a span looked at (the reference its bisect must equal, float for float)."""
    u = time = 0.0
    rest_u = not PROFILE.has("net.link") or PROFILE.op("net.link").certainty == "U"
    for start, end, doms in spans:
        span = end - start
        if span <= 0:
            continue
        cu = ctotal = 0.0
        for dom in doms:
            for t0, t1, parts in attr.commands_of(dom):
                if start - 1e-12 <= t0 and t1 <= end + 1e-12:
                    cu += parts["U"]
                    ctotal += parts["V"] + parts["P"] + parts["U"]
        u += min(span, cu + (max(0.0, span - ctotal) if rest_u else 0.0))
        time += span
    return u / time if time > 0 else None


@settings(max_examples=60, deadline=None)
@given(fleets(), st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1), st.integers(0, 3)),
                          min_size=1, max_size=8))
def test_windows_bisect_is_the_scan_of_every_command(records, cuts):
    attr = certainty.Attribution(_by_time(records), PROFILE)
    end = max(r.t for r in records) + 1e-3
    guests = sorted({r.dom for r in records if r.kind == "tpm.front.submit" and r.dom >= 20})
    spans = [(a * end, b * end, set(guests[g:g + 2])) for a, b, g in cuts]
    # and spans exactly around each command (its edges inside the 1e-12 slack)
    spans += [(t0, t1, {dom}) for dom in guests for t0, t1, _ in attr.commands_of(dom)]
    assert attr.windows(spans) == _windows_one_by_one(attr, spans)
    for span in spans:
        assert attr.window(*span) == _windows_one_by_one(attr, [span])


def test_windows_of_commands_not_in_submit_order_look_at_each():
    """Two commands of one guest, the second (in emission order) submitted earlier -- its
    latency counts from before the first's -- are both found in a window around them."""
    t = Trace()
    for flow, submit, end, latency in (("a", 1.0, 2.0, 1.0), ("b", 1.1, 1.5, 1.0)):
        t.emit("tpm.front.submit", submit, 20, flow=flow, cc=0x17E)
        t.emit("tpm.back.take", submit + 0.1, 10, flow=flow, domid=20)
        t.emit("tpm.back.respond", end - 0.1, 10, flow=flow, domid=20)
        t.emit("tpm.front.complete", end, 20, flow=flow, rc=0, latency=latency)
    attr = certainty.Attribution.of_trace(t, PROFILE)
    assert [c[0] for c in attr.commands_of(20)] == [1.0, 0.5]
    spans = [(0.5, 2.0, {20}), (0.4, 1.6, {20}), (0.9, 2.0, {20}), (0.0, 0.7, {20})]
    assert attr.windows(spans) == _windows_one_by_one(attr, spans)
    assert attr.window(0.4, 1.6, {20}) != attr.window(0.9, 1.6, {20})


@settings(max_examples=40, deadline=None)
@given(fleets(), st.integers(2, 9))
def test_of_a_spilled_trace_gives_the_figures_of_its_records(records, buffer):
    """``Attribution.of_trace`` reads the requests' kinds and the executions in two reads
    of a spilled trace: the same figures as one pass over the records in memory."""
    trace = Trace(buffer_rows=buffer)
    for r in records:                           # (records are in emission order)
        trace.emit(r.kind, r.t, r.dom, **r.fields)
        trace.emit("vtpm.save", r.t, r.dom, flow="x")     # a kind the pass does not read
    expected = certainty.Attribution(records, PROFILE)
    got = certainty.Attribution.of_trace(trace, PROFILE)
    assert got.commands == expected.commands
    assert got.hop_totals == expected.hop_totals
    guests = {r.dom for r in records if r.kind == "tpm.front.submit" and r.dom >= 20}
    end = max(r.t for r in records) + 1
    spans = [(0.0, end, {g}) for g in guests] + [(0.0, end / 2, guests)]
    assert got.windows(spans) == expected.windows(spans)


def test_released_requests_are_freed_without_the_cyclic_collector():
    """A nested request and its parent point at each other; hops.release unlinks them, so
    the list is freed by reference counts when dropped (the end-of-run passes rely on it:
    a young collection walking every request cost 0.4 s at 1,000 guests)."""
    import gc
    records = _causal_example()
    gc.collect()
    gc.disable()
    try:
        reqs = hops.requests(records)
        assert any(q.parent is not None for q in reqs)
        del reqs
        assert gc.collect() > 0                 # (the test can fail: cycles are there)
        reqs = hops.requests(records)
        top = [q for q in reqs if q.parent is None and q.done]
        times = [dict(hops.hop_times(q)) for q in top]
        # the same requests matched again, released before they are split (hop_times
        # keeps a request's split: one split before the release would be read back)
        again = hops.requests(records)
        top_again = [q for q in again if q.parent is None and q.done]
        hops.release(again)
        assert [hops.hop_times(q) for q in top_again] == times
        assert all(q.parent is None for q in again)
        hops.release(reqs)
        del reqs, top, again, top_again
        assert gc.collect() == 0
    finally:
        gc.enable()


def _causal_example():
    """One guest command served by a vTPM that asks the manager, which drives the chip."""
    trace = _Causal([0.0])
    s = trace.add(1.0, "tpm.front.submit", 20, flow="g", cc=0x17E)
    take = trace.add(1.1, "tpm.back.take", 10, after=s, flow="g", domid=20)
    s2 = trace.add(1.2, "tpm.front.submit", 10, flow="m", cc=0x0C)
    tk = trace.add(1.3, "tpm.back.take", MANAGER, after=s2, flow="m", domid=10)
    trace.add(1.35, "tis.go", MANAGER)
    trace.add(1.4, "tis.complete", MANAGER)
    r2 = trace.add(1.5, "tpm.back.respond", MANAGER, after=tk, flow="m", domid=10)
    trace.add(1.6, "tpm.front.complete", 10, after=r2, flow="m", rc=0, latency=0.4)
    r = trace.add(1.7, "tpm.back.respond", 10, after=take, flow="g", domid=20)
    trace.add(1.8, "tpm.front.complete", 20, after=r, flow="g", rc=0, latency=0.8)
    return trace.records()


@settings(max_examples=40, deadline=None)
@given(fleets(), st.integers(2, 9))
def test_of_trace_with_the_callers_requests_reads_only_the_executions(records, buffer):
    """``of_trace(requests=...)`` -- what vtpm-stack does, having matched the requests
    itself -- gives the figures ``of_trace`` matching them gives, and leaves the caller's
    requests linked (the caller releases them once it has read them)."""
    trace = Trace(buffer_rows=buffer)
    for r in records:                           # (records are in emission order)
        trace.emit(r.kind, r.t, r.dom, **r.fields)
    expected = certainty.Attribution.of_trace(trace, PROFILE)
    matching = hops.Matching()
    matching.add_all(trace.iter_records(kinds=hops.READS))
    reqs = matching.requests()
    nested = [q for q in reqs if q.parent is not None]
    got = certainty.Attribution.of_trace(trace, PROFILE, requests=reqs)
    assert got.commands == expected.commands
    assert got.hop_totals == expected.hop_totals
    assert all(q.parent is not None for q in nested)
    hops.release(reqs)

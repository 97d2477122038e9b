"""simxen.analysis.hops: per-hop latency put back together from trace records."""

import json

import pytest
from hypothesis import given, settings, strategies as st

from simxen.analysis import hops, trace_format
from simxen.errors import InputError
from simxen.tpm import client
from simxen.tpm.constants import TPM_CC
from simxen.xen.trace import Record

from stack_rig import PTPM_BUSY, StackRig, extend_command

COMMANDS = [client.startup_command(), client.get_random_command(8), extend_command()]


def run_rig(**kw):
    rig = StackRig(**kw)
    rig.run_commands(COMMANDS)
    return rig


def test_hops_add_up_to_the_guests_round_trip():
    rig = run_rig()
    cmds = hops.command_hops(rig.hv.trace.records())
    assert [c.cc for c in cmds] == [TPM_CC.Startup, TPM_CC.GetRandom, TPM_CC.PCR_Extend]
    completes = [r for r in rig.hv.trace.select("tpm.front.complete") if r.dom == rig.guest.domid]
    for c, done in zip(cmds, completes):
        assert c.dom == rig.guest.domid and c.rc == 0
        assert sum(c.hops.values()) == pytest.approx(c.total, abs=1e-12)
        assert c.total == pytest.approx(done.fields["latency"], abs=1e-12)
        assert all(v >= 0 for v in c.hops.values())


def test_only_the_extend_reaches_the_manager_and_the_physical_tpm():
    startup, rand, extend = hops.command_hops(run_rig().hv.trace.records())
    for c in (startup, rand):
        assert (c.manager_requests, c.ptpm_commands) == (0, 0)
        assert c.hops["manager"] == c.hops["ptpm"] == 0
    assert (extend.manager_requests, extend.ptpm_commands) == (1, 1)
    assert extend.hops["ptpm"] == pytest.approx(PTPM_BUSY)
    assert extend.hops["manager"] > 0


def test_the_manager_requests_are_not_commands_of_their_own():
    rig = run_rig()
    reqs = hops.requests(rig.hv.trace.records())
    vtpm_reqs = [r for r in reqs if r.front_dom == rig.vtpm.domid]
    assert len(vtpm_reqs) == 1 and vtpm_reqs[0].done
    assert {c.flow for c in hops.command_hops(rig.hv.trace.records())} == \
        {"guest1/vtpm0/1", "guest1/vtpm0/2", "guest1/vtpm0/3"}


def test_a_request_is_split_once_and_hops_of_reads_that_split():
    """hop_times keeps a request's split (a workload's per-hop figures and its certainty
    split both ask for it): the same dict again, equal to a split of the same request
    matched afresh, and the one hops_of's CommandHops carries."""
    records = run_rig().hv.trace.records()
    reqs = [q for q in hops.requests(records) if q.parent is None and q.done]
    fresh = [q for q in hops.requests(records) if q.parent is None and q.done]
    for q, other in zip(reqs, fresh):
        times = hops.hop_times(q)
        assert hops.hop_times(q) is times
        assert hops.hops_of(q).hops is times
        assert hops.hops_of(other).hops == times      # (other: split by hops_of first)
        assert hops.hop_times(other) is hops.hops_of(other).hops
    assert any(hops.hop_times(q)["manager"] > 0 for q in reqs)


def test_nesting_does_not_depend_on_how_flows_are_named():
    own = hops.command_hops(run_rig(flow_mode="own").hv.trace.records())
    same = hops.command_hops(run_rig(flow_mode="same").hv.trace.records())
    assert [c.hops for c in own] == [c.hops for c in same]
    assert [c.manager_requests for c in same] == [0, 0, 1]


def test_the_poll_grid_shows_up_in_back_to_front():
    poll = hops.command_hops(run_rig().hv.trace.records())
    irq = hops.command_hops(run_rig(switches={"tpmfront.wait": "interrupt"}).hv.trace.records())
    for p, i in zip(poll, irq):
        assert p.total >= 0.0047                  # at least one linux-6 usleep_range(4700, 5000)
        assert p.hops["back_to_front"] > i.hops["back_to_front"]
        assert i.hops["back_to_front"] < 0.0005


def test_flows_filter_picks_one_command():
    records = run_rig().hv.trace.records()
    (only,) = hops.command_hops(records, flows=["guest1/vtpm0/2"])
    assert only.name == "TPM2_GetRandom" and only.rc_text == "TPM_RC_SUCCESS"


def test_a_command_still_in_flight_is_not_reported():
    rig = run_rig()
    records = rig.hv.trace.records()
    last_complete = max(i for i, r in enumerate(records) if r.kind == "tpm.front.complete")
    cmds = hops.command_hops(records[:last_complete])
    assert [c.cc for c in cmds] == [TPM_CC.Startup, TPM_CC.GetRandom]


def test_two_guests_are_told_apart():
    rig = StackRig(guests=2)
    rig.run_commands([extend_command(data=b"a")], guest=rig.guests[0])
    rig.run_commands([extend_command(data=b"b")], guest=rig.guests[1])
    cmds = hops.command_hops(rig.hv.trace.records())
    assert [c.dom for c in cmds] == [g.domid for g in rig.guests]
    assert [c.flow for c in cmds] == ["guest1/vtpm0/1", "guest2/vtpm0/1"]
    assert all(c.manager_requests == 1 for c in cmds)
    assert all(v >= 0 for c in cmds for v in c.hops.values())


def test_jsonl_export_reads_back_to_the_same_hops(tmp_path):
    rig = run_rig()
    path = tmp_path / "trace.jsonl"
    with open(path, "w") as f:
        rig.hv.trace.to_jsonl(f)
    from_file = hops.command_hops(hops.load(path))
    in_memory = hops.command_hops(rig.hv.trace.records())
    assert from_file == in_memory


def test_a_broken_trace_file_names_the_file_and_line(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"t": 0.0, "kind": "x", "dom": 0, "seq": 0}\n{"t": 1.0, oops\n')
    with pytest.raises(InputError, match=r"t\.jsonl: line 2: not JSON"):
        hops.load(path)
    path.write_text('{"kind": "x"}\n')
    with pytest.raises(InputError, match="line 1: not a trace record"):
        hops.load(path)
    for bad in ('[1, 2]', '{"t": "0", "kind": "x", "dom": 0}', '{"t": 0, "kind": "x", "dom": 0, "seq": "a"}'):
        path.write_text(bad + "\n")
        with pytest.raises(InputError, match="line 1: not a trace record"):
            hops.load(path)
    with pytest.raises(InputError, match="cannot read trace"):
        hops.load(tmp_path / "missing.jsonl")


def test_aggregate_and_its_table():
    cmds = hops.command_hops(run_rig().hv.trace.records())
    agg = hops.aggregate(cmds)
    assert agg["total"]["count"] == 3
    assert agg["ptpm"]["max"] == pytest.approx(PTPM_BUSY)
    assert agg["ptpm"]["min"] == 0
    per = hops.aggregate(cmds, by_command=True)
    assert set(per) == {"TPM2_Startup", "TPM2_GetRandom", "TPM2_PCR_Extend"}
    assert per["TPM2_PCR_Extend"]["manager"]["count"] == 1
    table = hops.format_table(agg).splitlines()
    assert table[0].split()[:3] == ["hop", "count", "min"]
    assert [row.split()[0] for row in table[1:]] == \
        ["front->back", "vtpm", "manager", "ptpm", "back->front", "total"]
    assert hops.format_table(hops.aggregate([])).splitlines()[-1].split() == ["total", "0"]


def test_format_line_names_command_code_and_hops():
    line = hops.format_line(hops.command_hops(run_rig().hv.trace.records())[2])
    assert line.startswith("TPM2_PCR_Extend TPM_RC_SUCCESS total ")
    assert "front->back" in line and "back->front" in line
    assert line.endswith("(1 manager request, 1 physical TPM command)")


def _synthetic(durations):
    """Records of one guest command (dom 3) through a vTPM (dom 2) with ``n``
    manager round trips (dom 2 -> dom 1), each with one TIS span."""
    f2b, vtpm_parts, mgr_parts, b2f = durations
    rows = []
    t = 1.0

    def add(kind, dom, **fields):
        rows.append(Record(len(rows), t, kind, dom, fields))

    add("tpm.front.submit", 3, flow="g/1", cc=TPM_CC.PCR_Extend)
    t += f2b
    add("tpm.back.take", 2, flow="g/1", domid=3)
    for i, ((before, ring, ptpm), gap) in enumerate(zip(mgr_parts, vtpm_parts)):
        t += gap
        add("tpm.front.submit", 2, flow=f"v/{i}", cc=0x20000000)
        t += before
        add("tpm.back.take", 1, flow=f"v/{i}", domid=2)
        add("tis.go", 1)
        t += ptpm
        add("tis.complete", 1)
        add("tpm.back.respond", 1, flow=f"v/{i}", domid=2, rc=0)
        t += ring
        add("tpm.front.complete", 2, flow=f"v/{i}", rc=0)
    t += vtpm_parts[-1]
    add("tpm.back.respond", 2, flow="g/1", domid=3, rc=0)
    t += b2f
    add("tpm.front.complete", 3, flow="g/1", rc=0)
    return rows, t - 1.0


durations = st.floats(min_value=0.0, max_value=0.01, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(f2b=durations, b2f=durations,
       mgr=st.lists(st.tuples(durations, durations, durations), max_size=3),
       gaps=st.lists(durations, min_size=4, max_size=4))
def test_synthetic_commands_are_split_exactly(f2b, b2f, mgr, gaps):
    vtpm_parts = gaps[:len(mgr) + 1]
    rows, total = _synthetic((f2b, vtpm_parts, mgr, b2f))
    rows = list(reversed(rows))                      # order of the input does not matter
    (c,) = hops.command_hops(rows)
    assert c.flow == "g/1" and c.manager_requests == len(mgr) and c.ptpm_commands == len(mgr)
    assert c.total == pytest.approx(total, abs=1e-9)
    assert c.hops["front_to_back"] == pytest.approx(f2b, abs=1e-9)
    assert c.hops["back_to_front"] == pytest.approx(b2f, abs=1e-9)
    assert c.hops["ptpm"] == pytest.approx(sum(p for _, _, p in mgr), abs=1e-9)
    assert c.hops["manager"] == pytest.approx(sum(a + b for a, b, _ in mgr), abs=1e-9)
    assert c.hops["vtpm"] == pytest.approx(sum(vtpm_parts), abs=1e-9)


def test_load_accepts_what_as_dict_writes(tmp_path):
    rec = Record(0, 0.5, "tpm.front.submit", 1, {"flow": "f", "cc": 1, "cc_name": "X",
                                                 "backend": 2, "devid": 0, "length": 10,
                                                 "locality": 0})
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps(rec.as_dict()) + "\n\n")
    assert hops.load(path) == [rec]
    # a record short of what its kind holds is refused, by file, line and what is missing
    path.write_text(json.dumps(Record(0, 0.5, "tpm.front.submit", 1, {"flow": "f", "cc": 1})
                               .as_dict()) + "\n")
    with pytest.raises(InputError, match=r"one\.jsonl: line 1: not a tpm\.front\.submit record "
                                         r"as the trace schema has it: the record must contain"):
        hops.load(path)


_KINDS = ["tpm.front.submit", "tpm.back.take", "tpm.back.respond", "tpm.front.complete",
          "tis.go", "tis.complete", "evtchn.send"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_KINDS), st.integers(0, 3), st.sampled_from(["a", "b", None]),
                          st.integers(0, 3), durations, st.booleans()), max_size=40))
def test_any_jumble_of_records_is_analysed_without_error(rows):
    """Records in any order and combination (a truncated or hand-edited trace) never crash,
    and every command reported still adds up."""
    t = 0.0
    records = []
    for i, (kind, dom, flow, domid, dt, cancelled) in enumerate(rows):
        t += dt
        records.append(Record(i, t, kind, dom, {"flow": flow, "domid": domid, "cancelled": cancelled,
                                                 "rc": 0, "cc": TPM_CC.PCR_Extend}))
    for c in hops.command_hops(records):
        assert sum(c.hops.values()) == pytest.approx(c.total, abs=1e-9)
        hops.format_line(c)
    hops.format_table(hops.aggregate(hops.command_hops(records)))


def test_the_real_stacks_boot_requests_are_named_in_the_managers_protocol():
    """build_host's vTPM seeds itself through the manager (a TPM 1.2 GetRandom
    passthrough that the manager turns into a physical TPM2_GetRandom), asks for
    its (hash, key) and saves after TPM2_Startup: three commands of the vTPM
    domain, named and coded in the manager's protocol, the first on the physical TPM."""
    from pathlib import Path

    from simxen.domains.stack import HostSpec, build_host
    from simxen.scenario import scenario_file
    from simxen.scenario.runner import load_profile
    from simxen.xen import Hypervisor

    scenario = scenario_file.load(Path(__file__).resolve().parents[2] / "scenarios" /
                                  "vtpm-stack.toml")
    hv = Hypervisor(profile=load_profile(scenario), seed=1)
    host = build_host(hv, HostSpec.standard(guests=["guest1"]))
    hv.env.run(until=host.ready)
    records = hv.trace.records()
    vtpm = host.vtpm("vtpm-guest1").domid
    cmds = {c.name: c for c in hops.command_hops(records) if c.dom == vtpm}
    assert set(cmds) >= {"TPM_ORD_GetRandom", "VTPM_ORD_LOADHASHKEY", "VTPM_ORD_SAVEHASHKEY"}
    seed = cmds["TPM_ORD_GetRandom"]
    assert seed.manager_protocol and seed.rc_text == "TPM_SUCCESS" and seed.ptpm_commands == 1
    spans = [r for r in records if r.kind in ("tis.go", "tis.complete")
             and r.fields.get("flow") == seed.flow]
    assert seed.hops["ptpm"] == pytest.approx(spans[1].t - spans[0].t)
    assert cmds["VTPM_ORD_LOADHASHKEY"].rc_text == "TPM_BAD_PARAMETER"     # a first start
    assert cmds["VTPM_ORD_SAVEHASHKEY"].ptpm_commands == 0                 # disk only
    assert "TPM2_" not in hops.format_line(seed)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(
    st.builds(lambda t, seq: {"t": t, "kind": "x.y", "dom": 0, "seq": seq},
              st.floats(0, 1e3) | st.integers(0, 10**6) | st.booleans(),
              st.integers(0, 10**6) | st.booleans() | st.text(max_size=2)),
    st.just("not json"), st.just(""), st.just("[1]")), max_size=6))
def test_load_takes_what_a_trace_export_takes_and_names_the_first_bad_line(tmp_path_factory, lines):
    """``hops.load`` reads through the exports' reader: the same records, and for a bad
    line the same error, naming that line (a boolean time or seq is not a number)."""
    path = tmp_path_factory.mktemp("load") / "t.jsonl"
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    try:
        expected = trace_format.load(path)
    except InputError as exc:
        with pytest.raises(InputError) as got:
            hops.load(path)
        assert str(got.value) == str(exc)
        bad = next(i for i, x in enumerate(lines, 1)
                   if isinstance(x, str) and x.strip()
                   or isinstance(x, dict) and (isinstance(x["t"], bool) or not isinstance(x["seq"], int)
                                               or isinstance(x["seq"], bool)))
        assert f"line {bad}:" in str(exc)
        return
    records = hops.load(path)
    assert [(r.seq, r.t, r.kind, r.dom, r.fields) for r in records] == [
        (e["seq"], float(e["t"]), e["kind"], e["dom"], {}) for e in expected]


def test_the_table_splits_every_request_as_the_request_methods_define_it():
    """RequestTable's bulk split (numpy over every row) against the per-request
    definitions: Request.ptpm_time/ptpm_count, the completed children, and the hops a
    command's own sums give -- exactly equal floats, not approximately (a sum added in
    another order would differ in the last bit)."""
    records = run_rig().hv.trace.records()
    reqs = hops.requests(records)
    table = hops.RequestTable(reqs)
    h = table.hops()
    assert [reqs[i] for i in table.commands()] == [q for q in reqs if q.parent is None and q.done]
    assert any(q.children for q in reqs) and any(q.ptpm for q in reqs)
    for i, q in enumerate(reqs):
        assert int(h["ptpm_commands"][i]) == q.ptpm_count()
        if not q.done:
            continue
        done = [c for c in q.children if c.done]
        nested = nested_ptpm = 0
        for c in done:
            nested += c.complete - c.submit
            nested_ptpm += c.ptpm_time()
        own = sum([b - a for a, b in q.ptpm])
        assert h["vtpm"][i] == (q.respond - q.take) - nested - own
        assert h["manager"][i] == nested - nested_ptpm
        assert h["ptpm"][i] == nested_ptpm + own
        assert h["front_to_back"][i] == q.take - q.submit
        assert int(h["manager_requests"][i]) == len(done)


def test_a_flow_named_twice_is_tied_in_order():
    """A flow that comes again (a host reboot): each complete answers the submit just
    before it -- the bulk look-up could not tell them apart, the replay in order can."""
    recs = [Record(0, 0.0, "tpm.front.submit", 1, {"flow": "f", "cc": 1}),
            Record(1, 1.0, "tpm.front.complete", 1, {"flow": "f", "rc": 0, "latency": 0.5}),
            Record(2, 2.0, "tpm.front.submit", 1, {"flow": "f", "cc": 2}),
            Record(3, 4.0, "tpm.front.complete", 1, {"flow": "f", "rc": 7, "latency": 1.0})]
    first, second = hops.requests(recs)
    assert (first.cc, first.submit, first.complete, first.rc) == (1, 0.5, 1.0, 0)
    assert (second.cc, second.submit, second.complete, second.rc) == (2, 3.0, 4.0, 7)


def test_the_matching_keeps_the_kinds_asked_for_in_the_order_read():
    """Matching(keep=...) hands back the records of those kinds as they came (the
    certainty split's executions, read in the same pass as the requests)."""
    records = run_rig().hv.trace.records()
    wanted = {"tpm.exec", "tis.go"}
    matching = hops.Matching(keep=wanted)
    matching.add_all(records)
    assert matching.kept == [r for r in records if r.kind in wanted]
    assert matching.kept                        # (the rig's manager drives the chip)
    assert hops.Matching().kept == []
    assert [(q.flow, q.take) for q in matching.requests()] == \
        [(q.flow, q.take) for q in hops.requests(records)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.integers(-3, 40).map(float), st.just(float("nan"))),
                max_size=60))
def test_groups_are_what_a_comparison_per_distinct_value_finds(values):
    import numpy as np
    column = np.array(values, dtype=float)
    got = [(v, rows.tolist()) for v, rows in hops.groups(column)]
    finite = [(v, np.flatnonzero(column == v).tolist())
              for v in np.unique(column[~np.isnan(column)]).tolist()]
    assert [g for g in got if g[0] == g[0]] == finite          # (NaN != NaN)
    nans = [g for g in got if g[0] != g[0]]
    assert [rows for _, rows in nans] == [[i] for i in np.flatnonzero(np.isnan(column))]

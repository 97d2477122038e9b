"""Trace levels and spilling: what each level keeps, and that a trace whose rows
left memory exports the very bytes an in-memory one does."""

import tracemalloc

import pytest
from hypothesis import given, settings, strategies as st

from simxen.domains.pingpong import run_pingpong
from simxen.xen import Hypervisor
from simxen.xen.trace import LEVELS, PLUMBING, Trace


def pingpong(trace, requests=30):
    hv = Hypervisor(seed=11, trace=trace)
    front, back = hv.domain_create("front"), hv.domain_create("back")
    hv.env.process(run_pingpong(hv, front, back, requests=requests, window=4))
    hv.env.run()
    return hv.trace


def test_spilled_trace_exports_the_same_bytes():
    whole = pingpong(Trace())
    spilled = pingpong(Trace(buffer_rows=37))
    assert whole.spilled_runs() == 0 and spilled.spilled_runs() > 5
    assert spilled.dumps_jsonl() == whole.dumps_jsonl()
    assert spilled.records() == whole.records()
    assert spilled.select("evtchn") == whole.select("evtchn")
    assert len(spilled) == len(whole) == spilled.kept()


def test_a_read_of_some_kinds_gives_those_records_of_the_whole_read():
    """``iter_records(kinds=...)``: exactly the records of those kinds, in the same order,
    from a spilled trace as from one in memory."""
    whole = pingpong(Trace())
    spilled = pingpong(Trace(buffer_rows=37))
    kinds = {"evtchn.send", "page.write"}
    expected = [r for r in whole.records() if r.kind in kinds]
    assert expected and {r.kind for r in expected} == kinds
    assert list(spilled.iter_records(kinds=kinds)) == list(whole.iter_records(kinds=kinds)) == expected
    assert list(whole.iter_records(kinds=frozenset())) == []
    with pytest.raises(ValueError, match="prefix or kinds"):
        next(whole.iter_records("page", kinds=kinds))


def test_levels_keep_a_subset_with_the_same_seq_and_the_same_counts():
    full = pingpong(Trace())
    commands = pingpong(Trace(level="commands", buffer_rows=50))
    off = pingpong(Trace(level="off"))
    assert len(full) == len(commands) == len(off)
    for prefix in ("page", "evtchn", "gnttab", "xs", "evtchn.send"):
        assert full.count(prefix) == commands.count(prefix) == off.count(prefix) > 0
    assert off.kept() == 0 and off.records() == []
    kept = commands.records()
    assert kept == [r for r in full.records() if r.kind.split(".")[0] not in PLUMBING]
    assert not commands.keeps("page.write") and commands.keeps("tpm.front.submit")
    assert full.keeps("page.write") and not off.keeps("tpm.front.submit")


def test_unknown_level_is_refused():
    with pytest.raises(ValueError, match="full, commands, off"):
        Trace(level="some")
    assert LEVELS[0] == "full"


def test_memory_stays_bounded_by_the_buffer():
    """Ten times the records, about the same peak: the rows leave memory."""
    def peak(n):
        trace = Trace(buffer_rows=500)
        tracemalloc.start()
        for i in range(n):
            trace.emit("xs.write", i * 1e-6, 0, path=f"/local/domain/{i}/x", value="abcdefgh" * 4)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert len(trace) == n and trace.kept() == n
        trace.close()
        return top
    small, large = peak(2_000), peak(20_000)
    assert large < 2 * small


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.sampled_from(["a.x", "page.read", "b"]),
                          st.booleans()), max_size=120),
       st.integers(1, 9))
def test_merge_of_out_of_order_rows_is_sorted_by_time_then_emission(rows, buffer):
    plain, spilled = Trace(), Trace(buffer_rows=buffer)
    for trace in (plain, spilled):
        for t, kind, hot in rows:
            if hot:
                trace.row(t / 4, kind, 1, ("n", "absent"), t, None)
            else:
                trace.emit(kind, t / 4, None, n=t, data=b"\x00\x01")
    recs = spilled.records()
    assert recs == plain.records()
    assert [(r.t, r.seq) for r in recs] == sorted((r.t, r.seq) for r in recs)
    assert all("absent" not in r.fields for r in recs)


def test_cli_trace_level_commands_writes_the_full_trace_minus_plumbing(tmp_path, capsys):
    """``simxen run --trace FILE --trace-level commands``: the same lines as the full
    trace, less the plumbing; the report names the level and its figures are unchanged."""
    import json
    from pathlib import Path

    from simxen.cli import main
    scenario = str(Path(__file__).resolve().parents[2] / "scenarios" / "vtpm-stack.toml")
    full, cmds = tmp_path / "full.jsonl", tmp_path / "cmds.jsonl"
    assert main(["run", "--no-progress", "--json", "--trace", str(full), scenario]) == 0
    full_report = json.loads(capsys.readouterr().out)
    assert main(["run", "--no-progress", "--json", "--trace", str(cmds),
                 "--trace-level", "commands", scenario]) == 0
    cmds_report = json.loads(capsys.readouterr().out)
    full_lines = full.read_text().splitlines()
    kept = [line for line in full_lines
            if json.loads(line)["kind"].split(".")[0] not in PLUMBING]
    assert cmds.read_text().splitlines() == kept and len(kept) < len(full_lines)
    run = {title: rows for title, rows in
           ((s["title"], s["rows"]) for s in cmds_report["sections"])}["Run"]
    assert ["trace level", f"commands ({len(kept):,} records kept)"] in run
    assert full_report["metrics"] == cmds_report["metrics"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(["page.write", "evtchn.send", "tpm.exec", "xs.read"]),
                          st.just("read")), max_size=80),
       st.sampled_from(LEVELS), st.integers(2, 9))
def test_counts_read_while_recording_are_the_counts_of_every_record_so_far(steps, level, buffer):
    """Reading the counts (which tallies what was only counted) in the middle of a run
    neither loses nor counts twice a record: each read, and the end, give the exact tally."""
    trace, emitted = Trace(level=level, buffer_rows=buffer), {}
    for i, step in enumerate(steps):
        if step == "read":
            assert trace.counts() == emitted
            assert trace.count("page") == emitted.get("page.write", 0)
        else:
            trace.emit(step, i * 1e-6, 0, n=i)
            emitted[step] = emitted.get(step, 0) + 1
    assert trace.counts() == emitted and len(trace) == sum(emitted.values())


def _record(trace, kind, i):
    """One row of ``kind`` as a hot caller records it: through the kind's Recorder."""
    rec = trace.recorder(kind)
    if rec.keep:
        trace.keep_row(i * 1e-6, kind, 0, ("n",), (i,))
    else:
        rec.count()


@settings(max_examples=80, deadline=None)
@given(st.lists(st.one_of(
           st.tuples(st.just("row"), st.sampled_from(["page.write", "evtchn.send", "tpm.exec"])),
           st.tuples(st.just("emit"), st.sampled_from(["xs.read", "tpm.front.submit"])),
           st.tuples(st.sampled_from(["disable", "enable"]), st.sampled_from(["page", "tpm"])),
           st.tuples(st.just("read"), st.just(""))), max_size=80),
       st.sampled_from(LEVELS), st.integers(2, 9))
def test_rows_through_recorders_take_their_seq_and_count_as_emitted_rows_do(steps, level, buffer):
    """A Recorder's count is a row counted but not kept: it takes its place in the seq
    (the kept rows' seqs are those of a full trace of the same steps), counts() and
    len() see it, and disable/enable change what a recorder already handed out does."""
    trace, full = Trace(level=level, buffer_rows=buffer), Trace()
    emitted = {}
    for i, (step, kind) in enumerate(steps):
        if step in ("disable", "enable"):
            for t in (trace, full):
                getattr(t, step)(kind)
        elif step == "read":
            assert trace.counts() == emitted and len(trace) == len(full)
        else:
            for t in (trace, full):
                if step == "row":
                    _record(t, kind, i)
                else:
                    t.emit(kind, i * 1e-6, 0, n=i)
            if trace.enabled(kind):
                emitted[kind] = emitted.get(kind, 0) + 1
    assert trace.counts() == emitted == full.counts()
    assert len(trace) == len(full) == sum(emitted.values())
    kept_now = [r for r in full.records()
                if level == "full" or (level == "commands" and r.kind.split(".")[0] not in PLUMBING)]
    assert trace.records() == kept_now

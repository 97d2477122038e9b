"""The exports of ``simxen trace``: Perfetto timeline, sequence diagram, pcap, narration.

Perfetto's trace-event format is checked by :func:`simxen.analysis.perfetto.check`
for every shipped scenario (fields per phase, flows and async slices pair up,
timestamps monotonic per track, complete slices nest); the checker itself is
shown to catch each kind of breakage.
"""

import copy
import json
import re
import struct
import xml.etree.ElementTree as ET

import pytest

from simxen.analysis import narrate, pcap, perfetto, sequence
from simxen.cli import main


@pytest.mark.slow
def test_perfetto_export_of_every_shipped_scenario_passes_the_format_check(shipped_traces):
    for name, records in shipped_traces.items():
        doc = perfetto.build(records)
        assert perfetto.check(doc) == [], name
        phases = {e["ph"] for e in doc["traceEvents"]}
        assert {"M", "X"} <= phases, name
        named = [e["args"]["name"] for e in doc["traceEvents"] if e["name"] == "process_name"]
        assert any("(dom0)" in n for n in named), name


@pytest.mark.slow
def test_perfetto_draws_tpm_commands_flows_and_queues(shipped_traces):
    doc = perfetto.build(shipped_traces["boot-attest"])
    ev = doc["traceEvents"]
    procs = {e["args"]["name"] for e in ev if e["name"] == "process_name"}
    assert {"guest1 (dom3)", "vtpm-guest1 (dom2)", "vtpmmgr (dom1)", "physical TPM"} <= procs
    assert any(e["ph"] == "b" and e["name"] == "TPM2_PCR_Extend" for e in ev)
    assert any(e["ph"] == "X" and e["cat"] == "tpm.exec" and e["name"] == "TPM2_Quote" for e in ev)
    assert sum(e["ph"] == "s" and e["cat"] == "evtchn" for e in ev) > 50
    assert any(e["ph"] == "s" and e["cat"] == "gnttab" for e in ev)
    assert any(e["ph"] == "C" and e["name"] == "tpmback queue" for e in ev)
    ring = perfetto.build(shipped_traces["ring-pingpong"])["traceEvents"]
    assert max(e["args"]["requests"] for e in ring if e["ph"] == "C") >= 1


@pytest.mark.slow
def test_perfetto_check_catches_broken_documents(shipped_traces):
    good = perfetto.build(shipped_traces["boot-attest"])
    ev = good["traceEvents"]

    def broken(mutate):
        doc = copy.deepcopy(good)
        mutate(doc["traceEvents"])
        return perfetto.check(doc)

    first = lambda events, ph: next(i for i, e in enumerate(events) if e["ph"] == ph)  # noqa: E731
    assert any("missing dur" in p for p in broken(lambda e: e[first(e, "X")].pop("dur")))
    assert any("without a start" in p or "never finishes" in p
               for p in broken(lambda e: e.pop(first(e, "s"))))
    assert any("never ends" in p for p in broken(lambda e: e.pop(first(e, "e"))))

    def backwards(events):
        i = first(events, "X")
        j = next(k for k in range(len(events) - 1, i, -1)
                 if events[k]["ph"] == "X" and (events[k]["pid"], events[k]["tid"]) ==
                 (events[i]["pid"], events[i]["tid"]))
        events[j]["ts"] = events[i]["ts"] - 1
    assert any("goes back" in p for p in broken(backwards))
    assert perfetto.check({"traceEvents": [{"ph": "Q"}]}) == ["event 0: unknown phase 'Q'"]
    assert len(ev) == len(good["traceEvents"])


@pytest.mark.slow
def test_perfetto_is_deterministic(shipped_traces):
    records = shipped_traces["vtpm-stack"]
    assert perfetto.dumps(records) == perfetto.dumps(list(records))


@pytest.mark.slow
def test_sequence_of_one_command_is_valid_svg_and_mermaid(shipped_traces):
    records = shipped_traces["boot-attest"]
    msgs = sequence.messages(records, command="TPM2_PCR_Extend", nth=2)
    kinds = [m.kind for m in msgs]
    assert kinds[:4] == ["write", "write", "command", "notify"]     # page, header, submit, notify
    assert msgs[2].label == "TPM2_PCR_Extend (87 B)" and msgs[2].src == "guest1"
    assert "response" in kinds and "exec" in kinds
    assert msgs[-2].label.startswith("response TPM_RC_SUCCESS") and msgs[-2].dst == "guest1"
    assert msgs[-1].src == msgs[-1].dst == "guest1" and "reads the response" in msgs[-1].label
    root = ET.fromstring(sequence.svg(msgs, records, title="one"))
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert {"guest1", "vtpm-guest1", "vtpmmgr"} <= set(texts)
    assert "TPM2_PCR_Extend (87 B)" in texts
    mmd = sequence.mermaid(msgs, records)
    assert mmd.startswith("sequenceDiagram\n") and "participant p0 as guest1" in mmd
    assert mmd.count("->>") + mmd.count("Note over") == len(msgs)


@pytest.mark.slow
def test_sequence_filters(shipped_traces):
    records = shipped_traces["boot-attest"]
    everything = sequence.messages(records)
    assert {"grant", "map", "notify", "write", "xenstore", "command", "response", "exec"} <= {
        m.kind for m in everything}
    only = sequence.messages(records, domains=["guest1", "XenStore"])
    assert only and all({m.src, m.dst} <= {"guest1", "XenStore"} for m in only)
    t0 = next(r["t"] for r in records if r["kind"] == "tpm.front.submit")
    window = sequence.messages(records, start=t0, end=t0 + 0.02)
    assert window and all(t0 <= m.t <= t0 + 0.02 for m in window)
    from simxen.errors import InputError
    with pytest.raises(InputError, match="asked for number 99"):
        sequence.messages(records, command="TPM2_PCR_Extend", nth=99)


@pytest.mark.slow
def test_narration_tells_the_pcr_extend(shipped_traces):
    text = narrate.text(shipped_traces["boot-attest"])
    line = next(l for l in text.splitlines() if "guest1 tpmfront: wrote TPM2_PCR_Extend" in l)
    assert line.endswith("guest1 tpmfront: wrote TPM2_PCR_Extend (PCR 4, sha1, sha256) into gref 8 "
                         "at offset 8; notified port 1"), line
    assert " ms  " in line
    assert "pv-grub: measured the kernel" in text
    assert "verifier: round 1 for guest1: TRUSTED" in text
    assert "vtpm-guest1 vTPM: executed TPM2_Quote" in text
    verbose = narrate.text(shipped_traces["boot-attest"], verbose=True)
    assert len(verbose) > len(text) and "notified vtpm-guest1" in verbose


def test_describe_command_reads_the_real_parameters():
    from simxen.tpm import client
    from simxen.tpm.constants import TPM_ALG
    cmd = client.pcr_extend_command(4, {TPM_ALG.SHA256: bytes(32)})
    assert narrate.describe_command(cmd) == "PCR 4, sha256"
    assert narrate.describe_command(client.pcr_read_command({TPM_ALG.SHA256: [4, 5]})) == "sha256:4,5"
    assert narrate.describe_command(cmd[:20]) == ""              # cut short: no guess


@pytest.mark.slow
def test_pcap_frames_carry_the_tpm_bytes(shipped_traces):
    records = shipped_traces["boot-attest"]
    name, execs = pcap.select(records, "guest1")
    assert name == "vtpm-guest1" and execs
    data = pcap.to_bytes(execs)
    magic, major, minor, _, _, snap, link = struct.unpack_from("<IHHiIII", data)
    assert (magic, major, minor, link) == (0xA1B23C4D, 2, 4, 1)
    payloads, pos, last = [], 24, -1
    while pos < len(data):
        sec, nsec, incl, orig = struct.unpack_from("<IIII", data, pos)
        frame = data[pos + 16:pos + 16 + incl]
        t = sec * 10**9 + nsec
        assert t >= last and incl == orig
        last = t
        payloads.append(frame[14 + 20 + 20:])
        pos += 16 + incl
    first = execs[0]
    assert bytes.fromhex(first["command"]) in payloads
    assert bytes.fromhex(first["response"]) in payloads
    assert pcap.select(records, "physical")[0] == "physical"


@pytest.mark.slow
def test_cli_trace_formats(tmp_path, shipped_traces, capsys):
    trace = tmp_path / "t.jsonl"
    trace.write_text("".join(json.dumps(r, sort_keys=True) + "\n"
                             for r in shipped_traces["boot-attest"]))
    assert main(["trace", "--from", str(trace), "-f", "perfetto", "-o", str(tmp_path / "p.json")]) == 0
    assert perfetto.check(json.loads((tmp_path / "p.json").read_text())) == []
    assert main(["trace", "--from", str(trace), "-f", "sequence", "--command", "TPM2_PCR_Read",
                 "-o", str(tmp_path / "s.mmd")]) == 0
    assert (tmp_path / "s.mmd").read_text().startswith("sequenceDiagram")
    t0 = next(r["t"] for r in shipped_traces["boot-attest"] if r["kind"] == "tpm.front.submit")
    assert main(["trace", "--from", str(trace), "-f", "text", "--start", str(t0),
                 "--end", str(t0 + 0.1)]) == 0
    out = capsys.readouterr().out
    assert out and all(t0 * 1e3 - 1e-3 <= float(l.split()[0]) <= t0 * 1e3 + 100.001
                       for l in out.splitlines())
    assert main(["trace", "--from", str(trace), "-f", "pcap", "--tpm", "nobody", "-o",
                 str(tmp_path / "x.pcap")]) == 2
    assert "no TPM called 'nobody'" in capsys.readouterr().err
    assert main(["trace", "-f", "text"]) == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"kind": "x"}\n')
    assert main(["trace", "--from", str(bad), "-f", "text"]) == 2
    assert "line 1" in capsys.readouterr().err


def test_perfetto_names_only_the_threads_that_carry_events_however_many_vcpus():
    """A domain may have 8,192 vCPUs (Xen's MAX_VIRT_CPUS for a PV domain), but its
    events are drawn on vcpu0: a thread named for every vCPU made two such domains an
    export of 16,450 events (1.4 MB), 16,385 of them empty tracks. Now the tracks are
    exactly the threads events land on, plus vcpu0 of each domain, and the process's
    name says how many vCPUs the domain has."""
    from simxen.analysis import trace_format
    from simxen.scenario import runner, scenario_file
    docs = {}
    for vcpus in (1, 8192):
        sc = scenario_file.load("scenarios/ring-pingpong.toml", [
            "pingpong.requests=20", f"frontend.vcpus={vcpus}", f"backend.vcpus={vcpus}"])
        docs[vcpus] = perfetto.dumps(trace_format.from_trace(runner.run(sc).trace))
    one, many = docs[1], docs[8192]
    assert len(many) - len(one) == 2 * len(", 8192 vCPUs")       # the two names, no more
    doc = json.loads(many)
    assert perfetto.check(doc) == []
    ev = doc["traceEvents"]
    procs = {e["pid"]: e["args"]["name"] for e in ev if e["name"] == "process_name"}
    assert sorted(procs.values()) == ["Domain-0 (dom0)", "backend (dom2, 8192 vCPUs)",
                                      "frontend (dom1, 8192 vCPUs)"]
    threads = {(e["pid"], e["tid"]): e["args"]["name"] for e in ev if e["name"] == "thread_name"}
    drawn = {(e["pid"], e["tid"]) for e in ev if e["ph"] != "M"}
    assert set(threads) == drawn | {(pid, 0) for pid in procs}
    assert set(threads.values()) == {"vcpu0"}
    assert json.loads(one)["traceEvents"][len(procs) * 3:] == ev[len(procs) * 3:]


def test_exports_of_a_commands_level_trace_say_what_they_lack():
    """At trace level ``commands`` there are no event-channel or grant records: the
    Perfetto export is still well formed, says which families it found nothing of, and the
    pcap (tpm.exec is kept at that level) still has every command."""
    from simxen.analysis import trace_format
    from simxen.scenario import runner, scenario_file
    result = runner.run(scenario_file.load("scenarios/vtpm-stack.toml"), trace_level="commands")
    records = trace_format.from_trace(result.trace)
    doc = perfetto.build(records)
    assert perfetto.check(doc) == []
    assert doc["metadata"]["families without records (nothing drawn for them)"] == [
        "evtchn", "gnttab", "ring"]
    assert not any(e["ph"] == "s" for e in doc["traceEvents"])
    name, execs = pcap.select(records, "guest1")
    assert name == "vtpm-guest1" and len(execs) == sum(
        1 for r in records if r["kind"] == "tpm.exec" and r.get("dom_name") == "vtpm-guest1")
    assert [m.kind for m in sequence.messages(records)].count("command") > 0


def test_sequence_and_text_of_a_trace_without_what_they_draw_say_why(tmp_path, capsys):
    """A trace of ``--trace-level off`` (no records) or of a ring-only run at ``commands``
    (no TPM command, so no message): ``sequence`` said "no message is left after the
    filters" when no filter was given, and ``text`` printed nothing and exited 0."""
    scenario = tmp_path / "pp.toml"
    scenario.write_text(open("scenarios/ring-pingpong.toml").read()
                        .replace("requests = 2000", "requests = 20")
                        .replace("equals = 2000", "equals = 20"))
    for level in ("off", "commands"):
        trace = tmp_path / f"{level}.jsonl"
        if level == "off":
            # run refuses --trace at level off now; such files come from older runs
            assert main(["run", str(scenario), "--trace-level", level, "--trace",
                         str(trace)]) == 2
            trace.write_text("")
        else:
            assert main(["run", str(scenario), "--trace-level", level, "--trace",
                         str(trace)]) == 0
        capsys.readouterr()
        assert main(["trace", "--from", str(trace), "-f", "sequence",
                     "-o", str(tmp_path / "s.svg")]) == 2
        err = capsys.readouterr().err.strip()
        assert "filters" not in err and f"--trace-level {level}" in err, err
        assert err.startswith(f"simxen trace: {trace}: the trace holds no ")
    assert main(["trace", "--from", str(tmp_path / "off.jsonl"), "-f", "text"]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "the trace holds no records: a run killed before its trace's first write leaves none, "
        "as did one at --trace-level off (which simxen run now refuses to write); record it "
        "again")
    full = tmp_path / "full.jsonl"
    assert main(["run", str(scenario), "--trace-level", "full", "--trace", str(full)]) == 0
    assert main(["trace", "--from", str(full), "-f", "text", "--start", "1e6"]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "--start: no event is left after the filters")


def test_text_verbose_of_a_commands_level_trace_says_it_added_nothing(tmp_path, capsys):
    """``--verbose`` adds the notifications, grants, pages and XenStore writes; a trace of
    ``--trace-level commands`` keeps none, and the narration came out exactly as without
    ``--verbose``, saying nothing. Now a note says why; a full trace gets no note."""
    scenario = tmp_path / "vs.toml"
    scenario.write_text(open("scenarios/vtpm-stack.toml").read())
    note = "--verbose added nothing: the trace holds no notification, grant, page or XenStore"
    for level in ("commands", "full"):
        trace = tmp_path / f"{level}.jsonl"
        assert main(["run", str(scenario), "--trace-level", level, "--trace", str(trace),
                     "--set", "scenario.until=5"]) in (0, 1)
        capsys.readouterr()
        assert main(["trace", "--from", str(trace), "-f", "text", "--verbose",
                     "-o", str(tmp_path / f"{level}.txt")]) == 0
        err = capsys.readouterr().err
        assert (note in err and "--trace-level full" in err) == (level == "commands"), err


# -- what Mermaid's own parser and XML parsers refuse (tests/interop/test_mermaid_exports.py
#    has the real tools read these; these checks run without them) --------------------------

def _message(src="guest1", dst="vtpm-guest1", label="TPM2_PCR_Extend (87 B)", t=0.001,
             kind="command"):
    return sequence.Message(t, src, dst, label, kind)


def test_mermaid_writes_what_its_grammar_reads_as_syntax_as_entity_codes():
    """``#`` starts a Mermaid comment (the rest of the line vanished), ``;`` ends a
    statement, ``\\r`` a line, ``%%{`` opens a directive, ``<`` markup, ``&`` a reference."""
    msgs = [_message(src="a;b#c", label="x <br> & %%{init: {}}%% \r y; z #1"),
            _message(src="a;b#c", dst="a;b#c", label="note\x01", kind="exec")]
    text = sequence.mermaid(msgs, None, title="TPM2_PCR_Extend;#<x> (number 1)")
    lines = text.splitlines()
    assert lines[1] == "    title TPM2_PCR_Extend#59;#35;#60;x> (number 1)"
    assert lines[2] == "    participant p0 as a#59;b#35;c"
    assert lines[4] == ("    p0->>p1: 1.000 ms x #60;br> #38; #37;#37;{init: {}}#37;#37;   y#59; z "
                        "#35;1")
    assert lines[5] == "    Note over p0: 1.000 ms note\ufffd"
    assert len(lines) == 6                    # no line broken by the \r
    for line in lines[1:]:
        assert not set("#;%<&") & set(re.sub(r"#\d+;", "", line)), line


def test_svg_of_any_name_is_well_formed_xml():
    """A control character in a name (the hypervisor takes any non-empty string) made the
    SVG a document no XML parser reads; it is drawn as U+FFFD, a line break as a space."""
    msgs = [_message(src="a\x01b", dst="c\nd", label="x\x1b[0m & <y>"),
            _message(src="a\x01b", dst="a\x01b", label="\ud800 lone", kind="exec")]
    root = ET.fromstring(sequence.svg(msgs, None, title="t\x00"))
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert {"t\ufffd", "a\ufffdb", "c d", "x\ufffd[0m & <y>", "\ufffd lone"} <= set(texts)


def test_mermaid_of_a_long_run_is_cut_under_mermaids_limit_with_a_note():
    """mermaid.render draws a text over its maxTextSize (50,000) as 'Maximum text size in
    diagram exceeded': a longer diagram keeps its first messages and says what it left out."""
    msgs = [_message(t=i * 1e-3, label=f"TPM2_PCR_Extend (87 B) number {i}") for i in range(2000)]
    text, drawn = sequence.mermaid_drawn(msgs, None)
    assert len(text) <= sequence.MERMAID_MAX_TEXT < len(text) + 100
    assert 500 < drawn < 2000 and text.count("->>") == drawn
    last = text.splitlines()[-1]
    assert last == (f"    Note over p0,p1: {2000 - drawn} more messages from {drawn:.3f} ms to "
                    f"1999.000 ms not drawn: Mermaid draws at most 50,000 characters#59; narrow "
                    f"the diagram with --start/--end, --domain or --command")
    assert sequence.mermaid(msgs, None) == text
    assert sequence.mermaid_drawn(msgs[:10], None) == (sequence.mermaid(msgs[:10], None), 10)
    from simxen.errors import InputError
    with pytest.raises(InputError, match="not even the first message"):
        sequence.mermaid_drawn(msgs, None, limit=100)


def _svg_size(text):
    root = ET.fromstring(text)
    return int(root.get("width")), int(root.get("height")), root


def test_svg_of_a_long_run_is_cut_under_librsvgs_size_limit_with_a_note():
    """rsvg-convert (librsvg on cairo) refuses an image over 32,767 pixels high or wide:
    2,000 rows were 60,130 pixels high. A longer diagram keeps its first messages and
    says, in a last note, what it left out and how to narrow it -- as the Mermaid cut."""
    msgs = [_message(t=i * 1e-3, label=f"TPM2_PCR_Extend (87 B) number {i}") for i in range(2000)]
    text, drawn = sequence.svg_drawn(msgs, None, title="long")
    width, height, root = _svg_size(text)
    assert height <= sequence.SVG_MAX_PIXELS < height + 2 * 30 + 60
    assert 900 < drawn < 2000
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert f"TPM2_PCR_Extend (87 B) number {drawn - 1}" in texts
    assert f"TPM2_PCR_Extend (87 B) number {drawn}" not in texts
    note = " ".join(t.text for t in root.iter("{http://www.w3.org/2000/svg}text")
                    if t.get("class") == "cut-note")
    assert (f"{2000 - drawn} more messages from {drawn:.3f} ms to 1999.000 ms not drawn: "
            f"librsvg draws an image at most 32,767 pixels high or wide; narrow the diagram "
            f"with --start/--end, --domain or --command") in note
    assert sequence.svg(msgs, None, title="long") == text
    # a diagram that fits is drawn whole, without a note
    assert sequence.svg_drawn(msgs[:10], None) == (sequence.svg(msgs[:10], None), 10)
    assert "not drawn" not in sequence.svg(msgs[:10], None)
    from simxen.errors import InputError
    with pytest.raises(InputError, match="not even the first message"):
        sequence.svg_drawn(msgs, None, limit=100)


def test_svg_of_a_fleet_is_cut_under_librsvgs_width_limit():
    """Each lifeline is 240 pixels wide: 200 guests' were 48,130 pixels wide."""
    msgs = [_message(src=f"guest{i}", dst="vtpmmgr", t=i * 1e-3) for i in range(200)]
    text, drawn = sequence.svg_drawn(msgs, None)
    width, height, root = _svg_size(text)
    assert width <= sequence.SVG_MAX_PIXELS < width + 240
    assert 100 < drawn < 200
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert f"guest{drawn - 1}" in texts and f"guest{drawn}" not in texts
    note = " ".join(t.text for t in root.iter("{http://www.w3.org/2000/svg}text")
                    if t.get("class") == "cut-note")
    assert note.startswith(f"{200 - drawn} more messages from ")


def test_a_trace_stopped_before_anything_happened_is_not_blamed_on_its_level(tmp_path, capsys):
    # was: "a run at --trace-level commands keeps only the TPM command records" for a full
    # trace of a run stopped at boot: five records, domain.create and XenStore writes
    trace = tmp_path / "short.jsonl"
    assert main(["run", "scenarios/many-guests.toml", "--set", "scenario.until=1e-6",
                 "--trace", str(trace)]) == 1
    capsys.readouterr()
    assert main(["trace", "--from", str(trace), "-f", "text"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--trace-level" not in err
    assert re.search(r"the trace holds no events to narrate: its \d+ records are \d+ "
                     r"domain\.create, .*\d+ xs\.write -- the run ended before there was more "
                     r"to show", err), err

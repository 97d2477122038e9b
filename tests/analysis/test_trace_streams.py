"""The trace read as a stream (``trace_format.TraceFile`` / ``TraceRecords``): the same
records and the same errors as reading the whole text, one record in memory at a time,
and every export of ``simxen trace`` the same bytes from a stream as from a list."""

import io
import json
import random
import struct
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from simxen.analysis import narrate, pcap, perfetto, sequence, trace_format
from simxen.errors import InputError
from simxen.scenario import runner, scenario_file
from simxen.xen.trace import Trace


def whole_text_load(path):
    """What ``trace_format.load`` did before it streamed: the whole text, then its lines."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read trace: {exc.strerror}", path=path) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (byte {exc.start})", path=path) from None
    return trace_format.loads(text, path=path)


def outcome(read, path):
    try:
        return "ok", read(path)
    except InputError as exc:
        return "error", str(exc)


def record_line(t, seq, kind, text):
    return json.dumps({"t": t, "seq": seq, "kind": kind, "dom": 1, "note": text},
                      sort_keys=True, ensure_ascii=False)


pieces = st.one_of(
    st.builds(record_line, st.integers(0, 5), st.integers(0, 9), st.sampled_from(["a", "b.c"]),
              st.text(st.sampled_from("ab\u2028\u2029\x85é€"), max_size=3)),
    st.sampled_from(["", " ", "{", "[]", '{"t": 1}', '{"t": true, "kind": "k", "dom": 1}',
                     '{"t": 1, "kind": "k", "dom": null}', "\ufeff{}"]),
)
newlines = st.sampled_from(["\n", "\r\n", "\r", "\x0b", "\u2028"])
files = st.tuples(st.lists(st.tuples(pieces, newlines), max_size=12),
                  st.sampled_from([b"", b"\xff", b"\xe2\x82", b"\xc3("]),
                  st.integers(0, 12), st.booleans())


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files)
def test_a_file_read_line_by_line_gives_what_the_whole_text_gave(tmp_path, case):
    """Same records, or the same error naming the same line (or byte): blank lines,
    every line break ``str.splitlines`` knows, lines that are not JSON or not records,
    bytes that are not UTF-8 (reported before a bad line that comes earlier)."""
    lines, bad_bytes, where, last_newline = case
    data = b"".join((text + nl).encode("utf-8") for text, nl in lines)
    if not last_newline and data.endswith(b"\n"):
        data = data[:-1]
    cut = min(len(data), where * 7)
    path = tmp_path / "t.jsonl"
    path.write_bytes(data[:cut] + bad_bytes + data[cut:])
    want = outcome(whole_text_load, path)
    stream = trace_format.TraceFile(path)
    assert outcome(lambda p: list(stream), path) == want
    assert outcome(trace_format.load, path) == want
    if want[0] == "ok":
        keys = [(r["t"], r.get("seq")) for r in want[1]]
        assert stream.ordered == (None not in {k[1] for k in keys} and keys == sorted(keys))


def test_a_missing_file_and_a_folder_are_errors_naming_them(tmp_path):
    for path in (tmp_path / "none.jsonl", tmp_path):
        assert outcome(lambda p: list(trace_format.TraceFile(p)), path) == \
            outcome(whole_text_load, path)


def test_a_file_is_read_without_its_whole_text_in_memory(tmp_path):
    """A 4 MB trace file: reading it as a stream peaks at a few records' worth."""
    path = tmp_path / "big.jsonl"
    with path.open("w") as f:
        for i in range(20000):
            f.write(record_line(i, i, "a", "x" * 150) + "\n")
    size = path.stat().st_size
    tracemalloc.start()
    try:
        n = sum(1 for _ in trace_format.TraceFile(path))
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        whole = len(trace_format.loads(path.read_text()))
        _, peak_whole = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == whole == 20000
    assert peak < size / 50 and peak_whole > size


def test_a_live_trace_is_read_record_by_record_without_its_export_text(monkeypatch):
    trace = Trace(buffer_rows=64)
    for i in range(3000):
        trace.emit("page.write", i / 1000, i % 3, offset=i % 4000, length=2, gfn=i,
                   what="x" * 100, data=b"\x01\x02")
    want = trace_format.loads(trace.dumps_jsonl())
    monkeypatch.setattr(Trace, "dumps_jsonl", None)      # not the whole text, ever
    stream = trace_format.TraceRecords(trace)
    assert list(stream) == want and list(stream) == want        # read again: the same
    tracemalloc.start()
    try:
        assert sum(1 for _ in stream) == 3000
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < len("".join(map(json.dumps, want))) / 10


@pytest.fixture(scope="module")
def vtpm_stack(tmp_path_factory):
    """vtpm-stack's run, its trace file in order, and the same lines shuffled."""
    result = runner.run(scenario_file.load("scenarios/vtpm-stack.toml"), trace_level="full")
    folder = tmp_path_factory.mktemp("streams")
    path, shuffled = folder / "t.jsonl", folder / "shuffled.jsonl"
    text = result.trace.dumps_jsonl()
    path.write_text(text)
    lines = text.splitlines(keepends=True)
    random.Random(1).shuffle(lines)
    shuffled.write_text("".join(lines))
    return result.trace, path, shuffled


def exports(records):
    """Every export's output, from ``records`` (a list or a stream)."""
    out = io.StringIO()
    narrate.write(records, out, verbose=True)
    t0 = 7.5            # (seconds) the guest's commands
    msgs = sequence.messages(records, command="TPM2_PCR_Extend", nth=2)
    return {
        "text": out.getvalue(),
        "text window": narrate.text(records, start=t0, end=t0 + 1, domains=["guest1"]),
        "perfetto": perfetto.dumps(records),
        "perfetto window": perfetto.dumps(trace_format.Window(records, t0, t0 + 1)),
        "sequence": sequence.mermaid(sequence.messages(records), records),
        "sequence command": sequence.svg(msgs, records, title="x"),
        "pcap guest1": pcap.to_bytes(pcap.select(records, "guest1")[1]),
        "pcap first": pcap.select(records)[0],
        "pcap physical": pcap.to_bytes(pcap.select(records, "physical")[1]),
    }


@pytest.mark.slow
def test_every_export_of_a_stream_is_the_export_of_the_list(vtpm_stack):
    trace, path, shuffled = vtpm_stack
    want = exports(trace_format.load(path))
    assert want["text"] and want["text window"] and len(want["perfetto"]) > 10000
    assert exports(trace_format.TraceRecords(trace)) == want
    assert exports(trace_format.TraceFile(path)) == want
    # a file out of time order is sorted (in memory), as a list is
    assert exports(trace_format.TraceFile(shuffled)) == exports(trace_format.load(shuffled))


def test_an_export_of_a_stream_holds_no_list_of_its_records(vtpm_stack, monkeypatch):
    """Narrating a trace file reads it line by line, twice: what the narration keeps
    between the readings is the domains' names and a few words a command, far less
    than the records (a list of them, as before, is several times the file)."""
    _, path, _ = vtpm_stack
    size = path.stat().st_size
    stream = trace_format.TraceFile(path)
    for _ in stream:        # read to the end once: checked by the schema (a record at a time,
        pass                # but the check of a long hex field costs its regex a moment's memory)
    tracemalloc.start()
    try:
        n = narrate.write(stream, Discard())
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        narrate.write(trace_format.load(path), Discard())
        _, peak_list = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n > 100
    assert peak < size / 10 < peak_list / 10


class Discard:
    """A text file that forgets what is written to it."""

    def write(self, text):
        return len(text)


@pytest.mark.parametrize("fmt", ["text", "perfetto", "sequence", "pcap"])
def test_a_bad_line_is_reported_before_an_export_trips_on_an_earlier_record(tmp_path, fmt,
                                                                             capsys):
    """A stream is read by the export itself; a record it cannot use (a domain.create
    without its name) is refused by the reading, by its line, before the export trips
    on it -- and the first bad line is the one named, as a reading of the whole file
    first gives it."""
    from simxen.cli import main
    path = tmp_path / "t.jsonl"
    path.write_text('{"t": 0, "seq": 0, "kind": "domain.create", "dom": 0}\n'
                    '{"t": 1, "seq": 1, "kind": "tpm.exec", "dom": null, "command": "00"}\n'
                    'not json\n')
    assert main(["trace", "--from", str(path), "-f", fmt, "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"{path}: line 1: not a domain.create record as the trace schema has it" in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()
    path.write_text('{"t": 0, "seq": 0, "kind": "domain.create", "dom": 0, "dom_name": "d0", '
                    '"domid": 0, "name": "d0", "privileged": true, "vcpus": 1}\n'
                    'not json\n')
    assert main(["trace", "--from", str(path), "-f", fmt, "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"{path}" in err and "line 2" in err and "not JSON" in err
    assert not (tmp_path / "out").exists()


#: values a file from anywhere may hold where a record's field should be
_ANY_JSON = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                      st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6),
                      st.just("\ud800"),
                      st.lists(st.integers(0, 3), max_size=2),
                      st.dictionaries(st.text(max_size=2), st.integers(), max_size=1))
_EXPORT_SUFFIX = {"text": ".txt", "perfetto": ".json", "sequence": ".svg", "pcap": ".pcap",
                  "mermaid": ".mmd"}


@pytest.fixture(scope="module")
def small_stack_lines(tmp_path_factory):
    """The lines of a short vtpm-stack trace: TPM commands, pages, grants, notifications."""
    result = runner.run(scenario_file.load("scenarios/vtpm-stack.toml", ["stack.iterations=1"]),
                        trace_level="full")
    return result.trace.dumps_jsonl().splitlines()


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_trace_file_with_any_field_spoilt_is_an_error_naming_its_line_never_a_crash(
        small_stack_lines, tmp_path, capsys, data):
    """A field of a record replaced by any JSON value, or taken away: every export of
    the file either works (the value was one the schema allows) or says which line of
    which file is wrong, exit 2 -- never an internal error from inside an export (a
    ``dom`` that was a list stopped every export with ``TypeError: unhashable type``)."""
    from simxen.cli import main
    lines = list(small_stack_lines)
    spoilt = []
    for _ in range(data.draw(st.integers(1, 3), label="fields spoilt")):
        i = data.draw(st.integers(0, len(lines) - 1), label="line")
        record = json.loads(lines[i])
        key = data.draw(st.sampled_from(sorted(record)), label="field")
        if data.draw(st.booleans(), label="take it away"):
            del record[key]
        else:
            record[key] = data.draw(_ANY_JSON, label="value")
        lines[i] = json.dumps(record)
        spoilt.append(i + 1)
    path = tmp_path / "spoilt.jsonl"
    path.write_text("\n".join(lines) + "\n")
    fmt = data.draw(st.sampled_from(sorted(_EXPORT_SUFFIX)), label="format")
    out = tmp_path / f"out{_EXPORT_SUFFIX[fmt]}"
    out.unlink(missing_ok=True)
    args = ["trace", "--from", str(path), "--format", "sequence" if fmt == "mermaid" else fmt,
            "-o", str(out)]
    code = main(args)
    err = capsys.readouterr().err
    assert code in (0, 1, 2), err
    assert "internal error" not in err and "Traceback" not in err
    if code == 2:
        assert f"{path}: line " in err, err
        line = int(err.split(f"{path}: line ", 1)[1].split(":", 1)[0])
        assert line in spoilt, err          # the line named is one that was spoilt
        assert not out.exists()             # and nothing is written


def test_a_lone_surrogate_in_a_trace_file_is_refused_by_its_line(tmp_path, capsys):
    """JSON's ``\\ud800`` escape alone decodes to a surrogate no file can be written
    with: ``--format text -o`` stopped with an internal error (UnicodeEncodeError; the
    trace fuzz target found it). A pair (an emoji) is text, and is read."""
    from simxen.cli import main
    record = ('{"t": 0, "seq": 0, "kind": "domain.create", "dom": 0, "dom_name": "d0", '
              '"domid": 0, "name": "NAME", "privileged": true, "vcpus": 1}\n')
    path, out = tmp_path / "t.jsonl", tmp_path / "out.txt"
    path.write_text(record.replace("NAME", "d\\ud800"))
    assert main(["trace", "--from", str(path), "--format", "text", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: line 1: a string holds a lone UTF-16 surrogate" in err
    assert not out.exists()
    path.write_text(record.replace("NAME", "d\\ud83d\\ude00"))
    assert trace_format.load(path)[0]["name"] == "d\U0001f600"


def test_a_line_nested_past_the_json_parser_is_refused_by_its_line(tmp_path, capsys):
    """A value of arrays 100,000 deep: json.loads raised RecursionError, an internal
    error (exit 3); now the line is named, and nothing is written."""
    from simxen.cli import main
    path, out = tmp_path / "t.jsonl", tmp_path / "out.txt"
    path.write_text('{"t": 0, "seq": 0, "kind": "x", "dom": 0, "a": '
                    + "[" * 100_000 + "]" * 100_000 + "}\n")
    assert main(["trace", "--from", str(path), "--format", "text", "-o", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"simxen trace: {path}: line 1: not a trace record: nested too deeply (arrays or "
        "tables inside each other, thousands of levels down: more than a parser can follow)")
    assert not out.exists()


def test_a_domain_with_more_vcpus_than_xen_allows_is_refused_by_its_line(tmp_path, capsys):
    """Xen refuses a PV domain of more than MAX_VIRT_CPUS (8,192) vCPUs, so no run
    records one. The Perfetto export named a thread per vCPU: a hand-edited
    ``"vcpus": 2147483648`` made it loop for ever (the trace fuzz target, seed 4);
    the schema's maximum refuses the line instead (and the export now names only
    the threads that carry events, and vcpu0)."""
    from simxen.cli import main
    record = ('{"t": 0, "seq": 0, "kind": "domain.create", "dom": 0, "dom_name": "d0", '
              '"domid": 0, "name": "d0", "privileged": true, "vcpus": VCPUS}\n')
    path, out = tmp_path / "t.jsonl", tmp_path / "out.json"
    path.write_text(record.replace("VCPUS", str(2 ** 31)))
    assert main(["trace", "--from", str(path), "--format", "perfetto", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: line 1:" in err and "vcpus" in err, err
    assert not out.exists()
    path.write_text(record.replace("VCPUS", "8192"))
    assert main(["trace", "--from", str(path), "--format", "perfetto", "-o", str(out)]) == 0
    names = [e["args"]["name"] for e in json.loads(out.read_text())["traceEvents"]
             if e.get("name") in ("process_name", "thread_name")]
    assert names == ["d0 (dom0, 8192 vCPUs)", "vcpu0"]


def test_pcap_times_past_its_32_bit_seconds_are_refused_and_long_durations_clipped(
        shipped_traces):
    """A pcap record header holds whole seconds in 32 bits: a later time is a clear
    error, not ``struct.error``; a ``duration`` longer than the time since the run
    began (1e300 s made ``round()`` overflow: the trace fuzz target, seed 4) starts
    the execution at 0."""
    record = dict(next(r for r in shipped_traces["boot-attest"]
                       if r["kind"] == "tpm.exec" and r.get("command")))
    record.update(t=2.0 ** 32 - 0.5, duration=1e300)
    data = pcap.to_bytes([record])
    first = struct.unpack_from("<IIII", data, 24)
    last = struct.unpack_from("<II", data, len(data) - 16 - 54)
    assert first[:2] == (0, 0) and last[0] == 2 ** 32 - 1
    assert abs(last[1] - 500_000_000) < 1024        # a double near 4.3e18 ns: 512 ns apart
    for t in (2.0 ** 32, 1e300):
        record["t"] = t
        with pytest.raises(InputError, match="past the last second a pcap record can hold"):
            pcap.to_bytes([record])

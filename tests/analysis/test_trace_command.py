"""``simxen trace``'s options as a user mistypes them: each mistake is one line naming
the option and what the trace does have (exit 2), never an export that silently
ignores an option, an internal error, or a refusal of a file a killed run left."""

import gzip
from pathlib import Path

import pytest

from simxen.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def small_trace(tmp_path_factory):
    """A vTPM-stack run of one iteration per guest (about 1,700 records)."""
    path = tmp_path_factory.mktemp("trace") / "vs.jsonl"
    main(["run", str(ROOT / "scenarios" / "vtpm-stack.toml"), "--set",
          "workload[0].iterations=1", "--trace", str(path), "--no-progress"])
    assert path.stat().st_size > 100_000
    return path


def trace(capsys, *args):
    capsys.readouterr()
    status = main(["trace", *map(str, args)])
    return status, capsys.readouterr().err.strip()


@pytest.mark.parametrize("fmt,option,value", [
    ("text", "--command", "TPM2_PCR_Extend"), ("perfetto", "--domain", "guest1"),
    ("pcap", "--domain", "guest1"), ("sequence", "--tpm", "guest1"),
    ("perfetto", "--verbose", None), ("text", "--tpm", "physical")])
def test_an_option_the_format_does_not_read_is_refused(tmp_path, capsys, small_trace, fmt,
                                                       option, value):
    # was: exit 0 and an export that ignored it (a "filtered" text that was the whole run)
    extra = [option] if value is None else [option, value]
    status, err = trace(capsys, "--from", small_trace, "-f", fmt, "-o", tmp_path / "x.out",
                        *extra)
    assert status == 2
    assert err.startswith(f"simxen trace: {option}: applies to --format ") and fmt in err


@pytest.mark.parametrize("option,value", [("--seed", "7"), ("--until", "0.5"),
                                          ("--set", "workload[0].iterations=5")])
def test_an_option_of_a_run_given_with_from_is_refused(tmp_path, capsys, small_trace, option,
                                                       value):
    # was: exit 0 and the recorded trace whole, as if re-run with that seed or cut at --until
    status, err = trace(capsys, "--from", small_trace, "-f", "text", "-o", tmp_path / "x.txt",
                        option, value)
    assert status == 2
    assert err == (f"simxen trace: {option}: applies to a run of SCENARIO; a --from trace is "
                   "read as it was recorded (--start and --end cut it)")
    assert not (tmp_path / "x.txt").exists()


def test_nth_without_command_and_a_window_that_ends_before_it_starts(capsys, small_trace):
    status, err = trace(capsys, "--from", small_trace, "-f", "sequence", "-o", "x.svg",
                        "--nth", "2")
    assert status == 2 and err == ("simxen trace: --nth: counts the commands --command names: "
                                   "give --command too")
    # was: "--start/--end: no event is left after the filters"
    status, err = trace(capsys, "--from", small_trace, "-f", "text", "--start", "5", "--end", "4")
    assert status == 2 and err.endswith("the window starts (5 s) after it ends (4 s)")
    # was: "--start: no event is left after the filters"
    for option in ("--start", "--end"):
        status, err = trace(capsys, "--from", small_trace, "-f", "text", option, "nan")
        assert status == 2
        assert err == f"simxen trace: {option}: expected a number of seconds, found nan"


@pytest.mark.parametrize("fmt,what", [("sequence", "lifeline"), ("text", "domain")])
def test_an_unknown_domain_is_named_with_the_closest_one(tmp_path, capsys, small_trace, fmt,
                                                         what):
    # was: "--domain: no message is left after the filters"
    status, err = trace(capsys, "--from", small_trace, "-f", fmt, "-o", tmp_path / "x.svg",
                        "--domain", "gest1")
    assert status == 2
    assert err.startswith(f"simxen trace: --domain: the trace has no {what} called 'gest1'; "
                          "did you mean 'guest1'? (it has: ")
    assert "vtpm-guest1" in err
    # one good name beside the misspelt one: was exit 0, the good one's export alone
    out = tmp_path / "y.svg"
    status, err = trace(capsys, "--from", small_trace, "-f", fmt, "-o", out,
                        "--domain", "guest1", "--domain", "vtpm-gest1")
    assert status == 2 and "no " + what + " called 'vtpm-gest1'; did you mean 'vtpm-guest1'?" in err
    assert not out.exists()


def test_an_unknown_or_absent_command_names_what_the_trace_has(tmp_path, capsys, small_trace):
    # was: "the trace has 0 completed TPM2_PCR_Extnd command(s); asked for number 1"
    status, err = trace(capsys, "--from", small_trace, "-f", "sequence", "-o", tmp_path / "x.svg",
                        "--command", "TPM2_PCR_Extnd")
    assert status == 2
    assert "no completed TPM2_PCR_Extnd command; did you mean 'TPM2_PCR_Extend'? (it has: " in err
    status, err = trace(capsys, "--from", small_trace, "-f", "sequence", "-o", tmp_path / "x.svg",
                        "--command", "TPM2_Clear")
    assert status == 2 and "did you mean" not in err and "TPM2_PCR_Read" in err
    status, err = trace(capsys, "--from", small_trace, "-f", "sequence", "-o", tmp_path / "x.svg",
                        "--command", "TPM2_PCR_Extend", "--nth", "999")
    assert status == 2 and "asked for number 999" in err


@pytest.mark.parametrize("fmt", ["text", "pcap", "perfetto", "sequence"])
def test_an_output_device_that_refuses_the_bytes_is_one_line(capsys, small_trace, fmt):
    # was: internal error (OSError: [Errno 28] No space left on device), exit 3
    out = Path("/dev/full")
    if not out.exists():
        pytest.skip("no /dev/full here")
    status, err = trace(capsys, "--from", small_trace, "-f", fmt, "-o", out)
    assert status == 2
    assert err == "simxen trace: /dev/full: -o: cannot write: No space left on device"


def test_a_last_line_cut_short_by_a_kill_is_left_out_with_a_note(tmp_path, capsys, small_trace):
    data = small_trace.read_bytes()
    lines = data.splitlines(keepends=True)
    whole = tmp_path / "whole.jsonl"
    whole.write_bytes(b"".join(lines[:-1]))
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(b"".join(lines[:-1]) + lines[-1][:37])     # SIGKILL mid-write
    assert trace(capsys, "--from", whole, "-f", "perfetto", "-o", tmp_path / "a.json")[0] == 0
    status, err = trace(capsys, "--from", cut, "-f", "perfetto", "-o", tmp_path / "b.json")
    # was: "line N: not JSON: Unterminated string", exit 2 -- nothing exported
    assert status == 0
    assert err.endswith(f"note: {cut}: line {len(lines)}, the last, is cut short (the run was "
                        "killed while writing it?) and was left out")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    # cut inside a UTF-8 character
    odd = tmp_path / "odd.jsonl"
    odd.write_bytes(b"".join(lines[:-1]) + b'{"dom":0,"dom_name":"\xc3')
    assert trace(capsys, "--from", odd, "-f", "text", "-o", tmp_path / "o.txt")[0] == 0
    # a bad line that is not the last, or that ends with its newline, is still refused
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"".join(lines[:-1]) + lines[-1][:37] + b"\n")
    status, err = trace(capsys, "--from", bad, "-f", "text", "-o", tmp_path / "c.txt")
    assert status == 2 and f"line {len(lines)}: not JSON" in err
    only = tmp_path / "only.jsonl"
    only.write_bytes(lines[0][:20])
    status, err = trace(capsys, "--from", only, "-f", "text")
    assert status == 2 and err.endswith("the trace's only line is cut short: the run was killed "
                                        "before it wrote a whole record")


def test_a_gzipped_trace_is_named_as_such(tmp_path, capsys, small_trace):
    # was: "not UTF-8 text (byte 1)"
    packed = tmp_path / "t.jsonl.gz"
    packed.write_bytes(gzip.compress(small_trace.read_bytes()))
    status, err = trace(capsys, "--from", packed, "-f", "text")
    assert status == 2 and err == (f"simxen trace: {packed}: gzip-compressed, not JSON Lines: "
                                   "gunzip it first")


def test_a_capture_of_the_physical_tpm_says_the_hosts_measured_boot_is_not_in_it(
        tmp_path, capsys, small_trace):
    """The firmware's and GRUB's extends run on the TPM before Xen and leave a PCR and a
    digest each, no command bytes: a capture that silently starts after them reads as the
    whole story of the physical TPM."""
    import json
    measured = sum(json.loads(line)["kind"] == "host.measure"
                   for line in small_trace.read_text().splitlines())
    assert measured > 0
    status, err = trace(capsys, "--from", small_trace, "-f", "pcap", "--tpm", "physical",
                        "-o", tmp_path / "p.pcap")
    assert status == 0
    assert f"the host's {measured} measured-boot extend(s) before Xen" in err
    status, err = trace(capsys, "--from", small_trace, "-f", "pcap", "--tpm", "guest1",
                        "-o", tmp_path / "g.pcap")
    assert status == 0 and "measured-boot" not in err

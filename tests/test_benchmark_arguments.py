"""The benchmark scripts refuse a size that cannot be meant -- not a whole number, zero,
negative -- as a one-line usage error (exit 2) before they run anything, as every
``simxen`` command does: not a traceback, a division by zero after the work, or a run
of the default size (``sweep_point.py --guests 0`` once timed 32 guests)."""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"


def script(name):
    """benchmarks/``name``.py, imported as the scripts import their neighbours."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCHMARKS))


BAD = [
    ("scale", ["--sizes", "abc"], "expected a whole number >= 1, found 'abc'"),
    ("scale", ["--sizes", "10,0"], "expected a whole number >= 1, found 0"),
    ("scale", ["--sizes", "1,,2"], "expected whole numbers separated by commas"),
    ("scale", ["--rounds", "0"], "--rounds: expected a whole number >= 1, found 0"),
    ("sweep_point", ["--guests", "0"], "--guests: expected a whole number >= 1, found 0"),
    ("sweep_point", ["--commands", "-4"], "--commands: expected a whole number >= 1, found -4"),
    ("sweep_point", ["--instructions", "1.5"], "found '1.5'"),
    ("ring_roundtrip", ["--requests", "0"], "--requests: expected a whole number >= 1, found 0"),
    ("ring_roundtrip", ["--repeat", "-1"], "--repeat: expected a whole number >= 1, found -1"),
    ("ring_roundtrip", ["--count", "0"], "--count: expected a whole number >= 1, found 0"),
    ("vtpm_roundtrip", ["--requests", "0"], "--requests: expected a whole number >= 1, found 0"),
    ("vtpm_roundtrip", ["--instructions", "x"], "found 'x'"),
    ("interruptible_run", ["--repeat", "0"], "--repeat: expected a whole number >= 1, found 0"),
    ("interruptible_run", ["--scenario", "/nonexistent.toml"], "/nonexistent.toml: no such file"),
    ("tpm_engine", ["--seconds", "0"], "expected a finite number of seconds > 0, found 0"),
    ("tpm_engine", ["--seconds", "inf"], "expected a finite number of seconds > 0, found inf"),
    ("tpm_socket", ["--seconds", "-1"], "expected a finite number of seconds > 0, found -1"),
]


@pytest.mark.parametrize("name,argv,message", BAD, ids=[f"{n} {' '.join(a)}" for n, a, _ in BAD])
def test_a_size_that_cannot_be_meant_is_a_usage_error(name, argv, message, capsys):
    main = script(name).main
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "error: " in err.splitlines()[-1] and message in err.splitlines()[-1]
    assert "Traceback" not in err


@pytest.mark.parametrize("text,value", [("1", 1), (" 32 ", 32), ("10000", 10000)])
def test_a_count_is_a_whole_number(text, value):
    assert script("arguments").count(text) == value


def test_counts_keep_their_order():
    assert script("arguments").counts("1, 10,100,1000") == [1, 10, 100, 1000]

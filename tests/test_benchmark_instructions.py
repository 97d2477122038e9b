"""benchmarks/instructions.py: a figure is the difference of two valgrind runs, each
importing the tree afresh -- so a tree that changes between them must be refused, not
printed (counted on a tree engineers were landing on, vtpm_roundtrip.py gave 652,348
instructions a PCR_Extend where a frozen copy gives 365,354)."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def instructions(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("instructions",
                                                  ROOT / "benchmarks" / "instructions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (tmp_path / "simxen").mkdir()
    (tmp_path / "simxen" / "a.py").write_text("A = 1\n")
    (tmp_path / "benchmarks").mkdir()
    monkeypatch.setattr(module, "ROOT", str(tmp_path))
    monkeypatch.setattr(module, "HERE", str(tmp_path / "benchmarks"))
    return module, tmp_path


def test_a_tree_that_changes_between_the_runs_is_refused(instructions, monkeypatch):
    module, tree = instructions
    counts = iter([2000, 1000, 4000, 2000])

    def run(module_name, expr, n):
        (tree / "simxen" / "a.py").write_text(f"A = {n}\n")     # a landing mid-count
        return next(counts)
    monkeypatch.setattr(module, "count", run)
    with pytest.raises(SystemExit, match="changed while its instructions were counted"):
        module.per_trip("m", "e({n})", 1000)


def test_a_frozen_tree_gives_the_difference(instructions, monkeypatch):
    module, _ = instructions
    counts = iter([5000, 2000, 9000, 3000])
    monkeypatch.setattr(module, "count", lambda m, e, n: next(counts))
    assert module.per_trip("m", "e({n})", 1000) == 3.0
    assert module.per_trip("m", "e({n})", 1000) == 6.0          # compared with the first digest

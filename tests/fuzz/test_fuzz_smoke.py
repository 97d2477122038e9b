"""CI's fuzz smoke: every target for half a second with the seeded mutator, one short
coverage-guided (atheris) run, and hypothesis-drawn inputs through each target.

The long campaign and its figures are in docs/fuzzing.rst.
"""

import json
import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

#: the repository (fuzz/ lives at its top; tests/fuzz/conftest.py puts it on sys.path)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from fuzz.run import mutate, run_random                        # noqa: E402
from fuzz.targets import TARGETS, Finding, target               # noqa: E402

_TARGETS = {}


def cached(name):
    """One instance per target for the whole module (building one boots a rig)."""
    if name not in _TARGETS:
        _TARGETS[name] = target(name)
    return _TARGETS[name]


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_each_target_survives_half_a_second_of_mutated_inputs(name, tmp_path):
    # at least 20 mutated inputs however slow the machine: a busy one spent the half
    # second on the seeds of the trace target and ran none
    summary = run_random(target(name), 0.5, seed=7, findings=str(tmp_path), at_least=20)
    assert summary["crashes"] == 0 and summary["hangs"] == 0, summary.get("error")
    assert summary["counts"]["inputs"] >= len(target(name).seeds()) + 20


def test_at_least_runs_that_many_mutated_inputs_past_the_time():
    class Counting:
        name = "counting"
        counts = {"inputs": 0}

        def seeds(self):
            return [b"a", b"b"]

        def one(self, data):
            self.counts["inputs"] += 1

    t = Counting()
    summary = run_random(t, 0.0, seed=1, at_least=7)
    assert summary["counts"]["inputs"] == 2 + 7


def test_the_engine_target_checks_refused_commands_against_the_state():
    t = target("engine")
    run_random(t, 0.5, seed=3, at_least=100)       # (some 3,000 in half a second when idle)
    assert t.counts["refused_state_checked"] > 0 and t.counts["succeeded"] > 0


def test_an_invariant_breach_is_reported_with_the_input_saved(tmp_path):
    class Broken:
        name = "broken"
        counts = {"inputs": 0}

        def seeds(self):
            return [b"ok"]

        def one(self, data):
            self.counts["inputs"] += 1
            if b"\xff" in data:
                raise Finding("0xff seen")

    summary = run_random(Broken(), 5.0, seed=1, findings=str(tmp_path))
    assert summary["crashes"] == 1 and "0xff seen" in summary["error"]
    with open(summary["finding"], "rb") as f:
        assert b"\xff" in f.read()


def test_mutate_stays_within_the_length_limit():
    import random
    rng = random.Random(0)
    for _ in range(200):
        assert len(mutate(rng, b"x" * 100, [b"y" * 100], 64)) <= 64


@pytest.mark.slow
def test_a_short_coverage_guided_run(tmp_path):
    pytest.importorskip("atheris")
    out = subprocess.run([sys.executable, "-m", "fuzz.run", "engine", "2",
                          "--findings", str(tmp_path)], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert out.returncode == 0, out.stderr[-2000:]
    assert summary["driver"] == "atheris" and summary["crashes"] == 0
    assert summary["counts"]["commands"] > 0


@pytest.mark.parametrize("name", ["engine", "framing", "tpmif", "manager", "state", "ima", "eventlog"])
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.binary(max_size=600))
def test_hypothesis_inputs(name, data):
    cached(name).one(data)

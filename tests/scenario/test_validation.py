"""scenarios/validation/: simulated mean waits at the manager against queueing theory.

Each scenario runs at utilisations 0.3, 0.6 and 0.85 (its ``rate`` set from
the profile's mean service time, as ``--set NAME.rate=...`` would); the
simulated mean wait must lie within its own 95 % batch-means confidence
interval of the closed form, or within 3 % (the workload's ``agrees``).
"""

from pathlib import Path

import pytest

from simxen.analysis import queueing as q
from simxen.scenario import runner, scenario_file

VALIDATION = Path(__file__).resolve().parents[2] / "scenarios" / "validation"
CASES = ["mm1", "md1", "mg1-fifo", "mg1-round-robin"]


def _at(name, rho):
    sc = scenario_file.load(VALIDATION / f"{name}.toml")
    wl = sc.data["workload"][0]
    op = sc.data["profile"]["ops"]["tpm.ptpm.GetRandom"]
    es, _ = q.service_moments(op["dist"], {k: v for k, v in op.items()
                                           if k not in ("dist", "certainty", "source", "note")})
    wl["rate"] = rho / (es * wl["guest_count"])
    # about the same number of requests at every load
    wl["duration"] = 1200 / (wl["rate"] * wl["guest_count"])
    return sc, wl["name"]


def test_the_shipped_validation_scenarios_hold_their_expectations():
    for name in CASES:
        result = runner.run(scenario_file.load(VALIDATION / f"{name}.toml"))
        assert result.report.passed, result.report.render()
        assert "simulated vs theory" in result.report.render()


@pytest.mark.slow
@pytest.mark.parametrize("rho", [0.3, 0.85])   # 0.6: the shipped files
@pytest.mark.parametrize("name", CASES)
def test_mean_wait_agrees_with_theory(name, rho):
    sc, wl = _at(name, rho)
    res = runner.run(sc).results[wl]
    assert res["theory"], res.get("theory_note")
    for who, row in res["theory"].items():
        assert row["agrees"], (who, row, res["theory_note"])
    assert abs(res["manager"]["utilisation"] - rho) < 0.1


def test_the_report_says_why_theory_does_not_apply_on_the_poll_grid():
    sc, wl = _at("mm1", 0.6)
    sc.data["profile"]["switches"] = {}                 # back to the default 5 ms polling
    sc.data["workload"][0]["duration"] = 2.0
    result = runner.run(sc)
    assert result.results[wl]["theory"] == {}
    text = result.report.render()
    assert "does not apply" in text and "5 ms grid" in text

"""The closed forms of simxen.analysis.queueing against textbook values."""

import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

from simxen.analysis import queueing as q


def test_mm1_textbook():
    # lam = 0.5, mu = 1: Wq = rho / (mu - lam) = 0.5 / 0.5 = 1 (Kleinrock vol. 1, eq. 3.26)
    assert q.mm1_wait(0.5, 1.0) == pytest.approx(1.0)
    # rho = 0.85 with E[S] = 10 ms: 0.85/0.15 x 10 ms
    assert q.mm1_wait(85.0, 0.01) == pytest.approx(0.0566667, rel=1e-5)


def test_md1_is_half_of_mm1():
    assert q.md1_wait(0.5, 1.0) == pytest.approx(0.5)
    for lam in (30.0, 60.0, 85.0):
        assert q.md1_wait(lam, 0.01) == pytest.approx(q.mm1_wait(lam, 0.01) / 2)


def test_pollaczek_khinchine_with_a_uniform_service():
    # S ~ U(0, 2): E[S] = 1, E[S^2] = 4/3; lam = 0.5: W = 0.5 x 4/3 / (2 x 0.5) = 2/3
    es, es2 = q.service_moments("uniform", {"low": 0.0, "high": 2.0})
    assert (es, es2) == pytest.approx((1.0, 4 / 3))
    assert q.mg1_wait(0.5, es, es2) == pytest.approx(2 / 3)


def test_cobham_two_classes():
    # exponential, E[S] = 1, lam1 = lam2 = 0.25: W0 = 0.5, W1 = 0.5/0.75, W2 = 0.5/(0.75 x 0.5)
    w1, w2 = q.priority_waits([0.25, 0.25], [1.0, 1.0], [2.0, 2.0])
    assert (w1, w2) == pytest.approx((2 / 3, 4 / 3))


@given(st.lists(st.floats(0.01, 1.0), min_size=1, max_size=6), st.floats(0.05, 0.95))
def test_cobham_conserves_the_mg1_mean(weights, rho):
    """Kleinrock's conservation law: the rate-weighted mean of the class waits is M/G/1's."""
    es, es2 = 0.01, 2e-4
    lam = rho / es
    lams = [lam * w / sum(weights) for w in weights]
    ws = q.priority_waits(lams, [es] * len(lams), [es2] * len(lams))
    mean = sum(l * w for l, w in zip(lams, ws)) / lam
    assert mean == pytest.approx(q.mg1_wait(lam, es, es2), rel=1e-9)
    assert ws == sorted(ws)                           # lower priority never waits less


def test_lognormal_moments_match_numpy():
    es, es2 = q.service_moments("lognormal", {"median": 0.008, "sigma": 0.6})
    x = np.random.default_rng(1).lognormal(math.log(0.008), 0.6, 400_000)
    assert es == pytest.approx(x.mean(), rel=0.01)
    assert es2 == pytest.approx((x * x).mean(), rel=0.03)


def test_unstable_queue_is_refused():
    with pytest.raises(ValueError, match="not below 1"):
        q.mm1_wait(100.0, 0.01)


def test_batch_means_covers_the_mean_of_iid_samples():
    rng = np.random.default_rng(7)
    hits = 0
    for _ in range(200):
        mean, half = q.batch_means(rng.exponential(1.0, 400).tolist(), batches=20)
        hits += abs(mean - 1.0) <= half
    assert 180 <= hits <= 200                      # ~95 % coverage


def test_batch_means_with_too_few_values_says_nothing():
    assert q.batch_means([1.0, 2.0, 3.0], batches=20)[1] == math.inf


def test_agreement_rule_takes_the_wider_of_ci_and_3_percent():
    assert q.agrees(1.02, 0.001, 1.0)              # inside 3 %
    assert q.agrees(1.10, 0.2, 1.0)                # inside its own CI
    assert not q.agrees(1.10, 0.05, 1.0)


def test_no_interval_cannot_agree_or_disagree():
    # an infinitely wide interval holds every theory: "agrees" would say nothing
    assert q.agrees(1.0, math.inf, 1.0) is None
    assert q.agrees(5.0, math.inf, 1.0) is None
    assert q.agrees(*q.batch_means([1.0, 2.0, 3.0], batches=20), 2.0) is None

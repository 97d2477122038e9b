"""Queueing theory for one server: the closed forms simxen's simulations are checked against.

Pure functions of the arrival rates and of the first two moments of the
service time; no SimPy, no trace. Notation (Kleinrock, *Queueing Systems*
vol. 1, 1975; Harchol-Balter, *Performance Modeling and Design of Computer
Systems*, 2013):

``lam``   arrival rate (per second), Poisson
``es``    mean service time E[S] (seconds)
``es2``   second moment E[S^2] (seconds^2)
``rho``   utilisation ``lam * es`` (must be < 1)

Mean waits are the time a request spends *queued* (from its arrival to the
start of its service), not counting its own service::

    from simxen.analysis import queueing as q
    q.mm1_wait(lam=60.0, es=0.01)                   # 0.015 s = rho/(1-rho) * E[S]
    q.md1_wait(lam=60.0, es=0.01)                   # 0.0075 s: half of M/M/1
    q.mg1_wait(lam=60.0, es=0.01, es2=2e-4)         # Pollaczek-Khinchine
    q.priority_waits([20, 20, 20], [0.01]*3, [2e-4]*3)   # Cobham, class 0 first

Which formula describes which server:

* **M/G/1 (Pollaczek-Khinchine)**, ``W = lam E[S^2] / (2 (1 - rho))``: one
  server, Poisson arrivals, independent service times of any distribution,
  and any *work-conserving* order that does not look at service times
  (FIFO, round-robin between classes, random): the **mean** wait over all
  requests is the same for all of them (the conservation law). Exponential
  service gives **M/M/1** (``E[S^2] = 2 E[S]^2``: ``W = rho E[S] / (1 -
  rho)``), fixed service **M/D/1** (``E[S^2] = E[S]^2``: half the M/M/1 wait).
* **Non-preemptive static priority (Cobham 1954)**: class ``k`` (0 = highest)
  waits ``W_k = W0 / ((1 - sigma_{k-1}) (1 - sigma_k))`` with ``W0 =
  sum_i lam_i E[S_i^2] / 2`` (the mean residual work found in service) and
  ``sigma_k = rho_0 + ... + rho_k``. A. Cobham, "Priority assignment in
  waiting line problems", *Operations Research* 2(1):70-76, 1954;
  Kleinrock vol. 2 (1976) eq. 3.31.

:func:`batch_means` gives a simulated mean and its 95 % confidence interval
from one long run: consecutive observations are correlated (a request that
waited long is followed by others that wait long), so the run is cut into
``batches`` consecutive batches whose means are close to independent, and
Student's t is applied to them (Law, *Simulation Modeling and Analysis*,
5th ed., 2015, section 9.5.3).
"""

from __future__ import annotations

import math

__all__ = ["utilisation", "mg1_wait", "mm1_wait", "md1_wait", "priority_waits",
           "service_moments", "batch_means", "agrees", "T_975"]


def utilisation(lam, es):
    """``rho = lam * E[S]``."""
    return lam * es


def _stable(rho):
    if not 0 <= rho < 1:
        raise ValueError(f"utilisation {rho:.4g} is not below 1: the queue grows without bound")


def mg1_wait(lam, es, es2):
    """Pollaczek-Khinchine mean wait in queue of M/G/1: ``lam E[S^2] / (2 (1 - rho))``."""
    rho = lam * es
    _stable(rho)
    return lam * es2 / (2.0 * (1.0 - rho))


def mm1_wait(lam, es):
    """M/M/1 mean wait in queue: ``rho E[S] / (1 - rho)``."""
    return mg1_wait(lam, es, 2.0 * es * es)


def md1_wait(lam, es):
    """M/D/1 mean wait in queue: ``rho E[S] / (2 (1 - rho))``."""
    return mg1_wait(lam, es, es * es)


def priority_waits(lams, ess, es2s):
    """Cobham's mean wait of each class of a non-preemptive static-priority queue.

    :param lams: arrival rate of each class, highest priority first.
    :param ess: E[S] of each class.
    :param es2s: E[S^2] of each class.
    :returns: list of mean waits in queue, in the same order.
    """
    if not len(lams) == len(ess) == len(es2s):
        raise ValueError("one rate, one E[S] and one E[S^2] per class")
    rho = sum(l * s for l, s in zip(lams, ess))
    _stable(rho)
    w0 = sum(l * s2 for l, s2 in zip(lams, es2s)) / 2.0
    out = []
    sigma = 0.0
    for lam, es in zip(lams, ess):
        before = sigma
        sigma += lam * es
        out.append(w0 / ((1.0 - before) * (1.0 - sigma)))
    return out


def service_moments(dist, params):
    """``(E[S], E[S^2])`` of a timing-profile distribution (names as in ``simxen.xen.profile``)."""
    p = params
    if dist == "fixed":
        return p["value"], p["value"] ** 2
    if dist == "exponential":
        return p["mean"], 2.0 * p["mean"] ** 2
    if dist == "uniform":
        a, b = p["low"], p["high"]
        return (a + b) / 2.0, (a * a + a * b + b * b) / 3.0
    if dist == "lognormal":
        m, s = math.log(p["median"]), p["sigma"]
        return math.exp(m + s * s / 2.0), math.exp(2.0 * m + 2.0 * s * s)
    if dist == "normal":
        raise ValueError("a normal distribution is clipped at 0 in simxen: its moments are not "
                         "the textbook ones; use fixed, exponential, uniform or lognormal")
    raise ValueError(f"unknown distribution {dist!r}")


#: Student's t 97.5 % quantiles by degrees of freedom (two-sided 95 %).
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
         9: 2.262, 10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131,
         16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086, 24: 2.064, 29: 2.045,
         30: 2.042, 39: 2.023, 40: 2.021, 49: 2.010, 60: 2.000, 99: 1.984, 120: 1.980}


def _t975(df):
    if df in T_975:
        return T_975[df]
    below = [d for d in T_975 if d < df]
    return T_975[max(below)] if below else T_975[1]       # conservative: the next smaller df


def batch_means(values, batches=20):
    """``(mean, half_width)`` of the 95 % batch-means confidence interval of ``values``.

    ``values`` in the order they were observed. Fewer than ``2 * batches``
    values give ``half_width = inf`` (too few to say anything).
    """
    values = list(values)
    n = len(values)
    if n == 0:
        return float("nan"), float("inf")
    mean = sum(values) / n
    size = n // batches
    if size < 2:
        return mean, float("inf")
    means = [sum(values[i * size:(i + 1) * size]) / size for i in range(batches)]
    grand = sum(means) / batches
    var = sum((m - grand) ** 2 for m in means) / (batches - 1)
    return mean, _t975(batches - 1) * math.sqrt(var / batches)


def agrees(simulated, half_width, theory, rel=0.03):
    """The acceptance rule: ``|sim - theory|`` within the CI half-width or ``rel * theory``.

    ``None`` -- cannot tell -- when there is no confidence interval (``half_width``
    infinite: :func:`batch_means` had too few values): an infinitely wide interval
    would hold any theory, so "agrees" would say nothing.
    """
    if not math.isfinite(half_width):
        return None
    return abs(simulated - theory) <= max(half_width, rel * theory)

"""The credit2-like CPU scheduler (simxen/xen/scheduler.py, docs/cpu-scheduling.rst).

Small hosts built by hand: CPU-bound domains that charge a fixed burst and
let it pass (``elapse()``, a yield point) compete for one pCPU; weights
share it in proportion, a cap bounds a domain, and enough pCPUs change
nothing. The scenario-level checks (equal results with a pCPU per domain,
stub domains raising a guest's TPM latency) are in
tests/scenario/test_cpu_scheduling.py.
"""

import re

import pytest

from simxen.xen import Hypervisor
from simxen.xen.profile import Profile
from simxen.xen.scheduler import Credit2

#: one burst of a CPU-bound domain: 0.5 ms (a fixed op, so no draws)
BURST = {"dist": "fixed", "value": 0.0005}
WINDOW = 1.0


def host(pcpus, burst=BURST):
    profile = Profile.load("default").with_overrides({"ops": {
        "domain.create": {"dist": "fixed", "value": 0.0},
        "xenstore.op": {"dist": "fixed", "value": 0.0},
        "test.burst": burst}})
    return Hypervisor(profile=profile, scheduler=Credit2(pcpus=pcpus))


def hog(dom, until):
    """A CPU-bound domain: bursts of work, each let pass (a yield point) until ``until``."""
    while dom.env.now < until:
        dom.charge("test.burst")
        yield dom.elapse()


def run(hv, doms, until=WINDOW):
    for d in doms:
        hv.env.process(hog(d, until))
    hv.env.run(until=until)
    return hv.scheduler.summary(hv.env.now)["domains"]


def test_weights_256_and_512_share_one_pcpu_one_to_two():
    hv = host(1)
    a, b = hv.domain_create("a"), hv.domain_create("b")
    hv.scheduler.domain_set(b.domid, weight=512)
    got = run(hv, [a, b])
    ta, tb = got["a"]["cpu_time_s"], got["b"]["cpu_time_s"]
    assert ta + tb == pytest.approx(WINDOW, rel=0.01)        # the pCPU never idles
    assert tb / ta == pytest.approx(2.0, rel=0.05)
    assert got["a"]["preempted"] > 10 and got["b"]["preempted"] > 10


def test_equal_weights_share_equally_and_the_default_weight_is_256():
    hv = host(1)
    doms = [hv.domain_create(n) for n in ("a", "b", "c")]
    got = run(hv, doms)
    assert {got[n]["weight"] for n in "abc"} == {256}
    shares = [got[n]["cpu_time_s"] for n in "abc"]
    assert max(shares) / min(shares) == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("cap", [20, 50])
def test_a_cap_holds_a_domain_to_its_share_of_one_pcpu(cap):
    hv = host(2)
    a = hv.domain_create("a")
    hv.scheduler.domain_set(a.domid, cap=cap)
    got = run(hv, [a])                                        # alone, with a pCPU idle
    assert got["a"]["cpu_time_s"] <= cap / 100 * WINDOW + 0.0005   # one burst of overrun at most
    assert got["a"]["cpu_time_s"] >= 0.9 * cap / 100 * WINDOW


def test_an_uncapped_domain_uses_what_a_capped_one_leaves():
    hv = host(1)
    a, b = hv.domain_create("a"), hv.domain_create("b")
    hv.scheduler.domain_set(a.domid, cap=20)
    got = run(hv, [a, b])
    assert got["a"]["cpu_time_s"] <= 0.2 * WINDOW + 0.0005
    assert got["a"]["cpu_time_s"] + got["b"]["cpu_time_s"] == pytest.approx(WINDOW, rel=0.01)


def test_enough_pcpus_means_no_waiting():
    hv = host(3)
    doms = [hv.domain_create(n) for n in ("a", "b", "c")]
    got = run(hv, doms)
    for n in "abc":
        assert got[n]["cpu_time_s"] == pytest.approx(WINDOW, rel=0.01)
        assert got[n]["waits"] == [] and got[n]["preempted"] == 0


def test_a_waking_domain_waits_for_the_pcpu_and_the_trace_says_so():
    """A domain that sleeps and wakes while another computes waits in the runqueue,
    at most a burst (yield-point preemption), and sched.* records say when it ran."""
    hv = host(1, burst={"dist": "fixed", "value": 0.002})
    busy, sleeper = hv.domain_create("busy"), hv.domain_create("sleeper")
    woke = []

    def periodic(dom):
        while dom.env.now < WINDOW:
            yield dom.sleep(0.0101)
            woke.append(dom.now)
            dom.charge("hypercall")

    hv.env.process(hog(busy, WINDOW))
    hv.env.process(periodic(sleeper))
    hv.env.run(until=WINDOW)
    waits = hv.scheduler.summary(hv.env.now)["domains"]["sleeper"]["waits"]
    assert waits and max(waits) <= 0.002 + 1e-12 and sum(waits) > 0
    kinds = hv.trace.counts()
    assert kinds["sched.run"] > 0 and kinds["sched.wait"] > 0 and kinds["sched.stop"] > 0


def test_same_seed_same_schedule():
    def once():
        hv = host(1, burst={"dist": "exponential", "mean": 0.0005})
        a, b = hv.domain_create("a"), hv.domain_create("b")
        hv.scheduler.domain_set(a.domid, weight=100)
        got = run(hv, [a, b], until=0.2)
        return got["a"]["cpu_time_s"], got["b"]["waits"], len(hv.trace)
    assert once() == once()


def test_bad_figures_are_refused():
    with pytest.raises(Exception, match="physical CPUs >= 1"):
        Credit2(pcpus=0)
    hv = host(1)
    with pytest.raises(ValueError):
        hv.scheduler.domain_set(0, weight=0)


def _sleeper_waits(ratelimit):
    """A domain waking every 0.3 ms beside a CPU-bound one (bursts of 0.1 ms): its waits."""
    profile = Profile.load("default").with_overrides({"ops": {
        "domain.create": {"dist": "fixed", "value": 0.0},
        "xenstore.op": {"dist": "fixed", "value": 0.0},
        "sched.ratelimit": {"dist": "fixed", "value": ratelimit},
        "test.burst": {"dist": "fixed", "value": 0.0001}}})
    hv = Hypervisor(profile=profile, scheduler=Credit2(pcpus=1))
    busy, sleeper = hv.domain_create("busy"), hv.domain_create("sleeper")

    def periodic(dom):
        while dom.env.now < 0.2:
            yield dom.sleep(0.0003)
            dom.charge("hypercall")
    hv.env.process(hog(busy, 0.2))
    hv.env.process(periodic(sleeper))
    hv.env.run(until=0.2)
    return hv.scheduler.summary(hv.env.now)["domains"]["sleeper"]["waits"]


def test_the_ratelimit_keeps_a_just_dispatched_vcpu_on_its_pcpu():
    """Without a ratelimit the waking domain (more credit) tickles the busy one and gets
    the pCPU at its next yield point, one 0.1 ms burst later. With Xen's 1 ms, the busy
    domain, dispatched 0.3 ms ago, is not preemptable (is_preemptable), is not tickled,
    and keeps the pCPU until its slice ends (csched2_runtime)."""
    free = _sleeper_waits(0.0)
    limited = _sleeper_waits(0.001)
    assert max(free) <= 0.0001 + 1e-12
    assert min(limited) > 0.001 and sum(limited) / len(limited) > 10 * sum(free) / len(free)


@pytest.mark.parametrize("pcpus, shown", [("2", "'2' (a string)"), (True, "true (a boolean)"),
                                          (0, "0 (an integer)")])
def test_a_bad_pcpus_is_named_with_its_type(pcpus, shown):
    # as the schema and the profile checks name a bad value (simxen.errors.found)
    from simxen.errors import InputError
    with pytest.raises(InputError, match=r"^scenario\.pcpus: expected a number of physical "
                                         rf"CPUs >= 1, found {re.escape(shown)}$"):
        Credit2(pcpus=pcpus)


def test_a_reset_adds_one_credit_init_even_to_a_vcpu_at_the_credit_floor():
    """Xen's reset_credit() adds m x CSCHED2_CREDIT_INIT, with m > 1 only for a picked
    vCPU *below* -CSCHED2_CREDIT_INIT; t2c_update clamps every credit at
    CSCHED2_CREDIT_MIN (= -CSCHED2_CREDIT_INIT), so m is always 1. Bursts of 25 ms
    (longer than a slice: not preemptable here) drive both domains to the floor."""
    hv = host(1, burst={"dist": "fixed", "value": 0.025})
    a, b = hv.domain_create("a"), hv.domain_create("b")
    hv.scheduler.domain_set(b.domid, weight=512)
    run(hv, [a, b], until=0.5)
    added = [r.fields["added"] for r in hv.trace.iter_records(kinds={"sched.reset"})]
    assert len(added) > 5
    assert added == pytest.approx([0.010] * len(added))

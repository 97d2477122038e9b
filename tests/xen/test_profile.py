"""Timing profiles: loading, validation errors naming file and key, sampling."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from simxen.errors import InputError
from simxen.xen.profile import REQUIRED_OPS, Profile


def write(tmp_path, text, name="p.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def minimal_ops(skip=()):
    return "".join(f'[ops."{op}"]\ndist = "fixed"\nvalue = 1e-6\nsource = "test"\ncertainty = "U"\n'
                   for op in REQUIRED_OPS if op not in skip)


def test_default_profile_has_every_op_with_a_source():
    p = Profile.load("default")
    for op in REQUIRED_OPS:
        spec = p.op(op)
        assert spec.source and spec.certainty in "VPU"
        assert p.sample(op, np.random.default_rng(0)) >= 0
    assert p.switch("tpmfront.kernel") == "linux-6"            # the current stable kernels


def test_load_by_path(tmp_path):
    p = Profile.load(write(tmp_path, '[profile]\nname = "mine"\n' + minimal_ops()))
    assert p.name == "mine" and p.sample("hypercall", None) == 1e-6


@pytest.mark.parametrize("text, key, expected", [
    ('[ops.hypercall]\ndist = "fixed"\nvalu = 1\nsource = "s"\ncertainty = "U"\n',
     "ops.hypercall.valu", "unknown key"),
    ('[ops.hypercall]\ndist = "fixed"\nvalue = "fast"\nsource = "s"\ncertainty = "U"\n',
     "ops.hypercall.value", "expected a number"),
    ('[ops.hypercall]\ndist = "gaussian"\nvalue = 1\nsource = "s"\ncertainty = "U"\n',
     "ops.hypercall.dist", "expected dist"),
    ('[ops.hypercall]\ndist = "fixed"\nvalue = 1\ncertainty = "U"\n',
     "ops.hypercall.source", "citation"),
    ('[ops.hypercall]\ndist = "fixed"\nvalue = 1\nsource = "s"\ncertainty = "maybe"\n',
     "ops.hypercall.certainty", "certainty"),
    ('[ops.hypercall]\ndist = "uniform"\nlow = 2\nhigh = 1\nsource = "s"\ncertainty = "U"\n',
     "ops.hypercall.high", "high >= low"),
    ('[ops.hypercall]\ndist = "fixed"\nvalue = -1\nsource = "s"\ncertainty = "U"\n',
     "ops.hypercall.value", "positive"),
    ('[prfile]\nname = "x"\n', "prfile", "unknown key"),
])
def test_bad_profile_names_file_and_key(tmp_path, text, key, expected):
    path = write(tmp_path, text + minimal_ops(skip=("hypercall",)))
    with pytest.raises(InputError) as e:
        Profile.load(path)
    assert e.value.key == key and e.value.path == path
    assert str(path) in str(e.value) and key in str(e.value) and expected in str(e.value)
    assert "\n" not in str(e.value)


def test_missing_op_missing_file_bad_toml(tmp_path):
    with pytest.raises(InputError) as e:
        Profile.load(write(tmp_path, minimal_ops(skip=("gnttab.map",))))
    assert e.value.key == "ops.gnttab.map" and "missing" in str(e.value)
    with pytest.raises(InputError) as e:
        Profile.load(tmp_path / "absent.toml")
    assert "absent.toml" in str(e.value)
    with pytest.raises(InputError) as e:
        Profile.load(write(tmp_path, "[ops\n"))
    assert "not valid TOML" in str(e.value)
    with pytest.raises(InputError) as e:
        Profile.load("no-such-profile")
    assert "shipped profiles: default" in str(e.value)


def test_overrides_replace_ops_and_switches_and_are_checked():
    p = Profile.load("default")
    q = p.with_overrides({"ops": {"evtchn.notify": {"dist": "fixed", "value": 5e-6}},
                          "switches": {"tpmfront.wait": "interrupt"}})
    assert q.sample("evtchn.notify", None) == 5e-6 and q.switch("tpmfront.wait") == "interrupt"
    assert p.switch("tpmfront.wait") == "era"                   # original untouched
    with pytest.raises(InputError) as e:
        p.with_overrides({"switches": {"tpmfront.hz": "soon"}})
    assert e.value.key == "switches.tpmfront.hz"
    with pytest.raises(InputError) as e:
        p.with_overrides({"ops": {"evtchn.notify": {"dist": "fixed"}}})
    assert e.value.key == "ops.evtchn.notify.value"
    with pytest.raises(InputError) as e:
        p.switch("no.such")
    assert e.value.key == "switches.no.such"
    with pytest.raises(InputError):
        p.sample("no.such.op", None)


@pytest.mark.parametrize("dist, params", [
    ("uniform", {"low": 1e-6, "high": 3e-6}),
    ("normal", {"mean": 1e-6, "std": 2e-6}),
    ("lognormal", {"median": 2e-6, "sigma": 0.5}),
    ("exponential", {"mean": 2e-6}),
])
def test_distributions_are_non_negative_and_near_their_mean(dist, params):
    p = Profile.load("default").with_overrides({"ops": {"x": {"dist": dist, **params}}})
    rng = np.random.default_rng(3)
    draws = np.array([p.sample("x", rng) for _ in range(4000)])
    assert (draws >= 0).all()
    if dist != "normal":                                    # clipping shifts the normal's mean
        assert draws.mean() == pytest.approx(p.op("x").mean(), rel=0.1)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32))
def test_sampler_is_deterministic_per_stream(seed):
    p = Profile.load("default")
    a = p.sampler("evtchn.notify", np.random.default_rng(seed))
    b = p.sampler("evtchn.notify", np.random.default_rng(seed))
    assert [a() for _ in range(300)] == [b() for _ in range(300)]


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32), calls=st.integers(1, 700))
def test_popping_a_samplers_buffer_is_calling_it(seed, calls):
    """Hot paths take ``buf.pop() if buf else refill()``: the very draws ``sampler()`` gives,
    which are the op's draws from the stream one at a time, in order."""
    p = Profile.load("default")
    called = p.sampler("evtchn.notify", np.random.default_rng(seed))
    popped = p.sampler("evtchn.notify", np.random.default_rng(seed))
    rng = np.random.default_rng(seed)
    one_by_one = [p.op("evtchn.notify").draw(rng) for _ in range(calls)]
    by_pop = []
    for _ in range(calls):
        buf = popped.buf
        by_pop.append(buf.pop() if buf else popped.refill())
    assert [called() for _ in range(calls)] == by_pop == one_by_one


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32), calls=st.integers(1, 1200),
       dist=st.sampled_from([("uniform", {"low": 1e-6, "high": 3e-6}),
                             ("normal", {"mean": 2e-6, "std": 3e-6}),
                             ("lognormal", {"median": 2e-6, "sigma": 0.7}),
                             ("exponential", {"mean": 2e-6})]))
def test_a_samplers_batches_change_no_draw(seed, calls, dist):
    """Batches grow from FIRST_BATCH to BATCH, and every distribution still gives the
    stream's draws one by one (numpy draws the same numbers in batches of any size),
    never holding as many ahead as twice the draws taken (or the first batch) or a block."""
    from simxen.xen.profile import BATCH, FIRST_BATCH

    name, params = dist
    p = Profile.load("default").with_overrides({"ops": {"x": {"dist": name, **params}}})
    sampler = p.sampler("x", np.random.default_rng(seed))
    rng = np.random.default_rng(seed)
    taken = [sampler() for _ in range(calls)]
    assert taken == [p.op("x").draw(rng) for _ in range(calls)]
    assert len(sampler.buf) < min(2 * max(calls, FIRST_BATCH), BATCH)


def test_a_fixed_sampler_draws_nothing_from_its_stream():
    p = Profile.load("default").with_overrides({"ops": {"x": {"dist": "fixed", "value": 2e-6}}})
    rng = np.random.default_rng(1)
    sampler = p.sampler("x", rng)
    assert [sampler() for _ in range(600)] == [2e-6] * 600
    assert rng.random() == np.random.default_rng(1).random()


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32),
       steps=st.lists(st.tuples(st.integers(0, 2), st.integers(1, 300)), min_size=1, max_size=12))
def test_samplers_sharing_a_stream_take_it_in_whole_blocks(seed, steps):
    """A domain restarted under its old name makes new samplers on its old streams. Each
    sampler still takes the stream's numbers in blocks of BATCH, in the order the blocks
    are first asked for -- what samplers that drew whole blocks at once took -- however
    far the first one's growing pieces had got. Each step asks sampler ``i`` (made at its
    first step) for ``n`` draws."""
    from simxen.xen.profile import BATCH

    p = Profile.load("default")
    rng = np.random.default_rng(seed)
    ref_rng = np.random.default_rng(seed)
    samplers, blocks = {}, {}
    for i, n in steps:
        if i not in samplers:
            samplers[i] = p.sampler("evtchn.notify", rng)
            blocks[i] = []
        got = [samplers[i]() for _ in range(n)]
        want = []
        for _ in range(n):
            if not blocks[i]:
                blocks[i] = list(reversed(p.op("evtchn.notify").draw(ref_rng, BATCH)))
            want.append(blocks[i].pop())
        assert got == want

"""Streams.rng makes the generator ``SeedSequence(seed, spawn_key=SHA-256(name))`` gives,
without building that SeedSequence (see simxen.xen.streams)."""

import numpy as np
from hypothesis import given, settings, strategies as st

from simxen.xen.streams import Streams, _entropy, _spawn_key, _State

seeds = st.one_of(st.integers(0, 2**32 + 5), st.integers(0, 2**300))


@settings(max_examples=150, deadline=None)
@given(seed=seeds, name=st.text(max_size=40))
def test_a_stream_is_numpys_spawned_seed_sequence(seed, name):
    ours = Streams(seed).rng(name)
    numpys = np.random.Generator(np.random.PCG64(np.random.SeedSequence(
        seed, spawn_key=_spawn_key(name))))
    assert ours.bit_generator.state == numpys.bit_generator.state
    assert ours.random(5).tolist() == numpys.random(5).tolist()


@settings(max_examples=100, deadline=None)
@given(seed=seeds, name=st.text(max_size=10), n_words=st.integers(1, 40),
       dtype=st.sampled_from([np.uint32, np.uint64, "uint32", "u8"]))
def test_the_pools_state_is_what_seed_sequence_generates(seed, name, n_words, dtype):
    reference = np.random.SeedSequence(seed, spawn_key=_spawn_key(name))
    pool = np.random.SeedSequence(_entropy(seed, _spawn_key(name))).pool
    assert pool.tolist() == reference.pool.tolist()
    ours = _State(tuple(pool.tolist())).generate_state(n_words, dtype)
    theirs = reference.generate_state(n_words, dtype)
    assert ours.dtype == theirs.dtype and ours.tolist() == theirs.tolist()


def test_other_state_types_are_refused_as_numpy_does():
    import pytest
    with pytest.raises(ValueError):
        _State((1, 2, 3, 4)).generate_state(4, np.float64)

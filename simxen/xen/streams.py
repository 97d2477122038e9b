"""Seeded random streams, one per named component.

One integer seed drives a whole run. A component asks for its own stream by a
stable name; the stream is derived from ``SeedSequence(seed,
spawn_key=<SHA-256(name) as 32-bit words>)``, so it depends only on the seed
and the name -- adding a domain, or drawing more numbers in one component,
never changes another component's draws::

    streams = Streams(42)
    rng = streams.rng("dom3/vtpm")          # numpy.random.Generator
    nonce = streams.random_bytes("dom3/vtpm/nonces")(20)

A fleet guest's domains ask for seventeen-odd streams (one per timing op,
:meth:`simxen.xen.domain.Domain.sampler`), so making one is on the fleet's
path. ``SeedSequence(seed, spawn_key=key)`` spent most of its ~100 us
turning the seed and each key word into numpy arrays one by one, and
``PCG64`` half of the rest in ``generate_state``, a loop over numpy
scalars. :meth:`Streams.rng` gives the same generator for less: it hands
``SeedSequence`` the words numpy would assemble from the seed and the key
(:func:`_entropy`: the seed's 32-bit words, padded with zeros to the pool's
four, then the key's eight) as one uint32 array, which numpy mixes as they
are, and answers ``PCG64``'s ``generate_state`` from the mixed pool in
plain integers (:class:`_State`, the algorithm of numpy's
``bit_generator.pyx``). A hypothesis test checks both against numpy.
"""

import hashlib
import struct

import numpy as np
from numpy.random.bit_generator import ISeedSequence


def _spawn_key(name):
    """SHA-256 of ``name`` as eight little-endian 32-bit words (one unpack, not eight)."""
    return _WORDS.unpack(hashlib.sha256(name.encode("utf-8")).digest())


_WORDS = struct.Struct("<8I")

#: SeedSequence's pool: 4 words of 32 bits (numpy's DEFAULT_POOL_SIZE)
_POOL_SIZE = 4
_MASK32 = 0xFFFFFFFF
#: SeedSequence.generate_state's hash constant and multiplier (numpy's INIT_B, MULT_B)
_INIT_B, _MULT_B = 0x8B51F9DD, 0x58F38DED


def _entropy(seed, key):
    """The words ``SeedSequence(seed, spawn_key=key)`` mixes, as one uint32 array: the
    seed's 32-bit words (least significant first; 0 is one word), padded with zero words
    to the pool's size because a spawn key follows, then the key's words (each below
    2**32, so one word each). ``SeedSequence(_entropy(seed, key))`` has the same pool."""
    words = []
    while True:
        words.append(seed & _MASK32)
        seed >>= 32
        if not seed:
            break
    words += [0] * (_POOL_SIZE - len(words))
    return np.array(words + list(key), dtype=np.uint32)


class _State(ISeedSequence):
    """A mixed SeedSequence pool answering ``generate_state`` -- all a bit generator asks
    of a seed sequence -- in plain integers, as numpy's loop over numpy scalars does
    (``bit_generator.pyx``: each output word is a pool word, in turn, hashed with a
    running constant). Keeps only the pool's four words."""

    __slots__ = ("pool",)

    def __init__(self, pool):
        self.pool = pool

    def generate_state(self, n_words, dtype=np.uint32):
        wide = dtype is np.uint64 or np.dtype(dtype) == np.uint64
        if not wide and np.dtype(dtype) != np.uint32:
            raise ValueError("only support uint32 or uint64")
        n = 2 * n_words if wide else n_words
        pool = self.pool
        out = []
        for i, (h, h_next) in enumerate(_state_constants(n)):
            word = (pool[i % _POOL_SIZE] ^ h) * h_next & _MASK32
            out.append(word ^ (word >> 16))
        if wide:                        # pairs of 32-bit words, little-endian
            out = [out[j] | out[j + 1] << 32 for j in range(0, n, 2)]
        return np.array(out, dtype=np.uint64 if wide else np.uint32)


def _state_constants(n):
    """generate_state's first ``n`` (constant, next constant) pairs: the constant is
    multiplied on each word whatever the pool holds, so they are computed once."""
    while len(_STATE_CONSTANTS) < n:
        h = _STATE_CONSTANTS[-1][1] if _STATE_CONSTANTS else _INIT_B
        _STATE_CONSTANTS.append((h, h * _MULT_B & _MASK32))
    return _STATE_CONSTANTS[:n]


_STATE_CONSTANTS = []


class Streams:
    """The random streams of one run, derived from ``seed``."""

    def __init__(self, seed=0):
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, not {seed!r}")
        self.seed = seed
        self._rngs = {}

    def rng(self, name):
        """The ``numpy.random.Generator`` called ``name``.

        The same name gives the same generator object (so a component that
        asks twice continues its stream rather than restarting it).
        """
        rng = self._rngs.get(name)
        if rng is None:
            # == PCG64(SeedSequence(self.seed, spawn_key=_spawn_key(name))): see the module doc
            pool = np.random.SeedSequence(_entropy(self.seed, _spawn_key(name))).pool
            rng = self._rngs[name] = np.random.Generator(
                np.random.PCG64(_State(tuple(pool.tolist()))))
        return rng

    def random_bytes(self, name, *, chunk=4096):
        """A deterministic ``Callable[[int], bytes]`` drawing from stream ``name``.

        Bytes are taken from the generator ``chunk`` at a time (one numpy
        call is slow next to a slice), so the same sequence of requests gives
        the same bytes for a given seed and name.
        """
        rng = self.rng(name)
        buf = b""
        pos = 0

        def random_bytes(n):
            nonlocal buf, pos
            if n < 0:
                raise ValueError(f"cannot draw {n} bytes")
            if pos + n > len(buf):
                buf = buf[pos:] + rng.bytes(max(chunk, n))
                pos = 0
            out = buf[pos:pos + n]
            pos += n
            return out

        return random_bytes

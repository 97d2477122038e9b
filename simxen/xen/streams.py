"""Seeded random streams, one per named component.

One integer seed drives a whole run. A component asks for its own stream by a
stable name; the stream is derived from ``SeedSequence(seed,
spawn_key=<SHA-256(name) as 32-bit words>)``, so it depends only on the seed
and the name -- adding a domain, or drawing more numbers in one component,
never changes another component's draws::

    streams = Streams(42)
    rng = streams.rng("dom3/vtpm")          # numpy.random.Generator
    nonce = streams.random_bytes("dom3/vtpm/nonces")(20)
"""

import hashlib
import struct

import numpy as np


def _spawn_key(name):
    """SHA-256 of ``name`` as eight little-endian 32-bit words (one unpack, not eight)."""
    return _WORDS.unpack(hashlib.sha256(name.encode("utf-8")).digest())


_WORDS = struct.Struct("<8I")


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
            seq = np.random.SeedSequence(self.seed, spawn_key=_spawn_key(name))
            rng = self._rngs[name] = np.random.Generator(np.random.PCG64(seq))
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

"""A hash whose state in progress can be taken out and put back.

TPM2_ContextSave of a hash, HMAC or event sequence object (Part 3, 28.2)
must carry the hashes in progress in the context blob, and ContextLoad must
resume them -- as many times as the blob is loaded (OpenSSL's tpm2 provider
copies a digest in progress that way).  ``hashlib`` cannot export its state,
so the state is kept in a form that can: the chaining value of the blocks
hashed so far (FIPS 180-4's H words), their length and the bytes of the
block not yet complete.

Hashing stays with ``hashlib`` while it can: a :class:`ResumableHash` feeds
``hashlib`` and only remembers the bytes since its last fold; the pure-Python
compression function (FIPS 180-4, 6.1.2 / 6.2.2 / 6.4.2) runs over them only
when the state is exported or when more than :data:`FOLD_BYTES` of them have
piled up.  A hash resumed from an exported state has no ``hashlib`` object
(there is no way to give one a chaining value) and finishes in Python.

The constants are derived as FIPS 180-4 defines them (4.2.2, 4.2.3, 5.3.3-5.3.5:
the first bits of the fractional parts of the square and cube roots of the
first primes) rather than copied out.
"""

import struct

from simxen.tpm.algorithms import HASHES
from simxen.tpm.constants import TPM_ALG
from simxen.tpm.marshal import tpm2b, u64

#: Bytes not yet folded into the chaining value that a hash keeps before it
#: folds them: a bound on its memory.  A sequence that is never saved costs
#: no Python hashing unless it is longer than this; one that is pays for
#: its bytes since the last save, at 0.2-0.6 MB/s (SHA-256 the slowest), so
#: the bound is high: 16 MiB, about 90 s of SHA-256 in Python, where
#: ``hashlib`` takes 10 ms -- and a TPM takes that much data 1 KiB per command.
FOLD_BYTES = 16 << 20


def _primes(n):
    found = []
    k = 2
    while len(found) < n:
        if all(k % p for p in found if p * p <= k):
            found.append(k)
        k += 1
    return found


def _root_fraction(value, degree, bits):
    """The first ``bits`` bits of the fractional part of ``value ** (1/degree)``."""
    target = value << (degree * bits)
    x = 1 << ((target.bit_length() + degree - 1) // degree)
    while True:                     # integer Newton iteration from above
        y = ((degree - 1) * x + target // x ** (degree - 1)) // degree
        if y >= x:
            return x & ((1 << bits) - 1)
        x = y


class _Sha2:
    """One SHA-2 function: word size, rounds, rotations, constants."""

    def __init__(self, word_bits, rounds, iv, out_words, sigmas):
        self.w = word_bits
        self.mask = (1 << word_bits) - 1
        self.rounds = rounds
        self.block = 16 * word_bits // 8
        self.iv = tuple(iv)
        self.out_words = out_words
        self.k = tuple(_root_fraction(p, 3, word_bits) for p in _primes(rounds))
        self.big_sigma0, self.big_sigma1, self.small_sigma0, self.small_sigma1 = sigmas
        self.fmt = ">16" + ("I" if word_bits == 32 else "Q")
        self.length_bytes = 2 * word_bits // 8

    def compress(self, h, data):
        """The chaining value after the whole blocks of ``data``."""
        mask, k, width, rounds = self.mask, self.k, self.w, self.rounds
        (b0, b1, b2), (c0, c1, c2) = self.big_sigma0, self.big_sigma1
        (s0a, s0b, s0s), (s1a, s1b, s1s) = self.small_sigma0, self.small_sigma1
        b0_, b1_, b2_, c0_, c1_, c2_ = (width - n for n in (b0, b1, b2, c0, c1, c2))
        s0a_, s0b_, s1a_, s1b_ = (width - n for n in (s0a, s0b, s1a, s1b))
        for off in range(0, len(data), self.block):
            w = list(struct.unpack_from(self.fmt, data, off))
            for t in range(16, rounds):
                x, y = w[t - 15], w[t - 2]
                w.append((w[t - 16] + w[t - 7]
                          + ((x >> s0a | x << s0a_) ^ (x >> s0b | x << s0b_) ^ (x >> s0s))
                          + ((y >> s1a | y << s1a_) ^ (y >> s1b | y << s1b_) ^ (y >> s1s))
                          ) & mask)
            a, b, c, d, e, f, g, hh = h
            for t in range(rounds):
                t1 = (hh + (((e >> c0 | e << c0_) ^ (e >> c1 | e << c1_) ^ (e >> c2 | e << c2_))
                            & mask) + ((e & f) ^ (~e & g)) + k[t] + w[t]) & mask
                t2 = (((a >> b0 | a << b0_) ^ (a >> b1 | a << b1_) ^ (a >> b2 | a << b2_))
                      & mask) + ((a & b) ^ (a & c) ^ (b & c))
                a, b, c, d, e, f, g, hh = (t1 + t2) & mask, a, b, c, (d + t1) & mask, e, f, g
            h = tuple((x + y) & mask for x, y in zip(h, (a, b, c, d, e, f, g, hh)))
        return tuple(h)


class _Sha1:
    """SHA-1 (FIPS 180-4, 6.1.2)."""

    w = 32
    mask = 0xFFFFFFFF
    block = 64
    iv = (0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0)
    out_words = 5
    length_bytes = 8

    def compress(self, h, data):
        mask = self.mask
        rotl = lambda x, n: ((x << n) | (x >> (32 - n))) & mask      # noqa: E731
        for off in range(0, len(data), 64):
            w = list(struct.unpack_from(">16I", data, off))
            for t in range(16, 80):
                w.append(rotl(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1))
            a, b, c, d, e = h
            for t in range(80):
                if t < 20:
                    f, k = (b & c) | (~b & d), 0x5A827999
                elif t < 40:
                    f, k = b ^ c ^ d, 0x6ED9EBA1
                elif t < 60:
                    f, k = (b & c) | (b & d) | (c & d), 0x8F1BBCDC
                else:
                    f, k = b ^ c ^ d, 0xCA62C1D6
                a, b, c, d, e = (rotl(a, 5) + f + e + k + w[t]) & mask, a, rotl(b, 30), c, d
            h = tuple((x + y) & mask for x, y in zip(h, (a, b, c, d, e)))
        return h


_P = _primes(16)
_SHA256_SIGMAS = ((2, 13, 22), (6, 11, 25), (7, 18, 3), (17, 19, 10))
_SHA512_SIGMAS = ((28, 34, 39), (14, 18, 41), (1, 8, 7), (19, 61, 6))
FUNCTIONS = {
    TPM_ALG.SHA1: _Sha1(),
    TPM_ALG.SHA256: _Sha2(32, 64, (_root_fraction(p, 2, 32) for p in _P[:8]), 8,
                          _SHA256_SIGMAS),
    TPM_ALG.SHA384: _Sha2(64, 80, (_root_fraction(p, 2, 64) for p in _P[8:16]), 6,
                          _SHA512_SIGMAS),
    TPM_ALG.SHA512: _Sha2(64, 80, (_root_fraction(p, 2, 64) for p in _P[:8]), 8,
                          _SHA512_SIGMAS),
}


class ResumableHash:
    """One hash in progress (``alg`` a TPM_ALG hash id) whose state
    :meth:`export` gives as bytes and :meth:`restore` takes back."""

    __slots__ = ("alg", "_fast", "_chain", "_count", "_tail")

    def __init__(self, alg):
        self.alg = alg
        self._fast = HASHES[alg].new()
        self._chain = FUNCTIONS[alg].iv
        self._count = 0             # bytes folded into _chain
        self._tail = bytearray()    # bytes hashed but not folded

    def update(self, data):
        if self._fast is not None:
            self._fast.update(data)
        self._tail += data
        if len(self._tail) > FOLD_BYTES:
            self._fold()

    def _fold(self):
        fn = FUNCTIONS[self.alg]
        whole = len(self._tail) - len(self._tail) % fn.block
        if whole:
            self._chain = fn.compress(self._chain, bytes(self._tail[:whole]))
            self._count += whole
            del self._tail[:whole]

    def digest(self):
        """The digest of everything so far (the hash can go on after)."""
        if self._fast is not None:
            return self._fast.digest()
        fn = FUNCTIONS[self.alg]
        length = (self._count + len(self._tail)) * 8
        pad = b"\x80" + bytes((-(len(self._tail) + 1 + fn.length_bytes)) % fn.block)
        last = bytes(self._tail) + pad + length.to_bytes(fn.length_bytes, "big")
        h = fn.compress(self._chain, last)
        size = fn.w // 8
        return b"".join(x.to_bytes(size, "big") for x in h[:fn.out_words])

    def export(self):
        """``u64(bytes folded) || H words || TPM2B(bytes of the open block)``."""
        self._fold()
        size = FUNCTIONS[self.alg].w // 8
        return (u64(self._count) + b"".join(x.to_bytes(size, "big") for x in self._chain)
                + tpm2b(bytes(self._tail)))

    @classmethod
    def restore(cls, alg, reader):
        """The hash :meth:`export` wrote, read from ``reader``; ``ValueError``
        if the bytes cannot be one."""
        fn = FUNCTIONS[alg]
        size = fn.w // 8
        count = reader.u64()
        chain = tuple(int.from_bytes(reader.bytes(size), "big") for _ in fn.iv)
        tail = reader.tpm2b(fn.block)
        if count % fn.block or len(tail) >= fn.block:
            raise ValueError("not a hash state")
        h = cls.__new__(cls)
        h.alg, h._fast, h._chain, h._count, h._tail = alg, None, chain, count, bytearray(tail)
        return h

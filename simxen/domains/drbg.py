"""HMAC_DRBG (NIST SP 800-90A, SHA-256): the vTPM's random number generator.

Xen's vTPM stub domain runs its TPM emulator with the internal PRNG off and
a CTR-DRBG seeded from the *physical* TPM through the manager (Xen's
``stubdom/vtpm/vtpm.c``: a ``VTPM_GetRandom`` -- a ``TPM_GetRandom``
passthrough -- at start-up). simxen's
vTPM does the same with an HMAC_DRBG, a construction simple enough to read
in full here; :meth:`HmacDrbg.generate` is what the TPM engine is given as
its ``random_bytes``::

    >>> drbg = HmacDrbg(bytes(32), personalization=b"vtpm")
    >>> len(drbg.generate(40))
    40
"""

from __future__ import annotations

import hashlib

__all__ = ["HmacDrbg", "HmacSha256"]

_BLOCK = 64                                   # SHA-256's block size (bytes)
_IPAD = bytes(b ^ 0x36 for b in range(256))   # byte -> byte ^ ipad, for bytes.translate
_OPAD = bytes(b ^ 0x5c for b in range(256))   # byte -> byte ^ opad


class HmacSha256:
    """HMAC-SHA-256 under one key (RFC 2104), the two padded-key blocks hashed once.

    ``HMAC(K, m) = H((K ^ opad) || H((K ^ ipad) || m))``: the same bytes as
    ``hmac.digest(K, m, "sha256")``. The DRBG calls it several times per key
    (every output block and the state update share one), and OpenSSL's HMAC
    sets its key up again on every call -- the larger part of its cost for
    32-byte messages. Here the key's two blocks are hashed once and each call
    copies those SHA-256 states.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes):
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(key.translate(_IPAD))
        self._outer = hashlib.sha256(key.translate(_OPAD))

    def __call__(self, data: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(data)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


class HmacDrbg:
    """HMAC_DRBG with SHA-256, instantiated from *entropy* (and a personalization string)."""

    def __init__(self, entropy: bytes, *, personalization: bytes = b""):
        self.value = b"\x01" * 32
        self.reseed_counter = 1
        self._set_key(bytes(32))
        self._update(bytes(entropy) + bytes(personalization))

    def _set_key(self, key: bytes) -> None:
        self.key = key
        self._hmac = HmacSha256(key)

    def _update(self, provided: bytes = b"") -> None:
        self._set_key(self._hmac(self.value + b"\x00" + provided))
        self.value = self._hmac(self.value)
        if provided:
            self._set_key(self._hmac(self.value + b"\x01" + provided))
            self.value = self._hmac(self.value)

    def reseed(self, entropy: bytes) -> None:
        self._update(bytes(entropy))
        self.reseed_counter = 1

    def generate(self, n: int) -> bytes:
        """*n* pseudo-random bytes."""
        hmac_k = self._hmac
        value = self.value
        out = b""
        while len(out) < n:
            value = hmac_k(value)
            out += value
        self.value = value
        self._update()
        self.reseed_counter += 1
        return out[:n]

    __call__ = generate

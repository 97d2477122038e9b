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

import hmac

__all__ = ["HmacDrbg"]


class HmacDrbg:
    """HMAC_DRBG with SHA-256, instantiated from *entropy* (and a personalization string)."""

    def __init__(self, entropy: bytes, *, personalization: bytes = b""):
        self.key = bytes(32)
        self.value = b"\x01" * 32
        self.reseed_counter = 1
        self._update(bytes(entropy) + bytes(personalization))

    def _hmac(self, data: bytes) -> bytes:
        return hmac.digest(self.key, data, "sha256")

    def _update(self, provided: bytes = b"") -> None:
        self.key = self._hmac(self.value + b"\x00" + provided)
        self.value = self._hmac(self.value)
        if provided:
            self.key = self._hmac(self.value + b"\x01" + provided)
            self.value = self._hmac(self.value)

    def reseed(self, entropy: bytes) -> None:
        self._update(bytes(entropy))
        self.reseed_counter = 1

    def generate(self, n: int) -> bytes:
        """*n* pseudo-random bytes."""
        out = bytearray()
        while len(out) < n:
            self.value = self._hmac(self.value)
            out += self.value
        self._update()
        self.reseed_counter += 1
        return bytes(out[:n])

    __call__ = generate

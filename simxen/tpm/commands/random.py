"""Part 3, chapter 16: GetRandom and StirRandom.

GetRandom returns at most 64 bytes (the size of the largest digest, as the
reference implementation does).  StirRandom mixes its input into a pool
that whitens every later GetRandom output, so stirring changes what the
TPM returns without touching the caller's byte source.
"""

import hashlib

from simxen.tpm.commands import command
from simxen.tpm.constants import TPM_CC
from simxen.tpm.kdf import kdfa
from simxen.tpm.marshal import tpm2b

MAX_RANDOM = 64


def random_output(tpm, n):
    out = tpm.random_bytes(n)
    pool = tpm.stir_pool
    if pool and n:
        tpm.stir_counter += 1
        mask = kdfa("sha256", pool, b"STIR", tpm.stir_counter.to_bytes(8, "big"), b"", 8 * n)
        out = bytes(a ^ b for a, b in zip(out, mask))
    return out


@command(TPM_CC.GetRandom, encrypt=True)
def get_random(tpm, cmd):
    r = cmd.r
    n = r.u16()
    r.done()
    return b"", tpm2b(random_output(tpm, min(n, MAX_RANDOM)))


@command(TPM_CC.StirRandom, decrypt=True)
def stir_random(tpm, cmd):
    r = cmd.r
    data = r.tpm2b(128)
    r.done()
    tpm.stir_pool = hashlib.sha256(tpm.stir_pool + data).digest()
    tpm.nv_changed = True          # the pool is part of the persistent state
    return b"", b""

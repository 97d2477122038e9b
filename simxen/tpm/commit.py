"""Two-phase ECC operations: commit values, ECDAA signing, ephemeral keys.

TPM2_Commit and TPM2_EC_Ephemeral hand out a point ``[r]P`` and a small
``counter``; the TPM keeps only the counter, and makes ``r`` again from it
when TPM2_Sign (ECDAA) or TPM2_ZGen_2Phase later asks for it, once::

    r = KDFa(SHA-256, commitNonce, "ECDAA Commit", keyName, counter) mod n

``commitNonce`` is new at every TPM Reset, so a counter dies with it.  A
commit is usable once: the TPM remembers which of the last
:data:`COMMIT_WINDOW` counters are still outstanding.

ECDAA signing (Part 1, "ECDAA"; the reference's ``SignEcdaa``)::

    nonceK  random, 0 < nonceK < n
    T       = H(nonceK || digest) mod n
    s       = r + T * d  mod n        signature = (nonceK, s)

so a verifier who knows the commit ``E = [r]G`` checks ``[s]G - [T]Q = E``.
"""

from simxen.tpm import keys
from simxen.tpm.algorithms import HASHES
from simxen.tpm.constants import TPM_ALG, TPM_RC
from simxen.tpm.errors import TpmError
from simxen.tpm.kdf import kdfa
from simxen.tpm.marshal import u64
from simxen.tpm.signature import Signature

COMMIT_WINDOW = 64


class CommitState:
    """What a TPM keeps between the two phases (reset data: new at each
    TPM Reset)."""

    __slots__ = ("nonce", "counter", "outstanding")

    def __init__(self, nonce):
        self.nonce = nonce
        self.counter = 0
        self.outstanding = set()

    def new_counter(self):
        """The next counter, now outstanding (the oldest of the window is
        forgotten)."""
        counter = self.counter                    # the first commit is number 0
        self.counter += 1
        self.outstanding = {c for c in self.outstanding if c > counter - COMMIT_WINDOW}
        self.outstanding.add(counter)
        return counter

    def take(self, counter, param=0):
        """Use up commit ``counter`` (the low 16 bits a command carries);
        ``TPM_RC_VALUE`` when it is not outstanding (against ``param``, as
        libtpms answers: none for Sign, the counter for ZGen_2Phase)."""
        for c in sorted(self.outstanding, reverse=True):
            if c & 0xFFFF == counter:
                self.outstanding.discard(c)
                return c
        raise TpmError(TPM_RC.VALUE, param=param)


def state(tpm):
    """The TPM's commit state, made (with a fresh nonce) on first use after a
    TPM Reset -- so a TPM that never commits draws no randomness for it."""
    if tpm.commit is None:
        tpm.commit = CommitState(tpm.random_bytes(32))
    return tpm.commit


def commit_scalar(tpm, name, counter, curve):
    """``r`` of commit ``counter`` for the key (or curve) named ``name``."""
    n = keys.CURVE_ORDERS[curve]
    size = keys.CURVE_BYTES[curve]
    material = kdfa("sha256", state(tpm).nonce, b"ECDAA Commit", name, u64(counter),
                    8 * (size + 8))
    return int.from_bytes(material, "big") % (n - 1) + 1


def sign_ecdaa(tpm, obj, hash_alg, count, digest):
    curve = obj.public.curve
    n = keys.CURVE_ORDERS[curve]
    size = keys.CURVE_BYTES[curve]
    counter = state(tpm).take(count)
    r = commit_scalar(tpm, obj.name, counter, curve)
    nonce_k = int.from_bytes(tpm.random_bytes(size + 8), "big") % (n - 1) + 1
    nonce_bytes = nonce_k.to_bytes(size, "big")
    t = int.from_bytes(HASHES[hash_alg].digest(nonce_bytes + digest), "big") % n
    d = int.from_bytes(obj.sensitive, "big")
    s = (r + t * d) % n
    return Signature(TPM_ALG.ECDAA, hash_alg, r=nonce_bytes, s=s.to_bytes(size, "big"))

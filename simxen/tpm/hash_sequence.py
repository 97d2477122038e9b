"""A hash, HMAC or event sequence object (Part 3, 17).

It sits in a transient slot like any object, is authorized with the
authValue given at its start, and its Name is empty (it has no public area,
its nameAlg is TPM_ALG_NULL — what ESYS puts in cpHash too).  It cannot be saved with ContextSave or used as a key.
"""

import hmac as _hmac

from simxen.tpm.algorithms import HASHES
from simxen.tpm.constants import TPM_RH, TPMA_OBJECT


class HashSequence:
    """Hashes in progress: one hash (``alg``), an HMAC (``key`` given), or an
    event sequence (``alg`` None: every implemented hash at once)."""

    is_sequence = True
    attributes = TPMA_OBJECT.userWithAuth | TPMA_OBJECT.noDA
    hierarchy = TPM_RH.NULL

    def __init__(self, auth_value, alg=None, key=None):
        self.auth_value = auth_value.rstrip(b"\0")
        self.alg = alg
        self.name = b""                  # nameAlg NULL: the empty Name
        self.first_bytes = b""
        if key is not None:
            self.states = {alg: _hmac.new(key, digestmod=HASHES[alg].name)}
        elif alg is not None:
            self.states = {alg: HASHES[alg].new()}
        else:
            self.states = {a: h.new() for a, h in HASHES.items()}
        self.is_hmac = key is not None

    def update(self, data):
        if len(self.first_bytes) < 4:
            self.first_bytes = (self.first_bytes + data)[:4]
        for state in self.states.values():
            state.update(data)

    def digests(self):
        return {alg: state.digest() for alg, state in self.states.items()}

"""Part 3, chapter 15: TPM2_Hash.

Besides the digest, Hash returns a TPMT_TK_HASHCHECK ticket that lets a
restricted key sign the digest later — but only when the data did not start
with TPM_GENERATED_VALUE; then, or for the NULL hierarchy, the ticket is the
NULL ticket.
"""

from simxen.tpm.algorithms import HASHES
from simxen.tpm.commands import command
from simxen.tpm.constants import TPM_CC, TPM_RC, TPM_RH, TPM_ST
from simxen.tpm.creation import ticket
from simxen.tpm.errors import TpmError
from simxen.tpm.marshal import tpm2b, u32

_GENERATED = u32(0xFF544347)


@command(TPM_CC.Hash, decrypt=True, encrypt=True)
def hash_(tpm, cmd):
    r = cmd.r
    data = r.at(1).tpm2b(1024)
    alg = r.at(2).u16()
    hierarchy = r.at(3).u32()
    r.done()
    h = HASHES.get(alg)
    if h is None:
        raise TpmError(TPM_RC.HASH, param=2)
    if hierarchy not in (TPM_RH.OWNER, TPM_RH.ENDORSEMENT, TPM_RH.PLATFORM, TPM_RH.NULL):
        raise TpmError(TPM_RC.VALUE, param=3)
    digest = h.digest(data)
    if data[:4] == _GENERATED:
        hierarchy = TPM_RH.NULL
    return b"", tpm2b(digest) + ticket(tpm, TPM_ST.HASHCHECK, hierarchy, digest)

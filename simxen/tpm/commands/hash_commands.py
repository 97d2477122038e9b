"""Part 3, chapters 15 and 17: Hash, and hash/HMAC/event sequences.

Besides the digest, Hash and SequenceComplete return a TPMT_TK_HASHCHECK
ticket that lets a restricted key sign the digest later — but only when the
data did not start with TPM_GENERATED_VALUE; then, or for the NULL
hierarchy, the ticket is the NULL ticket.  Sequences (HashSequenceStart,
HMAC_Start, SequenceUpdate, SequenceComplete, EventSequenceComplete) are what
tpm2_hash and tpm2_pcrevent use for data longer than one buffer.
"""

from simxen.tpm.algorithms import HASHES
from simxen.tpm.commands import command
from simxen.tpm.constants import TPM_ALG, TPM_CC, TPM_RC, TPM_RH, TPM_ST, TPMA_OBJECT
from simxen.tpm.creation import read_hierarchy, ticket
from simxen.tpm.errors import TpmError
from simxen.tpm.hash_sequence import HashSequence
from simxen.tpm.marshal import tpm2b, u16, u32

_GENERATED = u32(0xFF544347)


@command(TPM_CC.Hash, decrypt=True, encrypt=True)
def hash_(tpm, cmd):
    r = cmd.r
    data = r.at(1).tpm2b(1024)
    h = HASHES.get(r.at(2).u16())
    if h is None:
        raise TpmError(TPM_RC.HASH, param=2)
    hierarchy = read_hierarchy(r.at(3))
    r.done()
    digest = h.digest(data)
    if data[:4] == _GENERATED:
        hierarchy = TPM_RH.NULL
    return b"", tpm2b(digest) + ticket(tpm, TPM_ST.HASHCHECK, hierarchy, digest)


#: TPMI_ALG_MAC_SCHEME (Part 2, rev. 1.59): a hash, or NULL; a block cipher only
#: where CMAC is implemented, which it is not here (nor in libtpms 0.9)
_MAC_SCHEMES = frozenset(HASHES) | {TPM_ALG.NULL}


def _mac_scheme(r):
    """The hashAlg of HMAC and HMAC_Start: since revision 1.59 the
    TPMI_ALG_MAC_SCHEME of MAC and MAC_Start, ``TPM_RC_SYMMETRIC`` when it is
    neither a hash nor a block cipher."""
    alg = r.u16()
    if alg not in _MAC_SCHEMES:
        raise TpmError(TPM_RC.SYMMETRIC, param=r.param)
    return alg


def _sequence(tpm, handle):
    return tpm.objects[handle]


def _start(tpm, seq):
    return u32(tpm.add_object(seq))


@command(TPM_CC.HashSequenceStart, decrypt=True)
def hash_sequence_start(tpm, cmd):
    """hashAlg NULL starts an event sequence (every bank's hash)."""
    r = cmd.r
    auth = r.at(1).tpm2b(64)
    alg = r.at(2).u16()
    if alg != TPM_ALG.NULL and alg not in HASHES:
        raise TpmError(TPM_RC.HASH, param=2)
    r.done()
    return _start(tpm, HashSequence(auth, None if alg == TPM_ALG.NULL else alg)), b""


def _hmac_sequence(key, alg, auth):
    """An HMAC sequence for keyed-hash signing key ``key`` (HMAC_Start, HMAC)."""
    pub = key.public
    if pub.type != TPM_ALG.KEYEDHASH or not key.attributes & TPMA_OBJECT.sign \
            or key.sensitive is None:
        raise TpmError(TPM_RC.TYPE, handle=1)
    if key.attributes & TPMA_OBJECT.restricted:
        raise TpmError(TPM_RC.ATTRIBUTES, handle=1)
    if alg == TPM_ALG.NULL:
        alg = pub.scheme[1]
    elif alg not in HASHES or pub.scheme[0] != TPM_ALG.NULL and pub.scheme[1] != alg:
        raise TpmError(TPM_RC.VALUE, param=2)
    if alg not in HASHES:
        raise TpmError(TPM_RC.SCHEME, handle=1)
    return HashSequence(auth, alg, key=key.sensitive)


@command(TPM_CC.HMAC_Start, handles=("object",), auth=1, decrypt=True)
def hmac_start(tpm, cmd):
    r = cmd.r
    auth = r.at(1).tpm2b(64)
    alg = _mac_scheme(r.at(2))
    r.done()
    return _start(tpm, _hmac_sequence(tpm.get_object(cmd.handles[0]), alg, auth)), b""


@command(TPM_CC.SequenceUpdate, handles=("sequence",), auth=1, decrypt=True)
def sequence_update(tpm, cmd):
    r = cmd.r
    data = r.tpm2b(1024)
    r.done()
    _sequence(tpm, cmd.handles[0]).update(data)
    return b"", b""


@command(TPM_CC.SequenceComplete, handles=("sequence",), auth=1, decrypt=True, encrypt=True)
def sequence_complete(tpm, cmd):
    r = cmd.r
    data = r.at(1).tpm2b(1024)
    hierarchy = read_hierarchy(r.at(2))
    r.done()
    seq = _sequence(tpm, cmd.handles[0])
    if seq.alg is None:
        raise TpmError(TPM_RC.MODE, handle=1)
    seq.update(data)
    digest = seq.digests()[seq.alg]
    if seq.is_hmac or seq.first_bytes == _GENERATED:
        hierarchy = TPM_RH.NULL
    del tpm.objects[cmd.handles[0]]
    return b"", tpm2b(digest) + ticket(tpm, TPM_ST.HASHCHECK, hierarchy, digest)


@command(TPM_CC.EventSequenceComplete, handles=("pcr+", "sequence"), auth=2, decrypt=True)
def event_sequence_complete(tpm, cmd):
    r = cmd.r
    data = r.tpm2b(1024)
    r.done()
    pcr, handle = cmd.handles
    seq = _sequence(tpm, handle)
    if seq.alg is not None:
        raise TpmError(TPM_RC.MODE, handle=2)
    if pcr != TPM_RH.NULL and not tpm.pcrs.can_extend(pcr, cmd.locality):
        raise TpmError(TPM_RC.LOCALITY)
    seq.update(data)
    digests = seq.digests()
    if pcr != TPM_RH.NULL:
        tpm.pcrs.extend(pcr, digests.items())
    del tpm.objects[handle]
    return b"", u32(len(digests)) + b"".join(u16(alg) + d for alg, d in digests.items())


@command(TPM_CC.HMAC, handles=("object",), auth=1, decrypt=True, encrypt=True)
def hmac_(tpm, cmd):
    """One-shot HMAC with a keyed-hash signing key."""
    r = cmd.r
    data = r.at(1).tpm2b(1024)
    alg = _mac_scheme(r.at(2))
    r.done()
    key = tpm.get_object(cmd.handles[0])
    seq = _hmac_sequence(key, alg, b"")
    seq.update(data)
    return b"", tpm2b(seq.digests()[seq.alg])

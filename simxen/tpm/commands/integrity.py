"""Part 3, chapter 22: PCR_Extend, PCR_Event, PCR_Read, PCR_Reset, PCR_Allocate,
PCR_SetAuthPolicy and PCR_SetAuthValue.

Locality rules are the PC Client profile's (:mod:`simxen.tpm.pcr`): a PCR
that may not be extended or reset from the command's locality gives
``TPM_RC_LOCALITY``.  PCR_Read returns at most eight digests and echoes in
``pcrSelectionOut`` exactly the PCRs it read; tools ask again for the rest.
"""

from simxen.tpm.algorithms import HASHES
from simxen.tpm.commands import command
from simxen.tpm.constants import TPM_ALG, TPM_CC, TPM_RC, TPM_RH
from simxen.tpm.errors import TpmError
from simxen.tpm.marshal import tpm2b, u16, u32
from simxen.tpm.pcr import AUTH_GROUP, BANKS, PCR_COUNT
from simxen.tpm.pcr_selection import marshal_pcr_selection, parse_pcr_selection, pcr_indices

MAX_PCR_READ_DIGESTS = 8
_ONE_SHA256 = u32(1) + u16(TPM_ALG.SHA256)


def parse_digest_values(r):
    """TPML_DIGEST_VALUES -> list of (hashAlg, digest)."""
    count = r.u32()
    if count > len(HASHES):
        raise TpmError(TPM_RC.SIZE, param=r.param)
    out = []
    for _ in range(count):
        alg = r.u16()
        h = HASHES.get(alg)
        if h is None:
            raise TpmError(TPM_RC.HASH, param=r.param)
        out.append((alg, r.bytes(h.size)))
    return out


@command(TPM_CC.PCR_Extend, handles=("pcr+",), auth=1)
def pcr_extend(tpm, cmd):
    r = cmd.r
    if r.end - r.pos == 38 and r.data[r.pos:r.pos + 6] == _ONE_SHA256:
        digests = ((TPM_ALG.SHA256, r.data[r.pos + 6:r.end]),)   # the common case
    else:
        digests = parse_digest_values(r)
        r.done()
    index = cmd.handles[0]
    if index == TPM_RH.NULL:
        return b"", b""
    pcrs = tpm.pcrs
    if not pcrs.can_extend(index, cmd.locality):
        raise TpmError(TPM_RC.LOCALITY)
    pcrs.extend(index, digests)
    return b"", b""


@command(TPM_CC.PCR_Event, handles=("pcr+",), auth=1, decrypt=True)
def pcr_event(tpm, cmd):
    r = cmd.r
    data = r.tpm2b(1024)
    r.done()
    index = cmd.handles[0]
    if index != TPM_RH.NULL and not tpm.pcrs.can_extend(index, cmd.locality):
        raise TpmError(TPM_RC.LOCALITY)
    digests = [(alg, h.digest(data)) for alg, h in HASHES.items()]
    if index != TPM_RH.NULL:
        tpm.pcrs.extend(index, digests)
    out = u32(len(digests)) + b"".join(u16(alg) + d for alg, d in digests)
    return b"", out


@command(TPM_CC.PCR_Read)
def pcr_read(tpm, cmd):
    r = cmd.r
    selection = parse_pcr_selection(r, known_hashes=HASHES)
    r.done()
    banks = tpm.pcrs.banks
    digests = []
    out_sel = []
    for alg, select in selection:
        got = bytearray(len(select))
        values = banks.get(alg)
        if values is not None:
            # the selected PCRs below len(values), ascending: only the bits that are set
            # (pcr_indices skips zero bytes) are looked at, not every PCR of the bank
            for i in pcr_indices(select):
                if i >= len(values):
                    break
                if len(digests) < MAX_PCR_READ_DIGESTS:
                    digests.append(values[i])
                    got[i >> 3] |= 1 << (i & 7)
        out_sel.append((alg, bytes(got)))
    body = (u32(tpm.pcrs.update_counter) + marshal_pcr_selection(out_sel)
            + u32(len(digests)) + b"".join(tpm2b(d) for d in digests))
    return b"", body


@command(TPM_CC.PCR_Reset, handles=("pcr",), auth=1)
def pcr_reset(tpm, cmd):
    cmd.r.done()
    index = cmd.handles[0]
    if not tpm.pcrs.can_reset(index, cmd.locality):
        raise TpmError(TPM_RC.LOCALITY)
    tpm.pcrs.reset(index)
    return b"", b""


@command(TPM_CC.PCR_Allocate, handles=("platform",), auth=1)
def pcr_allocate(tpm, cmd):
    """Choose the PCR banks the next TPM Reset allocates.  A bank the
    selection does not name keeps its allocation; one it names with no PCR
    selected goes.  sizeNeeded counts the PCRs selected (as libtpms does),
    but this TPM allocates a bank whole or not at all: a partial selection
    allocates the whole bank."""
    r = cmd.r
    selection = parse_pcr_selection(r, known_hashes=HASHES)
    r.done()
    chosen = {alg: 24 for alg in tpm.pcr_allocation}
    for alg, bitmap in selection:
        chosen[alg] = len(pcr_indices(bitmap))
    size_needed = sum(n * HASHES[alg].size for alg, n in chosen.items())
    available = PCR_COUNT * sum(HASHES[alg].size for alg in BANKS)
    if size_needed > available:
        return b"", b"\x00" + u32(PCR_COUNT) + u32(size_needed) + u32(available)
    tpm.pcr_allocation = tuple(alg for alg in BANKS if chosen.get(alg))
    tpm.nv_changed = True
    return b"", b"\x01" + u32(PCR_COUNT) + u32(size_needed) + u32(available)


@command(TPM_CC.PCR_SetAuthPolicy, handles=("platform",), auth=1)
def pcr_set_auth_policy(tpm, cmd):
    """Give the authorization group of ``pcrNum`` a policy (hashAlg NULL
    removes it).  While a group has a policy, only a policy session can
    authorize its PCRs (``TPM_RC_AUTH_TYPE`` for a password or HMAC)."""
    r = cmd.r
    policy = r.at(1).tpm2b(64)
    alg = r.at(2).u16()
    pcr = r.at(3).u32()
    r.done()
    if alg != TPM_ALG.NULL and alg not in HASHES:
        raise TpmError(TPM_RC.HASH, param=2)
    if len(policy) != (HASHES[alg].size if alg != TPM_ALG.NULL else 0):
        raise TpmError(TPM_RC.SIZE, param=1)
    if pcr not in AUTH_GROUP:
        raise TpmError(TPM_RC.VALUE, param=3)
    if alg == TPM_ALG.NULL:
        tpm.pcr_policies.pop(AUTH_GROUP[0], None)
    else:
        tpm.pcr_policies[AUTH_GROUP[0]] = (alg, policy)
    tpm.nv_changed = True
    return b"", b""


@command(TPM_CC.PCR_SetAuthValue, handles=("pcr",), auth=1, decrypt=True)
def pcr_set_auth_value(tpm, cmd):
    """Set the authValue of a PCR's authorization group (until the next
    Startup(CLEAR))."""
    r = cmd.r
    auth = r.tpm2b(64)
    r.done()
    if cmd.handles[0] not in AUTH_GROUP:
        raise TpmError(TPM_RC.VALUE)
    tpm.pcr_auth[AUTH_GROUP[0]] = auth.rstrip(b"\0")
    return b"", b""

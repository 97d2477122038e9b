"""Part 3, chapter 31: NV storage.

Who may read or write an index is in its attributes: OWNERWRITE/OWNERREAD
(authorised by the owner), PPWRITE/PPREAD (the platform), AUTHWRITE/AUTHREAD
(the index's own authValue, by password or HMAC session) and
POLICYWRITE/POLICYREAD (the index's authPolicy, by a policy session).
Anything else is ``TPM_RC_NV_AUTHORIZATION``.  The first write sets
TPMA_NV_WRITTEN, which changes the index's Name; reading an index never
written is ``TPM_RC_NV_UNINITIALIZED``.

Index types: ordinary (NV_Write), counter (NV_Increment, 8 bytes, starts
at the highest value any counter ever had), bit field (NV_SetBits),
extend (NV_Extend, ``H(old || data)`` with the index's nameAlg), and the
PIN indices (8 bytes: pinCount, pinLimit; written by the owner or platform,
never with their own PIN): a PIN pass index allows ``pinLimit`` uses of its
authValue, a PIN fail index ``pinLimit`` failures in a row, each counted in
the index rather than by dictionary-attack protection.
"""

from simxen.tpm.algorithms import HASHES
from simxen.tpm.commands import command
from simxen.tpm.constants import TPM_CC, TPM_NT, TPM_RC, TPM_RH, TPM_ST, TPMA_NV
from simxen.tpm.errors import TpmError
from simxen.tpm.marshal import tpm2b
from simxen.tpm.nv_index import NV_INDEX_MAX, NV_MEMORY, NvIndex

_READ_BITS = TPMA_NV.PPREAD | TPMA_NV.OWNERREAD | TPMA_NV.AUTHREAD | TPMA_NV.POLICYREAD
_WRITE_BITS = TPMA_NV.PPWRITE | TPMA_NV.OWNERWRITE | TPMA_NV.AUTHWRITE | TPMA_NV.POLICYWRITE
_NOT_AT_DEFINE = TPMA_NV.WRITELOCKED | TPMA_NV.READLOCKED | TPMA_NV.WRITTEN


def _used_by_policy(cmd):
    a = cmd.sessions[0] if cmd.sessions else None
    return a is not None and a.session is not None and a.session.is_policy


def check_access(tpm, cmd, nv, write):
    """Enforce the index's read/write authorization attributes."""
    auth = cmd.handles[0]
    a = nv.attributes
    if a & (TPMA_NV.WRITELOCKED if write else TPMA_NV.READLOCKED):
        raise TpmError(TPM_RC.NV_LOCKED)
    if auth not in (TPM_RH.OWNER, TPM_RH.PLATFORM) and auth != cmd.handles[1]:
        # another index's authorization does not open this one (NvWriteAccessChecks)
        raise TpmError(TPM_RC.NV_AUTHORIZATION)
    if auth == TPM_RH.OWNER:
        ok = a & (TPMA_NV.OWNERWRITE if write else TPMA_NV.OWNERREAD)
    elif auth == TPM_RH.PLATFORM:
        ok = a & (TPMA_NV.PPWRITE if write else TPMA_NV.PPREAD)
    elif _used_by_policy(cmd):
        ok = a & (TPMA_NV.POLICYWRITE if write else TPMA_NV.POLICYREAD)
    else:
        ok = a & (TPMA_NV.AUTHWRITE if write else TPMA_NV.AUTHREAD)
    if not ok:
        raise TpmError(TPM_RC.NV_AUTHORIZATION)


def _mark_written(tpm, nv):
    if not nv.attributes & TPMA_NV.WRITTEN:
        nv.set_attributes(nv.attributes | TPMA_NV.WRITTEN)
    tpm.nv_changed = True


def _nv(tpm, cmd):
    return tpm.nv_indices[cmd.handles[1]]


def _writable_of_type(tpm, cmd, nt):
    """The index of an NV_Increment/SetBits/Extend, checked for write
    authorization and for being of type ``nt`` (else TPM_RC_ATTRIBUTES)."""
    nv = _nv(tpm, cmd)
    check_access(tpm, cmd, nv, True)
    if nv.nt != nt:
        raise TpmError(TPM_RC.ATTRIBUTES, handle=2)
    return nv


@command(TPM_CC.NV_DefineSpace, handles=("provision",), auth=1, decrypt=True)
def nv_define_space(tpm, cmd):
    r = cmd.r
    auth = r.at(1).tpm2b(64)
    index, name_alg, attrs, policy, data_size = r.at(2).sized(NvIndex.parse_public)
    r.done()
    nt = (attrs & TPMA_NV.TPM_NT_MASK) >> TPMA_NV.TPM_NT_SHIFT
    h = HASHES[name_alg]
    if policy and len(policy) != h.size:
        raise TpmError(TPM_RC.SIZE, param=2)
    if len(auth.rstrip(b"\0")) > h.size:
        raise TpmError(TPM_RC.SIZE, param=1)
    if attrs & _NOT_AT_DEFINE or not attrs & _READ_BITS or not attrs & _WRITE_BITS:
        raise TpmError(TPM_RC.ATTRIBUTES, param=2)
    if nt not in (TPM_NT.ORDINARY, TPM_NT.COUNTER, TPM_NT.BITS, TPM_NT.EXTEND,
                  TPM_NT.PIN_FAIL, TPM_NT.PIN_PASS):
        raise TpmError(TPM_RC.ATTRIBUTES, param=2)
    if nt in (TPM_NT.PIN_FAIL, TPM_NT.PIN_PASS) and (
            attrs & TPMA_NV.AUTHWRITE                    # the PIN may not reset its counter
            or nt == TPM_NT.PIN_FAIL and not attrs & TPMA_NV.NO_DA):
        raise TpmError(TPM_RC.ATTRIBUTES, param=2)
    expected = {TPM_NT.COUNTER: 8, TPM_NT.BITS: 8, TPM_NT.EXTEND: h.size,
                TPM_NT.PIN_FAIL: 8, TPM_NT.PIN_PASS: 8}.get(nt)
    if expected is not None and data_size != expected:
        raise TpmError(TPM_RC.SIZE, param=2)
    if data_size > NV_INDEX_MAX:
        raise TpmError(TPM_RC.SIZE, param=2)
    platform = cmd.handles[0] == TPM_RH.PLATFORM
    if bool(attrs & TPMA_NV.PLATFORMCREATE) != platform:
        raise TpmError(TPM_RC.ATTRIBUTES, handle=1)     # the authHandle's fault
    if attrs & TPMA_NV.POLICY_DELETE and not platform:
        raise TpmError(TPM_RC.ATTRIBUTES, param=2)
    if index in tpm.nv_indices:
        raise TpmError(TPM_RC.NV_DEFINED)
    if sum(nv.data_size for nv in tpm.nv_indices.values()) + data_size > NV_MEMORY:
        raise TpmError(TPM_RC.NV_SPACE)
    tpm.nv_indices[index] = NvIndex(index, name_alg, attrs, policy, data_size, auth)
    tpm.nv_changed = True
    return b"", b""


@command(TPM_CC.NV_UndefineSpace, handles=("provision", "nv"), auth=1)
def nv_undefine_space(tpm, cmd):
    cmd.r.done()
    nv = _nv(tpm, cmd)
    if nv.attributes & TPMA_NV.POLICY_DELETE:
        raise TpmError(TPM_RC.ATTRIBUTES, handle=2)
    # the owner may not delete the platform's indices; the platform may delete any
    if nv.attributes & TPMA_NV.PLATFORMCREATE and cmd.handles[0] == TPM_RH.OWNER:
        raise TpmError(TPM_RC.NV_AUTHORIZATION)
    del tpm.nv_indices[nv.index]
    tpm.nv_changed = True
    return b"", b""


def _locked_already(tpm, cmd, nv, write):
    """Locking an index that is locked already succeeds and changes nothing
    (as in the reference implementation); a caller without access is still
    refused."""
    try:
        check_access(tpm, cmd, nv, write)
    except TpmError as exc:
        if exc.rc == TPM_RC.NV_LOCKED:
            return True
        raise
    return False


@command(TPM_CC.NV_UndefineSpaceSpecial, handles=("nv", "platform"), auth=2,
         roles=("admin", "user"))
def nv_undefine_space_special(tpm, cmd):
    """Delete a TPMA_NV_POLICY_DELETE index: the platform's authorization and
    the index's own policy (admin role: a policy session) together."""
    cmd.r.done()
    nv = tpm.nv_indices[cmd.handles[0]]
    if not nv.attributes & TPMA_NV.POLICY_DELETE:
        raise TpmError(TPM_RC.ATTRIBUTES, handle=1)
    del tpm.nv_indices[nv.index]
    tpm.nv_changed = True
    return b"", b""


@command(TPM_CC.NV_GlobalWriteLock, handles=("provision",), auth=1)
def nv_global_write_lock(tpm, cmd):
    """Write-lock, until the next Startup(CLEAR), every index defined with
    TPMA_NV_GLOBALLOCK."""
    cmd.r.done()
    for nv in tpm.nv_indices.values():
        if nv.attributes & TPMA_NV.GLOBALLOCK:
            nv.set_attributes(nv.attributes | TPMA_NV.WRITELOCKED)
    tpm.nv_changed = True
    return b"", b""


@command(TPM_CC.NV_ReadPublic, handles=("nv",), encrypt=True)
def nv_read_public(tpm, cmd):
    cmd.r.done()
    nv = tpm.nv_indices[cmd.handles[0]]
    return b"", tpm2b(nv.marshal_public()) + tpm2b(nv.name)


@command(TPM_CC.NV_Write, handles=("nvauth", "nv"), auth=1, decrypt=True)
def nv_write(tpm, cmd):
    r = cmd.r
    data = r.at(1).tpm2b(1024)
    offset = r.at(2).u16()
    r.done()
    nv = _nv(tpm, cmd)
    check_access(tpm, cmd, nv, True)
    if nv.nt != TPM_NT.ORDINARY and not nv.is_pin:
        raise TpmError(TPM_RC.ATTRIBUTES)
    if offset > nv.data_size:                      # Part 3, 31.7: past the end
        raise TpmError(TPM_RC.VALUE, param=2)
    if offset + len(data) > nv.data_size:
        raise TpmError(TPM_RC.NV_RANGE)
    if nv.attributes & TPMA_NV.WRITEALL and len(data) != nv.data_size:
        raise TpmError(TPM_RC.NV_RANGE)
    nv.data[offset:offset + len(data)] = data
    _mark_written(tpm, nv)
    return b"", b""


@command(TPM_CC.NV_Read, handles=("nvauth", "nv"), auth=1, encrypt=True)
def nv_read(tpm, cmd):
    r = cmd.r
    size = r.at(1).u16()
    offset = r.at(2).u16()
    r.done()
    nv = _nv(tpm, cmd)
    check_access(tpm, cmd, nv, False)
    if not nv.attributes & TPMA_NV.WRITTEN:
        raise TpmError(TPM_RC.NV_UNINITIALIZED)
    if size > 1024:                                # MAX_NV_BUFFER_SIZE
        raise TpmError(TPM_RC.VALUE, param=1)
    if offset > nv.data_size:                      # Part 3, 31.13: past the end
        raise TpmError(TPM_RC.VALUE, param=2)
    if offset + size > nv.data_size:
        raise TpmError(TPM_RC.NV_RANGE)
    return b"", tpm2b(bytes(nv.data[offset:offset + size]))


@command(TPM_CC.NV_Increment, handles=("nvauth", "nv"), auth=1)
def nv_increment(tpm, cmd):
    cmd.r.done()
    nv = _writable_of_type(tpm, cmd, TPM_NT.COUNTER)
    if nv.attributes & TPMA_NV.WRITTEN:
        value = int.from_bytes(nv.data, "big") + 1
    else:
        value = tpm.nv_counter_high + 1
    if value >= 1 << 64:
        raise TpmError(TPM_RC.NV_RANGE)
    tpm.nv_counter_high = max(tpm.nv_counter_high, value)
    nv.data[:] = value.to_bytes(8, "big")
    _mark_written(tpm, nv)
    return b"", b""


@command(TPM_CC.NV_SetBits, handles=("nvauth", "nv"), auth=1)
def nv_set_bits(tpm, cmd):
    r = cmd.r
    bits = r.u64()
    r.done()
    nv = _writable_of_type(tpm, cmd, TPM_NT.BITS)
    old = int.from_bytes(nv.data, "big") if nv.attributes & TPMA_NV.WRITTEN else 0
    nv.data[:] = (old | bits).to_bytes(8, "big")
    _mark_written(tpm, nv)
    return b"", b""


@command(TPM_CC.NV_Extend, handles=("nvauth", "nv"), auth=1, decrypt=True)
def nv_extend(tpm, cmd):
    r = cmd.r
    data = r.tpm2b(1024)
    r.done()
    nv = _writable_of_type(tpm, cmd, TPM_NT.EXTEND)
    h = HASHES[nv.name_alg]
    old = bytes(nv.data) if nv.attributes & TPMA_NV.WRITTEN else bytes(h.size)
    nv.data[:] = h.digest(old + data)
    _mark_written(tpm, nv)
    return b"", b""


@command(TPM_CC.NV_WriteLock, handles=("nvauth", "nv"), auth=1)
def nv_write_lock(tpm, cmd):
    cmd.r.done()
    nv = _nv(tpm, cmd)
    if not nv.attributes & (TPMA_NV.WRITEDEFINE | TPMA_NV.WRITE_STCLEAR):
        raise TpmError(TPM_RC.ATTRIBUTES, handle=2)
    if _locked_already(tpm, cmd, nv, True):
        return b"", b""
    nv.set_attributes(nv.attributes | TPMA_NV.WRITELOCKED)
    tpm.nv_changed = True
    return b"", b""


@command(TPM_CC.NV_ReadLock, handles=("nvauth", "nv"), auth=1)
def nv_read_lock(tpm, cmd):
    cmd.r.done()
    nv = _nv(tpm, cmd)
    if not nv.attributes & TPMA_NV.READ_STCLEAR:
        raise TpmError(TPM_RC.ATTRIBUTES, handle=2)
    if _locked_already(tpm, cmd, nv, False):
        return b"", b""
    nv.set_attributes(nv.attributes | TPMA_NV.READLOCKED)
    return b"", b""


@command(TPM_CC.NV_ChangeAuth, handles=("nv",), auth=1, roles=("admin",), decrypt=True)
def nv_change_auth(tpm, cmd):
    """Admin role: only a policy session (with PolicyCommandCode(NV_ChangeAuth)
    in the index's policy, typically) can authorize it."""
    r = cmd.r
    new_auth = r.tpm2b(64)
    r.done()
    nv = tpm.nv_indices[cmd.handles[0]]
    if len(new_auth.rstrip(b"\0")) > HASHES[nv.name_alg].size:
        raise TpmError(TPM_RC.SIZE, param=1)
    nv.auth_value = new_auth.rstrip(b"\0")
    tpm.nv_changed = True
    return b"", b""


@command(TPM_CC.NV_Certify, handles=("object+", "nvauth", "nv"), auth=2, encrypt=True)
def nv_certify(tpm, cmd):
    """A signed TPMS_NV_CERTIFY_INFO of ``size`` bytes at ``offset``."""
    from simxen.tpm.commands.attestation import attest_and_sign
    from simxen.tpm.signature import parse_sig_scheme
    r = cmd.r
    extra = r.at(1).tpm2b(64)
    in_scheme = parse_sig_scheme(r.at(2))
    size = r.at(3).u16()
    offset = r.at(4).u16()
    r.done()
    nv = tpm.nv_indices[cmd.handles[2]]
    check_access(tpm, _Shifted(cmd), nv, False)
    if size and not nv.attributes & TPMA_NV.WRITTEN:
        raise TpmError(TPM_RC.NV_UNINITIALIZED)
    if offset + size > nv.data_size:
        raise TpmError(TPM_RC.NV_RANGE)
    attested = {"index_name": nv.name, "offset": offset,
                "nv_contents": bytes(nv.data[offset:offset + size])}
    return b"", attest_and_sign(tpm, cmd.handles[0], in_scheme, 2, TPM_ST.ATTEST_NV, extra,
                                attested)


class _Shifted:
    """NV_Certify's view for :func:`check_access`: its authHandle is the
    second handle and its authorization the second session."""

    def __init__(self, cmd):
        self.handles = cmd.handles[1:]
        self.sessions = cmd.sessions[1:] if cmd.sessions else None

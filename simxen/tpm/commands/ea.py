"""Part 3, chapter 23: Enhanced Authorization (policy) commands.

Each command extends the session's ``policyDigest`` as Part 3 prescribes and,
for a real (non-trial) policy session, checks what it can now and records
what must be checked when the session is used (command code, PCR update
counter, authValue or password, locality, cpHash).  Digest updates::

    PolicyPCR           H(old || CC || TPML_PCR_SELECTION || pcrDigest)
    PolicySecret        H(H(old || CC || authName) || policyRef)
    PolicySigned        H(H(old || CC || keyName) || policyRef)
    PolicyAuthValue     H(old || CC_PolicyAuthValue)
    PolicyPassword      H(old || CC_PolicyAuthValue)   (same digest on purpose)
    PolicyCommandCode   H(old || CC || code)
    PolicyLocality      H(old || CC || locality)
    PolicyCpHash        H(old || CC || cpHashA)
    PolicyNameHash      H(old || CC || nameHash)
    PolicyNV            H(old || CC || H(operandB || offset || operation) || nvName)
    PolicyNvWritten     H(old || CC || writtenSet)
    PolicyOR            H(0...0 || CC || digest_1 || ... || digest_n)
    PolicyAuthorize     H(H(0...0 || CC || keyName) || policyRef)
    PolicyAuthorizeNV   H(0...0 || CC || nvIndexName)
    PolicyCounterTimer  H(old || CC || H(operandB || offset || operation))
    PolicyDuplicationSelect
                        H(old || CC || [objectName ||] newParentName || includeObject)
    PolicyPhysicalPresence  H(old || CC)
    PolicyTemplate      H(old || CC || templateHash)
    PolicyTicket        as PolicySigned or PolicySecret, by the ticket's kind

PolicySigned and PolicySecret with a negative ``expiration`` return a ticket
(TPMT_TK_AUTH, an HMAC under the hierarchy's proof over the timeout, cpHash,
policyRef and the authorizing entity's Name) that PolicyTicket accepts in
another session until the timeout, within the same TPM Reset.
"""

import hmac

from simxen.tpm.algorithms import HASHES
from simxen.tpm.commands import command
from simxen.tpm.constants import TPM_CC, TPM_HT, TPM_RC, TPM_RH, TPM_ST, TPMA_NV
from simxen.tpm.creation import parse_ticket, ticket_digest
from simxen.tpm.errors import TpmError
from simxen.tpm.marshal import tpm2b, u16, u32, u64
from simxen.tpm.pcr_selection import marshal_pcr_selection, parse_pcr_selection, pcr_indices
from simxen.tpm.signature import Signature
from simxen.tpm.signing import verify_digest

_CC = u32


def _session(tpm, cmd, index=0):
    return tpm.sessions[cmd.handles[index]]


def _auth_timeout(tpm, s, nonce_tpm, expiration):
    """When an authorization with ``expiration`` (seconds, an INT32; its sign
    only asks for a ticket) stops being valid, in TPM time (ms); ``None``
    for no limit.  With nonceTPM it counts from the session's start, without
    it is an absolute TPM time."""
    if expiration == 0:
        return None
    seconds = 0x100000000 - expiration if expiration >= 0x80000000 else expiration
    return (s.start_time if nonce_tpm else 0) + 1000 * seconds


def _check_nonce_and_expiry(tpm, s, nonce_tpm, expiration, param_nonce):
    if nonce_tpm and nonce_tpm != s.nonce_tpm:          # PolicyParameterChecks
        raise TpmError(TPM_RC.NONCE, param=param_nonce)
    timeout = _auth_timeout(tpm, s, nonce_tpm, expiration)
    if timeout is not None and timeout < tpm.time:
        raise TpmError(TPM_RC.EXPIRED, param=param_nonce + 3)


def _set_cp_hash(s, cp_hash, param):
    if cp_hash:
        if len(cp_hash) != s.hash.size:
            raise TpmError(TPM_RC.SIZE, param=param)
        if s.cp_hash is not None and s.cp_hash != cp_hash:
            raise TpmError(TPM_RC.CPHASH, param=param)
        s.cp_hash = cp_hash


def _null_auth_outputs(tag=TPM_ST.AUTH_SECRET):
    """``timeout`` (empty) and the NULL TPMT_TK_AUTH."""
    return tpm2b(b"") + u16(tag) + u32(TPM_RH.NULL) + tpm2b(b"")


def _ticket_data(tpm, timeout, cp_hash, policy_ref, auth_name):
    """What a TPMT_TK_AUTH's HMAC covers; the reset count binds it to this
    TPM Reset (a ticket dies with _TPM_Init + Startup(CLEAR))."""
    return (tpm2b(timeout) + u32(tpm.reset_count) + tpm2b(cp_hash) + tpm2b(policy_ref)
            + tpm2b(auth_name))


def _auth_outputs(tpm, s, tag, nonce_tpm, expiration, cp_hash, policy_ref, auth_name,
                  hierarchy):
    """``timeout || TPMT_TK_AUTH``: a real ticket for a negative expiration
    in a real session, the NULL ticket otherwise."""
    if s.is_trial or expiration < 0x80000000 or hierarchy == TPM_RH.NULL:
        return _null_auth_outputs(tag)
    timeout = u64(_auth_timeout(tpm, s, nonce_tpm, expiration))
    digest = ticket_digest(tpm, tag, hierarchy,
                           _ticket_data(tpm, timeout, cp_hash, policy_ref, auth_name))
    return tpm2b(timeout) + u16(tag) + u32(hierarchy) + tpm2b(digest)


def _entity_hierarchy(tpm, handle):
    """The hierarchy a ticket about ``handle`` is bound to."""
    ht = handle >> 24
    if ht == TPM_HT.TRANSIENT or ht == TPM_HT.PERSISTENT:
        return tpm.get_object(handle).hierarchy
    if ht == TPM_HT.NV_INDEX:
        nv = tpm.nv_indices[handle]
        return TPM_RH.PLATFORM if nv.attributes & TPMA_NV.PLATFORMCREATE else TPM_RH.OWNER
    if handle in (TPM_RH.OWNER, TPM_RH.ENDORSEMENT, TPM_RH.PLATFORM):
        return handle
    return TPM_RH.OWNER


@command(TPM_CC.PolicyPCR, handles=("policy",))
def policy_pcr(tpm, cmd):
    r = cmd.r
    pcr_digest = r.at(1).tpm2b(64)
    selection = parse_pcr_selection(r.at(2), known_hashes=HASHES)
    r.done()
    s = _session(tpm, cmd)
    values = b""
    for alg, bitmap in selection:
        bank = tpm.pcrs.banks.get(alg)
        if bank is not None:
            values += b"".join(bank[i] for i in pcr_indices(bitmap) if i < len(bank))
    current = s.hash.digest(values)
    if not s.is_trial:
        if pcr_digest and pcr_digest != current:
            raise TpmError(TPM_RC.VALUE, param=1)
        pcr_digest = current
        if s.pcr_counter is not None and s.pcr_counter != tpm.pcrs.update_counter:
            raise TpmError(TPM_RC.PCR_CHANGED)
        s.pcr_counter = tpm.pcrs.update_counter
    elif not pcr_digest:
        pcr_digest = current
    s.extend_policy(_CC(TPM_CC.PolicyPCR) + marshal_pcr_selection(selection) + pcr_digest)
    return b"", b""


@command(TPM_CC.PolicySecret, handles=("entity", "policy"), auth=1, decrypt=True)
def policy_secret(tpm, cmd):
    r = cmd.r
    nonce_tpm = r.at(1).tpm2b(64)
    cp_hash = r.at(2).tpm2b(64)
    policy_ref = r.at(3).tpm2b(64)
    expiration = r.at(4).u32()
    r.done()
    s = _session(tpm, cmd, 1)
    if not s.is_trial:
        _check_nonce_and_expiry(tpm, s, nonce_tpm, expiration, 1)
        _set_cp_hash(s, cp_hash, 2)
    name = tpm.entity_name(cmd.handles[0])
    s.extend_policy(_CC(TPM_CC.PolicySecret) + name)
    s.extend_policy(policy_ref)
    return b"", _auth_outputs(tpm, s, TPM_ST.AUTH_SECRET, nonce_tpm, expiration, cp_hash, policy_ref,
                              name, _entity_hierarchy(tpm, cmd.handles[0]))


@command(TPM_CC.PolicySigned, handles=("object", "policy"), decrypt=True)
def policy_signed(tpm, cmd):
    r = cmd.r
    nonce_tpm = r.at(1).tpm2b(64)
    cp_hash = r.at(2).tpm2b(64)
    policy_ref = r.at(3).tpm2b(64)
    expiration = r.at(4).u32()
    sig = Signature.parse(r.at(5))
    r.done()
    s = _session(tpm, cmd, 1)
    key = tpm.get_object(cmd.handles[0])
    if not s.is_trial:
        _check_nonce_and_expiry(tpm, s, nonce_tpm, expiration, 1)
        if sig.hash not in HASHES:
            raise TpmError(TPM_RC.HASH, param=5)
        a_hash = HASHES[sig.hash].digest(nonce_tpm + u32(expiration) + cp_hash + policy_ref)
        if not verify_digest(key, a_hash, sig):
            raise TpmError(TPM_RC.SIGNATURE, param=5)
        _set_cp_hash(s, cp_hash, 2)
    s.extend_policy(_CC(TPM_CC.PolicySigned) + key.name)
    s.extend_policy(policy_ref)
    return b"", _auth_outputs(tpm, s, TPM_ST.AUTH_SIGNED, nonce_tpm, expiration, cp_hash, policy_ref,
                              key.name, key.hierarchy)


def _auth_value_policy(tpm, cmd, password):
    """PolicyAuthValue and PolicyPassword extend the digest alike; they
    differ in how the authValue is proven at use (HMAC key or plain)."""
    cmd.r.done()
    s = _session(tpm, cmd)
    s.extend_policy(_CC(TPM_CC.PolicyAuthValue))
    s.password_needed = password
    s.auth_value_needed = not password
    return b"", b""


@command(TPM_CC.PolicyAuthValue, handles=("policy",))
def policy_auth_value(tpm, cmd):
    return _auth_value_policy(tpm, cmd, False)


@command(TPM_CC.PolicyPassword, handles=("policy",))
def policy_password(tpm, cmd):
    return _auth_value_policy(tpm, cmd, True)


@command(TPM_CC.PolicyCommandCode, handles=("policy",))
def policy_command_code(tpm, cmd):
    r = cmd.r
    code = r.u32()
    r.done()
    s = _session(tpm, cmd)
    if s.command_code is not None and s.command_code != code:
        raise TpmError(TPM_RC.VALUE, param=1)
    from simxen.tpm.commands import COMMANDS
    if code not in COMMANDS:
        raise TpmError(TPM_RC.POLICY_CC, param=1)
    s.command_code = code
    s.extend_policy(_CC(TPM_CC.PolicyCommandCode) + u32(code))
    return b"", b""


@command(TPM_CC.PolicyLocality, handles=("policy",))
def policy_locality(tpm, cmd):
    r = cmd.r
    locality = r.u8()
    r.done()
    if locality == 0:
        raise TpmError(TPM_RC.RANGE, param=1)
    s = _session(tpm, cmd)
    # below 32 a bitmap of localities 0-4, narrowed by each PolicyLocality;
    # from 32 on one extended locality, which must not change (Part 3, 23.11)
    prev = s.locality or 0
    if prev and (prev < 32) != (locality < 32):
        raise TpmError(TPM_RC.RANGE, param=1)
    if locality < 32:
        setting = (prev or 0x1F) & locality
        if not setting:
            raise TpmError(TPM_RC.RANGE, param=1)
    else:
        if prev and prev != locality:
            raise TpmError(TPM_RC.RANGE, param=1)
        setting = locality
    s.locality = setting
    s.extend_policy(_CC(TPM_CC.PolicyLocality) + bytes((locality,)))
    return b"", b""


@command(TPM_CC.PolicyCpHash, handles=("policy",))
def policy_cp_hash(tpm, cmd):
    r = cmd.r
    cp_hash = r.tpm2b(64)
    r.done()
    s = _session(tpm, cmd)
    _set_cp_hash(s, cp_hash, 1)
    s.extend_policy(_CC(TPM_CC.PolicyCpHash) + cp_hash)
    return b"", b""


@command(TPM_CC.PolicyOR, handles=("policy",))
def policy_or(tpm, cmd):
    r = cmd.r
    count = r.u32()
    if not 2 <= count <= 8:
        raise TpmError(TPM_RC.SIZE, param=1)
    digests = [r.tpm2b(64) for _ in range(count)]
    r.done()
    s = _session(tpm, cmd)
    if not s.is_trial and s.policy_digest not in digests:
        raise TpmError(TPM_RC.VALUE, param=1)
    s.policy_digest = s.hash.digest(bytes(s.hash.size) + _CC(TPM_CC.PolicyOR)
                                    + b"".join(digests))
    return b"", b""


@command(TPM_CC.PolicyAuthorize, handles=("policy",))
def policy_authorize(tpm, cmd):
    r = cmd.r
    approved = r.at(1).tpm2b(64)
    policy_ref = r.at(2).tpm2b(64)
    key_sign = r.at(3).tpm2b(66)
    tag, hierarchy, digest = parse_ticket(r.at(4))
    r.done()
    s = _session(tpm, cmd)
    if len(key_sign) < 2 or int.from_bytes(key_sign[:2], "big") not in HASHES:
        raise TpmError(TPM_RC.HASH, param=3)
    if not s.is_trial:
        if approved != s.policy_digest:
            raise TpmError(TPM_RC.VALUE, param=1)
        key_alg = HASHES[int.from_bytes(key_sign[:2], "big")]
        a_hash = key_alg.digest(approved + policy_ref)
        if tag != TPM_ST.VERIFIED or digest != ticket_digest(tpm, TPM_ST.VERIFIED, hierarchy,
                                                             a_hash + key_sign):
            raise TpmError(TPM_RC.TICKET, param=4)
    s.policy_digest = s.hash.digest(bytes(s.hash.size) + _CC(TPM_CC.PolicyAuthorize) + key_sign)
    s.extend_policy(policy_ref)
    return b"", b""


@command(TPM_CC.PolicyRestart, handles=("policy",))
def policy_restart(tpm, cmd):
    cmd.r.done()
    _session(tpm, cmd).reset_policy()
    return b"", b""


@command(TPM_CC.PolicyGetDigest, handles=("policy",), encrypt=True)
def policy_get_digest(tpm, cmd):
    cmd.r.done()
    return b"", tpm2b(_session(tpm, cmd).policy_digest)


@command(TPM_CC.PolicyNameHash, handles=("policy",))
def policy_name_hash(tpm, cmd):
    r = cmd.r
    name_hash = r.tpm2b(64)
    r.done()
    s = _session(tpm, cmd)
    if len(name_hash) != s.hash.size:
        raise TpmError(TPM_RC.SIZE, param=1)
    if s.name_hash is not None:
        raise TpmError(TPM_RC.VALUE, param=1)
    s.name_hash = name_hash
    s.extend_policy(_CC(TPM_CC.PolicyNameHash) + name_hash)
    return b"", b""


@command(TPM_CC.PolicyNvWritten, handles=("policy",))
def policy_nv_written(tpm, cmd):
    r = cmd.r
    written = r.yes_no()
    r.done()
    s = _session(tpm, cmd)
    if s.nv_written is not None and s.nv_written != bool(written):
        raise TpmError(TPM_RC.VALUE, param=1)
    s.nv_written = bool(written)
    s.extend_policy(_CC(TPM_CC.PolicyNvWritten) + bytes((written,)))
    return b"", b""


#: TPM_EO: how PolicyNV compares the NV contents A with operandB.
_OPERATIONS = {
    0x0000: lambda a, b, sa, sb: a == b,            # EQ
    0x0001: lambda a, b, sa, sb: a != b,            # NEQ
    0x0002: lambda a, b, sa, sb: sa > sb,           # SIGNED_GT
    0x0003: lambda a, b, sa, sb: a > b,             # UNSIGNED_GT
    0x0004: lambda a, b, sa, sb: sa < sb,           # SIGNED_LT
    0x0005: lambda a, b, sa, sb: a < b,             # UNSIGNED_LT
    0x0006: lambda a, b, sa, sb: sa >= sb,          # SIGNED_GE
    0x0007: lambda a, b, sa, sb: a >= b,            # UNSIGNED_GE
    0x0008: lambda a, b, sa, sb: sa <= sb,          # SIGNED_LE
    0x0009: lambda a, b, sa, sb: a <= b,            # UNSIGNED_LE
    0x000A: lambda a, b, sa, sb: a & b == b,        # BITSET
    0x000B: lambda a, b, sa, sb: a & b == 0,        # BITCLEAR
}


@command(TPM_CC.PolicyNV, handles=("nvauth", "nv", "policy"), auth=1, decrypt=True)
def policy_nv(tpm, cmd):
    """Compare NV contents with operandB (needs read access to the index)."""
    from simxen.tpm.commands.nv import check_access
    operand, offset, operation = _comparison(cmd.r)
    nv = tpm.nv_indices[cmd.handles[1]]
    s = _session(tpm, cmd, 2)
    if not s.is_trial:
        check_access(tpm, cmd, nv, False)
        if not nv.attributes & TPMA_NV.WRITTEN:
            raise TpmError(TPM_RC.NV_UNINITIALIZED)
        if offset + len(operand) > nv.data_size:
            raise TpmError(TPM_RC.NV_RANGE)
        _compare(bytes(nv.data[offset:offset + len(operand)]), operand, operation)
    s.extend_policy(_CC(TPM_CC.PolicyNV) + _comparison_digest(s, operand, offset, operation)
                    + nv.name)
    return b"", b""


def _comparison(r):
    """PolicyNV's and PolicyCounterTimer's operandB, offset and operation."""
    operand = r.at(1).tpm2b(64)
    offset = r.at(2).u16()
    operation = r.at(3).u16()
    if operation not in _OPERATIONS:                # TPM_EO: a value error as read
        raise TpmError(TPM_RC.VALUE, param=3)
    r.done()
    return operand, offset, operation


def _comparison_digest(s, operand, offset, operation):
    """``H(operandB || offset || operation)``, what both policies extend with."""
    return s.hash.digest(operand + u16(offset) + u16(operation))


def _compare(a, operand, operation):
    """``TPM_RC_POLICY`` unless ``a <operation> operandB`` holds."""
    ua, ub = int.from_bytes(a, "big"), int.from_bytes(operand, "big")
    sa = int.from_bytes(a, "big", signed=True) if a else 0
    sb = int.from_bytes(operand, "big", signed=True) if operand else 0
    if not _OPERATIONS[operation](ua, ub, sa, sb):
        raise TpmError(TPM_RC.POLICY)


@command(TPM_CC.PolicyCounterTimer, handles=("policy",), decrypt=True)
def policy_counter_timer(tpm, cmd):
    """Compare part of TPMS_TIME_INFO (time u64, clock u64, resetCount u32,
    restartCount u32, safe u8) with operandB."""
    operand, offset, operation = _comparison(cmd.r)
    s = _session(tpm, cmd)
    if not s.is_trial:
        info = (u64(tpm.time) + u64(tpm.clock) + u32(tpm.reset_count) + u32(tpm.restart_count)
                + b"\x01")
        if offset + len(operand) > len(info):
            raise TpmError(TPM_RC.RANGE)
        _compare(info[offset:offset + len(operand)], operand, operation)
    s.extend_policy(_CC(TPM_CC.PolicyCounterTimer)
                    + _comparison_digest(s, operand, offset, operation))
    return b"", b""


@command(TPM_CC.PolicyAuthorizeNV, handles=("nvauth", "nv", "policy"), auth=1)
def policy_authorize_nv(tpm, cmd):
    """Replace the policy by the one an NV index holds (a TPMT_HA): the index
    says which policy is approved now, and its owner can change it."""
    from simxen.tpm.commands.nv import check_access
    cmd.r.done()
    nv = tpm.nv_indices[cmd.handles[1]]
    s = _session(tpm, cmd, 2)
    if not s.is_trial:
        check_access(tpm, cmd, nv, False)
        if not nv.attributes & TPMA_NV.WRITTEN:
            raise TpmError(TPM_RC.NV_UNINITIALIZED)
        data = bytes(nv.data)
        alg = int.from_bytes(data[:2], "big")
        if alg != s.hash.alg or len(data) < 2 + s.hash.size:
            raise TpmError(TPM_RC.HASH)
        if data[2:2 + s.hash.size] != s.policy_digest:
            raise TpmError(TPM_RC.VALUE)
    s.policy_digest = s.hash.digest(bytes(s.hash.size) + _CC(TPM_CC.PolicyAuthorizeNV)
                                    + nv.name)
    return b"", b""


@command(TPM_CC.PolicyDuplicationSelect, handles=("policy",), decrypt=True)
def policy_duplication_select(tpm, cmd):
    """Allow TPM2_Duplicate only to ``newParentName`` (and only of
    ``objectName``, which the digest includes when ``includeObject``)."""
    r = cmd.r
    object_name = r.at(1).tpm2b(66)
    parent_name = r.at(2).tpm2b(66)
    include = r.at(3).yes_no()
    r.done()
    s = _session(tpm, cmd)
    if s.cp_hash is not None or s.name_hash is not None:
        raise TpmError(TPM_RC.CPHASH)
    if s.command_code is not None and s.command_code != TPM_CC.Duplicate:
        raise TpmError(TPM_RC.COMMAND_CODE)
    s.name_hash = s.hash.digest(object_name + parent_name)
    s.command_code = TPM_CC.Duplicate
    s.extend_policy(_CC(TPM_CC.PolicyDuplicationSelect)
                    + (object_name if include else b"") + parent_name + bytes((include,)))
    return b"", b""


@command(TPM_CC.PolicyPhysicalPresence, handles=("policy",))
def policy_physical_presence(tpm, cmd):
    """Require physical presence at use: a platform without it (as every
    simxen TPM is) then refuses the authorization with TPM_RC_PP."""
    cmd.r.done()
    s = _session(tpm, cmd)
    s.pp_required = True
    s.extend_policy(_CC(TPM_CC.PolicyPhysicalPresence))
    return b"", b""


@command(TPM_CC.PolicyTemplate, handles=("policy",))
def policy_template(tpm, cmd):
    """Bind the policy to the template (H(TPMT_PUBLIC)) of the object that
    Create, CreatePrimary or CreateLoaded will make."""
    r = cmd.r
    template_hash = r.tpm2b(64)
    r.done()
    s = _session(tpm, cmd)
    if len(template_hash) != s.hash.size:
        raise TpmError(TPM_RC.SIZE, param=1)
    if s.cp_hash is not None or s.name_hash is not None:
        raise TpmError(TPM_RC.CPHASH)
    if s.template_hash is not None and s.template_hash != template_hash:
        raise TpmError(TPM_RC.VALUE, param=1)
    s.template_hash = template_hash
    s.extend_policy(_CC(TPM_CC.PolicyTemplate) + template_hash)
    return b"", b""


@command(TPM_CC.PolicyTicket, handles=("policy",), decrypt=True)
def policy_ticket(tpm, cmd):
    """Use a ticket from PolicySigned or PolicySecret in place of doing
    that command again."""
    r = cmd.r
    timeout = r.at(1).tpm2b(8)
    cp_hash = r.at(2).tpm2b(64)
    policy_ref = r.at(3).tpm2b(64)
    auth_name = r.at(4).tpm2b(66)
    tag, hierarchy, digest = parse_ticket(r.at(5))
    r.done()
    s = _session(tpm, cmd)
    if tag == TPM_ST.AUTH_SIGNED:
        code = TPM_CC.PolicySigned
    elif tag == TPM_ST.AUTH_SECRET:
        code = TPM_CC.PolicySecret
    else:
        raise TpmError(TPM_RC.TAG, param=5)
    if len(timeout) != 8 or int.from_bytes(timeout, "big") < tpm.time:
        raise TpmError(TPM_RC.EXPIRED, param=1)
    expected = ticket_digest(tpm, tag, hierarchy,
                             _ticket_data(tpm, timeout, cp_hash, policy_ref, auth_name))
    if hierarchy == TPM_RH.NULL or not hmac.compare_digest(digest, expected):
        raise TpmError(TPM_RC.TICKET, param=5)
    _set_cp_hash(s, cp_hash, 2)
    s.extend_policy(_CC(code) + auth_name)
    s.extend_policy(policy_ref)
    return b"", b""

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
"""

from simxen.tpm.algorithms import HASHES
from simxen.tpm.commands import command
from simxen.tpm.constants import TPM_CC, TPM_RC, TPM_RH, TPM_ST, TPMA_NV
from simxen.tpm.creation import parse_ticket, ticket_digest
from simxen.tpm.errors import TpmError
from simxen.tpm.marshal import tpm2b, u16, u32
from simxen.tpm.pcr_selection import marshal_pcr_selection, parse_pcr_selection, pcr_indices
from simxen.tpm.signature import Signature
from simxen.tpm.signing import verify_digest

_CC = u32


def _session(tpm, cmd, index=0):
    return tpm.sessions[cmd.handles[index]]


def _check_nonce_and_expiry(s, nonce_tpm, expiration, param_nonce):
    if nonce_tpm and nonce_tpm != s.nonce_tpm:
        raise TpmError(TPM_RC.VALUE, param=param_nonce)
    if expiration >= 0x80000000 and not nonce_tpm:
        raise TpmError(TPM_RC.EXPIRED, param=param_nonce + 3)


def _set_cp_hash(s, cp_hash, param):
    if cp_hash:
        if len(cp_hash) != s.hash.size:
            raise TpmError(TPM_RC.SIZE, param=param)
        if s.cp_hash is not None and s.cp_hash != cp_hash:
            raise TpmError(TPM_RC.CPHASH, param=param)
        s.cp_hash = cp_hash


def _null_auth_outputs():
    """``timeout`` (empty) and the NULL TPMT_TK_AUTH."""
    return tpm2b(b"") + u16(TPM_ST.AUTH_SECRET) + u32(TPM_RH.NULL) + tpm2b(b"")


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
        _check_nonce_and_expiry(s, nonce_tpm, expiration, 1)
        _set_cp_hash(s, cp_hash, 2)
    s.extend_policy(_CC(TPM_CC.PolicySecret) + tpm.entity_name(cmd.handles[0]))
    s.extend_policy(policy_ref)
    return b"", _null_auth_outputs()


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
        _check_nonce_and_expiry(s, nonce_tpm, expiration, 1)
        if sig.hash not in HASHES:
            raise TpmError(TPM_RC.HASH, param=5)
        a_hash = HASHES[sig.hash].digest(nonce_tpm + u32(expiration) + cp_hash + policy_ref)
        if not verify_digest(key, a_hash, sig):
            raise TpmError(TPM_RC.SIGNATURE, param=5)
        _set_cp_hash(s, cp_hash, 2)
    s.extend_policy(_CC(TPM_CC.PolicySigned) + key.name)
    s.extend_policy(policy_ref)
    return b"", _null_auth_outputs()


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
    if locality == 0 or locality > 0x1F:
        raise TpmError(TPM_RC.RANGE, param=1)
    s = _session(tpm, cmd)
    if s.locality is not None and s.locality != locality:
        raise TpmError(TPM_RC.RANGE, param=1)
    s.locality = locality
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
    written = r.u8()
    r.done()
    if written > 1:
        raise TpmError(TPM_RC.VALUE, param=1)
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
    r = cmd.r
    operand = r.at(1).tpm2b(64)
    offset = r.at(2).u16()
    operation = r.at(3).u16()
    r.done()
    if operation not in _OPERATIONS:
        raise TpmError(TPM_RC.VALUE, param=3)
    nv = tpm.nv_indices[cmd.handles[1]]
    s = _session(tpm, cmd, 2)
    if not s.is_trial:
        check_access(tpm, cmd, nv, False)
        if not nv.attributes & TPMA_NV.WRITTEN:
            raise TpmError(TPM_RC.NV_UNINITIALIZED)
        if offset + len(operand) > nv.data_size:
            raise TpmError(TPM_RC.NV_RANGE)
        a = bytes(nv.data[offset:offset + len(operand)])
        ua, ub = int.from_bytes(a, "big"), int.from_bytes(operand, "big")
        sa = int.from_bytes(a, "big", signed=True) if a else 0
        sb = int.from_bytes(operand, "big", signed=True) if operand else 0
        if not _OPERATIONS[operation](ua, ub, sa, sb):
            raise TpmError(TPM_RC.POLICY)
    args = s.hash.digest(operand + u16(offset) + u16(operation))
    s.extend_policy(_CC(TPM_CC.PolicyNV) + args + nv.name)
    return b"", b""

"""The persistent state of a TPM as one versioned byte blob.

This is what a vTPM saves (encrypted, through its manager) after every
command that changed NV, and what ``simxen tpm serve --state FILE`` writes
on shutdown.  Layout (all integers big-endian)::

    magic    8 bytes  "SIMXTPM\\0"
    version  u16      1, 2 or 3 (see the extensions below)
    body     ...      see below
    check    32 bytes SHA-256(magic || version || body)

The body, in order: the primary seeds EPS, SPS, PPS and the proofs
ehProof, shProof, phProof, the context protection key, the NULL seed and
proof (TPM2B each); manufacturer (4 bytes); the authValue (TPM2B) and
authPolicy (hashAlg u16 || TPM2B) of owner, endorsement, platform and
lockout; flags u8 (shEnable, ehEnable, phEnableNV, disableClear,
lockoutAuth locked); clock u64, resetCount u32, restartCount u32;
dictionary-attack failedTries, maxTries, recoveryTime, lockoutRecovery
(u32 each); NV indices (u32 count, then TPM2B each: TPMS_NV_PUBLIC ||
authValue TPM2B || data TPM2B); persistent objects (u32 count, then
handle u32 || TPM2B of the object); the orderly-shutdown record (u8 0 none,
1 CLEAR, 2 STATE followed by pcrUpdateCounter u32, u8 bank count and per
bank hashAlg u16 || PCR 0-15); the StirRandom pool (TPM2B); the highest NV counter value ever (u64).

Version 2 appends what a TPM that has used these features keeps: the command
audit state (hashAlg u16, auditCounter u64, digest TPM2B, u32 count of audited
command codes and each u32), then the PCR policies (u32 count, then PCR u32 ||
hashAlg u16 || TPM2B each), then the PCR banks the next TPM Reset allocates
(u8 count, hashAlg u16 each).  A TPM that has not -- the usual case -- still
writes version 1, byte for byte as before.

Version 3 is version 2 followed by two counters a TPM2_Clear or a TPM
Restart sets apart from resetCount: the count of TPM Resets ever
(totalResetCount u32, which saved contexts bind) and of TPM Restarts since
the last Reset or Clear (clearCount u32, which saved stClear contexts bind).
It is written only when they differ from what an older blob implies
(totalResetCount = resetCount, clearCount = 0).

Transient objects, loaded sessions and PCRs outside an orderly
Shutdown(STATE) are not persistent, as on a real TPM.
"""

import hashlib
import struct
from operator import attrgetter

from simxen.tpm.algorithms import HASHES
from simxen.tpm.audit import CommandAudit
from simxen.tpm.constants import TPM_ALG, TPM_RH, TPM_SU
from simxen.tpm.errors import StateError, TpmError
from simxen.tpm.limits import CLOCK_MAX
from simxen.tpm.marshal import Reader, tpm2b, u16, u32, u64
from simxen.tpm.nv_index import NvIndex
from simxen.tpm.pcr import AUTH_GROUP, BANKS
from simxen.tpm.tpm_object import TpmObject

MAGIC = b"SIMXTPM\0"
VERSION = 1
VERSION_EXTENDED = 2
VERSION_COUNTED = 3
_MAGIC_V1 = MAGIC + u16(VERSION)
_MAGIC_V2 = MAGIC + u16(VERSION_EXTENDED)
_MAGIC_V3 = MAGIC + u16(VERSION_COUNTED)
_HIERARCHIES = (TPM_RH.OWNER, TPM_RH.ENDORSEMENT, TPM_RH.PLATFORM, TPM_RH.LOCKOUT)
_SECRETS = ("eps", "sps", "pps", "eh_proof", "sh_proof", "ph_proof", "context_key",
            "null_seed", "null_proof")


#: Everything the head of the body (up to the flags byte) is made of, as one tuple.
_HEAD_FIELDS = attrgetter(*_SECRETS, "manufacturer", "sh_enable", "eh_enable", "ph_enable_nv",
                          "disable_clear", "lockout_auth_locked")
#: clock u64, resetCount u32, restartCount u32, then the four dictionary-attack u32s.
_COUNTERS = struct.Struct(">QIIIIII")


def save_state(tpm, memo=None):
    """The state blob of ``tpm``.

    ``memo`` (a dict the caller keeps with ``tpm``; :meth:`TpmEngine.save_state
    <simxen.tpm.engine.TpmEngine.save_state>` passes its own) remembers the
    marshalled bytes of the sections that rarely change -- the seeds, proofs
    and hierarchy authorizations, and the NV indices -- together with the
    values they were made from. A vTPM saves after every command and most
    commands change only the clock, so most saves re-marshal only the clock
    and counters. A section is re-marshalled whenever any value it is made of
    differs, so the blob is always exactly what marshalling everything gives.
    """
    if memo is None:
        memo = {}
    head = _memo(memo, "head", (_HEAD_FIELDS(tpm), tuple(tpm.hierarchy_auth.items()),
                                tuple(tpm.hierarchy_policy.items())), _head, tpm)
    nv = _memo(memo, "nv", tuple((nv, nv.attributes, nv.auth_value, bytes(nv.data))
                                 for _, nv in sorted(tpm.nv_indices.items())), _nv, tpm)
    parts = [head,
             _COUNTERS.pack(tpm.clock, tpm.reset_count, tpm.restart_count, tpm.da_failed_tries,
                            tpm.da_max_tries, tpm.da_recovery_time, tpm.da_lockout_recovery),
             nv, u32(len(tpm.persistent))]
    parts += [u32(h) + tpm2b(obj.serialize()) for h, obj in sorted(tpm.persistent.items())]
    orderly = tpm.orderly_state
    if orderly is None:
        parts.append(b"\x00")
    elif orderly[0] == TPM_SU.CLEAR:
        parts.append(b"\x01")
    else:
        banks = orderly[1]
        parts.append(b"\x02" + u32(orderly[2]) + bytes((len(banks),)))
        for alg, values in sorted(banks.items()):
            parts.append(u16(alg) + b"".join(values))
    parts.append(tpm2b(tpm.stir_pool) + u64(tpm.nv_counter_high))
    extension = _extension(tpm)
    counted = tpm.clear_count or tpm.total_reset_count != tpm.reset_count
    if counted:
        magic = _MAGIC_V3
        parts += [extension or _extension(tpm, always=True),
                  u32(tpm.total_reset_count), u32(tpm.clear_count)]
    else:
        magic = _MAGIC_V2 if extension else _MAGIC_V1
        parts.append(extension)
    body = b"".join(parts)
    head = magic + body
    return head + hashlib.sha256(head).digest()


def _memo(memo, section, key, marshal, tpm):
    """``section``'s bytes: remembered ones if ``key`` (its values) is unchanged."""
    known = memo.get(section)
    if known is not None and known[0] == key:
        return known[1]
    data = marshal(tpm)
    memo[section] = (key, data)
    return data


def _head(tpm):
    """The secrets, manufacturer, hierarchy authorizations and the flags byte."""
    parts = [tpm2b(getattr(tpm, name)) for name in _SECRETS]
    parts.append(tpm.manufacturer)
    for h in _HIERARCHIES:
        alg, policy = tpm.hierarchy_policy[h]
        parts.append(tpm2b(tpm.hierarchy_auth[h]) + u16(alg) + tpm2b(policy))
    flags = (int(tpm.sh_enable) | int(tpm.eh_enable) << 1 | int(tpm.ph_enable_nv) << 2
             | int(tpm.disable_clear) << 3 | int(tpm.lockout_auth_locked) << 4)
    parts.append(bytes((flags,)))
    return b"".join(parts)


def _nv(tpm):
    """The NV indices: their count, then each index's TPM2B."""
    return u32(len(tpm.nv_indices)) + b"".join(
        tpm2b(nv.serialize()) for _, nv in sorted(tpm.nv_indices.items()))


def load_state(tpm, blob):
    """Restore ``tpm``'s persistent state from ``blob``; :class:`StateError`
    if it is not a state blob this version can read."""
    if not isinstance(blob, (bytes, bytearray)):
        raise StateError("TPM state must be bytes")
    blob = bytes(blob)
    if len(blob) < len(MAGIC) + 2 + 32 or blob[:len(MAGIC)] != MAGIC:
        raise StateError("not a simxen TPM state blob (bad magic)")
    version = int.from_bytes(blob[8:10], "big")
    if version not in (VERSION, VERSION_EXTENDED, VERSION_COUNTED):
        raise StateError(f"TPM state version {version} is not supported "
                         f"(expected {VERSION}, {VERSION_EXTENDED} or {VERSION_COUNTED})")
    if hashlib.sha256(blob[:-32]).digest() != blob[-32:]:
        raise StateError("TPM state blob is corrupt (checksum mismatch)")
    r = Reader(blob, 10, len(blob) - 32)
    try:
        _read_body(tpm, r)
        if version >= VERSION_EXTENDED:
            _read_extension(tpm, r)
        tpm.total_reset_count, tpm.clear_count = tpm.reset_count, 0
        if version == VERSION_COUNTED:
            tpm.total_reset_count = r.u32()
            tpm.clear_count = r.u32()
        r.done()
    except TpmError:
        raise StateError("TPM state blob is truncated or malformed") from None
    except ValueError as exc:
        raise StateError(f"TPM state blob holds an invalid entry: {exc}") from None


def _read_body(tpm, r):
    for name in _SECRETS:
        setattr(tpm, name, r.tpm2b())
    tpm.manufacturer = r.bytes(4)
    for h in _HIERARCHIES:
        tpm.hierarchy_auth[h] = r.tpm2b()
        alg = r.u16()
        tpm.hierarchy_policy[h] = _policy(alg, r.tpm2b(), f"hierarchy {h:#x}")
    flags = r.u8()
    tpm.sh_enable = bool(flags & 1)
    tpm.eh_enable = bool(flags & 2)
    tpm.ph_enable_nv = bool(flags & 4)
    tpm.disable_clear = bool(flags & 8)
    tpm.lockout_auth_locked = bool(flags & 16)
    clock = r.u64()
    if clock > CLOCK_MAX:
        raise ValueError(f"clock {clock} is past what TPM2_ClockSet allows ({CLOCK_MAX})")
    tpm.set_clock(clock)
    tpm.reset_count = r.u32()
    tpm.restart_count = r.u32()
    tpm.da_failed_tries = r.u32()
    tpm.da_max_tries = r.u32()
    tpm.da_recovery_time = r.u32()
    tpm.da_lockout_recovery = r.u32()
    tpm.da_last_failure = tpm.lockout_locked_at = tpm.clock   # recovery restarts now
    tpm.nv_indices = {}
    for _ in range(r.u32()):
        nv = NvIndex.deserialize(r.tpm2b())
        tpm.nv_indices[nv.index] = nv
    tpm.persistent = {}
    for _ in range(r.u32()):
        handle = r.u32()
        tpm.persistent[handle] = TpmObject.deserialize(r.tpm2b())
    kind = r.u8()
    if kind == 0:
        tpm.orderly_state = None
    elif kind == 1:
        tpm.orderly_state = (TPM_SU.CLEAR,)
    elif kind == 2:
        counter = r.u32()
        banks = {}
        for _ in range(r.u8()):
            alg = r.u16()
            if alg not in HASHES:
                raise ValueError(f"unknown PCR bank {alg:#06x}")
            size = HASHES[alg].size
            banks[alg] = [r.bytes(size) for _ in range(16)]
        tpm.orderly_state = (TPM_SU.STATE, banks, counter)
    else:
        raise ValueError(f"unknown orderly-shutdown kind {kind}")
    tpm.stir_pool = r.tpm2b()
    tpm.nv_counter_high = r.u64()


_fresh = CommandAudit()
#: (alg, commands, counter, digest) of a TPM that has never changed its command audit
_FRESH_AUDIT = (_fresh.alg, frozenset(_fresh.commands), _fresh.counter, _fresh.digest)
del _fresh


def _extension(tpm, always=False):
    """Version 2's extension, or (unless ``always``) ``b""`` while every part of it is as new."""
    ca = tpm.command_audit
    if not always and (ca.alg, ca.commands, ca.counter, ca.digest) == _FRESH_AUDIT \
            and not tpm.pcr_policies and tpm.pcr_allocation == BANKS:
        return b""
    out = [u16(ca.alg) + u64(ca.counter) + tpm2b(ca.digest) + u32(len(ca.commands))]
    out += [u32(cc) for cc in sorted(ca.commands)]
    out.append(u32(len(tpm.pcr_policies)))
    for pcr, (alg, digest) in sorted(tpm.pcr_policies.items()):
        out.append(u32(pcr) + u16(alg) + tpm2b(digest))
    out.append(bytes((len(tpm.pcr_allocation),)) + b"".join(u16(a) for a in tpm.pcr_allocation))
    return b"".join(out)


def _policy(alg, digest, what):
    """``(alg, digest)`` if a TPM could have set it (what TPM2_SetPrimaryPolicy and
    TPM2_PCR_SetAuthPolicy accept: no hash and no digest, or a digest of that hash)."""
    if (alg == TPM_ALG.NULL and not digest) or (alg in HASHES and len(digest) == HASHES[alg].size):
        return alg, digest
    raise ValueError(f"the policy of {what}: a {len(digest)}-byte digest with hash {alg:#06x}")


def _read_extension(tpm, r):
    ca = tpm.command_audit
    ca.alg = r.u16()
    if ca.alg not in HASHES:
        raise ValueError(f"unknown command-audit hash {ca.alg:#06x}")
    ca.counter = r.u64()
    ca.digest = r.tpm2b()
    ca.commands = {r.u32() for _ in range(r.u32())}
    tpm.pcr_policies = {}
    for _ in range(r.u32()):
        pcr = r.u32()
        alg = r.u16()
        if pcr != AUTH_GROUP[0] or alg == TPM_ALG.NULL:
            raise ValueError(f"a PCR policy for PCR {pcr} with hash {alg:#06x}")
        tpm.pcr_policies[pcr] = _policy(alg, r.tpm2b(), f"PCR {pcr}")
    algs = tuple(r.u16() for _ in range(r.u8()))
    if any(a not in BANKS for a in algs):
        raise ValueError("unknown PCR bank in the allocation")
    tpm.pcr_allocation = algs

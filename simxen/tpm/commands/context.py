"""Part 3, chapter 28: ContextSave, ContextLoad, FlushContext, EvictControl.

TPMS_CONTEXT = sequence u64 || savedHandle u32 || hierarchy u32 ||
contextBlob TPM2B.  The blob is integrity-protected and encrypted
(:mod:`simxen.tpm.protection`) with the context hash (the largest hash the
TPM implements, SHA-512, as the reference chooses it) and a key derived from
the TPM's context key and the proof of the object's hierarchy, and its HMAC
binds the count of TPM Resets (the reference implementation's
totalResetCount, which TPM2_Clear leaves alone): no context loads after a
TPM Reset (those of NULL-hierarchy objects die with the NULL proof as well).  The HMAC of an
stClear object's context (savedHandle 0x80000002) binds the count of TPM
Restarts too (clearCount), so it dies at a TPM Restart as well, as the
reference's ComputeContextIntegrity makes it.

An object context can be loaded any number of times.  Its savedHandle says
what it holds (Part 2, "Context Handle Values"): 0x80000000 an ordinary
object, 0x80000001 a hash, HMAC or event sequence (whose hashes in progress
the context carries, :mod:`simxen.tpm.hash_sequence`), 0x80000002 an object
with stClear.  A session stays in
the TPM's session table while saved; its context holds the handle and the
sequence number, and can be loaded exactly once (the table's sequence must
match), which is the spec's replay protection.
"""

from simxen.tpm.algorithms import CONTEXT_HASH, HASHES, MAX_DIGEST_SIZE
from simxen.tpm.commands import command
from simxen.tpm.constants import TPM_CC, TPM_HT, TPM_RC, TPM_RH, TPMA_OBJECT
from simxen.tpm.errors import TpmError
from simxen.tpm.creation import read_hierarchy
from simxen.tpm.hash_sequence import HashSequence
from simxen.tpm.kdf import kdfa
from simxen.tpm.limits import (MAX_ACTIVE_SESSIONS, MAX_LOADED_SESSIONS, MAX_PERSISTENT_OBJECTS,
                               MAX_TRANSIENT_OBJECTS)
from simxen.tpm.marshal import Reader, tpm2b, u32, u64
from simxen.tpm.protection import unwrap, wrap
from simxen.tpm.tpm_object import TpmObject

#: TPMS_CONTEXT.savedHandle of a saved object (Part 2, 14.6: 0x80000000 an
#: ordinary object, 0x80000001 a sequence, 0x80000002 an object with stClear)
OBJECT_SAVED_HANDLE = 0x80000000
SEQUENCE_SAVED_HANDLE = 0x80000001
STCLEAR_SAVED_HANDLE = 0x80000002


def _context_secret(tpm, hierarchy):
    return kdfa(HASHES[CONTEXT_HASH].name, tpm.context_key + tpm.hierarchy_proof(hierarchy),
                b"CONTEXT", b"", b"", 256)


def _binding(tpm, sequence, saved_handle):
    """What the blob's HMAC binds beside the blob: the count of TPM Resets
    (so no context loads after one: Part 1's "resetValue", the reference
    implementation's totalResetCount), for an stClear object the count of
    TPM Restarts, then the sequence and the savedHandle."""
    restarts = u32(tpm.clear_count) if saved_handle == STCLEAR_SAVED_HANDLE else b""
    return u32(tpm.total_reset_count) + restarts + u64(sequence) + u32(saved_handle)


@command(TPM_CC.ContextSave, handles=("saved",))
def context_save(tpm, cmd):
    cmd.r.done()
    handle = cmd.handles[0]
    tpm.context_sequence += 1
    seq = tpm.context_sequence
    if handle >> 24 == TPM_HT.TRANSIENT:
        obj = tpm.objects[handle]
        if obj.is_sequence:
            saved = SEQUENCE_SAVED_HANDLE
        elif obj.attributes & TPMA_OBJECT.stClear:
            saved = STCLEAR_SAVED_HANDLE
        else:
            saved = OBJECT_SAVED_HANDLE
        hierarchy = obj.hierarchy
        plain = obj.serialize()
    else:
        session = tpm.sessions[handle]
        session.saved_sequence = seq
        saved = handle
        hierarchy = TPM_RH.NULL
        plain = u32(handle) + u64(seq)
    blob = wrap(CONTEXT_HASH, _context_secret(tpm, hierarchy), b"CONTEXT",
                _binding(tpm, seq, saved), plain, 128)
    return b"", u64(seq) + u32(saved) + u32(hierarchy) + tpm2b(blob)


#: the context blob's integrity is an HMAC of the context hash; the fingerprint
#: after it is the u64 sequence
_INTEGRITY_SIZE = HASHES[CONTEXT_HASH].size
_FINGERPRINT_SIZE = 8


def _check_integrity_field(blob):
    """The contextBlob's leading integrity TPM2B, checked as the reference's
    TPM2_ContextLoad reads it before anything else: a size larger than any
    digest is ``TPM_RC_SIZE`` and too few bytes ``TPM_RC_INSUFFICIENT`` -- both
    as TPM2B_DIGEST_Unmarshal returns them, with no parameter number -- and a
    size other than the integrity hash's, or no room left for the fingerprint,
    ``TPM_RC_SIZE`` of the context (parameter 1)."""
    r = Reader(blob)
    r.param = 0                 # (a failure of this read names no parameter)
    integrity = r.tpm2b(MAX_DIGEST_SIZE)
    if len(integrity) != _INTEGRITY_SIZE or r.remaining() < _FINGERPRINT_SIZE:
        raise TpmError(TPM_RC.SIZE, param=1)


@command(TPM_CC.ContextLoad)
def context_load(tpm, cmd):
    r = cmd.r
    seq = r.u64()
    saved = r.u32()
    # TPMI_DH_SAVED: a session, or one of the three handles ContextSave gives objects
    if not (saved >> 24 in (TPM_HT.HMAC_SESSION, TPM_HT.POLICY_SESSION)
            and saved & 0xFFFFFF < MAX_ACTIVE_SESSIONS
            or OBJECT_SAVED_HANDLE <= saved <= STCLEAR_SAVED_HANDLE):
        raise TpmError(TPM_RC.VALUE, param=1)
    hierarchy = read_hierarchy(r)                       # (ContextLoad's parameter 1)
    blob = r.tpm2b(4096)
    r.done()
    _check_integrity_field(blob)
    ht = saved >> 24
    plain = unwrap(CONTEXT_HASH, _context_secret(tpm, hierarchy), b"CONTEXT",
                   _binding(tpm, seq, saved), blob, 128, param=1)
    if ht == TPM_HT.TRANSIENT:
        # (an object's only: no object context loads into a disabled hierarchy)
        if not tpm.hierarchy_enabled(hierarchy):
            raise TpmError(TPM_RC.HIERARCHY, param=1)
        try:
            if saved == SEQUENCE_SAVED_HANDLE:
                obj = HashSequence.deserialize(Reader(plain))
            else:
                obj = TpmObject.deserialize(plain)
        except (TpmError, ValueError):
            raise TpmError(TPM_RC.INTEGRITY, param=1) from None
        if obj.hierarchy != hierarchy:
            raise TpmError(TPM_RC.INTEGRITY, param=1)
        return u32(tpm.add_object(obj)), b""
    pr = Reader(plain)
    handle, session_seq = pr.u32(), pr.u64()
    session = tpm.sessions.get(handle)
    if (handle != saved or session_seq != seq or session is None
            or session.saved_sequence != seq):
        raise TpmError(TPM_RC.HANDLE, param=1)
    loaded = sum(1 for s in tpm.sessions.values() if s.saved_sequence is None)
    if loaded >= MAX_LOADED_SESSIONS:
        raise TpmError(TPM_RC.SESSION_MEMORY)
    session.saved_sequence = None
    return u32(handle), b""


@command(TPM_CC.FlushContext)
def flush_context(tpm, cmd):
    r = cmd.r
    handle = r.u32()
    ht, index = handle >> 24, handle & 0xFFFFFF
    # TPMI_DH_CONTEXT: a transient object slot or a session index (else TPM_RC_VALUE)
    if not (ht == TPM_HT.TRANSIENT and index < MAX_TRANSIENT_OBJECTS
            or ht in (TPM_HT.HMAC_SESSION, TPM_HT.POLICY_SESSION)
            and index < MAX_ACTIVE_SESSIONS):
        raise TpmError(TPM_RC.VALUE, param=1)
    r.done()
    if ht == TPM_HT.TRANSIENT:
        if tpm.objects.pop(handle, None) is None:
            raise TpmError(TPM_RC.HANDLE, param=1)
        return b"", b""
    # HMAC and policy sessions share the index space: the index decides, and a
    # context-saved session is flushed as well as a loaded one
    filed = tpm.session_filed_at(handle)
    if filed is None:
        raise TpmError(TPM_RC.HANDLE, param=1)
    del tpm.sessions[filed]
    return b"", b""


@command(TPM_CC.EvictControl, handles=("provision", "object"), auth=1)
def evict_control(tpm, cmd):
    r = cmd.r
    persistent = r.u32()
    if persistent >> 24 != TPM_HT.PERSISTENT:            # TPMI_DH_PERSISTENT
        raise TpmError(TPM_RC.VALUE, param=1)
    r.done()
    auth, handle = cmd.handles
    if handle >> 24 == TPM_HT.PERSISTENT:
        if handle != persistent:                    # the object is the one to blame
            raise TpmError(TPM_RC.HANDLE, handle=2)
        obj = tpm.persistent[handle]
        if (auth == TPM_RH.OWNER) != (obj.hierarchy != TPM_RH.PLATFORM):
            raise TpmError(TPM_RC.HIERARCHY, handle=2)
        del tpm.persistent[handle]
        tpm.nv_changed = True
        return b"", b""
    obj = tpm.objects[handle]
    # the reference's order: temporary (stClear, or of the NULL hierarchy), then
    # the hierarchy, then the range the persistent handle must be in
    if obj.attributes & TPMA_OBJECT.stClear or obj.hierarchy == TPM_RH.NULL:
        raise TpmError(TPM_RC.ATTRIBUTES, handle=2)
    if (auth == TPM_RH.OWNER) == (obj.hierarchy == TPM_RH.PLATFORM):
        raise TpmError(TPM_RC.HIERARCHY, handle=2)
    if (auth == TPM_RH.PLATFORM) != (persistent >= 0x81800000):
        raise TpmError(TPM_RC.RANGE, param=1)
    if persistent in tpm.persistent:
        raise TpmError(TPM_RC.NV_DEFINED)
    if len(tpm.persistent) >= MAX_PERSISTENT_OBJECTS:
        raise TpmError(TPM_RC.NV_SPACE)
    tpm.persistent[persistent] = TpmObject.deserialize(obj.serialize())
    tpm.nv_changed = True
    return b"", b""

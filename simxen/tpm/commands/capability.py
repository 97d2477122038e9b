"""Part 3, chapter 30: GetCapability and TestParms.

Answers everything tpm2-tools asks at start-up: TPM_CAP_ALGS (the tools keep
SHA-256 as session hash because it is listed with attributes exactly
``hash``), TPM_CAP_HANDLES, TPM_CAP_COMMANDS, TPM_CAP_PCRS,
TPM_CAP_TPM_PROPERTIES (fixed and variable), TPM_CAP_PCR_PROPERTIES and
TPM_CAP_ECC_CURVES.  Lists start at ``property`` and hold at most ``count``
entries; ``moreData`` says whether more follow.
"""

from simxen.tpm import limits as _engine
from simxen.tpm import keys
from simxen.tpm.algorithms import IMPLEMENTED_ALGS
from simxen.tpm.commands import COMMANDS, command
from simxen.tpm.constants import (TPM_ALG, TPM_CAP, TPM_CC, TPM_ECC, TPM_HT, TPM_PT,
                                  TPM_RC, TPM_RH)
from simxen.tpm.errors import TpmError
from simxen.tpm.marshal import u16, u32
from simxen.tpm.nv_index import NV_INDEX_MAX
from simxen.tpm.pcr import PCR_ATTRIBUTES, PCR_COUNT
from simxen.tpm.pcr_selection import marshal_pcr_selection
from simxen.tpm.public import Public

MAX_CAP_ENTRIES = 127
#: the TPM_CAP values of Part 2 (6.12) that this TPM answers
_CAPABILITIES = frozenset((TPM_CAP.ALGS, TPM_CAP.HANDLES, TPM_CAP.COMMANDS, TPM_CAP.PP_COMMANDS,
                           TPM_CAP.AUDIT_COMMANDS, TPM_CAP.PCRS, TPM_CAP.TPM_PROPERTIES,
                           TPM_CAP.PCR_PROPERTIES, TPM_CAP.ECC_CURVES,
                           TPM_CAP.AUTH_POLICIES))
#: Commands whose response has a handle (TPMA_CC.rHandle).
RESPONSE_HANDLE = {TPM_CC.CreatePrimary, TPM_CC.Load, TPM_CC.LoadExternal,
                   TPM_CC.ContextLoad, TPM_CC.StartAuthSession, TPM_CC.CreateLoaded,
                   TPM_CC.HMAC_Start, TPM_CC.HashSequenceStart}
#: Commands that flush a handle (TPMA_CC.flushed) or change NV (TPMA_CC.nv).
FLUSHED = {TPM_CC.FlushContext}
NV_COMMANDS = {TPM_CC.NV_DefineSpace, TPM_CC.NV_UndefineSpace, TPM_CC.NV_Write,
               TPM_CC.NV_Increment, TPM_CC.NV_Extend, TPM_CC.EvictControl, TPM_CC.Clear,
               TPM_CC.HierarchyChangeAuth, TPM_CC.Shutdown, TPM_CC.Startup,
               TPM_CC.DictionaryAttackLockReset, TPM_CC.DictionaryAttackParameters}
PERMANENT_HANDLES = (TPM_RH.OWNER, TPM_RH.NULL, TPM_RH.PW, TPM_RH.LOCKOUT,
                     TPM_RH.ENDORSEMENT, TPM_RH.PLATFORM, TPM_RH.PLATFORM_NV)

FIRMWARE_VERSION_1 = 0x20260001
FIRMWARE_VERSION_2 = 0x00000001


#: commands that need physical presence; a platform without it still lists
#: PP_Commands, which it answers TPM_RC_PP
PP_COMMANDS = (TPM_CC.PP_Commands,)


def tpma_cc(cc):
    _, specs, *_ = COMMANDS[cc]
    return (cc | (1 << 22 if cc in NV_COMMANDS else 0) | (1 << 24 if cc in FLUSHED else 0)
            | len(specs) << 25 | (1 << 28 if cc in RESPONSE_HANDLE else 0))


def fixed_properties(tpm):
    """TPM_PT_FIXED group, ascending."""
    ascii4 = lambda s: int.from_bytes(s.encode().ljust(4, b" ")[:4], "big")
    return [
        (TPM_PT.FAMILY_INDICATOR, 0x322E3000),
        (TPM_PT.LEVEL, 0),
        (TPM_PT.REVISION, 159),
        (TPM_PT.DAY_OF_YEAR, 1),
        (TPM_PT.YEAR, 2026),
        (TPM_PT.MANUFACTURER, int.from_bytes(tpm.manufacturer, "big")),
        (TPM_PT.VENDOR_STRING_1, ascii4("simx")),
        (TPM_PT.VENDOR_STRING_2, ascii4("en")),
        (TPM_PT.VENDOR_STRING_3, 0),
        (TPM_PT.VENDOR_STRING_4, 0),
        (TPM_PT.VENDOR_TPM_TYPE, 1),
        (TPM_PT.FIRMWARE_VERSION_1, FIRMWARE_VERSION_1),
        (TPM_PT.FIRMWARE_VERSION_2, FIRMWARE_VERSION_2),
        (TPM_PT.INPUT_BUFFER, 1024),
        (TPM_PT.HR_TRANSIENT_MIN, _engine.MAX_TRANSIENT_OBJECTS),
        (TPM_PT.HR_PERSISTENT_MIN, _engine.MAX_PERSISTENT_OBJECTS),
        (TPM_PT.HR_LOADED_MIN, _engine.MAX_LOADED_SESSIONS),
        (TPM_PT.ACTIVE_SESSIONS_MAX, _engine.MAX_ACTIVE_SESSIONS),
        (TPM_PT.PCR_COUNT, PCR_COUNT),
        (TPM_PT.PCR_SELECT_MIN, 3),
        (TPM_PT.CONTEXT_GAP_MAX, 0xFFFF),
        (TPM_PT.NV_COUNTERS_MAX, 0),
        (TPM_PT.NV_INDEX_MAX, NV_INDEX_MAX),
        (TPM_PT.MEMORY, 0x6),
        (TPM_PT.CLOCK_UPDATE, 0x1000),
        (TPM_PT.CONTEXT_HASH, TPM_ALG.SHA256),
        (TPM_PT.CONTEXT_SYM, TPM_ALG.AES),
        (TPM_PT.CONTEXT_SYM_SIZE, 128),
        (TPM_PT.ORDERLY_COUNT, 255),
        (TPM_PT.MAX_COMMAND_SIZE, _engine.MAX_COMMAND_SIZE),
        (TPM_PT.MAX_RESPONSE_SIZE, _engine.MAX_COMMAND_SIZE),
        (TPM_PT.MAX_DIGEST, 64),
        (TPM_PT.MAX_OBJECT_CONTEXT, 2048),
        (TPM_PT.MAX_SESSION_CONTEXT, 512),
        (TPM_PT.PS_FAMILY_INDICATOR, 1),
        (TPM_PT.PS_LEVEL, 0),
        (TPM_PT.PS_REVISION, 0x105),
        (TPM_PT.PS_DAY_OF_YEAR, 0),
        (TPM_PT.PS_YEAR, 0),
        (TPM_PT.SPLIT_MAX, 128),
        (TPM_PT.TOTAL_COMMANDS, len(COMMANDS)),
        (TPM_PT.LIBRARY_COMMANDS, len(COMMANDS)),
        (TPM_PT.VENDOR_COMMANDS, 0),
        (TPM_PT.NV_BUFFER_MAX, 1024),
        (TPM_PT.MODES, 0),
        (TPM_PT.MAX_CAP_BUFFER, 1024),
    ]


def variable_properties(tpm):
    """TPM_PT_VAR group, ascending."""
    ha = tpm.hierarchy_auth
    permanent = ((1 if ha[TPM_RH.OWNER] else 0) | (2 if ha[TPM_RH.ENDORSEMENT] else 0)
                 | (4 if ha[TPM_RH.LOCKOUT] else 0) | (0x100 if tpm.disable_clear else 0)
                 | (0x200 if tpm.da_failed_tries >= tpm.da_max_tries else 0) | 0x400)
    startup_clear = (int(tpm.ph_enable) | int(tpm.sh_enable) << 1 | int(tpm.eh_enable) << 2
                     | int(tpm.ph_enable_nv) << 3 | (1 << 31 if tpm.orderly_state else 0))
    loaded = sum(1 for s in tpm.sessions.values() if s.saved_sequence is None)
    n_nv = len(tpm.nv_indices)
    return [
        (TPM_PT.PERMANENT, permanent),
        (TPM_PT.STARTUP_CLEAR, startup_clear),
        (TPM_PT.HR_NV_INDEX, n_nv),
        (TPM_PT.HR_LOADED, loaded),
        (TPM_PT.HR_LOADED_AVAIL, _engine.MAX_LOADED_SESSIONS - loaded),
        (TPM_PT.HR_ACTIVE, len(tpm.sessions)),
        (TPM_PT.HR_ACTIVE_AVAIL, _engine.MAX_ACTIVE_SESSIONS - len(tpm.sessions)),
        (TPM_PT.HR_TRANSIENT_AVAIL, _engine.MAX_TRANSIENT_OBJECTS - len(tpm.objects)),
        (TPM_PT.HR_PERSISTENT, len(tpm.persistent)),
        (TPM_PT.HR_PERSISTENT_AVAIL, _engine.MAX_PERSISTENT_OBJECTS - len(tpm.persistent)),
        (TPM_PT.NV_COUNTERS, sum(1 for nv in tpm.nv_indices.values() if nv.nt == 1)),
        (TPM_PT.NV_COUNTERS_AVAIL, 64),
        (TPM_PT.ALGORITHM_SET, 0),
        (TPM_PT.LOADED_CURVES, len(keys.CURVE_BYTES)),
        (TPM_PT.LOCKOUT_COUNTER, tpm.da_failed_tries),
        (TPM_PT.MAX_AUTH_FAIL, tpm.da_max_tries),
        (TPM_PT.LOCKOUT_INTERVAL, tpm.da_recovery_time),
        (TPM_PT.LOCKOUT_RECOVERY, tpm.da_lockout_recovery),
        (TPM_PT.NV_WRITE_RECOVERY, 0),
        (TPM_PT.AUDIT_COUNTER_0, 0),
        (TPM_PT.AUDIT_COUNTER_1, 0),
    ]


def handles_of_type(tpm, ht):
    if ht == TPM_HT.PCR:
        return list(range(PCR_COUNT))
    if ht == TPM_HT.NV_INDEX:
        return sorted(tpm.nv_indices)
    if ht == TPM_HT.LOADED_SESSION:
        return sorted(h for h, s in tpm.sessions.items() if s.saved_sequence is None)
    if ht == TPM_HT.SAVED_SESSION:
        return sorted(h for h, s in tpm.sessions.items() if s.saved_sequence is not None)
    if ht == TPM_HT.TRANSIENT:
        return sorted(tpm.objects)
    if ht == TPM_HT.PERSISTENT:
        return sorted(tpm.persistent)
    if ht == TPM_HT.PERMANENT:
        return list(PERMANENT_HANDLES)
    return None


def pcr_properties():
    """TPML_TAGGED_PCR_PROPERTY: SAVE, EXTEND_Ln / RESET_Ln for n = 0..4,
    DRTM_RESET."""
    def bitmap(pred):
        out = bytearray(3)
        for i in range(PCR_COUNT):
            if pred(i):
                out[i // 8] |= 1 << (i % 8)
        return bytes(out)
    props = [(0x00, bitmap(lambda i: PCR_ATTRIBUTES[i][0]))]
    for loc in range(5):
        props.append((0x01 + 2 * loc, bitmap(lambda i: PCR_ATTRIBUTES[i][2] >> loc & 1)))
        props.append((0x02 + 2 * loc, bitmap(lambda i: PCR_ATTRIBUTES[i][1] >> loc & 1)))
    props.append((0x12, bitmap(lambda i: PCR_ATTRIBUTES[i][1] & 0x10)))
    return sorted(props)


@command(TPM_CC.GetCapability)
def get_capability(tpm, cmd):
    r = cmd.r
    cap = r.at(1).u32()
    if cap not in _CAPABILITIES:                     # TPM_CAP: a value error as read
        raise TpmError(TPM_RC.VALUE, param=1)
    prop = r.at(2).u32()
    count = r.at(3).u32()
    r.done()
    count = min(count, MAX_CAP_ENTRIES)

    def page(items, encode):
        chosen = items[:count]
        more = len(items) > count
        return (b"\x01" if more else b"\x00") + u32(cap) + u32(len(chosen)) + b"".join(
            encode(x) for x in chosen)

    if cap == TPM_CAP.ALGS:
        items = [a for a in IMPLEMENTED_ALGS if a[0] >= prop]
        return b"", page(items, lambda a: u16(a[0]) + u32(a[1]))
    if cap == TPM_CAP.HANDLES:
        handles = handles_of_type(tpm, prop >> 24)
        if handles is None:
            raise TpmError(TPM_RC.HANDLE, param=2)
        if prop >> 24 in (TPM_HT.LOADED_SESSION, TPM_HT.SAVED_SESSION):
            # HMAC and policy sessions share one index space: compare indices
            handles = sorted((h for h in handles if h & 0xFFFFFF >= prop & 0xFFFFFF),
                             key=lambda h: h & 0xFFFFFF)
        else:
            handles = [h for h in handles if h >= prop]
        return b"", page(handles, u32)
    if cap == TPM_CAP.COMMANDS:
        items = sorted(cc for cc in COMMANDS if cc >= prop)
        return b"", page(items, lambda cc: u32(tpma_cc(cc)))
    if cap == TPM_CAP.PCRS:
        if prop:                                # "property shall be zero" (reference)
            raise TpmError(TPM_RC.VALUE, param=2)
        sel = [(alg, b"\xff\xff\xff") for alg in tpm.pcrs.algs]
        return b"", b"\x00" + u32(cap) + marshal_pcr_selection(sel)
    if cap == TPM_CAP.TPM_PROPERTIES:
        props = fixed_properties(tpm) + variable_properties(tpm)
        items = [p for p in props if p[0] >= prop]
        return b"", page(items, lambda p: u32(p[0]) + u32(p[1]))
    if cap == TPM_CAP.PCR_PROPERTIES:
        items = [p for p in pcr_properties() if p[0] >= prop]
        return b"", page(items, lambda p: u32(p[0]) + b"\x03" + p[1])
    if cap == TPM_CAP.ECC_CURVES:
        items = [c for c in sorted(keys.CURVE_BYTES) if c >= prop]
        return b"", page(items, u16)
    if cap == TPM_CAP.AUDIT_COMMANDS:
        return b"", page(sorted(cc for cc in tpm.command_audit.commands if cc >= prop), u32)
    if cap == TPM_CAP.PP_COMMANDS:
        return b"", page([cc for cc in PP_COMMANDS if cc >= prop], u32)
    if cap == TPM_CAP.AUTH_POLICIES:
        if prop >> 24 != TPM_HT.PERMANENT:
            raise TpmError(TPM_RC.VALUE, param=2)
        return b"", page([], u32)
    raise TpmError(TPM_RC.VALUE, param=1)


@command(TPM_CC.TestParms)
def test_parms(tpm, cmd):
    """TPMT_PUBLIC_PARMS: the parameters part of a public area."""
    r = cmd.r.at(1)
    type_ = r.u16()
    if type_ not in (TPM_ALG.RSA, TPM_ALG.ECC, TPM_ALG.KEYEDHASH, TPM_ALG.SYMCIPHER):
        raise TpmError(TPM_RC.TYPE, param=1)
    Public(type_, TPM_ALG.SHA256, 0).parse_parameters(r)
    r.done()
    return b"", b""


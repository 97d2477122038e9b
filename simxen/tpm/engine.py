"""The TPM 2.0 engine: its state, the entities it holds, command dispatch.

:class:`TpmEngine` is a pure function of its state and the bytes it is given::

    >>> from simxen.tpm import TpmEngine, client
    >>> tpm = TpmEngine(seed=b"example", powered=True)
    >>> tpm.execute(client.startup_command()).hex()
    '80010000000a00000000'

:meth:`TpmEngine.execute` follows Part 3's order of checks (the reference
implementation's ``ExecuteCommand``): header and size, command code,
initialisation, handle area, authorization area and sessions, parameters,
then the command itself.  Any failure gives the 10-byte error response with
the response code the specification prescribes and leaves the state as it
was (dictionary-attack counting excepted, which is the point of it).  It
never raises.

The commands live in :mod:`simxen.tpm.commands`, one module per Part 3
chapter; this module only knows the table they register in.  Sessions and
authorization are :mod:`simxen.tpm.authorization`.
"""

import os
import struct
import time
from functools import partial

from simxen.tpm import audit, header, state
from simxen.tpm.algorithms import HASHES
from simxen.tpm.authorization import PW_RESPONSE as _PW_RESPONSE, SessionProcessing
from simxen.tpm.commands import COMMANDS, load_all
from simxen.tpm.commands.capability import PP_COMMANDS
from simxen.tpm.constants import (TPM_ALG, TPM_CC, TPM_HT, TPM_RC, TPM_RH, TPM_ST, TPMA_NV,
                                  TPMA_OBJECT)
from simxen.tpm.errors import StateError, TpmError
from simxen.tpm.kdf import kdfa
from simxen.tpm.limits import (DA_DEFAULTS, MAX_ACTIVE_SESSIONS, MAX_COMMAND_SIZE,
                               MAX_LOADED_SESSIONS, MAX_TRANSIENT_OBJECTS)
from simxen.tpm.marshal import Reader
from simxen.tpm.pcr import AUTH_GROUP, BANKS, PCR_COUNT, PcrBanks

load_all()

_U32 = struct.Struct(">I")
_NO_SESSIONS, _SESSIONS = TPM_ST.NO_SESSIONS, TPM_ST.SESSIONS
_PW_EMPTY_HEAD = b"\x40\x00\x00\x09\x00\x00"  # TPM_RS_PW, empty nonceCaller


_PERMANENT_AUTH = (TPM_RH.OWNER, TPM_RH.ENDORSEMENT, TPM_RH.PLATFORM, TPM_RH.LOCKOUT)


def error_response(rc):
    """The 10-byte response for a failed command."""
    return header.pack(_NO_SESSIONS, rc)


class Command:
    """What a command handler is given: code, handles, a reader over the
    parameters, the locality and the sessions."""

    __slots__ = ("cc", "handles", "r", "locality", "sessions", "tag")

    def __init__(self, cc, handles, r, locality, sessions, tag):
        self.cc = cc
        self.handles = handles
        self.r = r
        self.locality = locality
        self.sessions = sessions
        self.tag = tag


class TpmEngine(SessionProcessing):
    """A software TPM 2.0.

    :param seed: derives the endorsement, storage and platform primary seeds
        (and the proofs); ``None`` draws them from ``random_bytes``.
    :param random_bytes: ``random_bytes(n) -> bytes``, the only randomness the
        engine uses at run time (nonces, keys of Create, GetRandom, the NULL
        seed).  Default :func:`os.urandom`.
    :param manufacturer: four ASCII characters for TPM_PT_MANUFACTURER.
    :param powered: do _TPM_Init (:meth:`power_on`) right away.
    :param clock: ``clock() -> float`` milliseconds for TPMS_CLOCK_INFO; default
        a monotonic wall clock.  Inside a simulation pass simulated time.
    """


    def __init__(self, *, seed=None, random_bytes=None, manufacturer="SIMX",
                 powered=False, clock=None):
        self.random_bytes = random_bytes or os.urandom
        self.manufacturer = (manufacturer.encode("ascii", "replace") + b"    ")[:4]
        self._clock_fn = clock or (lambda: time.monotonic() * 1000.0)
        self._clock_origin = self._clock_fn()
        material = (kdfa("sha256", seed, b"SIMXEN TPM SEEDS", b"", b"", 8 * 32 * 6)
                    if seed is not None else self.random_bytes(32 * 6))
        self.eps, self.sps, self.pps, self.eh_proof, self.sh_proof, self.ph_proof = (
            material[i:i + 32] for i in range(0, 192, 32))
        self.context_key = kdfa("sha256", self.sps, b"CONTEXT PROTECTION", b"", b"", 256)
        self.hierarchy_auth = {h: b"" for h in _PERMANENT_AUTH}
        self.hierarchy_policy = {h: (TPM_ALG.NULL, b"") for h in _PERMANENT_AUTH}
        self.sh_enable = self.eh_enable = self.ph_enable = self.ph_enable_nv = True
        self.disable_clear = False
        self.nv_indices = {}
        self.persistent = {}
        self.clock_base = 0
        self.reset_count = 0
        self.restart_count = 0
        # the reference implementation's totalResetCount: TPM Resets ever (TPM2_Clear
        # zeroes resetCount, not this), and clearCount: TPM Restarts since the last
        # Reset or Clear.  A context's HMAC binds the first, an stClear object's the
        # second too (simxen.tpm.commands.context).
        self.total_reset_count = 0
        self.clear_count = 0
        self.da_failed_tries = 0
        self.da_max_tries, self.da_recovery_time, self.da_lockout_recovery = DA_DEFAULTS
        self.lockout_auth_locked = False
        self.da_last_failure = 0         # clock (ms) from which recovery counts
        self.lockout_locked_at = 0
        self.orderly_state = None        # Shutdown(STATE) snapshot, or None
        self.total_commands = 0
        self.command_audit = audit.CommandAudit()
        self.commit = None               # simxen.tpm.commit.CommitState, made on first use
        self.pcr_allocation = BANKS      # banks the next TPM Reset allocates (PCR_Allocate)
        self.clock_rate_adjust = 0       # last ClockRateAdjust request (-3 .. 3)
        self.pcr_policies = {}           # PCR -> (hashAlg, authPolicy), PCR_SetAuthPolicy
        self.stir_pool = b""
        self.stir_counter = 0
        self.saved_at_init = {}
        self.nv_counter_high = 0
        self.context_sequence = 0        # never reused, even over power cycles
        # the NULL hierarchy's seed and proof: new at every TPM Reset, kept
        # over Shutdown(STATE)/Startup(STATE)
        self.null_seed = b""
        self.null_proof = b""
        # simxen.tpm.state's marshalled sections with the values they were made
        # from: a save re-marshals only the sections whose values changed
        self._state_memo = {}
        self._init_transient()
        self.last_command_changed_nv = False
        #: the exception behind the last TPM_RC_FAILURE answer (a bug), if any
        self.last_internal_error = None
        if powered:
            self.power_on()

    # ---------------------------------------------------------------- power
    def _init_transient(self):
        self.powered = False
        self.started = False
        self.objects = {}
        self.sessions = {}
        self.pcrs = PcrBanks(self.pcr_allocation)
        self.nv_changed = False
        self.startup_locality = 0
        self.startup_time = self._clock_fn()
        self._drtm = None
        self.exclusive_audit = None      # handle of the exclusive audit session
        self.pcr_auth = {}               # first PCR of a group -> authValue (PCR_SetAuthValue)

    def power_on(self):
        """_TPM_Init: power on (or reset) the TPM.  Transient objects and
        loaded sessions are lost; the next command must be Startup."""
        saved = {h: s for h, s in self.sessions.items() if s.saved_sequence is not None}
        self._init_transient()
        self.powered = True
        self.saved_at_init = saved

    def power_off(self):
        """Remove power: nothing works until :meth:`power_on`."""
        self.powered = False
        self.started = False

    # DRTM: _TPM_Hash_Start / _TPM_Hash_Data / _TPM_Hash_End (locality 4)
    def hash_start(self):
        """_TPM_Hash_Start: begin measuring a dynamic launch."""
        if not self.started:
            return False
        self._drtm = {alg: HASHES[alg].new() for alg in self.pcrs.banks}
        return True

    def hash_data(self, data):
        """_TPM_Hash_Data: more of the DRTM code."""
        if self._drtm is None:
            return False
        for h in self._drtm.values():
            h.update(data)
        return True

    def hash_end(self):
        """_TPM_Hash_End: PCRs 17-22 to zero, PCR 17 extended with the hash."""
        if self._drtm is None:
            return False
        self.pcrs.drtm({alg: h.digest() for alg, h in self._drtm.items()})
        self._drtm = None
        return True

    @property
    def clock(self):
        """TPMS_CLOCK_INFO.clock: milliseconds the TPM has been powered, kept
        across power cycles through the state."""
        return self.clock_base + int(self._clock_fn() - self._clock_origin)

    def set_clock(self, ms):
        """Make :attr:`clock` read ``ms`` now (state restore, ClockSet)."""
        self.clock_base = ms
        self._clock_origin = self._clock_fn()

    @property
    def time(self):
        """TPMS_TIME_INFO.time: milliseconds since the last _TPM_Init."""
        return int(self._clock_fn() - self.startup_time)

    def hierarchy_proof(self, hierarchy):
        return {TPM_RH.ENDORSEMENT: self.eh_proof, TPM_RH.OWNER: self.sh_proof,
                TPM_RH.PLATFORM: self.ph_proof}.get(hierarchy, self.null_proof)

    def hierarchy_seed(self, hierarchy):
        return {TPM_RH.ENDORSEMENT: self.eps, TPM_RH.OWNER: self.sps,
                TPM_RH.PLATFORM: self.pps}.get(hierarchy, self.null_seed)

    def hierarchy_enabled(self, hierarchy):
        return {TPM_RH.ENDORSEMENT: self.eh_enable, TPM_RH.OWNER: self.sh_enable,
                TPM_RH.PLATFORM: self.ph_enable}.get(hierarchy, True)

    # ------------------------------------------------------------- entities
    def get_object(self, handle):
        """A loaded transient or persistent object, or ``None``."""
        obj = self.objects.get(handle)
        if obj is None:
            obj = self.persistent.get(handle)
        return obj

    def add_object(self, obj):
        """Load ``obj`` into the lowest free transient slot; its handle.
        ``TPM_RC_OBJECT_MEMORY`` when every slot is taken."""
        if len(self.objects) >= MAX_TRANSIENT_OBJECTS:
            raise TpmError(TPM_RC.OBJECT_MEMORY)
        handle = 0x80000000
        while handle in self.objects:
            handle += 1
        self.objects[handle] = obj
        return handle

    def add_session(self, session_factory):
        """Allocate a session handle (HMAC 0x02xxxxxx, policy 0x03xxxxxx,
        one index space) and store ``session_factory(handle)``."""
        loaded = sum(1 for s in self.sessions.values() if s.saved_sequence is None)
        if len(self.sessions) >= MAX_ACTIVE_SESSIONS:
            raise TpmError(TPM_RC.SESSION_HANDLES)
        if loaded >= MAX_LOADED_SESSIONS:
            raise TpmError(TPM_RC.SESSION_MEMORY)
        used = {h & 0xFFFFFF for h in self.sessions}
        index = 0
        while index in used:
            index += 1
        session = session_factory(index)
        self.sessions[session.handle] = session
        return session

    def session_filed_at(self, handle):
        """The handle under which the session with ``handle``'s index is kept,
        loaded or context-saved, or ``None``.

        HMAC (0x02) and policy (0x03) sessions share one index space, so it
        may be of the other type than ``handle`` says.
        """
        index = handle & 0xFFFFFF
        for ht in (TPM_HT.HMAC_SESSION, TPM_HT.POLICY_SESSION):
            filed = ht << 24 | index
            if filed in self.sessions:
                return filed
        return None

    def session_at(self, handle):
        """The loaded session with ``handle``'s index, or ``None``; its
        ``handle`` differs from ``handle`` when it is of the other type (the
        caller's ``TPM_RC_HANDLE``, see :meth:`session_filed_at`)."""
        filed = self.session_filed_at(handle)
        if filed is None:
            return None
        s = self.sessions[filed]
        return None if s.saved_sequence is not None else s

    def entity_name(self, handle):
        ht = handle >> 24
        if ht == TPM_HT.TRANSIENT or ht == TPM_HT.PERSISTENT:
            obj = self.get_object(handle)
            if obj is not None:
                return obj.name
        elif ht == TPM_HT.NV_INDEX:
            nv = self.nv_indices.get(handle)
            if nv is not None:
                return nv.name
        return _U32.pack(handle)

    def entity_auth(self, handle):
        if handle < PCR_COUNT:
            return self.pcr_auth.get(AUTH_GROUP[0], b"") if handle in AUTH_GROUP else b""
        ht = handle >> 24
        if ht == TPM_HT.PERMANENT:
            return self.hierarchy_auth.get(handle, b"")
        if ht == TPM_HT.TRANSIENT or ht == TPM_HT.PERSISTENT:
            obj = self.get_object(handle)
            return obj.auth_value if obj is not None else b""
        if ht == TPM_HT.NV_INDEX:
            nv = self.nv_indices.get(handle)
            return nv.auth_value if nv is not None else b""
        return b""

    def entity_policy(self, handle):
        """``(authPolicy, nameAlg)`` of an entity; empty policy if none."""
        if handle < PCR_COUNT:
            alg, digest = (self.pcr_policies.get(AUTH_GROUP[0], (TPM_ALG.NULL, b""))
                           if handle in AUTH_GROUP else (TPM_ALG.NULL, b""))
            return digest, alg
        ht = handle >> 24
        if ht == TPM_HT.PERMANENT:
            alg, digest = self.hierarchy_policy.get(handle, (TPM_ALG.NULL, b""))
            return digest, alg
        if ht == TPM_HT.TRANSIENT or ht == TPM_HT.PERSISTENT:
            obj = self.get_object(handle)
            if obj.is_sequence:             # a hash sequence has an authValue only
                return b"", TPM_ALG.NULL
            return obj.public.auth_policy, obj.public.name_alg
        if ht == TPM_HT.NV_INDEX:
            nv = self.nv_indices[handle]
            return nv.auth_policy, nv.name_alg
        return b"", TPM_ALG.NULL

    def da_protected(self, handle):
        ht = handle >> 24
        if ht == TPM_HT.TRANSIENT or ht == TPM_HT.PERSISTENT:
            return not self.get_object(handle).attributes & TPMA_OBJECT.noDA
        if ht == TPM_HT.NV_INDEX:
            return not self.nv_indices[handle].attributes & TPMA_NV.NO_DA
        return handle == TPM_RH.LOCKOUT

    # ---------------------------------------------------------- handle area
    def check_handle(self, handle, spec, index):
        """Validate one handle of the handle area against its type ``spec``.

        ``spec`` names the handle's TPMI_ type (Part 2); :data:`_HANDLE_CHECKS`
        holds the check of each type that looks at the TPM's state, and every
        other type is a fixed set of permanent handles (:data:`_HANDLE_SETS`).
        Handle ``index`` (1-based) is what a failure's response code names.
        """
        check = _HANDLE_CHECKS.get(spec)
        if check is not None:
            return check(self, handle, index)
        allowed = _HANDLE_SETS.get(spec)
        if allowed is not None and handle not in allowed:
            raise TpmError(TPM_RC.VALUE, handle=index)
        if allowed is not None and not self.hierarchy_enabled(handle) and spec != "lockout":
            raise TpmError(TPM_RC.HIERARCHY, handle=index)

    # the checks of _HANDLE_CHECKS, one per TPMI_ type
    def _check_pcr(self, handle, index, *, null_ok=False):
        """TPMI_DH_PCR (``null_ok``: TPMI_DH_PCR+, TPM_RH_NULL allowed)."""
        if handle < PCR_COUNT or (null_ok and handle == TPM_RH.NULL):
            return
        raise TpmError(TPM_RC.VALUE, handle=index)

    def _check_object(self, handle, index, *, sequence=None):
        """TPMI_DH_OBJECT: a loaded transient or a persistent object.

        ``sequence`` True: it must be a hash/HMAC sequence object (and
        transient); False: it must not be one; None: either.
        """
        ht = handle >> 24
        if ht == TPM_HT.TRANSIENT:
            obj = self.objects.get(handle)
            if obj is None:
                if handle & 0xFFFFFF >= MAX_TRANSIENT_OBJECTS:    # past TRANSIENT_LAST
                    raise TpmError(TPM_RC.VALUE, handle=index)
                raise TpmError(TPM_RC.REFERENCE_H0 + index - 1)
            if sequence is not None and obj.is_sequence != sequence:
                raise TpmError(TPM_RC.TYPE, handle=index)
            return
        if sequence:
            raise TpmError(TPM_RC.VALUE, handle=index)
        if ht == TPM_HT.PERSISTENT:
            if handle not in self.persistent:
                raise TpmError(TPM_RC.HANDLE, handle=index)
            return
        raise TpmError(TPM_RC.VALUE, handle=index)

    def _check_object_or_null(self, handle, index):
        """TPMI_DH_OBJECT+."""
        if handle != TPM_RH.NULL:
            self._check_object(handle, index, sequence=False)

    def _check_saved(self, handle, index):
        """TPMI_DH_SAVED: a transient object (a sequence object too) or a
        loaded session."""
        ht = handle >> 24
        if ht == TPM_HT.TRANSIENT:
            return self._check_object(handle, index)
        if ht == TPM_HT.HMAC_SESSION or ht == TPM_HT.POLICY_SESSION:
            return self._check_session(handle, index)
        raise TpmError(TPM_RC.VALUE, handle=index)

    def _check_parent(self, handle, index):
        """TPMI_DH_PARENT+: a hierarchy (or NULL) or a storage object."""
        if handle >> 24 == TPM_HT.PERMANENT:
            return self.check_handle(handle, "hierarchy+", index)
        return self._check_object(handle, index, sequence=False)

    def _check_nv(self, handle, index):
        """TPMI_RH_NV_INDEX: a defined NV index."""
        if handle >> 24 != TPM_HT.NV_INDEX:
            raise TpmError(TPM_RC.VALUE, handle=index)
        if handle not in self.nv_indices:
            raise TpmError(TPM_RC.HANDLE, handle=index)

    def _check_session(self, handle, index, *, ht=None):
        """A loaded (not context-saved) session, of handle type ``ht`` if given
        (TPMI_SH_POLICY, TPMI_SH_HMAC)."""
        if ht is not None and handle >> 24 != ht or handle & 0xFFFFFF >= MAX_ACTIVE_SESSIONS:
            raise TpmError(TPM_RC.VALUE, handle=index)
        s = self.session_at(handle)
        if s is None:
            raise TpmError(TPM_RC.REFERENCE_H0 + index - 1)
        if s.handle != handle:
            raise TpmError(TPM_RC.HANDLE, handle=index)

    def _check_entity(self, handle, index, *, null_ok=False):
        """TPMI_DH_ENTITY: anything with an authorization value
        (``null_ok``: TPMI_DH_ENTITY+, TPM_RH_NULL allowed)."""
        ht = handle >> 24
        if ht == TPM_HT.PERMANENT:
            if handle in _PERMANENT_AUTH or null_ok and handle == TPM_RH.NULL:
                return
            raise TpmError(TPM_RC.VALUE, handle=index)
        if ht in (TPM_HT.TRANSIENT, TPM_HT.PERSISTENT):
            return self._check_object(handle, index, sequence=False)
        if ht == TPM_HT.NV_INDEX:
            return self._check_nv(handle, index)
        if handle < PCR_COUNT:
            return
        raise TpmError(TPM_RC.VALUE, handle=index)

    def _check_nv_auth(self, handle, index):
        """TPMI_RH_NV_AUTH: owner, platform or the index itself."""
        if handle in (TPM_RH.OWNER, TPM_RH.PLATFORM):
            return
        return self._check_nv(handle, index)

    # --------------------------------------------------------------- execute
    def execute(self, command, locality=0):
        """Execute one marshalled command at ``locality``; return the
        marshalled response.  Never raises."""
        self.nv_changed = False
        try:
            rsp = self._execute(command, locality)
        except TpmError as exc:
            rsp = error_response(exc.code)
        except Exception as exc:    # a bug must not take the caller down
            self.last_internal_error = exc
            rsp = error_response(TPM_RC.FAILURE)
        self.last_command_changed_nv = self.nv_changed
        self.total_commands += 1
        return rsp

    def _execute(self, command, locality):
        n = len(command)
        if n < 10:
            raise TpmError(TPM_RC.COMMAND_SIZE)
        tag, size, cc = header.HEADER.unpack_from(command)
        if tag != _NO_SESSIONS and tag != _SESSIONS:
            raise TpmError(TPM_RC.BAD_TAG)
        if size != n or size > MAX_COMMAND_SIZE:
            raise TpmError(TPM_RC.COMMAND_SIZE)
        cdef = COMMANDS.get(cc)
        if cdef is None:
            raise TpmError(TPM_RC.COMMAND_CODE)
        if self.started == (cc == TPM_CC.Startup):     # before Startup, or a second one
            raise TpmError(TPM_RC.INITIALIZE)
        if not 0 <= locality <= 4:
            raise TpmError(TPM_RC.LOCALITY)
        func, specs, n_auth, roles, dec_ok, enc_ok = cdef
        pos = 10
        handles = []
        # every handle's type first (TPM_RC_VALUE), then whether each is loaded
        # (the reference's ParseHandleBuffer, then EntityGetLoadStatus)
        not_loaded = None
        for i, spec in enumerate(specs, 1):
            if pos + 4 > n:
                raise TpmError(TPM_RC.INSUFFICIENT, handle=i)
            h = _U32.unpack_from(command, pos)[0]
            pos += 4
            try:
                self.check_handle(h, spec, i)
            except TpmError as exc:
                if exc.code & 0xBF == TPM_RC.VALUE:
                    raise
                not_loaded = not_loaded or exc
            handles.append(h)
        if not_loaded is not None:
            raise not_loaded
        if tag == _SESSIONS:
            if pos + 4 > n:
                raise TpmError(TPM_RC.AUTHSIZE)
            auth_size = _U32.unpack_from(command, pos)[0]
            pos += 4
            if auth_size < 9 or pos + auth_size > n:
                raise TpmError(TPM_RC.AUTHSIZE)
            if cc in _NO_SESSIONS_ALLOWED:
                raise TpmError(TPM_RC.AUTH_CONTEXT)
            auth_end = pos + auth_size
            # fast path: exactly one empty password session (PCR_Extend & co.)
            if (auth_size == 9 and n_auth == 1 and command[pos:pos + 6] == _PW_EMPTY_HEAD
                    and command[pos + 6] <= 1 and command[pos + 7:pos + 9] == b"\0\0"):
                if handles[0] >= PCR_COUNT or handles[0] in AUTH_GROUP:
                    self._check_presence(cc, handles)
                    self._check_password(handles[0], b"", 1)   # other PCRs: always empty
                sessions = None
                pw_only = 1
            else:
                sessions = self._parse_sessions(command, pos, auth_end, n_auth, dec_ok, enc_ok)
                self._check_presence(cc, handles)
                pw_only = 0
            pos = auth_end
        else:
            if n_auth:
                raise TpmError(TPM_RC.AUTH_MISSING)
            sessions = None
            pw_only = 0
        audit_entry = audit.audit_session_of(sessions) if sessions is not None else None
        audited = cc in self.command_audit.commands
        auditing = audited or self.exclusive_audit is not None or audit_entry is not None
        if auditing:
            names = b"".join(self.entity_name(h) for h in handles)  # before the command runs
            cp_params = command[pos:]
        if sessions is not None:
            cp_params = command[pos:]
            self._authorize(cc, handles, sessions, n_auth, roles, cp_params, locality)
            command = self._decrypt_parameter(command, pos, sessions, dec_ok)
        r = Reader(command, pos, n)
        cmd = Command(cc, handles, r, locality, sessions, tag)
        out_handles, params = func(self, cmd)
        if sessions is not None:
            params = self._encrypt_parameter(params, sessions, enc_ok)
        if auditing:
            audit.record(self, cc, names, cp_params, params, audit_entry, audited)
        if tag == _NO_SESSIONS:
            return header.pack(_NO_SESSIONS, TPM_RC.SUCCESS, out_handles + params)
        auths = _PW_RESPONSE if pw_only else self._response_auths(cc, params, sessions)
        return header.pack(_SESSIONS, TPM_RC.SUCCESS,
                           out_handles + _U32.pack(len(params)) + params + auths)

    @staticmethod
    def _check_presence(cc, handles):
        """Physical presence, the first check of a platform authorization (the
        reference's CheckAuthSession): before the authValue, the policy and the
        parameters, a command that needs it is ``TPM_RC_PP`` of session 1."""
        if cc in _PP_REQUIRED and handles[0] == TPM_RH.PLATFORM:
            raise TpmError(TPM_RC.PP, session=1)

    # ---------------------------------------------------------------- state
    def save_state(self):
        """All persistent state as a versioned blob (see :mod:`simxen.tpm.state`)."""
        return state.save_state(self, self._state_memo)

    @classmethod
    def from_state(cls, blob, *, random_bytes=None, clock=None, powered=True):
        """A new engine restored from :meth:`save_state`'s blob.

        :raises StateError: the blob is corrupt, truncated or of an unknown
            version.
        """
        tpm = cls(seed=b"\0", random_bytes=random_bytes, clock=clock)
        state.load_state(tpm, blob)
        if powered:
            tpm.power_on()
        return tpm


#: commands that take no authorization area (the reference's NO_SESSIONS
#: attribute): a 0x8002 tag is TPM_RC_AUTH_CONTEXT
_NO_SESSIONS_ALLOWED = frozenset((TPM_CC.Startup, TPM_CC.ContextLoad, TPM_CC.ContextSave,
                                  TPM_CC.FlushContext))
#: commands that need physical presence when the platform authorizes them; this
#: platform has none to assert (simxen.tpm.commands.management)
_PP_REQUIRED = frozenset(PP_COMMANDS)

_HANDLE_SETS = {
    "hierarchy+": {TPM_RH.OWNER, TPM_RH.ENDORSEMENT, TPM_RH.PLATFORM, TPM_RH.NULL},
    "hierarchy": {TPM_RH.OWNER, TPM_RH.ENDORSEMENT, TPM_RH.PLATFORM},
    "provision": {TPM_RH.OWNER, TPM_RH.PLATFORM},
    "clear": {TPM_RH.LOCKOUT, TPM_RH.PLATFORM},
    "lockout": {TPM_RH.LOCKOUT},
    "endorsement": {TPM_RH.ENDORSEMENT},
    "platform": {TPM_RH.PLATFORM},
    "hierarchy_auth": {TPM_RH.OWNER, TPM_RH.ENDORSEMENT, TPM_RH.PLATFORM, TPM_RH.LOCKOUT},
    "enables": {TPM_RH.OWNER, TPM_RH.ENDORSEMENT, TPM_RH.PLATFORM, TPM_RH.PLATFORM_NV},
}

#: ``spec -> check(engine, handle, index)`` for the handle types that look at
#: the TPM's state (loaded objects, sessions, NV indices); see ``check_handle``
_HANDLE_CHECKS = {
    "pcr": TpmEngine._check_pcr,
    "pcr+": partial(TpmEngine._check_pcr, null_ok=True),
    "object": partial(TpmEngine._check_object, sequence=False),
    "sequence": partial(TpmEngine._check_object, sequence=True),
    "any_object": TpmEngine._check_object,
    "object+": TpmEngine._check_object_or_null,
    "saved": TpmEngine._check_saved,
    "parent": TpmEngine._check_parent,
    "nv": TpmEngine._check_nv,
    "policy": partial(TpmEngine._check_session, ht=TPM_HT.POLICY_SESSION),
    "hmac_session": partial(TpmEngine._check_session, ht=TPM_HT.HMAC_SESSION),
    "entity": TpmEngine._check_entity,
    "entity+": partial(TpmEngine._check_entity, null_ok=True),
    "nvauth": TpmEngine._check_nv_auth,
}

__all__ = ["TpmEngine", "StateError", "error_response"]

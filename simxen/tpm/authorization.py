"""Authorization and sessions in command processing (Part 1, 19; the
reference implementation's ``SessionProcess.c``).

:class:`SessionProcessing` is the part of :class:`~simxen.tpm.engine.TpmEngine`
that reads a command's authorization area, checks each authorization —
password, HMAC over cpHash, or policy session with its deferred conditions —
counts dictionary-attack failures, decrypts the first command parameter and
encrypts the first response parameter (AES-CFB or XOR), and builds the
response authorization area with fresh nonces and HMACs over rpHash::

    cpHash   = H(commandCode || Name(handle 1) || ... || parameters)
    HMAC     = HMAC(sessionKey || authValue,
                    cpHash || nonceCaller || nonceTPM || nonceDecrypt || nonceEncrypt || attrs)
    rpHash   = H(0 || commandCode || response parameters)
    response = HMAC(sessionKey || authValue, rpHash || nonceTPM' || nonceCaller || attrs)

The authValue is left out for the entity a session is bound to, and for a
policy session unless PolicyAuthValue asked for it.
"""

import hmac as _hmac
import struct

from simxen.tpm.algorithms import HASHES, MAX_DIGEST_SIZE
from simxen.tpm.constants import TPM_ALG, TPM_CC, TPM_HT, TPM_NT, TPM_RC, TPM_RH, TPMA_NV, TPMA_OBJECT, TPMA_SESSION
from simxen.tpm.errors import TpmError
from simxen.tpm.kdf import kdfa
from simxen.tpm.limits import MAX_ACTIVE_SESSIONS, MAX_SESSIONS_PER_COMMAND
from simxen.tpm.marshal import Reader, tpm2b, u32
from simxen.tpm.pcr import AUTH_GROUP
from simxen.tpm.protection import cfb

#: The response authorization of a password session: empty nonce,
#: continueSession, empty HMAC.
PW_RESPONSE = b"\x00\x00\x01\x00\x00"

#: TPMA_SESSION bits 3 and 4 are reserved
_SESSION_RESERVED = 0x18
#: what a password session may not ask for
_PW_FORBIDDEN = (TPMA_SESSION.decrypt | TPMA_SESSION.encrypt | TPMA_SESSION.audit
                 | TPMA_SESSION.auditExclusive | TPMA_SESSION.auditReset)


class AuthSession:
    """One entry of a command's authorization area."""

    __slots__ = ("handle", "nonce_caller", "attributes", "hmac", "session", "entity",
                 "include_auth", "new_nonce")

    def __init__(self, handle, nonce_caller, attributes, hmac_value):
        self.handle = handle
        self.nonce_caller = nonce_caller
        self.attributes = attributes
        self.hmac = hmac_value
        self.session = None
        self.entity = None
        self.include_auth = False
        self.new_nonce = None


def _check_cipher_use(s, allowed, i):
    """Session ``i`` asks to decrypt or encrypt a parameter: ``allowed`` (the
    command has such a parameter and no other session asked first), else
    ``TPM_RC_ATTRIBUTES``; and the session must have a cipher, else
    ``TPM_RC_SYMMETRIC``."""
    if not allowed:
        raise TpmError(TPM_RC.ATTRIBUTES, session=i)
    if s.symmetric[0] == TPM_ALG.NULL:
        raise TpmError(TPM_RC.SYMMETRIC, session=i)


class SessionProcessing:
    """Mixin of :class:`~simxen.tpm.engine.TpmEngine`: the authorization
    area of commands and responses."""

    def _parse_sessions(self, command, pos, end, n_auth, dec_ok=True, enc_ok=True):
        """The authorization area ``command[pos:end]`` as :class:`AuthSession` s.

        The reference's ``RetrieveSessionData`` order: each session's fields
        are unmarshalled (a field running past the area is
        ``TPM_RC_INSUFFICIENT``, a nonce or HMAC over 64 bytes ``TPM_RC_SIZE``,
        a handle of no session type ``TPM_RC_VALUE``, reserved attribute bits
        ``TPM_RC_RESERVED_BITS``, all numbered by session), then checked
        against what the session may do here (decrypt/encrypt only where the
        command has such a parameter, with a symmetric algorithm, and once;
        one audit session, an HMAC one); then ``TPM_RC_AUTH_MISSING`` if fewer
        sessions than authorized handles.  ``dec_ok``/``enc_ok``: the command's
        first parameter / first response parameter is a TPM2B.
        """
        r = Reader(command, pos, end)
        sessions = []
        seen = set()
        dec = enc = audit = None
        while r.pos < end:
            i = len(sessions) + 1
            if i > MAX_SESSIONS_PER_COMMAND:
                raise TpmError(TPM_RC.AUTHSIZE)   # Part 2: more octets than required
            try:
                handle = r.u32()
                ht = handle >> 24
                if handle != TPM_RH.PW and (
                        ht != TPM_HT.HMAC_SESSION and ht != TPM_HT.POLICY_SESSION
                        or handle & 0xFFFFFF >= MAX_ACTIVE_SESSIONS):
                    raise TpmError(TPM_RC.VALUE)
                nonce = r.tpm2b(MAX_DIGEST_SIZE)
                attrs = r.u8()
                if attrs & _SESSION_RESERVED:
                    raise TpmError(TPM_RC.RESERVED_BITS)
                hmac_value = r.tpm2b(MAX_DIGEST_SIZE)
            except TpmError as exc:
                raise TpmError(exc.rc, session=i) from None
            a = AuthSession(handle, nonce, attrs, hmac_value)
            if handle == TPM_RH.PW:
                if attrs & _PW_FORBIDDEN:
                    raise TpmError(TPM_RC.ATTRIBUTES, session=i)
                if nonce:
                    raise TpmError(TPM_RC.NONCE, session=i)
            else:
                s = self.session_at(handle)
                if s is None:
                    raise TpmError(TPM_RC.REFERENCE_S0 + i - 1)
                if s.handle != handle or handle in seen:
                    raise TpmError(TPM_RC.HANDLE, session=i)
                seen.add(handle)
                if attrs & TPMA_SESSION.decrypt:
                    _check_cipher_use(s, dec_ok and dec is None, i)
                    dec = a
                if attrs & TPMA_SESSION.encrypt:
                    _check_cipher_use(s, enc_ok and enc is None, i)
                    enc = a
                if attrs & TPMA_SESSION.audit:
                    if ht != TPM_HT.HMAC_SESSION or audit is not None:  # one HMAC session audits
                        raise TpmError(TPM_RC.ATTRIBUTES, session=i)
                    audit = a
                    if (attrs & TPMA_SESSION.auditExclusive and self.exclusive_audit != handle
                            and not attrs & TPMA_SESSION.auditReset
                            and s.audit_digest is not None):
                        raise TpmError(TPM_RC.EXCLUSIVE)
                a.session = s
            sessions.append(a)
        if len(sessions) < n_auth:
            raise TpmError(TPM_RC.AUTH_MISSING)
        return sessions

    def _policy_only(self, handle):
        """A PCR whose group has an authPolicy takes only a policy session."""
        return handle in AUTH_GROUP and bool(self.pcr_policies)

    def _check_password(self, handle, password, index):
        if self._policy_only(handle):
            raise TpmError(TPM_RC.AUTH_TYPE)
        if handle >> 24 in (TPM_HT.TRANSIENT, TPM_HT.PERSISTENT):
            obj = self.get_object(handle)
            if not obj.attributes & TPMA_OBJECT.userWithAuth:
                raise TpmError(TPM_RC.AUTH_UNAVAILABLE)
        expected = self.entity_auth(handle)
        self._check_lockout(handle)
        if not _hmac.compare_digest(password.rstrip(b"\0"), expected):
            self._auth_failed(handle, index)
        self._auth_succeeded(handle)

    def _da_recover(self):
        """Forget one failed try per ``recoveryTime`` seconds of TPM clock,
        and unlock lockout authorization after ``lockoutRecovery`` seconds."""
        now = self.clock
        if self.da_failed_tries and self.da_recovery_time:
            steps = (now - self.da_last_failure) // (1000 * self.da_recovery_time)
            if steps > 0:
                self.da_failed_tries = max(0, self.da_failed_tries - steps)
                self.da_last_failure += steps * 1000 * self.da_recovery_time
        if (self.lockout_auth_locked and self.da_lockout_recovery
                and now - self.lockout_locked_at >= 1000 * self.da_lockout_recovery):
            self.lockout_auth_locked = False

    def _check_lockout(self, handle):
        if handle >> 24 == TPM_HT.NV_INDEX:
            nv = self.nv_indices.get(handle)
            if nv is not None and nv.is_pin and (not nv.attributes & TPMA_NV.WRITTEN
                                                 or nv.pin_count >= nv.pin_limit):
                raise TpmError(TPM_RC.AUTH_UNAVAILABLE)      # PIN used up or never set
        self._da_recover()
        if handle == TPM_RH.LOCKOUT:
            if self.lockout_auth_locked:
                raise TpmError(TPM_RC.LOCKOUT)
        elif self.da_failed_tries >= self.da_max_tries and self.da_protected(handle):
            raise TpmError(TPM_RC.LOCKOUT)

    def _auth_succeeded(self, handle):
        """A PIN pass index counts each use of its PIN; a PIN fail index
        forgets its failures."""
        if handle >> 24 == TPM_HT.NV_INDEX:
            nv = self.nv_indices.get(handle)
            if nv is not None and nv.is_pin:
                nv.pin_count = nv.pin_count + 1 if nv.nt == TPM_NT.PIN_PASS else 0
                self.nv_changed = True

    def _auth_failed(self, handle, index):
        if handle >> 24 == TPM_HT.NV_INDEX:
            nv = self.nv_indices.get(handle)
            if nv is not None and nv.nt == TPM_NT.PIN_FAIL:   # counted by the index, not DA
                nv.pin_count += 1
                self.nv_changed = True
                raise TpmError(TPM_RC.BAD_AUTH, session=index)
        if handle == TPM_RH.LOCKOUT:
            self.lockout_auth_locked = True
            self.lockout_locked_at = self.clock
            self.nv_changed = True
            raise TpmError(TPM_RC.AUTH_FAIL, session=index)
        if self.da_protected(handle):
            if not self.da_failed_tries:
                self.da_last_failure = self.clock
            self.da_failed_tries += 1
            self.nv_changed = True
            raise TpmError(TPM_RC.AUTH_FAIL, session=index)
        raise TpmError(TPM_RC.BAD_AUTH, session=index)

    def _authorize(self, cc, handles, sessions, n_auth, roles, cp_params, locality):
        cp_hashes = {}                      # (see _cp_hash)
        for i in range(n_auth):
            a = sessions[i]
            handle = handles[i]
            a.entity = handle
            role = roles[i]
            s = a.session
            idx = i + 1
            if role == "dup" and (s is None or not s.is_policy):
                raise TpmError(TPM_RC.AUTH_TYPE, session=idx)   # DUP: policy only
            if s is None:                     # password
                if role == "admin" and self._needs_admin_policy(handle):
                    raise TpmError(TPM_RC.AUTH_UNAVAILABLE)
                self._check_password(handle, a.hmac, idx)
                continue
            if s.is_trial:
                raise TpmError(TPM_RC.ATTRIBUTES, session=idx)
            cp = self._cp_hash(s.hash, cc, handles, cp_params, cp_hashes)
            if s.is_policy:
                policy, _ = self.entity_policy(handle)
                if not self._policy_available(handle, policy):
                    raise TpmError(TPM_RC.AUTH_UNAVAILABLE)
                if s.policy_digest != policy or not policy:
                    raise TpmError(TPM_RC.POLICY_FAIL, session=idx)
                if s.command_code is not None and s.command_code != cc:
                    raise TpmError(TPM_RC.POLICY_CC, session=idx)
                if s.pcr_counter is not None and s.pcr_counter != self.pcrs.update_counter:
                    raise TpmError(TPM_RC.PCR_CHANGED, session=idx)
                if s.locality is not None and (s.locality >= 32
                                               or not s.locality >> locality & 1):
                    raise TpmError(TPM_RC.LOCALITY)
                if s.cp_hash is not None and s.cp_hash != cp:
                    raise TpmError(TPM_RC.POLICY_FAIL, session=idx)
                if s.name_hash is not None and s.name_hash != s.hash.digest(
                        self._names(handles, cp_hashes)):
                    raise TpmError(TPM_RC.POLICY_FAIL, session=idx)
                if s.nv_written is not None and (
                        handle >> 24 != TPM_HT.NV_INDEX or s.nv_written != bool(
                            self.nv_indices[handle].attributes & TPMA_NV.WRITTEN)):
                    raise TpmError(TPM_RC.POLICY_FAIL, session=idx)
                if s.pp_required:               # no physical presence on this platform
                    raise TpmError(TPM_RC.PP, session=idx)
                if s.template_hash is not None and s.template_hash != _template_hash(
                        s.hash, cc, cp_params):
                    raise TpmError(TPM_RC.POLICY_FAIL, session=idx)
                a.include_auth = s.auth_value_needed
                if s.password_needed:
                    self._check_password_policy(handle, a.hmac, idx)
                    continue
            else:
                if self._policy_only(handle):
                    raise TpmError(TPM_RC.AUTH_TYPE)
                if role == "user" and handle >> 24 in (TPM_HT.TRANSIENT, TPM_HT.PERSISTENT):
                    if not self.get_object(handle).attributes & TPMA_OBJECT.userWithAuth:
                        raise TpmError(TPM_RC.AUTH_UNAVAILABLE)
                if role == "admin" and self._needs_admin_policy(handle):
                    raise TpmError(TPM_RC.AUTH_UNAVAILABLE)
                a.include_auth = not (s.bind_name is not None
                                      and s.bind_name == self.entity_name(handle))
            key = s.session_key + (self.entity_auth(handle) if a.include_auth else b"")
            if a.include_auth:
                self._check_lockout(handle)
            if not key and not a.hmac:
                continue            # Part 1, 19.6.5: an empty HMAC key allows an empty HMAC
            expected = s.hash.hmac(key, cp + a.nonce_caller + s.nonce_tpm
                                   + self._extra_nonces(sessions, i) + bytes((a.attributes,)))
            if not _hmac.compare_digest(expected, a.hmac):
                if a.include_auth:
                    self._auth_failed(handle, idx)
                raise TpmError(TPM_RC.BAD_AUTH, session=idx)    # no authValue: not DA
            if a.include_auth:
                self._auth_succeeded(handle)
        for i in range(n_auth, len(sessions)):
            self._check_unassociated(cc, handles, sessions[i], i + 1, cp_params, cp_hashes)

    def _cp_hash(self, h, cc, handles, cp_params, memo):
        """The command's cpHash with session hash ``h``, made once per hash for
        the command: ``memo`` is the dict its authorization keeps (each cpHash
        under its hash's algorithm, the handles' Names under ``None``)."""
        cp = memo.get(h.alg)
        if cp is None:
            cp = memo[h.alg] = h.digest(u32(cc) + self._names(handles, memo) + cp_params)
        return cp

    def _names(self, handles, memo):
        """The handles' Names, joined, read once per command (``memo``: see
        :meth:`_cp_hash`)."""
        names = memo.get(None)
        if names is None:
            names = memo[None] = b"".join(self.entity_name(x) for x in handles)
        return names

    def _check_unassociated(self, cc, handles, a, idx, cp_params, cp_hashes):
        """A session that authorizes no handle: it must be an HMAC or policy
        session there for decrypt, encrypt or audit, and its HMAC (keyed by
        the session key alone) must be right (the reference's
        ``ParseSessionBuffer``; Part 1, 19.6)."""
        a.entity = None
        s = a.session
        if s is None:
            raise TpmError(TPM_RC.HANDLE, session=idx)  # a password with nothing to authorize
        if s.is_trial or not a.attributes & (TPMA_SESSION.decrypt | TPMA_SESSION.encrypt
                                             | TPMA_SESSION.audit):
            raise TpmError(TPM_RC.ATTRIBUTES, session=idx)
        key = s.session_key
        if not key and not a.hmac:
            return
        cp = self._cp_hash(s.hash, cc, handles, cp_params, cp_hashes)
        expected = s.hash.hmac(key, cp + a.nonce_caller + s.nonce_tpm + bytes((a.attributes,)))
        if not _hmac.compare_digest(expected, a.hmac):
            raise TpmError(TPM_RC.BAD_AUTH, session=idx)

    def _policy_available(self, handle, policy):
        """The reference's IsAuthPolicyAvailable: a loaded key always takes a
        policy session (an empty authPolicy then fails as POLICY_FAIL), a hash
        sequence or a public-only object never; anything else only when it
        has an authPolicy."""
        if handle >> 24 in (TPM_HT.TRANSIENT, TPM_HT.PERSISTENT):
            obj = self.get_object(handle)
            return not obj.is_sequence and obj.sensitive is not None
        return bool(policy)

    def _check_password_policy(self, handle, password, idx):
        self._check_lockout(handle)
        if not _hmac.compare_digest(password.rstrip(b"\0"), self.entity_auth(handle)):
            self._auth_failed(handle, idx)

    def _needs_admin_policy(self, handle):
        """Admin-role access needs a policy session: always for an NV index,
        for an object when it has adminWithPolicy."""
        if handle >> 24 in (TPM_HT.TRANSIENT, TPM_HT.PERSISTENT):
            return bool(self.get_object(handle).attributes & TPMA_OBJECT.adminWithPolicy)
        return handle >> 24 == TPM_HT.NV_INDEX

    @staticmethod
    def _extra_nonces(sessions, i):
        """nonceDecrypt / nonceEncrypt: the nonceTPM of a decrypt or encrypt
        session other than the first, in the first session's HMAC."""
        if i != 0:
            return b""
        out = b""
        dec = enc = None
        for a in sessions[1:]:
            if a.session is not None and a.attributes & TPMA_SESSION.decrypt:
                dec = a
            if a.session is not None and a.attributes & TPMA_SESSION.encrypt:
                enc = a
        if dec is not None:
            out += dec.session.nonce_tpm
        if enc is not None and enc is not dec:
            out += enc.session.nonce_tpm
        return out

    # ---------------------------------------------------- parameter encryption
    def _session_value(self, a):
        key = a.session.session_key
        if a.entity is not None and a.include_auth:
            key += self.entity_auth(a.entity)
        return key

    def _cfb(self, a, nonce_newer, nonce_older, data, encrypt):
        s = a.session
        alg, bits, _ = s.symmetric
        if alg == 0x0006:
            km = kdfa(s.hash.name, self._session_value(a), b"CFB", nonce_newer, nonce_older,
                      bits + 128)
            return cfb(km[:bits // 8], km[bits // 8:], data, encrypt)
        # XOR obfuscation
        mask = kdfa(HASHES[bits].name, self._session_value(a), b"XOR", nonce_newer,
                    nonce_older, 8 * len(data))
        return bytes(x ^ y for x, y in zip(data, mask))

    def _decrypt_parameter(self, command, pos, sessions, dec_ok):
        for i, a in enumerate(sessions):
            if a.session is not None and a.attributes & TPMA_SESSION.decrypt:
                if pos + 2 > len(command):
                    raise TpmError(TPM_RC.INSUFFICIENT, param=1)
                size = struct.unpack_from(">H", command, pos)[0]
                if pos + 2 + size > len(command):
                    raise TpmError(TPM_RC.SIZE, param=1)
                plain = self._cfb(a, a.nonce_caller, a.session.nonce_tpm,
                                  command[pos + 2:pos + 2 + size], False)
                return command[:pos + 2] + plain + command[pos + 2 + size:]
        return command

    def _encrypt_parameter(self, params, sessions, enc_ok):
        for i, a in enumerate(sessions):
            if a.session is not None and a.attributes & TPMA_SESSION.encrypt and params:
                # the nonceTPM the response will carry keys the encryption
                a.new_nonce = self.random_bytes(len(a.session.nonce_tpm))
                size = struct.unpack_from(">H", params, 0)[0]
                enc = self._cfb(a, a.new_nonce, a.nonce_caller,
                                params[2:2 + size], True)
                return params[:2] + enc + params[2 + size:]
        return params

    # ----------------------------------------------------------- response auth
    def _response_auths(self, cc, params, sessions):
        rp_hashes = {}
        out = []
        for a in sessions:
            s = a.session
            if s is None:
                out.append(PW_RESPONSE)
                continue
            nonce = a.new_nonce or self.random_bytes(len(s.nonce_tpm))
            s.nonce_tpm = nonce
            rp = rp_hashes.get(s.hash.alg)
            if rp is None:
                rp = rp_hashes[s.hash.alg] = s.hash.digest(b"\0\0\0\0" + u32(cc) + params)
            attrs = a.attributes
            key = s.session_key
            if a.entity is not None and a.include_auth:
                key += self.entity_auth(a.entity)
            if (s.is_policy and s.password_needed and a.entity is not None) or (
                    not key and not a.hmac):
                mac = b""
            else:
                mac = s.hash.hmac(key, rp + nonce + a.nonce_caller + bytes((attrs,)))
            out.append(tpm2b(nonce) + bytes((attrs,)) + tpm2b(mac))
            if not attrs & TPMA_SESSION.continueSession:
                self.sessions.pop(s.handle, None)
            elif s.is_policy and a.entity is not None:
                s.reset_policy()
        return b"".join(out)


_CREATE_COMMANDS = (TPM_CC.CreatePrimary, TPM_CC.Create, TPM_CC.CreateLoaded)


def _template_hash(h, cc, params):
    """H(inPublic) of a create command (the TPM2B after inSensitive), for
    PolicyTemplate; ``None`` for any other command."""
    if cc not in _CREATE_COMMANDS:
        return None
    try:
        r = Reader(params)
        r.tpm2b()
        return h.digest(r.tpm2b())
    except TpmError:
        return None

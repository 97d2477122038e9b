"""Authorization sessions: HMAC, policy and trial (Part 1, 19; Part 3, 11).

A :class:`Session` carries what the TPM keeps for a session between
commands: its hash, the rolling ``nonce_tpm``, the ``session_key`` derived at
StartAuthSession, what it is bound to, the symmetric algorithm for
parameter encryption, and for policy sessions the ``policy_digest`` and the
conditions the policy commands deferred to the time of use (command code,
PCR update counter, authValue or password needed, locality, cpHash, name
hash, NV written state, template hash, physical presence).
"""

from simxen.tpm.constants import TPM_SE


class Session:
    """One loaded (or saved) authorization session."""

    __slots__ = ("handle", "type", "hash", "nonce_tpm", "session_key", "bind_name",
                 "symmetric", "policy_digest", "command_code", "pcr_counter",
                 "auth_value_needed", "password_needed", "locality", "cp_hash",
                 "name_hash", "nv_written", "saved_sequence", "is_trial", "audit_digest",
                 "template_hash", "pp_required", "start_time")

    def __init__(self, handle, type_, hash_alg, nonce_tpm, session_key, bind_name,
                 symmetric):
        self.handle = handle
        self.type = type_
        self.hash = hash_alg
        self.nonce_tpm = nonce_tpm
        self.session_key = session_key
        self.bind_name = bind_name
        self.symmetric = symmetric
        self.is_trial = type_ == TPM_SE.TRIAL
        self.saved_sequence = None
        self.audit_digest = None         # an audit session's digest, once used so
        self.start_time = 0              # TPM time at StartAuthSession (ms)
        self.reset_policy()

    @property
    def is_policy(self):
        return self.type != TPM_SE.HMAC

    def reset_policy(self):
        """PolicyRestart: digest to zeros, deferred checks cleared."""
        self.policy_digest = bytes(self.hash.size)
        self.command_code = None
        self.pcr_counter = None
        self.auth_value_needed = False
        self.password_needed = False
        self.locality = None
        self.cp_hash = None
        self.name_hash = None
        self.nv_written = None
        self.template_hash = None
        self.pp_required = False

    def extend_policy(self, data):
        """``policyDigest := H(policyDigest || data)``."""
        self.policy_digest = self.hash.digest(self.policy_digest + data)

"""Command audit and audit sessions (Part 1, 33; Part 3, 18.4-18.5 and 21).

Two running digests record what a TPM executed, each extended after a
command succeeds with that command's cpHash and rpHash::

    digest := H(digest || cpHash || rpHash)
    cpHash  = H(commandCode || Name(handle 1) || ... || command parameters)
    rpHash  = H(TPM_RC_SUCCESS || commandCode || response parameters)

* The **command audit digest** (hash ``audit_alg``) covers every command on
  the audit list, which TPM2_SetCommandCodeAuditStatus edits
  (it is itself always on the list).  It starts from zeros at the first
  audited command after it was reset, and each start bumps ``auditCounter``;
  TPM2_GetCommandAuditDigest signs it and resets it (not when asked for it
  unsigned).  The command that changes the digest's hash is not audited
  itself: the new digest starts with the next one.
* An **audit session** is an HMAC session used with the ``audit`` attribute;
  its digest (the session's hash) covers the commands it was used with.
  ``auditReset`` starts it again from zeros.  The session is *exclusive*
  while no command ran without it since it was (re)started, which a caller
  can demand with ``auditExclusive`` (``TPM_RC_EXCLUSIVE`` otherwise) and
  TPM2_GetSessionAuditDigest reports.

The parameters hashed are those on the wire: as sent, before a session
decrypts the first one, and as returned, after one encrypted it.
"""

from simxen.tpm.algorithms import HASHES
from simxen.tpm.constants import TPM_ALG, TPM_CC, TPMA_SESSION
from simxen.tpm.marshal import u32

#: what a TPM audits when it leaves the factory
ALWAYS_AUDITED = TPM_CC.SetCommandCodeAuditStatus


class CommandAudit:
    """The command-audit part of a TPM's state."""

    __slots__ = ("alg", "alg_changed", "commands", "counter", "digest")

    def __init__(self):
        self.alg = TPM_ALG.SHA512        # libtpms's choice at manufacture
        self.alg_changed = False
        self.commands = {ALWAYS_AUDITED}
        self.counter = 0
        self.digest = b""

    def command_digest(self):
        """H(every audited command code, ascending): TPMS_COMMAND_AUDIT_INFO's
        ``commandDigest``."""
        return HASHES[self.alg].digest(b"".join(u32(cc) for cc in sorted(self.commands)))

    def extend(self, cp_input, rp_input):
        h = HASHES[self.alg]
        if not self.digest:
            self.digest = bytes(h.size)
            self.counter += 1
        self.digest = h.digest(self.digest + h.digest(cp_input) + h.digest(rp_input))


def audit_session_of(sessions):
    """The entry of a command's authorization area with ``audit`` set, or ``None``."""
    if sessions:
        for a in sessions:
            if a.attributes & TPMA_SESSION.audit:
                return a
    return None


def record(tpm, cc, names, cp_params, rc_params, audit_entry, audited):
    """After command ``cc`` succeeded: extend the digests that cover it and
    keep track of the exclusive audit session."""
    cp_input = u32(cc) + names + cp_params
    rp_input = b"\0\0\0\0" + u32(cc) + rc_params
    if audited:
        ca = tpm.command_audit
        if ca.alg_changed:          # the command that changed the hash starts nothing
            ca.alg_changed = False
        else:
            ca.extend(cp_input, rp_input)
    if audit_entry is None:
        tpm.exclusive_audit = None
        return
    s = audit_entry.session
    h = s.hash
    if audit_entry.attributes & TPMA_SESSION.auditReset or s.audit_digest is None:
        s.audit_digest = bytes(h.size)
        tpm.exclusive_audit = s.handle
    elif tpm.exclusive_audit != s.handle:
        tpm.exclusive_audit = None
    s.audit_digest = h.digest(s.audit_digest + h.digest(cp_input) + h.digest(rp_input))

"""Part 3, chapter 25: dictionary-attack protection.

Every failed authorization of a DA-protected entity (objects and NV indices
without noDA) increments ``failedTries``; at ``maxTries`` such entities
answer ``TPM_RC_LOCKOUT`` until ``recoveryTime`` seconds per try have passed
on the TPM clock or lockout authorization resets the counter.  A failed
lockout authorization locks lockoutAuth itself until ``lockoutRecovery``.
"""

from simxen.tpm.commands import command
from simxen.tpm.constants import TPM_CC


@command(TPM_CC.DictionaryAttackLockReset, handles=("lockout",), auth=1)
def lock_reset(tpm, cmd):
    cmd.r.done()
    tpm.da_failed_tries = 0
    tpm.nv_changed = True
    return b"", b""


@command(TPM_CC.DictionaryAttackParameters, handles=("lockout",), auth=1)
def parameters(tpm, cmd):
    r = cmd.r
    max_tries = r.at(1).u32()
    recovery = r.at(2).u32()
    lockout_recovery = r.at(3).u32()
    r.done()
    tpm.da_max_tries = max_tries
    tpm.da_recovery_time = recovery
    tpm.da_lockout_recovery = lockout_recovery
    tpm.da_failed_tries = min(tpm.da_failed_tries, max_tries)
    tpm.nv_changed = True
    return b"", b""

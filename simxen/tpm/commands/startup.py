"""Part 3, chapter 9: Startup and Shutdown.

* Startup(CLEAR) after Shutdown(CLEAR) or after no orderly shutdown is a
  *TPM Reset*: PCRs to their reset values, saved sessions discarded, a new
  NULL seed, ``resetCount`` + 1, ``restartCount`` = 0 (and the count of
  Restarts, the reference implementation's clearCount, back to 0).
* Startup(CLEAR) after Shutdown(STATE) is a *TPM Restart*: PCRs reset,
  saved session contexts kept, ``restartCount`` + 1 and clearCount + 1, so
  that saved contexts of stClear objects no longer load.
* Startup(STATE) after Shutdown(STATE) is a *TPM Resume*: PCRs 0-15 and the
  PCR update counter come back from the snapshot Shutdown(STATE) took;
  ``restartCount`` + 1.  Without such a snapshot it is ``TPM_RC_VALUE``.

Every Startup(CLEAR) enables the platform, storage and endorsement
hierarchies again (TPMA_STARTUP_CLEAR); only a Resume keeps them disabled.

A second Startup is ``TPM_RC_INITIALIZE``.  Shutdown records its kind in the
persistent state (that is what a vTPM saves), so a later process restoring
the state blob sees an orderly shutdown.
"""

from simxen.tpm.commands import command
from simxen.tpm.constants import TPM_CC, TPM_RC, TPM_SU
from simxen.tpm.errors import TpmError


@command(TPM_CC.Startup)
def startup(tpm, cmd):
    r = cmd.r
    su = r.u16()
    if su not in (TPM_SU.CLEAR, TPM_SU.STATE):       # TPM_SU: a value error as read
        raise TpmError(TPM_RC.VALUE, param=1)
    r.done()
    if tpm.started:
        raise TpmError(TPM_RC.INITIALIZE)
    orderly = tpm.orderly_state
    if su == TPM_SU.STATE and (orderly is None or orderly[0] != TPM_SU.STATE):
        raise TpmError(TPM_RC.VALUE, param=1)
    saved = tpm.saved_at_init
    if orderly is not None and orderly[0] == TPM_SU.STATE:
        tpm.restart_count = (tpm.restart_count + 1) & 0xFFFFFFFF     # UINT32s: they wrap
        tpm.sessions.update(saved)
        if su == TPM_SU.STATE:
            tpm.pcrs.restore(orderly[1], orderly[2])
        else:
            tpm.pcrs.reset_all(cmd.locality)
            tpm.clear_count = (tpm.clear_count + 1) & 0xFFFFFFFF
    else:
        tpm.reset_count = (tpm.reset_count + 1) & 0xFFFFFFFF
        tpm.total_reset_count = (tpm.total_reset_count + 1) & 0xFFFFFFFF
        tpm.restart_count = tpm.clear_count = 0
        tpm.pcrs.reset_all(cmd.locality)
        tpm.null_seed = tpm.random_bytes(32)
        tpm.null_proof = tpm.random_bytes(32)
        tpm.commit = None           # outstanding commits die with a TPM Reset
    if su == TPM_SU.CLEAR:         # TPMA_STARTUP_CLEAR: set by every Startup(CLEAR)
        tpm.ph_enable = tpm.sh_enable = tpm.eh_enable = tpm.ph_enable_nv = True
    tpm.null_seed = tpm.null_seed or tpm.random_bytes(32)
    tpm.null_proof = tpm.null_proof or tpm.random_bytes(32)
    tpm.startup_locality = cmd.locality
    tpm.orderly_state = None
    tpm.started = True
    tpm.nv_changed = True
    return b"", b""


@command(TPM_CC.Shutdown)
def shutdown(tpm, cmd):
    r = cmd.r
    su = r.u16()
    if su not in (TPM_SU.CLEAR, TPM_SU.STATE):
        raise TpmError(TPM_RC.VALUE, param=1)
    r.done()
    if su == TPM_SU.CLEAR:
        tpm.orderly_state = (TPM_SU.CLEAR,)
    elif su == TPM_SU.STATE:
        tpm.orderly_state = (TPM_SU.STATE, tpm.pcrs.saved(), tpm.pcrs.update_counter)
    else:
        raise TpmError(TPM_RC.VALUE, param=1)
    tpm.nv_changed = True
    return b"", b""

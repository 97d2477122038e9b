"""What TPM2_Clear and a TPM Restart do to the TPM's counters and to saved contexts.

The reference implementation's TPM2_Clear zeroes Clock, resetCount,
restartCount, the count of Restarts (clearCount) and the audit counter,
restores the dictionary-attack parameters as manufactured, clears the PCRs'
authValues and counts a PCR update; the count of TPM Resets that a saved
context's HMAC binds (totalResetCount) is left alone.  A TPM Restart
(Shutdown(STATE), then Startup(CLEAR)) counts one more Restart, and a saved
context of an stClear object binds that count, so it no longer loads.
"""

import pytest

from simxen.tpm import TpmEngine, client
from simxen.tpm.client import parse_response, response_code
from simxen.tpm.constants import TPM_ALG, TPM_CC, TPM_RC, TPM_RH, TPM_SU
from simxen.tpm.limits import DA_DEFAULTS
from simxen.tpm.marshal import tpm2b, u16, u32
from simxen.tpm.state import MAGIC

from tpm_helpers import FixedClock, ecc_storage_template, sealed_template

PW = [client.password_auth()]
#: TPM_RC_INTEGRITY for parameter 1: a context whose HMAC does not check
CONTEXT_INTEGRITY = (TPM_RC.INTEGRITY | 0x0C0 | 0x100)


def read_clock(tpm):
    """(clock, resetCount, restartCount) from TPM2_ReadClock."""
    r = parse_response(tpm.execute(client.build_command(TPM_CC.ReadClock))).params
    r.u64()
    return r.u64(), r.u32(), r.u32()


def save(tpm, handle):
    r = parse_response(tpm.execute(client.build_command(TPM_CC.ContextSave, (handle,)))).params
    return r.data[r.pos:r.end]


def load(tpm, blob):
    return tpm.execute(client.build_command(TPM_CC.ContextLoad, params=blob))


def power_cycle(tpm, shutdown, startup):
    client.check(tpm.execute(client.shutdown_command(shutdown)))
    tpm.power_on()
    client.check(tpm.execute(client.startup_command(startup)))


def restart(tpm):
    power_cycle(tpm, TPM_SU.STATE, TPM_SU.CLEAR)


def resume(tpm):
    power_cycle(tpm, TPM_SU.STATE, TPM_SU.STATE)


def reset(tpm):
    power_cycle(tpm, TPM_SU.CLEAR, TPM_SU.CLEAR)


def clear(tpm):
    client.check(tpm.execute(client.build_command(TPM_CC.Clear, (TPM_RH.LOCKOUT,), b"", PW)))


def sealed_object(tpm, attrs):
    """A loaded data object under an owner SRK (attrs: its TPMA_OBJECT)."""
    srk, _, _ = client.parse_create_primary(tpm.execute(
        client.create_primary_command(TPM_RH.OWNER, ecc_storage_template())))
    priv, pub = client.parse_create(tpm.execute(client.create_command(
        srk, sealed_template(attrs=attrs), data=b"sealed")))
    return client.parse_load(tpm.execute(client.load_command(srk, priv, pub)))[0]


STCLEAR = 0x00000016        # fixedTPM | stClear | fixedParent
ORDINARY = 0x00000012       # fixedTPM | fixedParent


@pytest.mark.parametrize("attrs, survives_restart", [(STCLEAR, False), (ORDINARY, True)])
def test_a_restart_ends_saved_stclear_contexts_only(tpm, attrs, survives_restart):
    blob = save(tpm, sealed_object(tpm, attrs))
    restart(tpm)
    rc = response_code(load(tpm, blob))
    assert rc == (TPM_RC.SUCCESS if survives_restart else CONTEXT_INTEGRITY)


def test_a_resume_keeps_saved_stclear_contexts(tpm):
    blob = save(tpm, sealed_object(tpm, STCLEAR))
    resume(tpm)
    client.check(load(tpm, blob))


def test_a_reset_ends_every_saved_object_context(tpm):
    blob = save(tpm, sealed_object(tpm, ORDINARY))
    reset(tpm)
    assert response_code(load(tpm, blob)) == CONTEXT_INTEGRITY


def test_an_stclear_context_saved_after_the_restart_loads(tpm):
    restart(tpm)
    client.check(load(tpm, save(tpm, sealed_object(tpm, STCLEAR))))


def test_clear_zeroes_clock_and_the_reset_and_restart_counts(tpm):
    reset(tpm)
    restart(tpm)
    tpm._clock_fn.ms += 5000.0
    clock, resets, restarts = read_clock(tpm)
    assert clock >= 5000 and resets == 2 and restarts == 1
    clear(tpm)
    assert read_clock(tpm) == (0, 0, 0)
    tpm._clock_fn.ms += 250.0
    assert read_clock(tpm) == (250, 0, 0)
    reset(tpm)
    assert read_clock(tpm)[1:] == (1, 0)


def test_clear_restores_the_dictionary_attack_parameters(tpm):
    client.check(tpm.execute(client.build_command(
        TPM_CC.DictionaryAttackParameters, (TPM_RH.LOCKOUT,), u32(5) + u32(7) + u32(9), PW)))
    assert (tpm.da_max_tries, tpm.da_recovery_time, tpm.da_lockout_recovery) == (5, 7, 9)
    clear(tpm)
    assert (tpm.da_max_tries, tpm.da_recovery_time, tpm.da_lockout_recovery) == DA_DEFAULTS


def test_clear_counts_a_pcr_update_and_forgets_pcr_auth_values(tpm):
    client.check(tpm.execute(client.build_command(
        TPM_CC.PCR_SetAuthValue, (20,), tpm2b(b"pcr-secret"), PW)))
    empty = client.pcr_extend_command(20, {TPM_ALG.SHA256: bytes(32)})
    assert response_code(tpm.execute(empty, 3)) == 0x9A2        # TPM_RC_BAD_AUTH, session 1
    before = client.parse_pcr_read(tpm.execute(client.pcr_read_command({TPM_ALG.SHA256: [0]})))[0]
    clear(tpm)
    after = client.parse_pcr_read(tpm.execute(client.pcr_read_command({TPM_ALG.SHA256: [0]})))[0]
    assert after == before + 1
    # PCR 20's authValue is empty again: the empty password extends it (at locality 3)
    client.check(tpm.execute(empty, 3))


def test_clear_zeroes_the_audit_counter(tpm):
    tpm.command_audit.counter = 7               # seven audit digests started so far
    clear(tpm)
    assert tpm.command_audit.counter == 0


def test_a_null_hierarchy_context_outlives_clear(tpm):
    # Clear zeroes resetCount but not the count of Resets a context binds: a
    # context of the NULL hierarchy (whose proof Clear keeps) still loads
    reset(tpm)
    h, _, _ = client.parse_create_primary(tpm.execute(
        client.create_primary_command(TPM_RH.NULL, ecc_storage_template())))
    blob = save(tpm, h)
    clear(tpm)
    client.check(load(tpm, blob))


def test_the_counts_survive_a_saved_state(tpm):
    reset(tpm)
    reset(tpm)
    clear(tpm)
    restart(tpm)
    blob = tpm.save_state()
    assert blob[len(MAGIC):len(MAGIC) + 2] == u16(3)
    again = TpmEngine.from_state(blob, clock=FixedClock())
    assert (again.reset_count, again.total_reset_count, again.clear_count) == (0, 3, 1)
    assert again.save_state() == blob


def test_a_tpm_that_was_never_cleared_or_restarted_keeps_the_old_blob(tpm):
    reset(tpm)
    resume(tpm)
    blob = tpm.save_state()
    assert blob[len(MAGIC):len(MAGIC) + 2] == u16(1)
    again = TpmEngine.from_state(blob, clock=FixedClock())
    assert again.total_reset_count == again.reset_count == tpm.reset_count
    assert again.clear_count == 0

"""Startup/Shutdown semantics and the persistent state blob."""

import pytest

from simxen.tpm import StateError, TpmEngine, client
from simxen.tpm.client import response_code
from simxen.tpm.constants import TPM_ALG, TPM_CC, TPM_RC, TPM_RH, TPM_SU
from simxen.tpm.limits import CLOCK_MAX
from simxen.tpm.marshal import tpm2b, u16, u32

from tpm_helpers import DetRandom, FixedClock, ecc_ak_template, ecc_storage_template, make_engine


def pcr(tpm, index, alg=TPM_ALG.SHA256):
    return client.parse_pcr_read(tpm.execute(client.pcr_read_command({alg: [index]})))[1][alg][index]


def extend(tpm, index, byte=1):
    client.check(tpm.execute(client.pcr_extend_command(index, {TPM_ALG.SHA256: bytes([byte]) * 32})))


def test_commands_before_startup_are_initialize():
    tpm = TpmEngine(seed=b"x", random_bytes=DetRandom(), powered=True)
    assert response_code(tpm.execute(client.get_random_command(4))) == TPM_RC.INITIALIZE
    client.check(tpm.execute(client.startup_command()))
    assert response_code(tpm.execute(client.startup_command())) == TPM_RC.INITIALIZE


def test_resume_restores_pcrs_0_to_15_only(tpm):
    extend(tpm, 5)
    extend(tpm, 16)
    before5 = pcr(tpm, 5)
    client.check(tpm.execute(client.shutdown_command(TPM_SU.STATE)))
    tpm.power_on()
    client.check(tpm.execute(client.startup_command(TPM_SU.STATE)))
    assert pcr(tpm, 5) == before5
    assert pcr(tpm, 16) == bytes(32)
    assert tpm.restart_count == 1


def test_startup_state_without_orderly_shutdown_is_value(tpm):
    tpm.power_on()
    assert response_code(tpm.execute(client.startup_command(TPM_SU.STATE))) == 0x1C4
    client.check(tpm.execute(client.startup_command(TPM_SU.CLEAR)))


def test_reset_clears_pcrs_and_counts(tpm):
    extend(tpm, 5)
    resets = tpm.reset_count
    tpm.power_on()
    client.check(tpm.execute(client.startup_command()))
    assert pcr(tpm, 5) == bytes(32)
    assert tpm.reset_count == resets + 1 and tpm.restart_count == 0


def test_transient_objects_do_not_survive_power_cycle(tpm):
    h, _, _ = client.parse_create_primary(tpm.execute(
        client.create_primary_command(TPM_RH.OWNER, ecc_storage_template())))
    tpm.power_on()
    client.check(tpm.execute(client.startup_command()))
    assert response_code(tpm.execute(client.read_public_command(h))) == TPM_RC.REFERENCE_H0


def define_nv(tpm, index, size=8, attrs=0x00060006):
    pub = u32(index) + u16(TPM_ALG.SHA256) + u32(attrs) + tpm2b(b"") + u16(size)
    client.check(tpm.execute(client.build_command(
        TPM_CC.NV_DefineSpace, (TPM_RH.OWNER,), tpm2b(b"") + tpm2b(pub),
        [client.password_auth()])))


def nv_write(tpm, index, data):
    return tpm.execute(client.build_command(TPM_CC.NV_Write, (TPM_RH.OWNER, index),
                                            tpm2b(data) + u16(0), [client.password_auth()]))


def nv_read(tpm, index, size):
    return client.parse_response(tpm.execute(client.build_command(
        TPM_CC.NV_Read, (TPM_RH.OWNER, index), u16(size) + u16(0),
        [client.password_auth()]))).params.tpm2b()


def test_state_round_trip_keeps_nv_keys_and_auth(tpm):
    define_nv(tpm, 0x01500001)
    client.check(nv_write(tpm, 0x01500001, b"12345678"))
    srk, srk_pub, srk_name = client.parse_create_primary(tpm.execute(
        client.create_primary_command(TPM_RH.OWNER, ecc_storage_template())))
    client.check(tpm.execute(client.build_command(
        TPM_CC.EvictControl, (TPM_RH.OWNER, srk), u32(0x81000001), [client.password_auth()])))
    client.check(tpm.execute(client.build_command(
        TPM_CC.HierarchyChangeAuth, (TPM_RH.ENDORSEMENT,), tpm2b(b"endorse"),
        [client.password_auth()])))
    client.check(tpm.execute(client.shutdown_command(TPM_SU.STATE)))
    extend_value = pcr(tpm, 0)
    blob = tpm.save_state()

    fresh = TpmEngine.from_state(blob, random_bytes=DetRandom(b"other"), clock=FixedClock())
    client.check(fresh.execute(client.startup_command(TPM_SU.STATE)))
    assert pcr(fresh, 0) == extend_value
    assert nv_read(fresh, 0x01500001, 8) == b"12345678"
    pub, name, _ = client.parse_read_public(fresh.execute(client.read_public_command(0x81000001)))
    assert name == srk_name
    # the same seed gives the same primary again
    _, again, _ = client.parse_create_primary(fresh.execute(
        client.create_primary_command(TPM_RH.OWNER, ecc_storage_template())))
    assert again.unique == srk_pub.unique
    wrong = client.create_primary_command(TPM_RH.ENDORSEMENT, ecc_ak_template(),
                                          password=b"wrong")
    assert response_code(fresh.execute(wrong)) == 0x9A2
    right = client.create_primary_command(TPM_RH.ENDORSEMENT, ecc_ak_template(),
                                          password=b"endorse")
    assert response_code(fresh.execute(right)) == 0


def test_state_blob_is_deterministic():
    a, b = make_engine(), make_engine()
    assert a.save_state() == b.save_state()


@pytest.mark.parametrize("mutate", [
    lambda b: b[:20],
    lambda b: b"NOTATPM!" + b[8:],
    lambda b: b[:9] + b"\x09" + b[10:],
    lambda b: b[:40] + bytes([b[40] ^ 1]) + b[41:],
    lambda b: b"",
])
def test_corrupt_state_is_state_error(tpm, mutate):
    with pytest.raises(StateError):
        TpmEngine.from_state(mutate(tpm.save_state()))


def test_last_command_changed_nv(tpm):
    tpm.execute(client.get_random_command(8))
    assert not tpm.last_command_changed_nv
    tpm.execute(client.pcr_extend_command(1, {TPM_ALG.SHA256: bytes(32)}))
    assert not tpm.last_command_changed_nv
    define_nv(tpm, 0x01500002)
    assert tpm.last_command_changed_nv
    nv_write(tpm, 0x01500002, b"abc")
    assert tpm.last_command_changed_nv
    tpm.execute(client.shutdown_command())
    assert tpm.last_command_changed_nv


from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(nv=st.lists(st.tuples(st.integers(0, 0xFFFF), st.binary(min_size=1, max_size=32),
                             st.binary(max_size=16)), max_size=4, unique_by=lambda t: t[0]),
       owner_auth=st.binary(max_size=16).map(lambda b: b.rstrip(b"\0")),
       extends=st.lists(st.tuples(st.integers(0, 15), st.binary(min_size=32, max_size=32)),
                        max_size=5),
       orderly=st.sampled_from([None, TPM_SU.CLEAR, TPM_SU.STATE]))
def test_state_blob_round_trip_property(nv, owner_auth, extends, orderly):
    tpm = make_engine()
    for low, data, auth in nv:
        index = 0x01500000 + low
        pub = u32(index) + u16(TPM_ALG.SHA256) + u32(0x00060006) + tpm2b(b"") + u16(len(data))
        client.check(tpm.execute(client.build_command(
            TPM_CC.NV_DefineSpace, (TPM_RH.OWNER,), tpm2b(auth) + tpm2b(pub),
            [client.password_auth()])))
        client.check(nv_write(tpm, index, data))
    client.check(tpm.execute(client.build_command(
        TPM_CC.HierarchyChangeAuth, (TPM_RH.OWNER,), tpm2b(owner_auth),
        [client.password_auth()])))
    for index, digest in extends:
        client.check(tpm.execute(client.pcr_extend_command(index, {TPM_ALG.SHA256: digest})))
    if orderly is not None:
        client.check(tpm.execute(client.shutdown_command(orderly)))
    blob = tpm.save_state()
    again = TpmEngine.from_state(blob, random_bytes=DetRandom(), clock=FixedClock())
    assert again.save_state() == blob
    client.check(again.execute(client.startup_command(
        TPM_SU.STATE if orderly == TPM_SU.STATE else TPM_SU.CLEAR)))
    for low, data, _ in nv:
        got = client.parse_response(again.execute(client.build_command(
            TPM_CC.NV_Read, (TPM_RH.OWNER, 0x01500000 + low), u16(len(data)) + u16(0),
            [client.password_auth(owner_auth)]))).params.tpm2b()
        assert got == data
    if orderly == TPM_SU.STATE:
        assert again.pcrs.banks == tpm.pcrs.banks


# -- the blob's memo (TpmEngine.save_state re-marshals only changed sections) --

_OWNER_RW = 0x00060006      # TPMA_NV OWNERWRITE | AUTHWRITE | OWNERREAD | AUTHREAD


def _state_changing_command(draw):
    """One command that changes (or tries to change) the persistent state."""
    from hypothesis import strategies as st
    pw = [client.password_auth()]
    index = 0x01000000 + draw(st.integers(1, 3))
    kind = draw(st.sampled_from(["define", "define_counter", "write", "increment", "undefine",
                                 "change_auth", "policy", "stir", "da", "clear", "extend",
                                 "shutdown_state"]))
    if kind in ("define", "define_counter"):
        attrs = _OWNER_RW | (0x10 if kind == "define_counter" else 0)
        return client.nv_define_space_command(index, 8, attrs)
    if kind == "write":
        return client.nv_write_command(index, draw(st.binary(min_size=1, max_size=8)),
                                       auth_handle=TPM_RH.OWNER)
    if kind == "increment":
        return client.nv_increment_command(index, auth_handle=TPM_RH.OWNER)
    if kind == "undefine":
        return client.build_command(TPM_CC.NV_UndefineSpace, (TPM_RH.OWNER, index), b"", pw)
    if kind == "change_auth":      # back to empty at once, or later commands fail authorization
        return client.build_command(TPM_CC.HierarchyChangeAuth, (TPM_RH.ENDORSEMENT,),
                                    tpm2b(draw(st.sampled_from([b"", b"x"]))), pw)
    if kind == "policy":
        return client.build_command(TPM_CC.SetPrimaryPolicy, (TPM_RH.OWNER,),
                                    tpm2b(draw(st.binary(min_size=32, max_size=32)))
                                    + u16(TPM_ALG.SHA256), pw)
    if kind == "stir":
        return client.build_command(TPM_CC.StirRandom, (), tpm2b(draw(st.binary(max_size=16))))
    if kind == "da":
        return client.build_command(TPM_CC.DictionaryAttackParameters, (TPM_RH.LOCKOUT,),
                                    u32(draw(st.integers(1, 40))) + u32(10) + u32(10), pw)
    if kind == "clear":
        return client.build_command(TPM_CC.Clear, (TPM_RH.LOCKOUT,), b"", pw)
    if kind == "extend":
        return client.pcr_extend_command(draw(st.integers(0, 15)), {TPM_ALG.SHA256: bytes(32)})
    return client.shutdown_command(TPM_SU.STATE)


def test_the_memoised_blob_is_what_marshalling_everything_gives():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from simxen.tpm.state import save_state

    @settings(max_examples=40, deadline=None)
    @given(st.data())
    def check(data):
        tpm = make_engine()
        for _ in range(data.draw(st.integers(1, 12))):
            tpm.execute(_state_changing_command(data.draw))
            tpm.execute(client.get_random_command(4))       # changes nothing persistent
            assert tpm.save_state() == save_state(tpm)         # memo vs everything fresh
            assert tpm.save_state() == tpm.save_state()
    check()


# --- a state blob no TPM could have written (fuzz target ``state``) -------------------
# The checksum is a plain SHA-256, so anyone can write a blob that passes it. These
# loaded before: an unknown command-audit hash was then a KeyError (TPM_RC_FAILURE
# with an internal error) at the next audited command, a clock past ClockSet's limit
# overflowed the u64 of the next save, and the policies are ones TPM2_SetPrimaryPolicy
# and TPM2_PCR_SetAuthPolicy refuse to set.

def _edited_blob(edit):
    tpm = make_engine()
    edit(tpm)
    return tpm.save_state()          # saving checks nothing: it writes what it is given


@pytest.mark.parametrize("edit", [
    lambda t: setattr(t.command_audit, "alg", 0x0000),
    lambda t: t.pcr_policies.__setitem__(20, (0x0001, b"")),
    lambda t: t.pcr_policies.__setitem__(20, (TPM_ALG.SHA256, bytes(31))),
    lambda t: t.pcr_policies.__setitem__(5, (TPM_ALG.SHA256, bytes(32))),
    lambda t: t.hierarchy_policy.__setitem__(TPM_RH.OWNER, (0x00FF, b"x")),
    lambda t: t.hierarchy_policy.__setitem__(TPM_RH.LOCKOUT, (TPM_ALG.NULL, b"x")),
    lambda t: t.set_clock(CLOCK_MAX + 1),
], ids=["audit-hash", "pcr-policy-hash", "pcr-policy-size", "pcr-policy-pcr",
        "hierarchy-policy-hash", "hierarchy-policy-null-digest", "clock"])
def test_a_state_no_tpm_could_write_is_state_error(edit):
    with pytest.raises(StateError):
        TpmEngine.from_state(_edited_blob(edit))


@pytest.mark.parametrize("edit", [
    lambda t: setattr(t.command_audit, "alg", TPM_ALG.SHA1),
    lambda t: t.pcr_policies.__setitem__(20, (TPM_ALG.SHA256, bytes(32))),
    lambda t: t.hierarchy_policy.__setitem__(TPM_RH.OWNER, (TPM_ALG.SHA384, bytes(48))),
    lambda t: t.set_clock(CLOCK_MAX),
])
def test_the_edges_a_tpm_can_reach_still_load(edit):
    blob = _edited_blob(edit)
    assert TpmEngine.from_state(blob, clock=FixedClock()).save_state() == blob


@pytest.mark.parametrize("orderly", [TPM_SU.CLEAR, TPM_SU.STATE])
def test_reset_and_restart_counts_wrap_as_uint32(tpm, orderly):
    # a loaded state with resetCount/restartCount at 2**32 - 1 made the next Startup
    # count past a UINT32 and every later save_state() a struct.error
    tpm.reset_count = tpm.restart_count = 0xFFFFFFFF
    client.check(tpm.execute(client.shutdown_command(orderly)))
    tpm.power_on()
    client.check(tpm.execute(client.startup_command()))
    if orderly == TPM_SU.STATE:                     # a TPM Restart
        assert (tpm.reset_count, tpm.restart_count) == (0xFFFFFFFF, 0)
    else:                                           # a TPM Reset
        assert (tpm.reset_count, tpm.restart_count) == (0, 0)
    TpmEngine.from_state(tpm.save_state())

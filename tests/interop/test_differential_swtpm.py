"""simxen's TPM engine against swtpm (libtpms), one mutated command at a time.

``scripts/differential-swtpm.py`` sends the same command bytes to a swtpm
process and to a :class:`~simxen.tpm.engine.TpmEngine`, both in the same
state, and compares the response codes (and, for deterministic successes,
the response sizes).  Here hypothesis draws the mutants -- a well-formed seed
command with one field changed -- a few hundred per run, derandomized so a
run is repeatable; every mismatch must be one of the script's documented
``KNOWN_DIFFERENCES``.  The script's command line explores longer.
"""

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from simxen.tpm import client
from simxen.tpm.constants import TPM_ALG, TPM_CC, TPM_ECC, TPM_RC, TPM_RH, TPM_SU
from simxen.tpm.public import Public

from tpm_serve_helpers import load_script, require_tool

ROOT = Path(__file__).resolve().parents[2]
differential = load_script("differential-swtpm.py")

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def differ():
    require_tool("swtpm")
    d = differential.Differ()
    yield d
    d.close()


@settings(max_examples=400, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(seed=st.sampled_from(differential.SEEDS), rng=st.randoms(use_true_random=False))
def test_same_response_code_as_swtpm(differ, seed, rng):
    what, cmd = differential.mutate(seed, rng)
    result = differ.compare(f"{seed.name}: {what}", cmd)
    assert result.ok, result.describe()


def test_the_seeds_themselves_agree(differ):
    """Every unmutated seed gets the same answer from both (most succeed)."""
    results = [differ.compare(s.name, s.marshal()) for s in differential.SEEDS]
    bad = [r.describe() for r in results if not r.ok]
    assert not bad, "\n".join(bad)
    assert sum(r.rc_simxen == 0 for r in results) >= len(differential.build_seeds()) - 4


def test_known_differences_are_documented():
    page = (ROOT / "docs" / "tpm.rst").read_text()
    for name, _, _ in differential.KNOWN_DIFFERENCES:
        assert f"``{name}``" in page, f"docs/tpm.rst does not list known difference {name}"


# -- what a power cycle leaves of saved contexts --------------------------------
def _storage_template():
    return Public(TPM_ALG.ECC, TPM_ALG.SHA256, 0x00030072,
                  symmetric=(TPM_ALG.AES, 128, TPM_ALG.CFB), curve=TPM_ECC.NIST_P256,
                  unique=(b"", b""))


def _sealed_template(attrs):
    return Public(TPM_ALG.KEYEDHASH, TPM_ALG.SHA256, attrs, b"",
                  scheme=(TPM_ALG.NULL, TPM_ALG.NULL), unique=b"")


class _Retrying:
    """``tpm`` with TPM_RC_RETRY answered as a TSS does: by sending the command again
    (libtpms answers it while a self-test the command needs is pending)."""

    def __init__(self, tpm):
        self.tpm = tpm

    def execute(self, command):
        for _ in range(20):
            response = self.tpm.execute(command)
            if client.response_code(response) != TPM_RC.RETRY:
                return response
        return response

    def power_cycle(self):
        self.tpm.power_cycle()


def _saved_context_after(tpm, attrs, shutdown, startup):
    """The response code of ContextLoad, on ``tpm``, of a data object's context saved
    before Shutdown(``shutdown``), _TPM_Init and Startup(``startup``)."""
    tpm = _Retrying(tpm)
    srk, _, _ = client.parse_create_primary(tpm.execute(
        client.create_primary_command(TPM_RH.OWNER, _storage_template())))
    priv, pub = client.parse_create(tpm.execute(client.create_command(
        srk, _sealed_template(attrs), data=b"sealed")))
    obj, _ = client.parse_load(tpm.execute(client.load_command(srk, priv, pub)))
    r = client.parse_response(tpm.execute(client.build_command(TPM_CC.ContextSave, (obj,)))).params
    blob = r.data[r.pos:r.end]
    for h in (obj, srk):
        client.check(tpm.execute(client.flush_context_command(h)))
    client.check(tpm.execute(client.shutdown_command(shutdown)))
    tpm.power_cycle()
    client.check(tpm.execute(client.startup_command(startup)))
    return client.response_code(tpm.execute(client.build_command(TPM_CC.ContextLoad,
                                                                 params=blob)))


@pytest.mark.parametrize("attrs", [0x16, 0x12], ids=["stClear", "ordinary"])
@pytest.mark.parametrize("cycle", ["restart", "resume", "reset"])
def test_a_power_cycle_ends_saved_contexts_as_swtpm_does(attrs, cycle):
    """A TPM Restart ends an stClear object's saved context only, a Resume none,
    a Reset every one: the same response code from swtpm and from simxen."""
    require_tool("swtpm")
    shutdown, startup = {"restart": (TPM_SU.STATE, TPM_SU.CLEAR),
                         "resume": (TPM_SU.STATE, TPM_SU.STATE),
                         "reset": (TPM_SU.CLEAR, TPM_SU.CLEAR)}[cycle]
    codes = {}
    for name, make in (("swtpm", differential.Swtpm), ("simxen", differential.Simxen)):
        tpm = make()
        try:
            codes[name] = _saved_context_after(tpm, attrs, shutdown, startup)
        finally:
            tpm.stop()
    assert codes["simxen"] == codes["swtpm"], codes
    assert (codes["simxen"] == 0) == (cycle == "resume" or (cycle == "restart" and attrs == 0x12))

"""Clevis's TPM 2.0 pin (Debian's ``clevis-tpm2``) against simxen's TPM.

``clevis encrypt tpm2`` is how a Linux machine binds a disk key to its
measured boot: it seals a key to a PCR policy in the TPM and writes a JWE
that only that TPM, in that PCR state, can open.  It drives tpm2-tools
underneath (``tpm2_createprimary``, ``tpm2_createpolicy``, ``tpm2_create``,
``tpm2_load``, ``tpm2_unseal``), pointed at the server by ``TPM2TOOLS_TCTI``.

Each test runs against the bare engine (``simxen tpm serve``) and against a
simulated guest's vTPM (``simxen serve scenarios/vtpm-stack.toml``, every
command through tpmfront, the vTPM stub domain and the manager).
"""

import base64
import hashlib
import json
import os
import subprocess

import pytest

from tpm_serve_helpers import SimxenTpmServer, require_tool, run_tool

pytestmark = pytest.mark.interop

SECRET = b"luks passphrase: correct horse battery staple\n"


class Clevis:
    """Clevis and tpm2-tools against one TPM, in one working folder."""

    def __init__(self, tcti, cwd):
        self.tcti, self.cwd = tcti, cwd

    def clevis(self, *argv, stdin, check=True):
        env = dict(os.environ, TPM2TOOLS_TCTI=self.tcti)
        proc = subprocess.run(["clevis", *argv], cwd=self.cwd, env=env, input=stdin,
                              capture_output=True, timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(f"clevis {' '.join(argv)} failed ({proc.returncode}):\n"
                                 f"{proc.stderr.decode(errors='replace')}")
        return proc

    def tool(self, *argv):
        return run_tool(self.tcti, self.cwd, *argv)


@pytest.fixture(scope="module", params=["tpm serve", pytest.param("serve", marks=pytest.mark.slow)])
def tpm(request, tmp_path_factory):
    """A fresh TPM per backend: the bare engine, or guest1's vTPM through the
    whole simulated path."""
    require_tool("clevis", "clevis-tpm2")
    require_tool("clevis-encrypt-tpm2", "clevis-tpm2")
    require_tool("tpm2_startup")
    if request.param == "tpm serve":
        srv = SimxenTpmServer("mssim")
    else:
        from test_serve import start
        srv = start()
    cwd = tmp_path_factory.mktemp("clevis")
    run_tool(srv.tcti, cwd, "tpm2_startup", "-c")      # the guest's vTPM: TPM_RC_INITIALIZE, fine
    yield Clevis(srv.tcti, cwd)
    srv.stop()


def jwe_header(jwe):
    """The protected header of a compact JWE."""
    part = jwe.split(b".")[0]
    return json.loads(base64.urlsafe_b64decode(part + b"=" * (-len(part) % 4)))


def test_sealed_to_pcr7_opens_until_pcr7_changes(tpm):
    jwe = tpm.clevis("encrypt", "tpm2", '{"pcr_bank":"sha256","pcr_ids":"7"}',
                     stdin=SECRET).stdout
    pin = jwe_header(jwe)["clevis"]
    assert pin["pin"] == "tpm2" and pin["tpm2"]["pcr_bank"] == "sha256" \
        and pin["tpm2"]["pcr_ids"] == "7"
    assert tpm.clevis("decrypt", stdin=jwe).stdout == SECRET
    tpm.tool("tpm2_pcrextend", "7:sha256=" + hashlib.sha256(b"another bootloader").hexdigest())
    failed = tpm.clevis("decrypt", stdin=jwe, check=False)
    assert failed.returncode != 0 and failed.stdout == b""
    assert b"0x99D" in failed.stderr          # TPM_RC_POLICY_FAIL from TPM2_Unseal


def test_sealed_without_pcrs_opens_whatever_the_pcrs(tpm):
    jwe = tpm.clevis("encrypt", "tpm2", "{}", stdin=SECRET).stdout
    tpm.tool("tpm2_pcrextend", "7:sha256=" + hashlib.sha256(b"yet another").hexdigest())
    assert tpm.clevis("decrypt", stdin=jwe).stdout == SECRET

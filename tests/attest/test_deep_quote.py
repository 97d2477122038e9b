"""The verifier's deep-quote check against a physical TPM engine answering
GET_QUOTE the way the manager does (protocols/vtpmmgr layout): signed by the
host AIK, bound to SHA-256(nonce || vTPM quote), host PCRs vs the host policy."""

import hashlib

import pytest

from simxen.domains.attestation_agent import Evidence
from simxen.domains.policy import Policy
from simxen.domains.verifier import Verifier
from simxen.protocols import vtpmmgr as mgr
from simxen.tpm import client
from simxen.tpm.constants import TPM_ALG, TPM_RH

from attest_support import new_engine, stream

AIK = __import__("simxen.domains.ptpm_commands", fromlist=["AIK_TEMPLATE"]).AIK_TEMPLATE


def host(boot=b"xen.gz 4.19.0"):
    tpm = new_engine(b"physical")
    client.check(tpm.execute(client.pcr_extend_command(9, {TPM_ALG.SHA256: hashlib.sha256(boot).digest()})))
    handle, public, _ = client.parse_create_primary(
        tpm.execute(client.create_primary_command(TPM_RH.ENDORSEMENT, AIK)))
    return tpm, handle, public


def get_quote(tpm, aik, data, pcrs=(0, 9), flags=0, hashes=()):
    """What the manager answers to GET_QUOTE(data, pcrs, flags)."""
    qualifying = mgr.deep_quote_external_data(data, flags, hashes)
    _, attest, sig = client.parse_quote(tpm.execute(client.quote_command(aik, qualifying,
                                                                        {TPM_ALG.SHA256: list(pcrs)})))
    values = client.parse_pcr_read(tpm.execute(client.pcr_read_command({TPM_ALG.SHA256: list(pcrs)})))[1]
    return mgr.get_quote_response(attest.marshal(), sig.marshal(), hashes,
                                  [values[TPM_ALG.SHA256][p] for p in pcrs])


def judge(reply, nonce, vtpm_attest, host_public, golden):
    v = Verifier(Policy("p", host_pcrs={"sha256": golden}), stream(b"v"), host_aik=host_public)
    verdict = v.appraise("g", nonce, Evidence(vtpm_attest, b"", {}, b"", "", reply), deep=True)
    return [r for r in verdict.reasons if r.check == "host"], verdict


@pytest.fixture
def good():
    tpm, aik, public = host()
    golden = client.parse_pcr_read(tpm.execute(client.pcr_read_command({TPM_ALG.SHA256: [0, 9]})))[1]
    return tpm, aik, public, golden[TPM_ALG.SHA256]


def test_deep_quote_of_the_approved_host_holds(good):
    tpm, aik, public, golden = good
    nonce, attest = b"n" * 20, b"vtpm quote bytes"
    reply = get_quote(tpm, aik, hashlib.sha256(nonce + attest).digest())
    host_reasons, verdict = judge(reply, nonce, attest, public, golden)
    assert host_reasons == [] and verdict.host_checked
    assert "host PCRs match the host policy" in verdict.checks


def test_another_vtpm_quote_is_not_bound(good):
    tpm, aik, public, golden = good
    nonce = b"n" * 20
    reply = get_quote(tpm, aik, hashlib.sha256(nonce + b"quote A").digest())
    [r], _ = judge(reply, nonce, b"quote B", public, golden)
    assert "does not bind" in r.text


def test_tampered_host_pcr_is_named(good):
    _, _, public, golden = good
    tpm, aik, _ = host(boot=b"xen.gz 4.19.0 + rootkit")
    nonce, attest = b"n" * 20, b"q"
    reply = get_quote(tpm, aik, hashlib.sha256(nonce + attest).digest())
    [r], _ = judge(reply, nonce, attest, public, golden)
    assert r.pcr == 9 and r.expected == golden[9].hex() and r.found != r.expected


def test_quote_by_another_key_and_refusal_and_garbage(good):
    tpm, aik, public, golden = good
    nonce, attest = b"n" * 20, b"q"
    data = hashlib.sha256(nonce + attest).digest()
    chip = new_engine(b"another chip")
    handle = client.parse_create_primary(chip.execute(
        client.create_primary_command(TPM_RH.ENDORSEMENT, AIK)))[0]
    [r], _ = judge(get_quote(chip, handle, data), nonce, attest, public, golden)
    assert "not signed by the host's AIK" in r.text
    [r], _ = judge(mgr.response(mgr.TPM_FAIL), nonce, attest, public, golden)
    assert "refused" in r.text
    [r], _ = judge(b"\x01\xc4\x00\x00\x00\x0e\x00\x00\x00\x00\x00\x01", nonce, attest, public, golden)
    assert "does not parse" in r.text
    [r], _ = judge(None, nonce, attest, public, golden)
    assert "no deep quote" in r.text


def test_the_uuid_hash_names_the_vtpm_that_asked(good):
    tpm, aik, public, golden = good
    nonce, attest = b"n" * 20, b"q"
    data = hashlib.sha256(nonce + attest).digest()
    mine, theirs = bytes(range(16)), bytes(range(1, 17))
    flags = mgr.VTPM_QUOTE_FLAGS_HASH_UUID
    for asked_by, ok in ((mine, True), (theirs, False)):
        hashes = mgr.deep_quote_hashes(flags, uuid=asked_by)
        reply = get_quote(tpm, aik, data, flags=flags, hashes=hashes)
        v = Verifier(Policy("p", host_pcrs={"sha256": golden}), stream(b"v"), host_aik=public)
        v.known_uuids["g"] = mine
        verdict = v.appraise("g", nonce, Evidence(attest, b"", {}, b"", "", reply, flags),
                             deep=True, deep_quote_flags=flags)
        host = [r for r in verdict.reasons if r.check == "host"]
        assert (host == []) == ok
        if not ok:
            assert host[0].event == "vTPM UUID" and mine.hex() in host[0].text

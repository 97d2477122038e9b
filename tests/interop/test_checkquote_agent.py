"""The agent's quote verifies with the real ``tpm2_checkquote`` (tpm2-tools 5.4),
given the AK public key as PEM and the files in the formats ``tpm2_quote``
writes: the TPMS_ATTEST bytes (``-m``), the TPMT_SIGNATURE bytes (``-s``) and
the PCR file (``-o``/``-f``: tpm2-tools' serialised ``TPML_PCR_SELECTION``
and ``TPML_DIGEST`` C structures,
:func:`simxen.domains.attestation_agent.pcr_file`). The tool also
replays pv-grub's event log against those PCRs (``-e``)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from simxen.domains import pvgrub
from simxen.domains.attestation_agent import AttestationAgent, pcr_file
from simxen.domains.images import GuestImages, Image, initrd_bytes, kernel_bytes
from simxen.domains.verifier import public_key
from simxen.tpm.public import Public

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "attest"))
from attest_support import EngineFront, drive, new_engine, stream  # noqa: E402

pytestmark = pytest.mark.interop

@pytest.fixture(scope="module")
def checkquote():
    path = shutil.which("tpm2_checkquote") or (
        "/usr/bin/tpm2_checkquote" if os.path.exists("/usr/bin/tpm2_checkquote") else None)
    if path is None:
        if os.environ.get("SIMXEN_REQUIRE_TOOLS") == "1":
            pytest.fail("tpm2_checkquote is required (SIMXEN_REQUIRE_TOOLS=1) but not installed")
        pytest.skip("tpm2_checkquote not installed")
    return path


@pytest.fixture
def quoted(tmp_path):
    """A vTPM booted by pv-grub; the agent's evidence for a nonce, written to files."""
    engine = new_engine(b"checkquote")
    front = EngineFront(engine)
    images = GuestImages(Image("kernel", kernel_bytes("linux", "6.1.0"), "t"),
                         Image("initrd", initrd_bytes("initrd", "6.1.0"), "t"), "ro quiet")
    boot = drive(pvgrub.measure(front, images))
    drive(front.connect())
    agent = AttestationAgent(front.transmit, stream(b"agent"))
    _, ak = drive(agent.provision())
    nonce = bytes.fromhex("5ca1ab1e0123456789abcdef00112233deadbeef")
    ev = drive(agent.evidence(nonce, "sha256", range(11), event_log=boot.log_bytes, ima_list=""))
    pem = public_key(Public.from_bytes(ak)).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    files = {"ak.pem": pem, "quote.msg": ev.attest, "quote.sig": ev.signature,
             "quote.pcrs": pcr_file(0x000B, ev.pcr_values["sha256"]),
             "binary_bios_measurements": ev.event_log}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return tmp_path, nonce, ev


def run(checkquote, d, nonce, *extra):
    return subprocess.run([checkquote, "-u", str(d / "ak.pem"), "-m", str(d / "quote.msg"),
                           "-s", str(d / "quote.sig"), "-f", str(d / "quote.pcrs"),
                           "-g", "sha256", "-q", nonce.hex(), *extra],
                          capture_output=True, text=True, timeout=60)


def test_checkquote_accepts_the_agents_quote(checkquote, quoted):
    d, nonce, _ = quoted
    proc = run(checkquote, d, nonce)
    assert proc.returncode == 0, proc.stderr
    assert "sha256" in proc.stdout


def test_checkquote_replays_the_pvgrub_log_against_the_quote(checkquote, quoted):
    d, nonce, _ = quoted
    proc = run(checkquote, d, nonce, "-e", str(d / "binary_bios_measurements"))
    assert proc.returncode == 0, proc.stderr


def test_checkquote_rejects_another_nonce(checkquote, quoted):
    d, nonce, _ = quoted
    assert run(checkquote, d, bytes(20)).returncode != 0


def test_checkquote_rejects_altered_pcr_values(checkquote, quoted):
    d, nonce, ev = quoted
    values = dict(ev.pcr_values["sha256"])
    values[4] = bytes(32)
    (d / "quote.pcrs").write_bytes(pcr_file(0x000B, values))
    assert run(checkquote, d, nonce).returncode != 0


def test_checkquote_rejects_a_flipped_signature_bit(checkquote, quoted):
    d, nonce, ev = quoted
    sig = bytearray(ev.signature)
    sig[-1] ^= 1
    (d / "quote.sig").write_bytes(bytes(sig))
    assert run(checkquote, d, nonce).returncode != 0


def test_checkquote_rejects_a_log_of_another_kernel(checkquote, quoted):
    d, nonce, _ = quoted
    other = GuestImages(Image("kernel", kernel_bytes("linux", "6.1.1"), "t"),
                        Image("initrd", initrd_bytes("initrd", "6.1.0"), "t"), "ro quiet")
    log = drive(pvgrub.measure(EngineFront(new_engine(b"other")), other)).log_bytes
    (d / "binary_bios_measurements").write_bytes(log)
    assert run(checkquote, d, nonce, "-e", str(d / "binary_bios_measurements")).returncode != 0


def test_checkquote_accepts_a_quote_made_through_the_whole_stack(checkquote, tmp_path):
    """The agent in a simulated guest: every command crosses tpmfront -> vTPM stub
    domain; the quote and pv-grub's log still satisfy tpm2_checkquote."""
    from attest_support import booted_host, run_in
    hv, host, guest = booted_host(seed=3)
    agent = AttestationAgent(guest.tpm.transmit, stream(b"stack agent"))
    _, ak = run_in(hv, agent.provision())
    nonce = bytes(range(20))
    ev = run_in(hv, agent.evidence(nonce, "sha256", range(11),
                                   event_log=guest.boot_measurement.log_bytes, ima_list=""))
    pem = public_key(Public.from_bytes(ak)).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    for name, data in {"ak.pem": pem, "quote.msg": ev.attest, "quote.sig": ev.signature,
                       "quote.pcrs": pcr_file(0x000B, ev.pcr_values["sha256"]),
                       "log": ev.event_log}.items():
        (tmp_path / name).write_bytes(data)
    proc = run(checkquote, tmp_path, nonce, "-e", str(tmp_path / "log"))
    assert proc.returncode == 0, proc.stderr


def test_checkquote_accepts_what_a_scenario_exports(checkquote, tmp_path):
    """``export = "<folder>"`` in a scenario writes the last round's evidence; the
    command the report prints verifies it."""
    import shlex
    from simxen.scenario import runner, scenario_file
    root = Path(__file__).resolve().parents[2] / "scenarios"
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "web-guest.toml").write_text(
        (root / "policies" / "web-guest.toml").read_text())
    out = tmp_path / "evidence"
    text = (root / "boot-attest.toml").read_text().replace(
        "rounds = 2\n", f'rounds = 2\nexport = "{out}"\n', 1)
    (tmp_path / "s.toml").write_text(text)
    result = runner.run(scenario_file.load(tmp_path / "s.toml"))
    assert result.results["attest"]["exported"] == str(out)
    command = result.results["attest"]["checkquote"].split(" ", 1)[1]
    report = result.report.render()
    assert f"\n    {result.results['attest']['checkquote']}\n" in report      # one line, as printed
    proc = subprocess.run([checkquote] + shlex.split(command), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr

"""Standard tools read what ``simxen trace`` writes: tshark's TPM 2.0 dissector
decodes the pcap export, and rsvg-convert renders the SVG sequence diagram."""

import subprocess

import pytest

from tpm_serve_helpers import require_tool

from simxen.cli import main

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def boot_trace(tmp_path_factory):
    path = tmp_path_factory.mktemp("trace") / "boot-attest.jsonl"
    assert main(["run", "scenarios/boot-attest.toml", "--trace", str(path), "--no-progress"]) == 0
    return path


@pytest.mark.parametrize("tpm,commands", [
    ("guest1", ("TPM2_CC_Startup", "TPM2_CC_PCR_Extend", "TPM2_CC_Quote", "TPM2_CC_PCR_Read")),
    ("physical", ("TPM2_CC_CreatePrimary", "TPM2_CC_GetRandom", "TPM2_CC_Quote")),
])
def test_tshark_decodes_the_pcap_export(boot_trace, tmp_path, tpm, commands, capsys):
    tshark = require_tool("tshark")
    cap = tmp_path / f"{tpm}.pcap"
    assert main(["trace", "--from", str(boot_trace), "-f", "pcap", "--tpm", tpm, "-o", str(cap)]) == 0
    out = subprocess.run([tshark, "-r", str(cap), "-V"], capture_output=True, text=True,
                         timeout=120).stdout
    for cc in commands:
        assert f"Command Code: {cc} (0x" in out, cc
    assert "Platform Response Code: TPM2 Success (0x00000000)" in out
    summary = subprocess.run([tshark, "-r", str(cap)], capture_output=True, text=True,
                             timeout=120).stdout
    assert "[TPM Request], Command TPM2_CC_" in summary
    assert "[TPM Response], Response Code TPM2 Success" in summary
    # (Wireshark 4.0's dissector reads one handle where NV_Read has two, so that one
    # command shows as malformed in any capture, a real TPM's too; the rest decode.)
    decoded = [line for line in summary.splitlines() if "[TPM Request], Command" in line]
    assert sum("Malformed" not in line for line in decoded) >= len(decoded) - 1


def test_rsvg_renders_the_sequence_diagram(boot_trace, tmp_path):
    rsvg = require_tool("rsvg-convert")
    svg = tmp_path / "one.svg"
    assert main(["trace", "--from", str(boot_trace), "-f", "sequence", "--command",
                 "TPM2_PCR_Extend", "-o", str(svg)]) == 0
    png = tmp_path / "one.png"
    subprocess.run([rsvg, str(svg), "-o", str(png)], check=True, timeout=60)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > 400 and height > 400

"""The attestation reports say nothing that contradicts the run they describe."""

from pathlib import Path

from simxen.scenario import runner, scenario_file

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def report_of(name):
    result = runner.run(scenario_file.load(SCENARIOS / name))
    return result, result.report.render()


def test_a_tampered_kernel_is_not_reported_as_an_honest_guest():
    result, text = report_of("tampered-kernel.toml")
    assert "honest" not in text and "Attack: nothing" not in text
    assert "its kernel has byte 4096 flipped" in " ".join(text.split())
    assert result.results["attest"]["modified_images"] == "kernel has byte 4096 flipped"


def test_direct_boot_has_no_event_log_to_replay():
    result, text = report_of("direct-kernel-boot.toml")
    assert result.results["attest"]["event_log_bytes"] == 0
    assert "event log replays" not in text
    assert "event log  " in text and "none (no boot loader measured the guest)" in text

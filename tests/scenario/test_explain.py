"""simxen explain: the chain of trust, told from the run's own records and appraisal."""

import re

import pytest

from simxen.analysis import trace_format
from simxen.cli import main
from simxen.scenario import runner, scenario_file
from simxen.scenario.cmd_explain import explain


def run(name):
    return runner.run(scenario_file.load(f"scenarios/{name}.toml"), trace_level="full")


def test_boot_attest_is_explained_link_by_link():
    result = run("boot-attest")
    text = explain(result)
    records = trace_format.from_trace(result.trace)
    kernel = next(r for r in records if r["kind"] == "pvgrub.measure" and r["item"] == "kernel")
    # the digest pv-grub extended is told, with its PCR, and it is the policy's golden kernel
    assert f"the kernel ({kernel['size']} bytes) -> PCR 4: sha256 {kernel['sha256']}" in text
    assert f"golden kernel: sha256 {kernel['sha256'][:24]}..." in text
    assert re.search(r"event 1: PCR 4, EV_EFI_BOOT_SERVICES_APPLICATION \(kernel\)", text)
    assert "the log replays to exactly these values" in text
    assert "Round 1: the verifier's appraisal -- TRUSTED" in text
    assert "+ kernel, command line and initrd match the policy" in text
    assert "Where the chain broke" not in text
    assert "dom0-kernel -> physical PCR 9" in text                 # the host's own chain


def test_tampered_kernel_names_the_broken_link_and_why():
    result = run("tampered-kernel")
    text = explain(result)
    records = trace_format.from_trace(result.trace)
    kernel = next(r for r in records if r["kind"] == "pvgrub.measure" and r["item"] == "kernel")
    assert "Round 1: the verifier's appraisal -- UNTRUSTED" in text
    broken = text.split("Where the chain broke:")[1]
    assert "[boot] PCR 4, event 1 (kernel" in broken
    assert f"found    sha256:{kernel['sha256']}" in broken          # what pv-grub measured
    golden = re.search(r"golden kernel: sha256 ([0-9a-f]{24})", text).group(1)
    assert f"expected sha256:{golden}" in broken and not kernel["sha256"].startswith(golden)
    assert "Why this is the evidence (boot)" in broken
    # the links that held are listed too: the signature and the replay vouch for the log
    assert "+ signature by the enrolled AK" in text and "+ event log replays to the quoted PCRs" in text


def test_a_round_where_no_check_held_says_so():
    """vtpm-rollback's second round fails at the signature: the heading 'What the verifier
    checked and found true:' stood over an empty list."""
    text = explain(run("vtpm-rollback"))
    second = text.split("Round 2: the verifier's appraisal -- UNTRUSTED")[1]
    assert "No check the verifier made held." in second
    assert "checked and found true" not in second


@pytest.mark.slow
def test_dom0_touching_the_tpm_is_told():
    text = explain(run("dom0-touches-tpm"))
    assert "dom0 tried to map the TPM's TIS window itself: Xen refused" in text


def test_explain_needs_an_attestation_scenario(capsys):
    assert main(["explain", "scenarios/ring-pingpong.toml"]) == 2
    assert "needs an attestation workload" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["ring-pingpong", "fleet", "vtpm-stack"])
def test_a_scenario_without_attestation_is_refused_from_the_file_before_any_run(
        name, capsys, monkeypatch):
    def no_run(*args, **kwargs):
        raise AssertionError("explain ran a scenario it cannot explain")
    monkeypatch.setattr(runner, "run", no_run)
    assert main(["explain", f"scenarios/{name}.toml"]) == 2
    err = capsys.readouterr().err
    # one line naming the file, the key and what the file has instead
    assert f"scenarios/{name}.toml: workload: simxen explain needs an attestation workload" in err
    assert "this scenario has '" in err and err.count("\n") == 1


def test_a_pcr_read_that_got_no_answer_is_not_told_as_a_disagreeing_log():
    """With tpmfront.timeout shorter than any answer the guest's TPM2_PCR_Read fails; explain
    said 'The vTPM reports PCR 4 =  and PCR 5 =  ... the log and the vTPM disagree'."""
    sc = scenario_file.load("scenarios/boot-attest.toml",
                            ['profile.switches."tpmfront.timeout"=0.0001'])
    text = explain(runner.run(sc, trace_level="full"))
    assert "TPM2_PCR_Read of PCRs 4 and 5 got no answer from its vTPM" in text
    assert "disagree" not in text and "The vTPM reports PCR 4 =" not in text


def test_a_physical_tpm_that_never_answers_is_a_reported_failure_not_an_internal_error():
    """With ``tis.duration`` shorter than any physical-TPM command every TIS transmit
    times out (-ETIME). That was an internal error (a TisError traceback out of the
    manager's GetRandom passthrough, then out of the AIK export); now the manager answers
    the vTPM TPM_IOERROR and records why, and the verifier says it has no AIK and why."""
    from simxen.protocols import vtpmmgr as mgr
    sc = scenario_file.load("scenarios/boot-attest.toml",
                            ['profile.switches."tis.duration"=0.000001'])
    result = runner.run(sc, trace_level="full")
    records = trace_format.from_trace(result.trace)
    opened = next(r for r in records if r["kind"] == "vtpmmgr.open")
    assert opened["status"] == "refused" and "ETIME" in opened["error"]
    failed = [r for r in records if r["kind"] == "vtpmmgr.ptpm_error"]
    assert failed and all(r["what"].startswith("TIS: ETIME") and r["rc"] is None for r in failed)
    answered = {r["rc"] for r in records if r["kind"] == "vtpmmgr.request"
                and r["ordinal_name"] == "TPM_ORD_GetRandom"}
    assert answered == {mgr.TPM_IOERROR}
    text = " ".join(explain(result).split())                # its lines are wrapped
    assert "the verifier knows no AIK for this host (exporting it from the manager failed: " \
           "ETIME: no answer within 1e-06 s)" in text
    assert "could not export the vTPM manager's attestation key (ETIME" in \
        " ".join(result.report.render().split())

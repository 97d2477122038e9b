"""CPU scheduling in scenarios: ``[scenario] scheduler`` and ``pcpus`` (docs/cpu-scheduling.rst).

With a pCPU for every domain the credit2 scheduler never makes anyone wait,
so the run equals the default (a pCPU per domain) in every result and every
trace record but its own ``sched.*`` ones; squeezed onto one pCPU, the
vTPM stub domains' emulation of four guests' commands competes for it and a
guest's TPM command takes longer.
"""

import json

import pytest

from simxen.scenario import metrics, runner, scenario_file
from tests.scenario.test_metrics import ROOT

STACK = ROOT / "scenarios" / "vtpm-stack.toml"


def _run(path, *sets, trace_level="full"):
    sc = scenario_file.load(path, list(sets))
    return runner.run(sc, trace_level=trace_level)


def _records(trace, drop_sched):
    rows = []
    for line in _lines(trace):
        rec = json.loads(line)
        if drop_sched and rec["kind"].startswith("sched."):
            continue
        rec.pop("seq", None)
        rows.append(rec)
    return rows


def _lines(trace):
    import io
    buf = io.StringIO()
    trace.to_jsonl(buf)
    return buf.getvalue().splitlines()


def test_a_pcpu_per_domain_under_credit2_changes_nothing_but_adds_sched_records():
    plain = _run(STACK)
    shared = _run(STACK, "scenario.scheduler=credit2", "scenario.pcpus=4")  # 4 domains
    cpu = shared.results.pop("cpu")
    assert metrics.scalars(shared.results) == metrics.scalars(plain.results)
    assert cpu["pcpus"] == 4 and cpu["runq_wait_ms"]["count"] == 0 and cpu["preemptions"] == 0
    assert _records(shared.trace, True) == _records(plain.trace, False)
    assert len(shared.trace) > len(plain.trace)               # the sched.* records


def test_the_default_publishes_no_cpu_metrics_and_credit2_does():
    plain = scenario_file.load(STACK)
    assert not [m for m in metrics.of_scenario(plain) if m.name.startswith("cpu.")]
    shared = scenario_file.load(STACK, ["scenario.scheduler=credit2"])
    names = {m.name: m.unit for m in metrics.of_scenario(shared)}
    assert names["cpu.utilisation"] == "fraction" and names["cpu.runq_wait_ms.mean"] == "ms"


FOUR_GUESTS = ("stack.configs=[]", "stack.guest_count=4", "stack.iterations=3",
               'stack.commands=["quote","pcr_extend"]',
               'stack.kernel_era="linux-3.12"')


@pytest.mark.slow
def test_stub_domains_competing_for_one_pcpu_raise_a_guests_tpm_latency():
    sets = FOUR_GUESTS
    dedicated = _run(STACK, *sets, trace_level="commands").metrics
    squeezed = _run(STACK, *sets, "scenario.scheduler=credit2", "scenario.pcpus=1",
                    trace_level="commands").metrics
    key = "stack.latency_ms.pcr_extend.mean"
    assert squeezed[key] > 5 * dedicated[key]               # waits behind others' RSA bursts
    assert squeezed["stack.latency_ms.quote.mean"] > dedicated["stack.latency_ms.quote.mean"]
    assert squeezed["cpu.runq_wait_ms.count"] > 0 and squeezed["cpu.utilisation"] > 0.1
    assert squeezed["stack.commands_completed"] == dedicated["stack.commands_completed"]


def test_xl_cpu_weight_and_cap_reach_the_scheduler():
    sc = scenario_file.load(STACK, ["scenario.scheduler=credit2", "scenario.pcpus=2"])
    configs = sc.data["workload"][0]["configs"]
    configs[1] = configs[1].replace("memory=8", "memory=8\ncpu_weight=512\ncap=40")
    result = runner.run(sc)
    section = next(s for s in result.report.sections if s.title.startswith("CPU scheduling"))
    row = next(r for r in section.table if r[0] == "vtpm-guest1")
    assert row[1] == 512 and row[2] == 40


def test_sched_records_follow_the_trace_schema():
    from simxen.analysis import trace_format
    result = _run(STACK, *FOUR_GUESTS[:2], "stack.iterations=1", "scenario.scheduler=credit2",
                  "scenario.pcpus=1")
    seen = set()
    for rec in (json.loads(line) for line in _lines(result.trace)):
        if rec["kind"].startswith("sched."):
            seen.add(rec["kind"])
            assert rec["kind"] in trace_format.kinds()
            assert trace_format.check_record(rec) is None, rec
    assert {"sched.run", "sched.wait", "sched.stop"} <= seen


def test_the_theory_check_says_why_it_does_not_apply_under_cpu_contention():
    """Issue 8: where the model departs from the queueing assumptions the report says why.
    With one pCPU for every domain the M/M/1 comparison is made; squeezed, it is not."""
    mm1 = ROOT / "scenarios" / "validation" / "mm1.toml"
    squeezed = _run(mm1, "mm1.duration=3.0", "mm1.warmup=1.0", "scenario.scheduler=credit2", "scenario.pcpus=1",
                    trace_level="commands")
    text = squeezed.metrics["mm1.theory_note"]
    assert text.startswith("queueing theory does not apply") and "physical CPU" in text, text
    roomy = _run(mm1, "mm1.duration=3.0", "mm1.warmup=1.0", "scenario.scheduler=credit2", "scenario.pcpus=8",
                 trace_level="commands")
    assert "physical CPU" not in roomy.metrics["mm1.theory_note"]
    # and docs/queueing.rst, where a reader of the theory check looks, says what the run does
    doc = " ".join((ROOT / "docs" / "queueing.rst").read_text().split())
    para = doc.split("**CPU contention.**")[1].split("**")[0]
    assert "not built yet" not in para and "docs/cpu-scheduling.rst" in para
    assert "does not apply" in para, para

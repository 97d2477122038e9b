"""Honest labels in every report: a latency resting more than a fifth on figures marked U
is an estimate (simxen.analysis.certainty, simxen.scenario.estimates), whatever the workload."""

import json
from pathlib import Path

import pytest

from simxen.analysis import certainty
from simxen.scenario import runner, scenario_file
from simxen.xen.profile import Profile

QUOTE = ('[profile.ops."tpm.ptpm.Quote"]\ndist = "lognormal"\nmedian = 0.06886\nsigma = 0.15\n'
         'certainty = "{}"\nsource = "the default figure, its certainty changed by the test"\n')


SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def _shipped(name, **replace):
    """A shipped scenario's text, its policy path made absolute and some lines replaced."""
    text = (SCENARIOS / name).read_text().replace('"policies/', f'"{SCENARIOS}/policies/')
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    return text


def _run(tmp_path, text, name="s.toml"):
    path = tmp_path / name
    path.write_text(text)
    return runner.run(scenario_file.load(path))


def _attest(tmp_path, quote_certainty=None):
    text = _shipped("boot-attest.toml", **{"rounds = 2": "rounds = 1"})
    if quote_certainty:
        text = text.replace("[[workload]]", QUOTE.format(quote_certainty) + "[[workload]]", 1)
    return _run(tmp_path, text)


def test_an_attestation_round_dominated_by_a_verified_figure_is_sourced_until_it_is_not(tmp_path):
    """The deep quote's ECDSA sign on the chip (tpm.ptpm.Quote, V) is most of a round: the
    round is sourced; the same figure marked U makes the same round an
    estimate. The share is read from the round's own commands, not from a table."""
    sourced, assumed = _attest(tmp_path), _attest(tmp_path, "U")
    a, b = (r.results["attest"]["unverified_share"]["attest_ms"] for r in (sourced, assumed))
    assert a < certainty.ESTIMATE_SHARE < 0.5 < b
    text_a, text_b = sourced.report.render(), assumed.report.render()
    assert "ms (sourced:" in text_a and "estimate" not in text_a
    assert "first attestation round (simulated)" in text_b and "ms (estimate:" in text_b
    assert "A latency labelled 'estimate'" in text_b
    doc = json.loads(json.dumps(assumed.as_dict()))["metrics"]["attest.unverified_share.attest_ms"]
    assert doc["unit"] == "fraction" and doc["value"] == pytest.approx(b)


LOAD = ('[scenario]\nname = "l"\n{profile}[[workload]]\ntype = "load"\nrate = 20.0\n'
        'duration = 0.5\nwarmup = 0.1\nmix = {{get_random = 1}}\n')


def test_load_latency_labels_follow_the_guest_wait(tmp_path):
    """A polling linux-6 guest's latency is mostly its usleep_range (V): sourced. Make the
    guests interrupt-driven and what is left is assumed event-channel and disk time."""
    polled = _run(tmp_path, LOAD.format(profile=""))
    irq = _run(tmp_path, LOAD.format(profile='[profile.switches]\n"tpmfront.wait" = "interrupt"\n'))
    p, i = (r.results["load"]["guests"]["guest1"]["unverified_share"] for r in (polled, irq))
    assert p < certainty.ESTIMATE_SHARE < i
    assert "% sourced" in polled.report.render() and "% estimate" in irq.report.render()
    assert polled.results["load"]["unverified_share"] == pytest.approx(p)   # one guest


def test_fleet_and_ring_reports_carry_their_shares(tmp_path):
    fleet = _run(tmp_path, _shipped("fleet.toml", **{"guest_count = 10": "guest_count = 2",
                                                      "rounds = 10": "rounds = 2"}))
    shares = fleet.results["fleet"]["unverified_share"]
    assert set(shares) == {"enrol_ms", "attest_ms"} and all(0 <= v <= 1 for v in shares.values())
    assert "attestation round p50 (simulated)" in fleet.report.render()
    ring = _run(tmp_path, '[scenario]\nname = "r"\n[[domain]]\nname = "a"\n[[domain]]\nname = "b"\n'
                '[[workload]]\ntype = "ring-pingpong"\nfrontend = "a"\nbackend = "b"\nrequests = 20\n')
    # every op of a ring round trip is assumed in the default profile
    assert ring.results["pingpong"]["unverified_share"] == 1.0
    assert "latency from unverified figures  100% estimate" in ring.report.render()


def test_the_share_is_the_assumed_part_of_the_actual_hops():
    """Attribution on hand-made records: a command whose vTPM hop is all engine time of
    a P op and whose wait is a V sleep rests on no U figure beyond its ring crossings."""
    from simxen.xen.trace import Record
    recs = [Record(1, 0.0, "tpm.front.submit", 5, {"flow": "g/1", "cc": 0x17E}),
            Record(2, 0.001, "tpm.back.take", 2, {"flow": "g/1", "domid": 5}),
            Record(3, 0.002, "tpm.exec", 2, {"flow": "g/1", "cc": 0x17E, "duration": 0.001}),
            Record(4, 0.002, "tpm.back.respond", 2, {"flow": "g/1", "domid": 5}),
            Record(5, 0.007, "tpm.front.complete", 5, {"flow": "g/1", "rc": 0, "latency": 0.007})]
    profile = Profile.load("default")
    attr = certainty.Attribution(recs, profile, default_wait=("linux-6", True))
    parts = attr.commands[("g/1", 5)]
    assert parts == pytest.approx({"V": 0.005, "P": 0.001, "U": 0.001})   # front->back: evtchn
    # each hop's part, and the hops together are the command
    assert attr.hop_totals["front_to_back"] == pytest.approx({"V": 0.0, "P": 0.0, "U": 0.001})
    assert attr.hop_totals["vtpm"] == pytest.approx({"V": 0.0, "P": 0.001, "U": 0.0})
    assert attr.hop_totals["back_to_front"] == pytest.approx({"V": 0.005, "P": 0.0, "U": 0.0})
    assert attr.hop_shares()["front_to_back"] == 1.0 and attr.hop_shares()["ptpm"] is None
    assert attr.share([("g/1", 5)]) == pytest.approx(1 / 7)
    assert attr.window(0.0, 0.010, {5}) == pytest.approx((0.001 + 0.003) / 0.010)  # + the link
    interrupt = certainty.Attribution(recs, profile, default_wait=("linux-3.12", False))
    assert interrupt.share([("g/1", 5)]) == pytest.approx(6 / 7)        # upcall: assumed


def test_the_managers_service_follows_the_chip_figure_it_is_made_of(tmp_path):
    """host_random: each manager request is one physical TPM2_GetRandom (tpm.ptpm.GetRandom,
    P on the default chip) seen on tpm_tis's polling grid (V): sourced. Mark the chip's
    figure U and the same service is an estimate."""
    load = LOAD.replace("get_random = 1", "host_random = 1")
    op = ('[profile.ops."tpm.ptpm.GetRandom"]\ndist = "lognormal"\nmedian = 0.00228\n'
          'sigma = 0.2\ncertainty = "U"\nsource = "the default figure, marked U by the test"\n')
    sourced = _run(tmp_path, load.format(profile=""))
    assumed = _run(tmp_path, load.format(profile=op))
    a, b = (r.results["load"]["manager"]["unverified_share"] for r in (sourced, assumed))
    assert a < certainty.ESTIMATE_SHARE < b
    assert "mean service                      " in sourced.report.render()
    assert "ms (estimate:" in assumed.report.render().split("The manager")[1]


def test_a_wait_at_the_manager_is_charged_as_the_manager_serves(tmp_path):
    """Four guests keep the manager busy with physical GetRandoms (P, on tpm_tis's V grid):
    guest4's latency is mostly queueing at the manager behind the others -- time made of
    that service, so sourced, not charged to the assumed ring crossings."""
    text = _shipped("manager-contention.toml", **{"duration = 5.0": "duration = 0.6",
                                                  "warmup = 1.0": "warmup = 0.2"})
    res = _run(tmp_path, text).results["contention"]
    g4 = res["guests"]["guest4"]
    assert g4["wait_ms"]["mean"] + res["manager"]["wait_ms"]["mean"] > 5.0      # it queued
    assert g4["unverified_share"] < certainty.ESTIMATE_SHARE


def test_each_hop_of_the_stack_carries_its_own_label(tmp_path):
    """vtpm-stack's per-hop table labels each hop: the ring crossing front->back rests on
    the assumed event-channel figures (an estimate), a linux-6 guest's wait back->front on
    its sourced usleep_range."""
    run = _run(tmp_path, _shipped("vtpm-stack.toml", **{"iterations = 10": "iterations = 2"}))
    by_hop = run.results["stack"]["unverified_share_by_hop"]
    assert by_hop["front_to_back"] == pytest.approx(1.0)
    assert by_hop["back_to_front"] < certainty.ESTIMATE_SHARE
    text = run.report.render()
    hop_rows = text.split("Per-hop breakdown")[1].split("\n\n")[0]
    assert "from U" in hop_rows and "estimate" in hop_rows and "sourced" in hop_rows


@pytest.mark.parametrize("name, workload", [("boot-attest.toml", "attest"), ("fleet.toml", "fleet")])
def test_a_report_says_when_the_trace_level_leaves_its_latencies_unlabelled(tmp_path, name,
                                                                            workload):
    """At --trace-level off no command record is kept, so no share can be read: the
    attestation and fleet reports printed their latencies with no label and said nothing,
    as if they were measured. Now the report says the label is unknown, and why."""
    text = _shipped(name, **{"rounds = 2": "rounds = 1"} if name == "boot-attest.toml"
                    else {"guest_count = 10": "guest_count = 1", "rounds = 10": "rounds = 1"})
    path = tmp_path / name
    path.write_text(text)
    off = runner.run(scenario_file.load(path), trace_level="off")
    kept = runner.run(scenario_file.load(path), trace_level="commands")
    said = "Whether the latencies below are estimates is not known"
    assert said in off.report.render() and "--trace-level commands or full" in off.report.render()
    assert said not in kept.report.render()
    assert off.results[workload]["unverified_share"] is None
    assert kept.results[workload]["unverified_share"]

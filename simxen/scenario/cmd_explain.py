"""Explain the chain of trust an attestation scenario built, step by step.

Runs SCENARIO and tells, in order and in words: what the host's firmware
measured into the physical TPM; what pv-grub measured into the guest's vTPM
(which item, which PCR, which digest); what the event log says and whether it
replays to the PCRs the vTPM reports; what the verifier asked for and checked
against its policy in each round; and, where the chain broke, which link and
why that is the evidence. Every number is the run's own (trace records,
results, the verifier's appraisal); nothing is canned.

Example::

    simxen explain scenarios/tampered-kernel.toml
"""

from __future__ import annotations

import sys
import textwrap

from simxen.analysis import trace_format
from simxen.domains.pvgrub import item_of_event
from simxen.errors import InputError
from simxen.protocols import tcg_eventlog as tl
from simxen.scenario import runner, scenario_file

__all__ = ["explain", "add_arguments", "main"]

_WIDTH = 88

#: Why a failed check is evidence, per check word of the verifier's reasons.
WHY = {
    "boot": "The quote is signed by the attestation key the verifier enrolled, so the PCR "
            "values are the vTPM's own; the event log replays to them, so the log's events are "
            "the ones that were extended. The event in question carries the digest pv-grub "
            "computed over the bytes it was about to boot -- and that digest is not the one the "
            "policy approves. So the guest booted something other than the approved build: "
            "that mismatch, inside a signed and replayed chain, is the evidence.",
    "replay": "The quote's PCR values come from the vTPM and are signed, but the event log "
              "the agent sent does not hash to them: the log was edited, or something was "
              "extended that the log does not mention. Either way the log cannot be believed, "
              "and without a believable log no single measurement can be judged.",
    "ima": "IMA measured every file the guest executed into PCR 10 before running it; the list "
           "replays to the quoted PCR 10, so the list is complete -- and it names a file the "
           "policy does not allow (or content that differs). The guest ran it: that entry is "
           "the evidence.",
    "nonce": "Each round the verifier sends a fresh random nonce that the TPM signs into the "
             "quote (extraData). A quote over another nonce was made for another challenge: it "
             "was replayed from the past or relayed from another machine.",
    "signature": "Only the enrolled attestation key, which never leaves the vTPM, can sign a "
                 "quote the verifier accepts. A quote it cannot verify with that key did not "
                 "come from this guest's vTPM.",
    "rollback": "The vTPM's clock and reset counters only move forward while its state lives; "
                "a quote whose clock went backwards comes from an older copy of the state: "
                "someone restored an old vTPM image.",
    "host": "The deep quote is signed by the host's physical TPM (its AIK) over the host's PCRs "
            "and bound to this vTPM quote; the host's PCRs record its firmware, Xen and dom0. "
            "A host value off the policy means the platform under the vTPM is not the approved one.",
    "pcr": "The PCR values sent beside the quote must hash to the quote's signed pcrDigest; "
           "where they do not, or a PCR is off its golden value, the values are not the "
           "vTPM's.",
    "enrolment": "Without an enrolled attestation key there is nothing to check a quote "
                 "against: the verifier cannot trust any quote from this agent.",
}


def _wrap(text, indent=""):
    return textwrap.fill(text, _WIDTH, initial_indent=indent, subsequent_indent=indent)


def _short(hexdigest, n=16):
    return hexdigest[:n] + "..." if hexdigest and len(hexdigest) > n else (hexdigest or "")


def _attestation(result):
    found = [(name, value) for name, value in result.results.items()
             if isinstance(value, dict) and "round" in value and "event_log" in value]
    if not found:
        raise InputError("simxen explain needs an attestation workload (type = \"attestation\"); "
                         "this scenario has none", key="workload")
    return found[0]


def explain(result) -> str:
    """The explanation of a :class:`~simxen.scenario.runner.RunResult` of an attestation scenario."""
    name, res = _attestation(result)
    records = trace_format.from_trace(result.trace)
    out = []
    step = [0]

    def head(title):
        step[0] += 1
        out.append("")
        out.append(f"{step[0]}. {title}")
        out.append("-" * (len(title) + 3 + len(str(step[0]))))

    def say(text, indent=""):
        out.append(_wrap(text, indent))

    def item(text):
        out.append("   " + text)                 # digests stay on one line

    out.append(f"The chain of trust of {result.report.title.removeprefix('simxen: ')} "
               f"(seed {result.seed})")
    out.append("=" * len(out[-1]))
    say("A chain of trust is a list of measurements, each made before the thing measured ran, "
        "each extended into a PCR (new = SHA-256(old || digest)), so that a PCR's final value "
        "commits to every step in order and no step can be taken back. A verifier that trusts "
        "the TPM's signature can then check each step against what it expects.")

    host = [r for r in records if r["kind"] == "host.measure"]
    if host:
        head("The host boots: firmware measures into the physical TPM")
        for r in host:
            item(f"{r['component']} -> physical PCR {r['pcr']} (sha256 {_short(r['digest'])}, "
                 f"{r['cc_name']})")
        say("These are the host's PCRs 0-9, read later by the manager and, with a deep quote, "
            "by the verifier. Only the vTPM manager may reach the physical TPM; dom0 may not.")
    access = res.get("dom0_tpm_access")
    if access not in (None, "not tried"):
        if access == "mapped":
            say("dom0 mapped the physical TPM's TIS window itself: nothing stops it from "
                "extending or reading the host's PCRs behind the manager's back.")
        else:
            say(f"dom0 tried to map the TPM's TIS window itself: Xen refused ({access}). The "
                "physical TPM answers the manager alone (only it holds the iomem permission "
                "for 0xfed40000), so no other domain can extend or read the host's PCRs "
                "behind its back.")

    measures = [r for r in records if r["kind"] == "pvgrub.measure"]
    head("pv-grub measures the guest's boot into its vTPM")
    if measures:
        guest = measures[0].get("dom_name", f"dom{measures[0]['dom']}")
        say(f"pv-grub runs inside {guest} before its kernel and, through tpmfront, extends "
            "each thing it loads into the guest's own vTPM:")
        for r in measures:
            item(f"the {r['item']} ({r['size']} bytes) -> PCR {r['pcr']}: sha256 {r['sha256']}")
        say("The vTPM is a stub domain of its own; the guest cannot undo an extend, so what "
            "pv-grub measured stays in PCRs 4 and 5 whatever the kernel does next.")
    else:
        say("No pv-grub measurement is in the trace: the guest's kernel was started directly "
            "by the toolstack, so nothing measured it. PCRs 4 and 5 of its vTPM stay at zero, "
            "and no event can vouch for the kernel.")

    log = res.get("event_log") or b""
    head("The event log says what was extended")
    if log:
        _, events = tl.parse(log)
        say(f"pv-grub also wrote a TCG event log ({len(log)} bytes, {len(events)} events) "
            "telling what each extend was:")
        for n, ev in enumerate(events, 1):
            digest = ev.digests.get(tl.alg_id("sha256"), b"").hex()
            item(f"event {n}: PCR {ev.pcr}, {ev.type_name} ({item_of_event(ev)}), "
                 f"sha256 {_short(digest, 24)}")
        replayed = tl.replay(events, algorithms=["sha256"]).get("sha256", {})
        for pcr in (4, 5):
            if pcr in replayed:
                item(f"replaying the log gives PCR {pcr} = {_short(replayed[pcr].hex(), 24)}")
        agree = res.get("eventlog_replays_to_vtpm")
        if not res.get("pcr4"):         # check_boot_log's TPM2_PCR_Read failed: no values
            say("The guest's TPM2_PCR_Read of PCRs 4 and 5 got no answer from its vTPM "
                "(`simxen run` says why), so the log cannot be checked against the PCRs.")
        else:
            say(f"The vTPM reports PCR 4 = {_short(res.get('pcr4', ''), 24)} and PCR 5 = "
                f"{_short(res.get('pcr5', ''), 24)} (TPM2_PCR_Read): the log "
                + ("replays to exactly these values, so the log is the true story of the "
                   "extends." if agree else "does NOT replay to them: the log and the vTPM "
                   "disagree."))
    else:
        say("There is no event log (no boot loader wrote one).")

    ima = [r for r in records if r["kind"] == "ima.measure"]
    if ima:
        head("The running guest: IMA measures every program into PCR 10")
        for r in ima:
            item(f"{r['path']} (sha256 {_short(r['digest'])})")

    policy = res.get("policy")
    head("Enrolment: the verifier learns which key speaks for the vTPM")
    say("The verifier made a credential (TPM2_MakeCredential) for the EK recorded when the vTPM "
        "was provisioned, naming the new attestation key (AK); only a TPM holding both keys can "
        "release it (TPM2_ActivateCredential). "
        + ("The secret came back: from now on a quote signed by this AK is this vTPM's word."
           if res.get("enrolled") else "It did NOT come back: the AK is not trusted."))

    rounds = res.get("round", {})
    for number in sorted(rounds, key=int):
        rnd = rounds[number]
        verdict = rnd.get("appraisal")
        head(f"Round {number}: the verifier's appraisal -- {rnd['verdict'].upper()}")
        if policy is not None:
            say(f"Policy '{policy.name}': quote PCRs {list(policy.quote_pcrs)} ({policy.bank}).")
            for what, (alg, digest) in sorted(policy.boot.items()):
                item(f"golden {what}: {alg} {_short(digest.hex(), 24)}")
        if verdict is not None:
            if verdict.checks:
                say("What the verifier checked and found true:")
                for check in verdict.checks:
                    item(f"+ {check}")
            else:       # the first check failed: an empty list under a heading reads as lost
                say("No check the verifier made held.")
            if verdict.reasons:
                say("Where the chain broke:")
                for reason in verdict.reasons:
                    say(f"- [{reason.check}] {reason.text}", "   ")
                    if reason.expected is not None or reason.found is not None:
                        item(f"    expected {reason.expected}")
                        item(f"    found    {reason.found}")
                for check in dict.fromkeys(r.check for r in verdict.reasons):
                    if check in WHY:
                        say(f"Why this is the evidence ({check}): {WHY[check]}", "   ")
            else:
                say("Nothing broke: every link from the signed quote down to each measured "
                    "file matched the policy, so the verifier trusts this guest for this nonce.")
        if rnd.get("host") not in (None, "not asked"):
            say(f"The deep quote (the host's physical TPM vouching for the platform under the "
                f"vTPM): {rnd['host']}.")
    out.append("")
    return "\n".join(out) + "\n"


def add_arguments(parser):
    parser.add_argument("scenario", metavar="SCENARIO", help="an attestation scenario (.toml)")
    parser.add_argument("--seed", type=int, help="seed (default: the file's scenario.seed)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one key of the scenario (repeatable), as simxen run")


def main(args) -> int:
    if args.seed is not None and args.seed < 0:
        raise InputError(f"--seed: expected an integer >= 0, found {args.seed}")
    sc = scenario_file.load(args.scenario, args.set)
    # known from the file alone: say so before the run, not after it
    kinds = [w["type"] for w in sc.data["workload"]]
    if "attestation" not in kinds:
        raise InputError("simxen explain needs an attestation workload (type = \"attestation\"); "
                         f"this scenario has {', '.join(map(repr, kinds))}",
                         path=sc.path, key="workload")
    result = runner.run(sc, seed=args.seed, trace_level="full")
    sys.stdout.write(explain(result))
    return 0

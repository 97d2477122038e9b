"""``type = "fleet"``: N guests, each booted through pv-grub, enrolled and attested
for R rounds by one verifier, against one vTPM manager -- the realistic large case.

The host is the attestation story's (:mod:`simxen.scenario.workloads.attestation`)
with ``guest_count`` guests instead of one: the vTPM manager, a vTPM stub
domain per guest, and the guests, each with pv-grub measuring its kernel,
command line and initrd. Every guest then does what the attestation
workload's guest does, all at the same time: IMA and the boot counter start,
its agent creates EK and AK, the one verifier enrols it (make/activate
credential over the network link) and attests it ``rounds`` times, a fresh
nonce and quote each round, ``interval`` simulated seconds apart. The pieces
are the attestation workload's own (:class:`~simxen.scenario.workloads.attestation.Story`,
:class:`~simxen.scenario.workloads.attestation.GuestSide`).

**Event-channel limits.** Each vTPM holds one event channel to the manager,
so the manager needs one port per guest. mini-os (which the manager runs)
speaks only Xen's 2-level ABI: 4,095 usable ports on a 64-bit domain. With
more guests than that, the manager's backend cannot bind the next vTPM's
channel -- Xen answers ``-ENOSPC`` -- and that vTPM comes up without a
manager (it keeps nothing; ``vtpm.no_manager``). ``manager_evtchn_abi =
"fifo"`` asks what a manager on the FIFO ABI (131,072 ports) would do.
``evtchn_2l_ports`` lowers the 2-level limit for every domain, so a small
fleet meets the same failure through the same code.

Results (``<name>.<key>``): ``guests``, ``booted`` (Linux running),
``enrolled``, ``attestations`` (rounds answered), ``trusted``, ``untrusted``,
``all_enrolled``, ``all_trusted`` (bools), ``boot_seconds`` (host ready), ``vtpms_without_manager``,
``manager_evtchn_abi``, ``manager_ports`` (ports in use), ``manager_port_limit``,
``manager_error`` (the first refused connection's error, or ``""``),
``evtchn_abis`` (``{abi: domains}``), ``enrol_ms`` / ``attest_ms``
(percentiles of simulated time).
"""

from __future__ import annotations

from simxen.protocols.event_channel import (
    EVTCHN_2L_NR_CHANNELS, EVTCHN_ABI_2L, EVTCHN_ABI_FIFO)
from simxen.scenario.schema import Field, Table
from simxen.scenario.workloads import attestation
from simxen.scenario.workloads.vtpm_stack import check_guest_count

DOMAIN_KEYS = ()


def check_2l_ports(n):
    """``evtchn_2l_ports``'s check: it lowers Xen's 2-level limit, never raises it (a
    2-level domain's bitmaps hold :data:`EVTCHN_2L_NR_CHANNELS` ports on 64-bit)."""
    if n > EVTCHN_2L_NR_CHANNELS:
        return (f"expected at most {EVTCHN_2L_NR_CHANNELS:,} (the 2-level ABI's ports on a "
                f"64-bit domain; manager_evtchn_abi = \"fifo\" gives the manager more), "
                f"found {n:,}")
    return None


SCHEMA = Table("workload", "a fleet of guests, each booted through pv-grub, enrolled and "
               "attested for several rounds by one verifier, against one vTPM manager", [
    Field("type", str, "workload type", choices=["fleet"]),
    Field("name", str, "name of the results in [[expect]] metrics", default="fleet"),
    Field("guest_count", int, "how many guests (each with its own vTPM stub domain)",
          default=10, minimum=1, check=check_guest_count),
    Field("images", dict, "what every guest boots: kernel, initrd (tables: name+version or "
          "file), cmdline -- as in the attestation workload"),
    Field("policy", str, "the verifier's golden policy (TOML), relative to the scenario"),
    Field("exec", list, "programs every guest runs after boot, in order: tables "
          "{path, version} -- IMA measures each", default=[], items=dict),
    Field("rounds", int, "attestation rounds per guest", default=10, minimum=1),
    Field("interval", float, "simulated seconds between a guest's rounds", default=1.0,
          minimum=0),
    Field("manager_evtchn_abi", str, "the vTPM manager's event-channel ABI: 2-level "
          "(mini-os's, 4,095 ports) or fifo (131,072)", default=EVTCHN_ABI_2L,
          choices=[EVTCHN_ABI_2L, EVTCHN_ABI_FIFO]),
    Field("evtchn_2l_ports", int, "ports of a 2-level domain (Xen: 4096 on 64-bit, the "
          "most; lower it to meet the limit with a small fleet)", default=EVTCHN_2L_NR_CHANNELS,
          minimum=2, check=check_2l_ports),
])

#: story sentences kept for the report (a fleet of 1,000 would tell 1,000 of each)
_SENTENCES = 3


class FleetStory(attestation.Story):
    """The attestation story with one verifier for many guests; it keeps only the
    first few sentences (the rest is counted)."""

    def __init__(self, sim, params):
        super().__init__(sim, {**params, "guest": "guest1", "attack": "none", "peer": "",
                               "peer_images": {}, "exec_later": [], "deep_quote": False,
                               "boot": "pv-grub", "export": ""})
        self.said = 0

    def say(self, text):
        self.said += 1
        if self.said <= _SENTENCES:
            super().say(text)


def _guest(story, name, params, tally):
    """SimPy process: one guest's life after the host is up."""
    side = attestation.GuestSide(story.sim, story.host, name)
    if side.kernel is None:
        tally["not_booted"] += 1
        return
    tally["booted"] += 1
    boot = getattr(side.kernel, "boot_measurement", None)
    if boot is not None and boot.measured:
        tally["measured"] += 1
    problem = yield from side.start(story.programs)
    if problem:
        tally["errors"].append(f"{name}: {problem}")
        return
    start = story.env.now
    if not (yield from story.provision_and_enrol(side, name)):
        return
    tally["enrolled"] += 1
    tally["enrol_s"].append(story.env.now - start)
    dom = {side.kernel.domid}
    tally["windows"]["enrol_ms"].append((start, story.env.now, dom))
    for number in range(1, params["rounds"] + 1):
        if number > 1:
            yield story.env.timeout(params["interval"])
        start = story.env.now
        yield from story.attest(number, side=side)
        tally["attest_s"].append(story.env.now - start)
        tally["windows"]["attest_ms"].append((start, story.env.now, dom))
        tally["trusted" if story.verdict.passed else "untrusted"] += 1


def prepare(sim, params):
    """Every check before the run (``simxen validate`` runs it too): the files
    the story reads (images, programs, policy), and the host's configs and
    domain names as dom0's toolstack will take them. Returns ``(story, spec)``."""
    from simxen.domains.stack import check_spec
    story = FleetStory(sim, params)
    names = [f"guest{i}" for i in range(1, params["guest_count"] + 1)]
    where = f"workload.{params['name']}"
    keys = ([f"{where} (its vTPM manager)"] + [f"{where}.guest_count ({n}'s vTPM)" for n in names]
            + [f"{where}.guest_count ({n})" for n in names])
    spec = attestation.host_spec([(n, story.images) for n in names],
                                 manager_options={"evtchn_abi": params["manager_evtchn_abi"]},
                                 sources=[f"{sim.scenario.path}: {k}" for k in keys])
    for cfg, key in zip(check_spec(spec), keys):
        sim.claim_domain(cfg.name, key)
    # the hypervisor's 2-level limit, set before anything -- the run, or simxen serve's
    # boot of the same host -- allocates a port
    sim.hv.evtchn.nr_channels = params["evtchn_2l_ports"]
    return story, spec


def serve_host_spec(sim, params):
    """The host ``simxen serve`` builds for this workload: the fleet's manager, vTPMs and
    guests, each guest booted through pv-grub (its PCRs 4 and 5 hold its boot), without
    the verifier's enrolment and rounds -- the tools are the ones talking to a guest's vTPM."""
    return (sim.prepared.get(params["name"]) or prepare(sim, params))[1]


def run(sim, params):
    """SimPy process: build the fleet's host, run every guest, gather results."""
    from simxen.domains.stack import build_host
    hv, env = sim.hv, sim.env
    story, spec = sim.prepared.get(params["name"]) or prepare(sim, params)
    names = [f"guest{i}" for i in range(1, params["guest_count"] + 1)]
    story.host = host = build_host(hv, spec)
    sim.progress[params["name"]] = host.boot_progress
    yield host.ready
    boot_seconds = env.now
    tally = {"booted": 0, "not_booted": 0, "measured": 0, "enrolled": 0, "trusted": 0, "untrusted": 0,
             "errors": [], "enrol_s": [], "attest_s": [],
             "windows": {"enrol_ms": [], "attest_ms": []}}
    yield env.all_of([env.process(_guest(story, n, params, tally)) for n in names])
    return _results(hv, host, params, tally, boot_seconds)


def _results(hv, host, params, tally, boot_seconds):
    from simxen.analysis.hops import percentiles
    mgr = host.vtpmmgr.dom
    abis = {EVTCHN_ABI_2L: 0, EVTCHN_ABI_FIFO: 0}
    for dom in hv.domains.values():
        abi = hv.evtchn.abi(dom)
        abis[abi] = abis.get(abi, 0) + 1
    refused = _manager_refusals(hv, host)
    return {
        "guests": params["guest_count"],
        "booted": tally["booted"],
        "measured": tally["measured"],
        "enrolled": tally["enrolled"],
        "attestations": tally["trusted"] + tally["untrusted"],
        "trusted": tally["trusted"],
        "untrusted": tally["untrusted"],
        "all_enrolled": tally["enrolled"] == params["guest_count"],
        "all_trusted": tally["trusted"] == params["guest_count"] * params["rounds"],
        "boot_seconds": boot_seconds,
        "vtpms_without_manager": hv.trace.count("vtpm.no_manager"),
        "manager_evtchn_abi": hv.evtchn.abi(mgr),
        "manager_ports": len(mgr.ports),
        "manager_port_limit": hv.evtchn.limit(mgr) - 1,     # port 0 is never handed out
        "manager_refusals": len(refused),
        "manager_error": refused[0] if refused else "",
        "evtchn_abis": abis,
        "guest_errors": tally["errors"][:_SENTENCES],
        "guests_failed_by_tpm": len(tally["errors"]),
        "enrol_ms": {k: v if k == "count" else v * 1e3
                     for k, v in percentiles(tally["enrol_s"]).items()},
        "attest_ms": {k: v if k == "count" else v * 1e3
                      for k, v in percentiles(tally["attest_s"]).items()},
        "unverified_share": _unverified(hv, host, tally["windows"]),
    }


def _unverified(hv, host, windows):
    """``{"enrol_ms" | "attest_ms": share from U figures}`` of every guest's enrolments and
    rounds together (simxen.scenario.estimates); ``None`` when the trace level kept no
    command records (the report says so: :func:`simxen.scenario.estimates.unknown`)."""
    from simxen.scenario import estimates
    from simxen.scenario.runner import END_OF_RUN_GC, fewer_collections
    # what the pass builds (a request per command: a million at 10,000 guests) stays alive
    # until it returns, so a collection would walk it -- or the whole fleet's heap -- to
    # free nothing
    with fewer_collections(END_OF_RUN_GC):
        attr = estimates.attribution(hv, host)
        if attr is None:
            return None
        shares = {name: attr.windows(spans) for name, spans in windows.items()}
        del attr            # freed now, not walked by the first collection after the pass
    return {name: v for name, v in shares.items() if v is not None}


def _manager_refusals(hv, host):
    """The ``error`` nodes the manager's backend wrote for connections it refused."""
    from simxen.protocols.xenbus import backend_path
    mgr = host.vtpmmgr.dom
    out = []
    for kernel in host.kernels("vtpm"):
        path = backend_path(mgr.domid, "vtpm", kernel.dom.domid, 0) + "/error"
        if hv.xs.exists(hv.dom0, path):
            out.append(hv.xs.read(hv.dom0, path))
    return out


def metrics(params):
    """The results a fleet run publishes (see :mod:`simxen.scenario.metrics`)."""
    from simxen.scenario.metrics import Metrics
    m = Metrics()
    m.add("guests", "count", "guests on the host")
    m.add("booted", "count", "guests running Linux after pv-grub")
    m.add("measured", "count", "guests whose boot pv-grub measured into their vTPM")
    m.add("enrolled", "count", "guests whose AK the verifier enrolled")
    m.add("attestations", "count", "attestation rounds judged")
    m.add("trusted", "count", "rounds judged trusted")
    m.add("untrusted", "count", "rounds judged untrusted")
    m.flag("all_enrolled", "the verifier enrolled every guest")
    m.flag("all_trusted", "every round of every guest was trusted")
    m.add("boot_seconds", "s", "simulated time until every domain of the host was up")
    m.add("vtpms_without_manager", "count", "vTPMs that could not connect to the manager")
    m.text("manager_evtchn_abi", "the manager's event-channel ABI (2-level or fifo)")
    m.add("manager_ports", "count", "event-channel ports the manager holds")
    m.add("manager_port_limit", "count", "ports the manager's ABI allows")
    m.add("manager_refusals", "count", "vTPM connections the manager's backend refused")
    m.text("manager_error", "the first refused connection's error ('' if none)")
    for abi in (EVTCHN_ABI_2L, EVTCHN_ABI_FIFO):
        m.add(f"evtchn_abis.{abi}", "count", f"domains on the {abi} event-channel ABI")
    m.add("guests_failed_by_tpm", "count", "guests whose TPM failed them after boot")
    m.stats("enrol_ms", "ms", "enrolment of one guest (simulated)")
    m.stats("attest_ms", "ms", "one attestation round (simulated)")
    from simxen.scenario.estimates import DOC
    m.add("unverified_share.enrol_ms", "fraction", f"enrol_ms, every guest's: {DOC}")
    m.add("unverified_share.attest_ms", "fraction", f"attest_ms, every round's: {DOC}")
    return m


def report(rep, result, params):
    n, rounds = result["guests"], params["rounds"]
    measured = result["measured"]
    how = ("(kernel, command line and initrd measured into its vTPM)" if measured == n else
           f"({measured:,} of them measured -- kernel, command line and initrd -- into their "
           f"vTPM; {n - measured:,} booted unmeasured, no vTPM answering pv-grub)")
    rep.say(f"The host booted with the vTPM manager, {n} vTPM stub domains and {n} guests, each "
            f"booted through pv-grub {how}; "
            f"everything was up after {result['boot_seconds']:.3f} simulated seconds. "
            f"{result['booted']} guests run Linux; the verifier enrolled {result['enrolled']} "
            f"and judged {result['attestations']} rounds ({rounds} per guest): "
            f"{result['trusted']} trusted, {result['untrusted']} untrusted.")
    rep.say(f"The manager used the {result['manager_evtchn_abi']} event-channel ABI: "
            f"{result['manager_ports']:,} of its {result['manager_port_limit']:,} ports in use.")
    if result["manager_refusals"]:
        rep.say(f"The manager refused {result['manager_refusals']:,} vTPM connection(s): "
                f"{result['manager_error']}. Those vTPMs run without a manager "
                f"({result['vtpms_without_manager']:,}): nothing they hold survives a restart.")
    for line in result["guest_errors"]:
        rep.say(f"A guest's TPM failed it: {line}.")
    s = rep.section(f"Fleet ({params['name']})")
    s.row("guests", n)
    s.row("enrolled", result["enrolled"])
    s.row("rounds judged", result["attestations"])
    s.row("trusted / untrusted", f"{result['trusted']:,} / {result['untrusted']:,}")
    from simxen.scenario import estimates
    shares = result.get("unverified_share", {})
    if shares is None:
        estimates.unknown(rep)
        shares = {}
    s.row("enrolment p50 (simulated)", result["enrol_ms"].get("p50", 0.0),
          "ms" + estimates.tag(shares.get("enrol_ms")))
    s.row("attestation round p50 (simulated)", result["attest_ms"].get("p50", 0.0),
          "ms" + estimates.tag(shares.get("attest_ms")))
    s.row("manager event-channel ABI", result["manager_evtchn_abi"])
    s.row("manager ports in use / limit",
          f"{result['manager_ports']:,} / {result['manager_port_limit']:,}")
    s.row("domains per ABI", ", ".join(f"{abi}: {k}" for abi, k in result["evtchn_abis"].items() if k))
    estimates.explain(rep, shares.values())

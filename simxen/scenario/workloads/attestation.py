"""``type = "attestation"``: boot a guest through pv-grub, then let a remote verifier judge it.

The workload builds one host with the seed's stack (:mod:`simxen.domains.stack`):
the vTPM manager, a vTPM stub domain per guest, and the guests -- booted by
pv-grub (``boot = "pv-grub"``: kernel -> PCR 4, command line and initrd ->
PCR 5, an event log) or directly by dom0's domain builder (``boot =
"direct"``: nothing measured). In each guest, IMA measures every program it
runs into PCR 10, and an attestation agent talks to the guest's vTPM.

Then the story a verifier lives through:

1. **provisioning** -- the agent creates the vTPM's EK and an AK; the
   verifier records the EK (what an operator exports when the vTPM is made);
2. **enrolment** -- MakeCredential in the verifier, ActivateCredential in
   the vTPM, over a network :class:`~simxen.domains.verifier.Link`;
3. **rounds** of attestation -- nonce, quote of the policy's PCRs, event log
   and IMA list, appraisal against the golden policy, a verdict with reasons.

An ``attack`` changes one thing along the way (see :data:`ATTACKS`).

Results (for ``[[expect]]``, as ``<name>.<key>``): ``verdict`` ("trusted" /
``"untrusted"``, of the last round), ``failed_checks`` (comma-separated check
names), ``first_reason``, ``reasons``, ``enrolled`` (bool), ``round.<n>.*``
(the same per round, from 1), ``pvgrub_measured``, ``pvgrub_extends``,
``eventlog_replays_to_vtpm`` (the log replays to the PCR 4/5 the vTPM reports
through TPM2_PCR_Read), ``pcr4``/``pcr5`` (hex, SHA-256), ``ima_entries``,
``attest_ms`` (challenge to verdict, simulated), ``enrol_ms``, ``host`` (the deep
quote's verdict on the host: "trusted", "untrusted" or "not asked"),
``dom0_tpm_access`` (errno name, dom0-touches-tpm), ``vtpm_restore``
(the vTPM's restore status after a restart), ``manager_storage`` ("open" /
"refused" after a host reboot), ``reenrolment`` ("accepted"/"refused"/"not
tried"), ``boot_count`` (the guest's NV boot counter), ``link_messages``.
"""

from __future__ import annotations

from simxen.errors import InputError
from simxen.protocols.vtpmmgr import VTPM_QUOTE_FLAGS_HASH_UUID
from simxen.scenario.schema import Field, Table

DOMAIN_KEYS = ()

#: attack -> what it does (the report quotes this)
ATTACKS = {
    "none": "none staged by the workload: the host and the guest run as the scenario "
            "configures them",
    "replay": "the guest's agent answers round 2 with the evidence it sent in round 1",
    "relay": "the attested guest forwards each nonce to the agent of another guest (the "
             "'peer') and returns that guest's quote and logs as its own",
    "vtpm-rollback": "after round 1 the guest reboots (with its vTPM); then dom0 copies back "
                     "the vTPM's disk image of the first boot and restarts vTPM and guest",
    "host-tampered": "after round 1, the host reboots with a modified xen.gz "
                     "(host_tamper.component / host_tamper.data)",
    "dom0-touches-tpm": "before round 1, dom0 tries to map the TPM's TIS window itself",
}

#: Most rounds a run takes: each round publishes its own results (round.N.*), so
#: a count beyond any run's reach would make the metric list itself endless.
MAX_ROUNDS = 10_000


def _check_rounds(n):
    return None if n <= MAX_ROUNDS else (
        f"expected at most {MAX_ROUNDS:,} rounds (each publishes its own round.N results), "
        f"found {n:,}")


SCHEMA = Table("workload", "a guest is booted (pv-grub or direct), enrolled and attested by a "
               "remote verifier against a golden policy", [
    Field("type", str, "workload type", choices=["attestation"]),
    Field("name", str, "name of the results in [[expect]] metrics", default="attest"),
    Field("guest", str, "name of the attested guest domain", default="guest1"),
    Field("boot", str, "how the guest boots: through pv-grub (measured) or a kernel given "
          "directly by dom0 (unmeasured)", default="pv-grub", choices=["pv-grub", "direct"]),
    Field("images", dict, "what the guest boots: kernel, initrd (tables: name+version or file, "
          "optional size, flip_byte), cmdline, kernel_path"),
    Field("policy", str, "the verifier's golden policy (TOML), relative to the scenario"),
    Field("exec", list, "programs the guest runs after boot, in order: tables "
          "{path, version} (content generated) -- IMA measures each", default=[], items=dict),
    Field("exec_later", list, "programs the guest runs after round 1 (same shape)",
          default=[], items=dict),
    Field("deep_quote", bool, "also ask for a deep quote (the manager's physical-TPM quote over "
          "the host PCRs, bound to the vTPM quote) and judge the host against the policy's "
          "[host.pcrs]", default=False),
    Field("manager_storage", str, "the vTPM manager's store: 'xen' (Xen's TPM 2.0 manager: vTPM "
          "keys in memory only, lost at a manager restart or host reboot) or 'sealed' (simxen's: "
          "written and sealed to the host's boot)", default="xen", choices=["xen", "sealed"]),
    Field("manager_keys", str, "keys the manager creates at boot: 'rsa' (Xen's RSA-2048 SRK and "
          "storage key) or 'ecc' (P-256)", default="rsa", choices=["rsa", "ecc"]),
    Field("rounds", int, "attestation rounds", default=1, minimum=1, check=_check_rounds),
    Field("interval", float, "simulated seconds between rounds", default=1.0, minimum=0),
    Field("attack", str, "what goes wrong (see docs/attestation.rst)", default="none",
          choices=list(ATTACKS)),
    Field("export", str, "a folder to write the last round's evidence to (ak.pem, quote.msg, "
          "quote.sig, quote.pcrs, the logs, the vTPM's PCR banks), for tpm2_checkquote and evmctl",
          default=""),
    Field("rollback_manager", bool, "vtpm-rollback: roll the manager's disk image back too",
          default=False),
    Field("peer", str, "relay: the other guest whose quotes are relayed", default="guest2"),
    Field("peer_images", dict, "relay: what the peer boots (default: images)", default={}),
    Field("host_tamper", dict, "host-tampered: {component, data} of the host boot replaced "
          "at the reboot", default={"component": "xen", "data": "xen.gz 4.19.0 + rootkit"}),
])


# --------------------------------------------------------------- helpers
def _images(sim, params, key):
    from simxen.domains.images import guest_images
    return guest_images(params[key], base=sim.scenario.folder, path=sim.scenario.path,
                        key=f"workload.{params['name']}.{key}")


def _programs(sim, params, key):
    from simxen.domains.images import file_bytes
    out = []
    for i, spec in enumerate(params[key]):
        where = f"workload.{params['name']}.{key}[{i}]"
        path, version = spec.get("path"), spec.get("version")
        if not isinstance(path, str) or not path.startswith("/"):
            raise InputError("expected path = an absolute path", path=sim.scenario.path,
                             key=f"{where}.path")
        if not isinstance(version, str):
            raise InputError("expected version = a string", path=sim.scenario.path,
                             key=f"{where}.version")
        extra = sorted(set(spec) - {"path", "version"})
        if extra:
            raise InputError("unknown key (expected path, version)", path=sim.scenario.path,
                             key=f"{where}.{extra[0]}")
        out.append((path, file_bytes(path, version)))
    return out


def _policy(sim, params):
    from simxen.domains.policy import load
    where = sim.scenario.resolve(params["policy"])
    if not where.exists():
        raise InputError(f"no policy file {where}", path=sim.scenario.path,
                         key=f"workload.{params['name']}.policy")
    if where.is_dir():          # '' or '.' is the scenario's own folder
        raise InputError(f"{where} is a folder; expected the verifier's policy file (.toml)",
                         path=sim.scenario.path, key=f"workload.{params['name']}.policy")
    return load(where)


def _host_spec(params, images, peer_images, boot=None, previous=None, scenario=None):
    sources = ([f"{scenario.path}: {key}" for key in _config_keys(params)]
               if scenario is not None else None)
    return host_spec(list(zip(_guests(params), (images, peer_images))),
                     pvgrub=params["boot"] == "pv-grub", boot=boot, previous=previous,
                     manager_options={"storage": params["manager_storage"],
                                      "boot_keys": params["manager_keys"]},
                     sources=sources)


def host_spec(guests, *, pvgrub=True, boot=None, previous=None, manager_options=None,
              sources=None):
    """The host of an attestation story: the manager, then a vTPM per guest, then the
    guests. ``guests`` is a list of ``(name, GuestImages)``; with ``pvgrub`` each guest's
    kernel is pv-grub, which loads those images from the guest's disk. ``sources``
    names each config in error messages (:attr:`HostSpec.sources`)."""
    from simxen.domains.host_boot import DEFAULT_BOOT
    from simxen.domains.pvgrub import PVGRUB_IMAGE, PvGrub
    from simxen.domains.stack import HostSpec, guest_config, vtpm_config, vtpmmgr_config
    configs = [vtpmmgr_config()]
    for i, (g, _) in enumerate(guests):
        configs.append(vtpm_config(f"vtpm-{g}", f"ac0a5b9e-cbe2-4c07-b43b-{0x1d69e46fb839 + i:012x}"))
    options = {"vtpmmgr": dict(manager_options)} if manager_options else {}
    for g, imgs in guests:
        kernel = f"/usr/lib/xen/boot/{PVGRUB_IMAGE}" if pvgrub else imgs.kernel_path
        configs.append(guest_config(g, kernel=kernel))
        if pvgrub:                                 # what pv-grub loads from the guest's disk
            options[g] = {"images": imgs}
    return HostSpec(configs=configs, boot=boot or DEFAULT_BOOT, options=options,
                    kernels={PVGRUB_IMAGE: PvGrub}, previous=previous, sources=sources)


def serve_host_spec(sim, params):
    """The host ``simxen serve`` builds for this workload: the same manager, vTPMs and
    (pv-grub-booted) guests as a run, without the verifier's script -- the tools are the
    ones talking to the guest's vTPM, after pv-grub has measured its boot."""
    story = Story(sim, params)
    return _host_spec(params, story.images, story.peer_images, scenario=sim.scenario)


def _guests(params):
    """The guests this workload creates: the attested one, and the relay's peer."""
    return [params["guest"]] + ([params["peer"]] if params["attack"] == "relay" else [])


def _config_keys(params):
    """The scenario key behind each xl config of the host, in creation order."""
    where = f"workload.{params['name']}"
    keys = ["guest", "peer"][:len(_guests(params))]
    return ([f"{where} (its vTPM manager)"] + [f"{where}.{k} (its vTPM)" for k in keys]
            + [f"{where}.{k}" for k in keys])


def export_folder(sim, params):
    """The ``export`` folder (relative to the scenario), checked writable before the run."""
    import os
    folder = sim.scenario.resolve(params["export"])
    key = f"workload.{params['name']}.export"
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder} is a file; expected a folder (it is created if missing)",
                         path=sim.scenario.path, key=key)
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"cannot create or write {folder} ({existing} is not a writable folder)",
                         path=sim.scenario.path, key=key)
    return folder


def prepare(sim, params):
    """Every check before the run (``simxen validate`` runs it too); the :class:`Story`.

    The names of the guests, the attack's parameters, the export folder,
    every file the story reads (images, programs, the policy) -- read here,
    once -- and the host's xl configs as dom0's toolstack will take them.
    """
    from simxen.domains.host_boot import DEFAULT_BOOT
    from simxen.domains.stack import check_spec
    from simxen.domains.xl_config import name_problem
    where, path = f"workload.{params['name']}", sim.scenario.path
    for key in ("guest", "peer")[:len(_guests(params))]:
        problem = name_problem(params[key]) or name_problem(f"vtpm-{params[key]}")
        if problem:
            raise InputError(problem, path=path, key=f"{where}.{key}")
    if params["attack"] == "relay" and params["peer"] == params["guest"]:
        raise InputError("the peer must be another guest than the attested one",
                         path=path, key=f"{where}.peer")
    if params["attack"] == "host-tampered":
        tamper = params["host_tamper"]
        component, data = tamper.get("component"), tamper.get("data")
        if set(tamper) != {"component", "data"} or not isinstance(component, str) \
                or not isinstance(data, str):
            raise InputError("expected {component = '<name>', data = '<text>'}", path=path,
                             key=f"{where}.host_tamper")
        components = [m.component for m in DEFAULT_BOOT]
        if component not in components:
            raise InputError(f"no component {component!r} in the host's boot (expected one of "
                             f"{', '.join(map(repr, components))})", path=path,
                             key=f"{where}.host_tamper.component")
    if params["export"]:
        export_folder(sim, params)
    story = Story(sim, params)
    spec = _host_spec(params, story.images, story.peer_images, scenario=sim.scenario)
    for cfg, key in zip(check_spec(spec), _config_keys(params)):
        sim.claim_domain(cfg.name, key)
    return story


#: Deep quotes carry SHA-256 of the asking vTPM's UUID, so the verifier can tell which vTPM asked.
DEEP_QUOTE_FLAGS = VTPM_QUOTE_FLAGS_HASH_UUID

#: The guest's boot counter: an NV counter index in the owner range (TPM_HT_NV_INDEX).
BOOT_COUNTER_INDEX = 0x01C10100


def count_boot(tpm):
    """Generator: the guest's boot-counter service (a monotonic NV counter that a
    systemd unit increments once per boot); returns the new count.

    NV_DefineSpace on first boot (TPM_RC_NV_DEFINED afterwards), then
    NV_Increment -- both change the vTPM's persistent state, so the vTPM
    saves itself and sends its new hash and key to the manager.
    """
    from simxen.tpm.constants import TPM_NT, TPMA_NV
    attrs = (TPMA_NV.AUTHWRITE | TPMA_NV.AUTHREAD | TPMA_NV.NO_DA
             | TPM_NT.COUNTER << TPMA_NV.TPM_NT_SHIFT)
    # already defined after the first boot (TPM_RC_NV_DEFINED): not checked, a
    # real failure shows at the increment
    yield from tpm.nv_define(BOOT_COUNTER_INDEX, 8, attributes=attrs, check=False)
    yield from tpm.nv_increment(BOOT_COUNTER_INDEX)
    count = yield from tpm.nv_read(BOOT_COUNTER_INDEX, 8, auth_handle=BOOT_COUNTER_INDEX)
    return int.from_bytes(count, "big")


def _no_tpm(command):
    """The transmit of a guest that never booted."""
    from simxen.domains.attestation_agent import AgentError
    raise AgentError("the guest is not running (pv-grub stopped its boot)")
    yield


def _no_device(error):
    """The transmit of a guest that runs Linux without a TPM: its tpmfront probe
    failed with *error* (a :class:`~simxen.drivers.tpmfront.TpmFrontError`), so every
    command fails as ``/dev/tpm0``'s absence would make it fail."""
    def transmit(command, **options):
        raise error.with_traceback(None)        # (each raise its own traceback, not a longer one)
        yield
    return transmit


class GuestSide:
    """What runs in one guest for the story: IMA and the agent."""

    def __init__(self, sim, host, name):
        from simxen.domains.attestation_agent import AttestationAgent
        from simxen.domains.ima import GuestIma
        kernel = host.toolstack.kernels.get(name)
        self.aborted = getattr(kernel, "aborted", None)
        self.kernel = kernel if self.aborted is None else None
        self.name = name
        self.boot_count = 0
        if self.kernel is None:          # pv-grub stopped the boot: no Linux, no agent
            self.ima = GuestIma(_no_tpm)
            self.agent = AttestationAgent(_no_tpm, sim.streams.random_bytes(f"{name}/agent"))
            self.event_log, self.boot = b"", getattr(kernel, "measurement", None)
            return
        tpm = self.kernel.tpm
        # no TPM (its backend never connected: tpmfront's probe failed): every command fails
        transmit = tpm.transmit if tpm is not None else _no_device(self.kernel.tpm_error)
        self.ima = GuestIma(transmit, trace=sim.trace, dom=self.kernel.dom)
        self.agent = AttestationAgent(transmit, sim.streams.random_bytes(f"{name}/agent"),
                                      name=f"{name}-agent")
        boot = getattr(self.kernel, "boot_measurement", None)
        self.event_log = boot.log_bytes if boot is not None and boot.measured else b""
        self.boot = boot

    def start(self, programs):
        """Generator: what the guest does after boot (IMA, boot counter, programs).
        Returns the error text if its TPM failed it, else ``None``."""
        from simxen.domains.ima import ImaError
        from simxen.drivers.tpmfront import DriverError
        from simxen.tpm.client import ResponseError
        if self.kernel is None:
            return None
        try:
            yield from self.ima.start()
            self.boot_count = yield from count_boot(self.kernel.tpm)
            yield from self.run(programs)
        except (ImaError, DriverError, ResponseError) as exc:
            return str(exc)
        return None

    def run(self, programs):
        for path, data in programs:
            yield from self.ima.exec_file(path, data)

    def evidence(self, nonce, request, host_pcrs=None):
        """Generator: the agent's evidence; with ``host_pcrs`` a deep quote of them too."""
        bank, pcrs = request
        deep = None
        if host_pcrs is not None:
            def deep(data, flags):
                return (yield from self.kernel.tpm.deep_quote(data, flags, host_pcrs))
        return (yield from self.agent.evidence(nonce, bank, pcrs, event_log=self.event_log,
                                               ima_list=self.ima.ascii_list(), deep_quote=deep,
                                               deep_quote_flags=DEEP_QUOTE_FLAGS))


class Story:
    """The run of one attestation workload (state shared by its steps)."""

    def __init__(self, sim, params):
        from simxen.domains.verifier import Link, Verifier
        self.sim = sim
        self.params = params
        self.env = sim.env
        if params["attack"] == "relay" and params["peer"] == params["guest"]:
            raise InputError("the peer must be another guest than the attested one",
                             path=sim.scenario.path, key=f"workload.{params['name']}.peer")
        self.images = _images(sim, params, "images")
        self.peer_images = (_images(sim, params, "peer_images") if params["peer_images"]
                            else self.images)
        self.programs = _programs(sim, params, "exec")
        self.later = _programs(sim, params, "exec_later")
        self.policy = _policy(sim, params)
        self.verifier = Verifier(self.policy, sim.streams.random_bytes(f"verifier/{params['name']}"))
        self.link = Link(sim.env, sim.profile, sim.streams.rng(f"net/{params['name']}"),
                         trace=sim.trace, name=f"verifier<->{params['guest']}")
        self.result = {"attack": params["attack"], "round": {}, "reenrolment": "not tried",
                       "dom0_tpm_access": "not tried", "vtpm_restore": "not restarted"}
        self.events = []          # (time, sentence) for the report
        #: ``{"enrol_ms" | "attest_ms": (start, end, guest domids)}`` of the first
        #: enrolment and round, for their estimate labels (simxen.scenario.estimates)
        self.windows = {}
        self.peer = None          # the relay attack's other guest (attach_guests)
        self.host = None
        self.last = None          # (nonce, evidence) of the latest round
        self.verdict = None       # the latest round's Verdict
        self.pcr_read_error = None  # why check_boot_log's TPM2_PCR_Read failed, if it did

    def say(self, text):
        self.events.append((self.env.now, text))

    # -- phases ----------------------------------------------------------
    def boot_host(self, hv=None, **spec):
        """Generator: build the host on ``hv`` (default the scenario's), wait for it."""
        from simxen.domains.stack import build_host
        self.host = build_host(hv or self.sim.hv,
                               _host_spec(self.params, self.images, self.peer_images,
                                          scenario=self.sim.scenario, **spec))
        yield self.host.ready
        if self.params["deep_quote"] and self.verifier.host_aik is None:
            from simxen.domains.ptpm_commands import PtpmError
            from simxen.drivers.tis import TisError
            try:
                self.verifier.host_aik = yield from self.host.host_aik()
            except (PtpmError, TisError) as exc:
                self.verifier.host_aik_error = str(exc)
                self.say("The host's administrator could not export the vTPM manager's "
                         f"attestation key ({exc}); the verifier has no key to check a "
                         "deep quote with.")
            else:
                self.say("The host's administrator exported the public area of the vTPM "
                         "manager's attestation key (a primary key of the physical TPM's "
                         "endorsement hierarchy); the verifier trusts deep quotes signed by it.")
        yield from self.attach_guests()

    def attach_guests(self):
        """Generator: start IMA and the agents in the (re)booted guests."""
        self.guest = GuestSide(self.sim, self.host, self.params["guest"])
        if self.guest.aborted:
            self.say(f"pv-grub stopped {self.params['guest']}'s boot: {self.guest.aborted}. "
                     "The domain runs no kernel.")
        self.peer = None
        if self.params["attack"] == "relay":
            self.peer = GuestSide(self.sim, self.host, self.params["peer"])
        for side in (self.guest, self.peer):
            problem = (yield from side.start(self.programs)) if side is not None else None
            if problem:
                self.say(f"{side.name}'s TPM failed it after boot: {problem}.")

    def vtpm_uuid(self, guest):
        """The UUID of ``guest``'s vTPM (its xl config's ``vtpm=[...uuid=...]``), 16 bytes."""
        import uuid as uuidlib
        cfg = self.host.toolstack.configs[f"vtpm-{guest}"]
        return uuidlib.UUID(cfg.vtpm[0].uuid).bytes

    def check_boot_log(self):
        """The event log replays to the PCR 4/5 the vTPM reports (TPM2_PCR_Read)."""
        from simxen.drivers.tpmfront import DriverError
        from simxen.protocols import tcg_eventlog as tl
        from simxen.tpm.client import ResponseError
        from simxen.tpm.constants import TPM_ALG
        if self.guest.kernel is None:
            self.result.update(eventlog_replays_to_vtpm=False, pcr4="", pcr5="",
                               pvgrub_measured=False, pvgrub_extends=0)
            return
        try:
            values = yield from self.guest.kernel.tpm.pcr_read([4, 5], alg=TPM_ALG.SHA256)
        except (DriverError, ResponseError) as exc:
            # the vTPM did not answer (a tpmfront ETIME, a TPM response code): nothing to replay against
            self.pcr_read_error = str(exc)
            self.say(f"{self.params['guest']}'s TPM2_PCR_Read of PCRs 4 and 5 failed "
                     f"({exc}): the event log cannot be replayed against them.")
            self.result.update(eventlog_replays_to_vtpm=False, pcr4="", pcr5="")
        else:
            events = tl.parse(self.guest.event_log)[1] if self.guest.event_log else []
            replayed = tl.replay(events, algorithms=["sha256"]).get("sha256", {})
            self.result["eventlog_replays_to_vtpm"] = all(
                replayed.get(p, bytes(32)) == values[p] for p in (4, 5))
            self.result["pcr4"], self.result["pcr5"] = values[4].hex(), values[5].hex()
        boot = self.guest.boot
        self.result["pvgrub_measured"] = bool(boot is not None and boot.measured)
        self.result["pvgrub_extends"] = boot.commands if boot is not None else 0

    def provision_and_enrol(self, side, agent_id):
        """Generator: EK/AK, record the EK, make/activate credential; True when trusted."""
        from simxen.domains.attestation_agent import AgentError
        from simxen.domains.verifier import EnrolmentRefused
        from simxen.drivers.tpmfront import DriverError
        start = self.env.now
        try:
            ek, ak = yield from side.agent.provision()
        except (AgentError, DriverError) as exc:
            self.say(f"{agent_id}'s agent could not create its keys: {exc}.")
            return False
        if agent_id not in self.verifier.known_eks:
            self.verifier.provision(agent_id, ek, vtpm_uuid=self.vtpm_uuid(agent_id))
        yield from self.link.send("ek+ak public", len(ek) + len(ak))
        try:
            blob, secret = self.verifier.enrol(agent_id, ek, ak)
        except EnrolmentRefused as exc:
            self.say(f"The verifier refused to enrol {exc}.")
            return False
        yield from self.link.send("credential", len(blob) + len(secret))
        try:
            answer = yield from side.agent.activate(blob, secret)
        except (AgentError, DriverError) as exc:
            self.say(f"{agent_id}'s vTPM did not release the credential: {exc}.")
            return False
        yield from self.link.send("activated secret", len(answer))
        ok = self.verifier.confirm(agent_id, answer)
        self.result.setdefault("enrol_ms", (self.env.now - start) * 1e3)
        self.windows.setdefault("enrol_ms", (start, self.env.now, _domids(side)))
        self.say(f"The verifier enrolled {agent_id}'s AK: TPM2_MakeCredential in software "
                 "against the EK recorded at provisioning, TPM2_ActivateCredential in the vTPM "
                 f"-- {'the secret came back, the AK is trusted' if ok else 'the wrong secret came back'}.")
        return ok

    def attest(self, number, answer=None, side=None):
        """Generator: one round; ``answer(nonce)`` replaces the honest agent's evidence.
        ``side`` is the attested :class:`GuestSide` (default: the story's guest)."""
        from simxen.domains.attestation_agent import AgentError, Evidence
        from simxen.drivers.tpmfront import DriverError
        from simxen.tpm.client import ResponseError
        v = self.verifier
        start = self.env.now
        nonce = v.nonce()
        yield from self.link.send("challenge", len(nonce) + 16)
        deep = self.params["deep_quote"]
        host_pcrs = sorted(self.policy.host_pcrs.get("sha256", range(10))) if deep else None
        try:
            if answer is None:
                evidence = yield from (side or self.guest).evidence(nonce, v.request, host_pcrs)
            else:
                evidence = yield from answer(nonce, host_pcrs)
        except (AgentError, DriverError, ResponseError) as exc:
            # no evidence at all: the verifier's answer is the same as for bad evidence
            evidence = Evidence(b"", b"", {}, b"", "")
            self.say(f"Round {number}: the agent could not produce evidence ({exc}).")
        yield from self.link.send("evidence", evidence.size())
        self.last = (nonce, evidence)
        agent = side.name if side is not None else self.params["guest"]
        verdict = v.appraise(agent, nonce, evidence, deep=deep,
                             deep_quote_flags=DEEP_QUOTE_FLAGS)
        host = ("not asked" if not deep else
                "untrusted" if any(r.check == "host" for r in verdict.reasons) else "trusted")
        self.result["round"][str(number)] = {**verdict.as_dict(), "host": host,
                                             "attest_ms": (self.env.now - start) * 1e3,
                                             # objects, not metrics: what simxen explain tells
                                             "appraisal": verdict, "evidence": evidence}
        self.result["host"] = host
        self.result.setdefault("attest_ms", (self.env.now - start) * 1e3)
        self.windows.setdefault("attest_ms", (start, self.env.now,
                                              _domids(side or self.guest, self.peer)))
        self.result.update(verdict.as_dict())
        self.say(_verdict_sentence(number, verdict))
        self.verdict = verdict
        self.sim.trace.emit("attest.verdict", self.env.now, None, agent=agent,
                            round=number, verdict=verdict.word, reasons=len(verdict.reasons),
                            failed=verdict.as_dict()["failed_checks"])
        return evidence


def _domids(*sides):
    """Domain ids of the guests (:class:`GuestSide`) that run a kernel."""
    return {s.kernel.domid for s in sides if s is not None and s.kernel is not None}


def unverified_shares(hv, host, windows):
    """``{name: share of it from U figures}`` of timed spans ``{name: (start, end, domids)}``
    (:meth:`simxen.analysis.certainty.Attribution.window`); ``None`` when the trace level
    kept no command records (the report says so: :func:`simxen.scenario.estimates.unknown`)."""
    from simxen.scenario import estimates
    attr = estimates.attribution(hv, host)
    if attr is None:
        return None
    shares = {name: attr.window(*w) for name, w in windows.items()}
    return {name: v for name, v in shares.items() if v is not None}


# --------------------------------------------------------------- attacks
def _relay(story):
    """The attested guest answers with its peer's evidence for the same nonce."""
    def answer(nonce, host_pcrs):
        story.say(f"{story.params['guest']}'s agent forwarded the verifier's nonce to "
                  f"{story.params['peer']}'s agent and sent back its quote, event log and IMA "
                  "list as its own.")
        return (yield from story.peer.evidence(nonce, story.verifier.request, host_pcrs))
    return answer


def _replay(story, old):
    """The agent answers with evidence it sent before."""
    def answer(nonce, host_pcrs):
        story.say(f"{story.params['guest']}'s agent answered the new nonce with the evidence it "
                  "had sent in round 1.")
        return old
        yield
    return answer


def _dom0_touches_tpm(story):
    from simxen.domains.vtpmmgr import TIS_BASE_MFN
    from simxen.xen.errors import XenError
    hv = story.sim.hv
    try:
        window = hv.iomem.map(hv.dom0, TIS_BASE_MFN, 5)
    except XenError as exc:
        refused = story.result["dom0_tpm_access"] = "-" + exc.code_name()
        story.say(f"dom0 tried to map the TPM's TIS window (0xfed40000, 5 pages) and Xen refused "
                  f"with {refused}: the window belongs to the vTPM manager alone.")
        return
    story.result["dom0_tpm_access"] = "mapped"
    story.say("dom0 mapped the TPM's TIS window: nothing stops it from driving the TPM "
              "behind the manager's back.")
    window.unmap()


def _vtpm_rollback(story, snapshot):
    """The guest reboots once (its vTPM restarted with it, as Xen requires for
    meaningful PCRs), then dom0 copies back the images of the first boot --
    the vTPM's, and with ``rollback_manager`` the manager's too -- and
    restarts what uses them. ``snapshot`` is ``{image path: bytes}``."""
    host = story.host
    guest = story.params["guest"]
    vtpm = f"vtpm-{guest}"
    yield from host.restart_vtpm(vtpm)
    yield from story.attach_guests()
    story.result["boot_count_before_rollback"] = story.guest.boot_count
    story.say(f"{guest} rebooted together with {vtpm} (its boot counter is now "
              f"{story.guest.boot_count}; the vTPM saved itself and gave the manager its new "
              "hash and key).")
    for path, data in snapshot.items():
        host.toolstack.image(path).restore(data)
    if len(snapshot) > 1:
        yield from host.restart_vtpmmgr()
    yield from host.restart_vtpm(vtpm)
    status = story.result["vtpm_restore"] = host.vtpm(vtpm).restore_status
    yield from story.attach_guests()
    copied = " and ".join(sorted(snapshot))
    if status == "rollback":
        story.say(f"Then dom0 copied back {copied} as it was after the first boot and restarted "
                  f"{vtpm} and {guest}: the manager's hash of the last save matched neither slot "
                  f"of the old image (restore status {status!r}), so the vTPM started as a blank "
                  f"TPM -- boot counter {story.guest.boot_count}, and a new endorsement key.")
    else:
        story.say(f"Then dom0 copied back {copied} as they were after the first boot and "
                  f"restarted the manager, {vtpm} and {guest}: the old manager image holds the "
                  "hash and key of the old vTPM image, so the vTPM restored it (status "
                  f"{status!r}): the boot counter reads {story.guest.boot_count} where it "
                  f"should read {story.result['boot_count_before_rollback'] + 1}, under the "
                  "same endorsement key. Nothing in the manager's TPM 2.0 storage (it has no "
                  "monotonic counter) can tell.")


def _host_reboot(story):
    """Power-cycle the host into a tampered boot; a new hypervisor, same simulated clock."""
    from simxen.domains.host_boot import boot_with
    from simxen.xen import Hypervisor
    tamper = story.params["host_tamper"]           # checked by prepare()
    component, data = tamper["component"], tamper["data"]
    old = story.host
    state = old.state()
    for kernel in old.kernels():
        kernel.halt()
    boot = boot_with(component, data.encode())
    hv = Hypervisor(env=story.env, profile=story.sim.profile, streams=story.sim.streams,
                    trace=story.sim.trace)
    changed = boot != old.spec.boot
    story.say((f"The host was rebooted with a different {component} ({data!r})" if changed else
               "The host was rebooted, with the same boot as before")
              + "; dom0's disk images and the physical TPM's persistent state survived the "
              "power cycle.")
    yield from story.boot_host(hv=hv, boot=boot, previous=state)
    mgr = story.host.vtpmmgr
    story.result["manager_storage"] = "open" if mgr.storage.is_open else "refused"
    vtpm = story.host.vtpm(f"vtpm-{story.params['guest']}")
    story.result["vtpm_restore"] = vtpm.restore_status
    if mgr.storage.is_open:
        story.say("The vTPM manager unsealed its key" + (" anyway: the change is outside the "
                  "PCRs it is sealed to." if changed else ", and the vTPM restored its state "
                  f"({vtpm.restore_status!r})."))
    else:
        after = ("started as a blank TPM with a new endorsement key" if vtpm.engine is not None
                 else "refuses to serve any command (restore_failure = halt)")
        story.say(f"The physical TPM refused to unseal the vTPM manager's key: the {component} "
                  "measurement changed the PCRs the key is sealed to. The manager came up but "
                  f"opens no vTPM's secrets, so {vtpm.name} could not restore its state (status "
                  f"{vtpm.restore_status!r}) and {after}.")


# --------------------------------------------------------------- metrics
def _verdict_metrics(m, prefix, what):
    m.text(f"{prefix}verdict", f"{what}: the verifier's word ('trusted' / 'untrusted')")
    m.flag(f"{prefix}passed", f"{what}: every check passed")
    m.add(f"{prefix}reasons", "count", f"{what}: checks that failed")
    m.text(f"{prefix}failed_checks", f"{what}: names of the failed checks, comma-separated")
    m.text(f"{prefix}first_reason", f"{what}: the first failed check, in words")
    m.text(f"{prefix}host", f"{what}: the deep quote's verdict on the host ('not asked' without)")
    m.add(f"{prefix}attest_ms", "ms", f"{what}: challenge to verdict, simulated")


def metrics(params):
    """What a run publishes (see :mod:`simxen.scenario.metrics`)."""
    from simxen.scenario.metrics import Metrics
    m = Metrics()
    m.text("attack", "the attack this run played")
    _verdict_metrics(m, "", "first round")
    for n in range(1, params["rounds"] + 1):
        _verdict_metrics(m, f"round.{n}.", f"round {n}")
    m.text("reenrolment", "after a reboot: 'accepted', 'refused' or 'not tried'")
    m.text("dom0_tpm_access", "dom0's own attempt at the TIS window ('-EPERM', 'mapped', 'not tried')")
    m.text("vtpm_restore", "the vTPM's restore status after a restart ('not restarted' without)")
    m.flag("eventlog_replays_to_vtpm", "replaying the boot event log gives the vTPM's PCR 4/5 "
           "(with no event log: PCR 4/5 read zero)")
    m.add("event_log_bytes", "bytes", "size of the boot event log pv-grub wrote (0: none)")
    m.text("modified_images", "the guest's images changed by flip_byte, in words ('' if none)")
    m.text("pcr4", "PCR 4 (SHA-256) of the guest's vTPM, hex")
    m.text("pcr5", "PCR 5 (SHA-256) of the guest's vTPM, hex")
    m.flag("pvgrub_measured", "pv-grub measured the kernel, command line and initrd")
    m.add("pvgrub_extends", "count", "TPM2_PCR_Extend commands pv-grub sent")
    m.add("enrol_ms", "ms", "enrolment at the verifier, simulated")
    from simxen.scenario.estimates import DOC
    m.add("unverified_share.enrol_ms", "fraction", f"enrol_ms: {DOC}")
    m.add("unverified_share.attest_ms", "fraction", f"attest_ms (the first round): {DOC}")
    m.flag("enrolled", "the verifier enrolled the guest's attestation key")
    m.add("ima_entries", "count", "entries in the guest's IMA measurement list")
    m.add("boot_count", "count", "times the guest booted")
    m.text("policy_name", "the golden policy's name")
    m.add("link_messages", "count", "messages between verifier and agent")
    if params["attack"] == "vtpm-rollback":
        m.add("boot_count_before_rollback", "count", "the guest's boot count before dom0 rolled "
              "its vTPM back")
    if params["attack"] == "host-tampered":
        m.text("manager_storage", "after the tampered reboot: 'open' or 'refused'")
    if params["export"]:
        m.text("exported", "the folder the last round's evidence was written to (when it had a quote)")
        m.text("checkquote", "the tpm2_checkquote command that verifies the exported quote")
        m.text("evmctl", "the evmctl ima_measurement command that replays the exported binary "
               "IMA list against the vTPM's PCR 10 (when the guest has a list)")
    return m


# --------------------------------------------------------------- run
def run(sim, params):
    """SimPy process: boot, provision, enrol, attest; then a results dict."""
    story = sim.prepared.get(params["name"]) or prepare(sim, params)
    attack = params["attack"]
    yield from story.boot_host()
    yield from story.check_boot_log()
    story.say(_boot_sentence(story))
    log_ok = story.result["eventlog_replays_to_vtpm"]
    story.result["event_log_bytes"] = len(story.guest.event_log)
    story.result["modified_images"] = ", ".join(
        f"{img.kind} has {img.source.rsplit(', ', 1)[1]}"
        for img in (story.images.kernel, story.images.initrd)
        if img is not None and "flipped" in img.source)
    if story.pcr_read_error is not None:
        pass                                      # check_boot_log said why there is no replay
    elif not story.guest.event_log:
        story.say("No boot loader wrote an event log; the vTPM reports PCRs 4 and 5 at zero "
                  "through TPM2_PCR_Read" + ("." if log_ok else " -- NOT: something extended them."))
    else:
        story.say("Replaying the event log gives the PCR 4/5 values the vTPM reports through "
                  "TPM2_PCR_Read" + ("." if log_ok else " -- NOT: the log and the vTPM disagree."))
    snapshot = {}
    if attack == "vtpm-rollback":                 # the copies dom0 keeps of the first boot
        names = [f"vtpm-{params['guest']}"] + (
            [story.host.vtpmmgr.name] if params["rollback_manager"] else [])
        for name in names:
            path = story.host.toolstack.configs[name].disk[0].target
            snapshot[path] = story.host.toolstack.image(path).snapshot()
    enrolled = yield from story.provision_and_enrol(story.guest, params["guest"])
    story.result["enrolled"] = enrolled
    if story.peer is not None:
        yield from story.provision_and_enrol(story.peer, params["peer"])
    if attack == "dom0-touches-tpm":
        _dom0_touches_tpm(story)
    first = None
    for number in range(1, params["rounds"] + 1):
        if number > 1:
            yield sim.env.timeout(params["interval"])
        if number == 2 and story.later and story.guest.kernel is not None:
            yield from story.guest.run(story.later)
            story.say("Before round 2 the guest ran " + ", ".join(p for p, _ in story.later) + ".")
        if number == 2 and attack in ("vtpm-rollback", "host-tampered"):
            if attack == "vtpm-rollback":
                yield from _vtpm_rollback(story, snapshot)
            else:
                yield from _host_reboot(story)
            ok = yield from story.provision_and_enrol(story.guest, params["guest"])
            story.result["reenrolment"] = "accepted" if ok else "refused"
        answer = None
        if attack == "relay":
            answer = _relay(story)
        elif attack == "replay" and number >= 2:
            answer = _replay(story, first)
        evidence = yield from story.attest(number, answer)
        first = first or evidence
    if params["export"]:
        _export(story)
    story.result["ima_entries"] = len(story.guest.ima.entries)
    story.result["boot_count"] = story.guest.boot_count
    story.result["events"] = story.events
    story.result["policy_name"] = story.policy.name
    story.result["policy"] = story.policy                  # objects for simxen explain
    story.result["event_log"] = story.guest.event_log
    story.result["link_messages"] = story.link.messages
    story.result["unverified_share"] = unverified_shares(sim.hv, story.host, story.windows)
    return story.result


def _export(story):
    """Write the last round's evidence where ``export`` says, and tell how to check it."""
    import shlex
    nonce, evidence = story.last
    ak = story.guest.agent.ak_public
    folder = export_folder(story.sim, story.params)
    if ak is None or not evidence.attest:
        story.say(f"Nothing was exported to {folder}: the last round produced no quote.")
        return
    try:
        files = evidence.export(folder, ak, pcr_banks=_vtpm_banks(story))
    except OSError as exc:
        raise InputError(f"cannot write the evidence: {exc.strerror}", path=story.sim.scenario.path,
                         key=f"workload.{story.params['name']}.export") from None
    story.result["exported"] = str(folder)
    # -e replays the boot log against *every* quoted PCR; IMA's PCR 10 is not in it
    replay = (f" -e {shlex.quote(str(files['binary_bios_measurements']))}"
              if evidence.event_log and not evidence.ima_list else "")
    story.result["checkquote"] = (
        f"tpm2_checkquote -u {shlex.quote(str(files['ak.pem']))} "
        f"-m {shlex.quote(str(files['quote.msg']))} -s {shlex.quote(str(files['quote.sig']))} "
        f"-f {shlex.quote(str(files['quote.pcrs']))} -g sha256 -q {nonce.hex()}{replay}")
    banks = [bank for bank in IMA_BANKS if f"pcrs.{bank}" in files]
    if banks and evidence.ima_list:
        story.result["evmctl"] = (
            "evmctl ima_measurement --ignore-violations "
            + " ".join(f"--pcrs {bank},{shlex.quote(str(files['pcrs.' + bank]))}" for bank in banks)
            + f" {shlex.quote(str(files['binary_runtime_measurements']))}")
    story.say(f"The last round's evidence is in {folder}, in tpm2-tools' and evmctl's formats; "
              "the command under 'Check it with tpm2-tools' below verifies its quote"
              + (", and the one under 'Check its IMA list with evmctl' replays the guest's "
                 "binary IMA list against its vTPM's PCR 10." if "evmctl" in story.result else "."))


#: The guest vTPM's banks exported for evmctl (those IMA extends: simxen.domains.ima.BANK_ALGS).
IMA_BANKS = ("sha1", "sha256")


def _vtpm_banks(story):
    """``{bank: {pcr: value}}`` of the guest's vTPM when the run ended, read from its
    state (no simulated command: what ``tpm2_pcrread`` in the guest would then print);
    ``None`` when the vTPM serves nothing (a failed restore that halts it)."""
    from simxen.domains.ima import BANK_ALGS
    from simxen.tpm.pcr import PCR_COUNT
    try:
        engine = story.host.vtpm(f"vtpm-{story.params['guest']}").engine
    except KeyError:
        return None
    if engine is None:
        return None
    return {bank: {i: engine.pcrs.read(BANK_ALGS[bank], i) for i in range(PCR_COUNT)}
            for bank in IMA_BANKS if BANK_ALGS[bank] in engine.pcrs.banks}


def _boot_sentence(story):
    g = story.params["guest"]
    imgs = story.images
    if story.result["pvgrub_measured"]:
        return (f"{g} booted through pv-grub, which measured its kernel ({imgs.kernel.source}) "
                f"into PCR 4, its command line {imgs.cmdline!r} and "
                f"{'its initrd (' + imgs.initrd.source + ')' if imgs.initrd else 'an empty initrd'} "
                "into PCR 5 -- one TPM2_PCR_Extend each, SHA-1 and SHA-256 banks -- then "
                "closed its tpmfront; the Linux kernel's xen-tpmfront reconnected to the same vTPM.")
    return (f"{g} was started with its kernel given directly by dom0 (no pv-grub): nothing "
            "measured its kernel, command line or initrd, so its vTPM's PCRs 4 and 5 are zero.")


# --------------------------------------------------------------- report
def _verdict_sentence(number, verdict):
    if verdict.passed:
        return f"Round {number}: trusted -- " + "; ".join(verdict.checks) + "."
    shown = " ".join(r.line()[:1].upper() + r.line()[1:] + "." for r in verdict.reasons[:4])
    more = len(verdict.reasons) - 4
    return f"Round {number}: untrusted. " + shown + (f" (And {more} more.)" if more > 0 else "")


def _changes(result):
    """What the guest's images changed from their generated content (flip_byte), as a sentence."""
    flipped = result.get("modified_images")
    return f" The scenario changed the guest's boot images: its {flipped}." if flipped else ""


def report(rep, result, params):
    rep.say(f"Attack: {ATTACKS[params['attack']]}." + _changes(result))
    for _, sentence in result.get("events", []):
        rep.say(sentence)
    s = rep.section(f"Attestation ({params['name']})")
    s.row("policy", result.get("policy_name", ""))
    s.row("boot", params["boot"])
    s.row("PCR 4 (sha256)", result.get("pcr4", "")[:32] + "...")
    s.row("PCR 5 (sha256)", result.get("pcr5", "")[:32] + "...")
    if result.get("event_log_bytes"):
        s.row("event log replays to the vTPM's PCR 4/5",
              "yes" if result.get("eventlog_replays_to_vtpm") else "no")
    else:
        s.row("event log", "none (no boot loader measured the guest); PCR 4/5 read zero: "
              + ("yes" if result.get("eventlog_replays_to_vtpm") else "NO"))
    s.row("IMA entries", result.get("ima_entries", 0))
    from simxen.scenario import estimates
    shares = result.get("unverified_share", {})
    if shares is None:
        estimates.unknown(rep)
        shares = {}
    if "enrol_ms" in result:
        s.row("enrolment (simulated)", result["enrol_ms"],
              "ms" + estimates.tag(shares.get("enrol_ms")))
    if "attest_ms" in result:
        s.row("first attestation round (simulated)", result["attest_ms"],
              "ms" + estimates.tag(shares.get("attest_ms")))
    s.row("verdict (last round)", result.get("verdict", "none"))
    if result.get("reasons"):
        s.row("failed checks", result["failed_checks"])
    if result.get("checkquote"):
        rep.section("Check it with tpm2-tools (one line)").row("", result["checkquote"])
    if result.get("evmctl"):
        rep.section("Check its IMA list with evmctl (one line)").row("", result["evmctl"])
    estimates.explain(rep, shares.values())

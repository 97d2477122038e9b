"""``type = "vtpm-stack"``: dom0 builds the vTPM stack from xl configs; guests use their TPMs.

The host boots (firmware, Xen and dom0 measured into the physical TPM's
PCRs), then dom0's toolstack runs ``xl create`` on each config in
``configs`` -- the manager first, then the vTPM stub domains, then the
guests, exactly as an administrator would -- and every guest with a vTPM
runs ``iterations`` rounds of ``commands`` through its xen-tpmfront. Each
command crosses every hop: guest tpmfront -> vTPM tpmback -> TPM engine ->
(state save: disk + manager round trip) -> back; passthrough and deep-quote
paths also reach the physical TPM through the manager's TIS driver.

The host set-up is reusable: leave ``configs`` out and list ``guests`` to
get the seed's stack for each (``vtpm-<guest>`` + ``<guest>``), or give
``guest_count = 64`` for guests ``guest1`` .. ``guest64``; give
``configs`` for any other layout (several guests per manager, a guest
whose vTPM is missing...). Nothing assumes one guest.

Commands (each one TPM command unless noted): ``pcr_extend`` (PCR ``pcr``),
``pcr_read``, ``get_random`` (32 bytes), ``nv_write`` (8 bytes to an index
defined once per guest: its define is the first save), ``nv_read``,
``quote`` (with an attestation key created once per guest).

Every command carries the locality byte ``locality`` (0, as Linux's
xen-tpmfront) in the shared page; ``guest_locality`` says what the vTPMs
make of it (:mod:`simxen.domains.vtpm`, "Locality").

Results (for ``[[expect]]``, as ``<name>.<key>``): ``commands_completed``,
``commands_failed``, ``failed.<command>`` (the report names each failure's
response code or errno), ``boot_seconds`` (until every kernel was ready),
``manager_status`` ("open" or "refused"), ``dom0_tis_error`` (the error
dom0 got probing the TIS window, e.g. ``"EPERM"``), ``saves``, ``manager_requests``,
``ptpm_commands``, ``latency_ms.<command>.{count,min,p50,p90,p95,p99,max,mean}``,
``hops_ms.<hop>.{...}`` for hops ``front_to_back``, ``vtpm``,
``manager``, ``ptpm``, ``back_to_front`` and ``total``, and ``ops.<kind>``
for the split-driver operation counts, the trace kind with ``_`` for ``.``
(``ops.evtchn_send``, ``ops.gnttab_map``, ``ops.xs``, ``ops.disk_write``...).
For throughput experiments: ``workload_seconds`` (first command submitted to
last completed), ``throughput_per_s``, per guest
``guest.<name>.{commands_completed,throughput_per_s,latency_ms.*}``, and at
the manager ``manager.{queue_mean,queue_max,wait_ms.*}`` -- the vTPMs'
requests waiting for the manager to take them (a time average over the
command phase, by Little's law). ``simxen metrics`` lists them all with units.
"""

from __future__ import annotations

import errno

from simxen.drivers.kernel_eras import check_era
from simxen.protocols.event_channel import DOMID_FIRST_RESERVED
from simxen.scenario.schema import Field, Table

#: Most guests a host holds: Xen's domain ids run from 0 (dom0) up to below
#: DOMID_FIRST_RESERVED (0x7FF0, xen/include/public/xen.h), and dom0 creates the
#: manager plus, for each guest, the guest and its vTPM stub domain.
MAX_GUESTS = (DOMID_FIRST_RESERVED - 2) // 2


def check_guest_count(n):
    """``guest_count``'s check: within Xen's domain ids (:data:`MAX_GUESTS`)."""
    if n > MAX_GUESTS:
        return (f"expected at most {MAX_GUESTS:,} guests (each guest and its vTPM take one of "
                f"Xen's {DOMID_FIRST_RESERVED:,} domain ids), found {n:,}")
    return None


def check_guest_names(names):
    """``guests``'s check: as many names as :func:`check_guest_count` allows."""
    return check_guest_count(len(names))

DOMAIN_KEYS = ()
COMMANDS = ("pcr_extend", "pcr_read", "get_random", "nv_write", "nv_read", "quote")
_NV_BASE = 0x01500000


def _check_commands(value):
    bad = [c for c in value if c not in COMMANDS]
    if bad:
        return f"unknown command(s) {bad}; expected some of {list(COMMANDS)}"
    return None


def _check_configs(value):
    from simxen.domains.xl_config import parse
    from simxen.errors import InputError
    for i, text in enumerate(value):
        try:
            parse(text, source=f"configs[{i}]")
        except InputError as err:
            return f"xl config: {err}"
    return None


def _check_boot(value):
    for i, m in enumerate(value):
        if set(m) != {"pcr", "component", "data"}:
            return f"boot[{i}]: expected exactly the keys pcr, component, data; found {sorted(m)}"
        if isinstance(m["pcr"], bool) or not isinstance(m["pcr"], int) or not 0 <= m["pcr"] <= 23:
            return f"boot[{i}].pcr: expected a PCR number 0..23, found {m['pcr']!r}"
        if not isinstance(m["component"], str) or not isinstance(m["data"], str):
            return f"boot[{i}]: component and data are strings"
    return None


def _check_guest_kernels(value):
    for name, era in value.items():
        problem = check_era(era)
        if problem:
            return f"{name}: {problem}"
    return None


def _check_hz(value):
    """0 (the profile's HZ) or an HZ a guest kernel can have: what an xl config's ``hz=``
    accepts (:data:`simxen.domains.stack.GUEST_OPTIONS`), said of this key."""
    from simxen.domains.stack import GUEST_OPTIONS
    return None if value == 0 else GUEST_OPTIONS["hz"](value)


#: How the manager chooses among ready vTPMs and when a vTPM saves its state:
#: the same keys for every workload that builds the vTPM stack (also ``load``).
SAVE_AND_SCHEDULE = [
    Field("policy", str, "the manager's choice among ready vTPMs", default="priority",
          choices=["priority", "fifo", "round-robin"]),
    Field("strong_persistence", bool, "vTPMs save their state after a changing command",
          default=True),
    Field("save_on", str, "'success' (save after every successful command, as Xen's vTPM: "
          "strong persistence in its TPM 1.2 emulator) or 'changed' (only after a command that "
          "changed persistent state)", default="success", choices=["success", "changed"]),
]


SCHEMA = Table("workload", "dom0 creates vtpmmgr, vTPMs and guests from xl configs; guests use their vTPMs", [
    Field("type", str, "workload type", choices=["vtpm-stack"]),
    Field("name", str, "name of the results in [[expect]] metrics", default="stack"),
    Field("configs", list, "xl config texts in creation order (manager, vTPMs, guests); "
          "empty = the seed's stack for each of `guests`", default=[], items=str,
          check=_check_configs),
    Field("boot", list, "host boot measurements, in order: tables {pcr, component, data} (data is "
          "measured as its UTF-8 bytes); empty = simxen.domains.host_boot.DEFAULT_BOOT",
          default=[], items=dict, check=_check_boot),
    Field("guests", list, "guest names, when `configs` is empty", default=["guest1"], items=str,
          check=check_guest_names),
    Field("guest_count", int, "instead of `guests`: this many guests, named guest1..guestN "
          "(with `configs` empty)", default=None, minimum=1, check=check_guest_count),
    Field("commands", list, "TPM commands each guest issues per iteration, in order",
          default=["pcr_extend", "pcr_read", "get_random"], items=str, check=_check_commands),
    Field("iterations", int, "rounds of `commands` per guest", default=20, minimum=1),
    Field("pcr", int, "PCR that pcr_extend / pcr_read / quote use (0..23)", default=16, minimum=0,
          check=lambda v: None if v <= 23 else f"a TPM has PCRs 0..23, found {v}"),
    *SAVE_AND_SCHEDULE,
    Field("manager_storage", str, "the vTPM manager's store: 'xen' (Xen's TPM 2.0 manager: vTPM "
          "keys in memory only, lost at a manager restart or host reboot) or 'sealed' (simxen's: "
          "written and sealed to the host's boot)", default="xen", choices=["xen", "sealed"]),
    Field("manager_keys", str, "keys the manager creates at boot: 'rsa' (Xen's RSA-2048 SRK and "
          "storage key) or 'ecc' (P-256)", default="rsa", choices=["rsa", "ecc"]),
    Field("kernel_era", str, "how every guest's xen-tpmfront waits for answers, by Linux era: "
          "'linux-6' (usleep_range 4.7-5.0 ms polls, v4.15 on), 'linux-4.4' (msleep(5) on the "
          "jiffy grid, see hz), 'linux-3.12' (interrupt); empty = the profile's tpmfront.kernel "
          "switch (linux-6 in the default profile)", default="",
          check=lambda v: None if v == "" else check_era(v)),
    Field("guest_kernels", dict, "per-guest kernel eras, {guest name = era}, over kernel_era",
          default={}, check=_check_guest_kernels),
    Field("hz", int, "the guests' HZ for the linux-4.4 era (0 = the profile's tpmfront.hz, 250)",
          default=0, minimum=0, check=_check_hz),
    Field("think_time", float, "simulated seconds a guest waits between commands",
          default=0.0, minimum=0),
    Field("locality", int, "the locality byte each guest's frontend stores with every command: "
          "0 as Linux's xen-tpmfront leaves it, or 1-4 as a guest that tries to reach the "
          "dynamic-launch PCRs (see guest_locality)", default=0, minimum=0,
          check=lambda v: None if v <= 4 else f"TPM localities are 0..4, found {v}"),
    Field("guest_locality", str, "what each vTPM makes of the locality byte its guest stores in "
          "the shared page: 'ignore' (Xen's vTPM: every command runs at locality 0) or 'honour' "
          "(a what-if: the command runs at the stored locality, so a guest may reach the "
          "dynamic-launch PCRs 17-22)", default="ignore", choices=["ignore", "honour"]),
    Field("dom0_probes_tpm", bool, "once the stack is up, dom0 loads a TIS driver and tries the "
          "TPM window (it must fail)", default=True),
])


def check(params):
    """Keys that only make sense together: ``(key, problem)`` or ``None``."""
    if params["guest_count"] is not None and params["configs"]:
        return ("guest_count", "give either `configs` (each guest written out) or "
                "`guest_count` (the seed's stack per guest), not both")
    if not params["configs"] and params["guest_count"] is None and not params["guests"]:
        # (the seed's stack of no guest: a manager serving nobody, whose run sends nothing)
        return ("guests", "expected at least one guest name (or `configs`, or `guest_count`)")
    return named_and_counted(params)


def named_and_counted(params):
    """``(key, problem)`` when a workload is given both ``guests`` (names) and
    ``guest_count``, else ``None`` (the load workload's check too)."""
    if params["guest_count"] is not None and params["guests"] != ["guest1"]:
        return ("guest_count", "give either `guests` (names) or `guest_count` (guest1..guestN), "
                "not both")
    return None


def counted_guests(params) -> list:
    """``guest1..guestN`` for ``guest_count = N``, else the names in ``guests``."""
    n = params["guest_count"]
    return list(params["guests"]) if n is None else [f"guest{i}" for i in range(1, n + 1)]


def _configs_spec(params):
    """The bare :class:`~simxen.domains.stack.HostSpec` of ``configs``: what
    :func:`~simxen.domains.stack.roles` reads each domain's role from (its ``kernel=``
    image as the toolstack picks the model), so this workload and the boot agree."""
    from simxen.domains.stack import HostSpec
    return HostSpec(configs=list(params["configs"]),
                    sources=[f"configs[{i}]" for i in range(len(params["configs"]))])


def guest_names(params) -> list:
    """The guests this workload drives, in creation order (what ``run`` reports as ``guests``)."""
    if params["configs"]:
        from simxen.domains.stack import vtpm_guests
        return vtpm_guests(_configs_spec(params))
    return counted_guests(params)


def domain_names(params) -> list:
    """Every domain dom0 creates for this workload, in creation order (for per-domain CPU metrics)."""
    if params["configs"]:
        from simxen.domains.xl_config import parse
        return [parse(t, source=f"configs[{i}]").name for i, t in enumerate(params["configs"])]
    guests = guest_names(params)
    return ["vtpmmgr"] + [f"vtpm-{g}" for g in guests] + guests


def metrics(params):
    """What a run publishes (see :mod:`simxen.scenario.metrics`)."""
    from simxen.analysis.hops import HOP_LABELS, HOPS
    from simxen.domains.stack import COUNTED
    from simxen.scenario.metrics import Metrics
    m = Metrics()
    m.add("commands_completed", "count", "TPM commands that came back with a success")
    m.add("commands_failed", "count", "TPM commands answered with an error (or lost)")
    m.add("boot_seconds", "s", "simulated time until every kernel was ready")
    m.text("manager_status", "'open' when the manager unsealed its key, else 'refused'")
    if params["dom0_probes_tpm"]:
        m.text("dom0_tis_error", "the errno name dom0 got mapping the TIS window ('none' = it could)")
    m.flag("hops_kept", "the trace level kept the TPM command records latencies are read from")
    m.add("saves", "count", "vTPM state saves (disk write + manager round trip)")
    m.add("manager_requests", "count", "requests the vTPM manager served (boot included)")
    m.add("ptpm_commands", "count", "commands the physical TPM ran (boot included)")
    m.add("workload_seconds", "s", "first guest command submitted to last one completed")
    m.add("throughput_per_s", "1/s", "completed commands per simulated second, all guests")
    for c in params["commands"]:
        m.add(f"failed.{c}", "count", f"{c} commands answered with an error or failed by the "
              "driver (the report names each response code or errno)")
    for c in params["commands"]:
        m.stats(f"latency_ms.{c}", "ms", f"{c} latency, submit to complete")
        for hop in HOPS:
            m.stats(f"hops_by_command_ms.{c}.{hop}", "ms", f"{c}: {HOP_LABELS[hop]} hop")
    for c in params["commands"]:
        m.add(f"unverified_share.{c}", "fraction", f"{c}: share of its mean latency that rests "
              "on profile figures marked U (assumed); above 0.2 the report calls it an estimate")
    for hop in HOPS:
        m.add(f"unverified_share_by_hop.{hop}", "fraction", f"every command: share of the "
              f"{HOP_LABELS[hop]} hop that rests on profile figures marked U (assumed)")
    for hop in HOPS:
        m.stats(f"hops_ms.{hop}", "ms", f"every command: {HOP_LABELS[hop]} hop")
    m.stats("hops_ms.total", "ms", "every command: total latency")
    for g in guest_names(params):
        m.add(f"guest.{g}.commands_completed", "count", f"{g}: commands that succeeded")
        m.add(f"guest.{g}.throughput_per_s", "1/s", f"{g}: completed commands per simulated second")
        m.stats(f"guest.{g}.latency_ms", "ms", f"{g}: command latency")
    m.add("manager.queue_mean", "requests", "vTPM requests waiting at the manager, time average "
          "over the command phase")
    m.add("manager.queue_max", "requests", "most vTPM requests waiting at the manager at once "
          "(command phase)")
    m.stats("manager.wait_ms", "ms", "a vTPM request's wait at the manager, submit to take "
            "(command phase)")
    for kind, label in COUNTED:
        m.add(f"ops.{kind.replace('.', '_')}", "count", f"{label} (whole run)")
    return m


def _manager_queue(table, manager_dom, start, end):
    """Waiting vTPM requests at the manager during ``[start, end]``: mean, max, waits (s),
    from the requests' :class:`~simxen.analysis.hops.RequestTable` (all rows at once)."""
    import numpy as np
    mine = ((table.back_dom == manager_dom) & ~np.isnan(table.take)
            & (table.submit >= start) & (table.submit <= end))
    submits, takes = table.submit[mine], table.take[mine]
    waits = takes - submits
    # the queue is deepest just after an arrival: arrivals so far less the requests taken
    # by then (a take at the very time of an arrival leaves first)
    submits.sort()
    takes.sort()
    waiting = np.arange(1, submits.size + 1) - np.searchsorted(takes, submits, side="right")
    deepest = int(waiting.max(initial=0))       # (0 for no arrivals)
    span = end - start
    return (sum(waits.tolist()) / span if span > 0 else 0.0), deepest, waits


def host_spec(sim, params):
    """The :class:`~simxen.domains.stack.HostSpec` this workload builds (``simxen serve`` uses it)."""
    from simxen.domains.host_boot import DEFAULT_BOOT, Measurement
    from simxen.domains.stack import HostSpec
    boot = tuple(Measurement(m["pcr"], m["component"], m["data"].encode())
                 for m in params["boot"]) or DEFAULT_BOOT
    vtpm_opts = {"strong_persistence": params["strong_persistence"], "save_on": params["save_on"],
                 "guest_locality": params["guest_locality"]}
    mgr_opts = {"policy": params["policy"], "storage": params["manager_storage"],
                "boot_keys": params["manager_keys"]}
    sources = [f"{sim.scenario.path}: {key}" for key in _config_keys(params)]
    if params["configs"]:
        from simxen.domains.stack import roles
        spec = HostSpec(configs=list(params["configs"]), boot=boot, sources=sources)
        role = roles(spec)          # each domain's role as the toolstack will boot it
        each = {"vtpm": vtpm_opts, "vtpmmgr": mgr_opts}
        spec.options = {name: dict(each[r]) for name, r in role.items() if r in each}
        guests = [n for n, r in role.items() if r == "guest"]
        _check_named_guests(sim, params, guests)
        spec.options.update(_guest_options(params, guests))
        return spec
    from simxen.domains.xl_config import name_problem
    from simxen.errors import InputError
    guests = guest_names(params)
    _check_named_guests(sim, params, guests)
    for g, key in zip(guests, _guest_keys(params)):
        problem = name_problem(g) or name_problem(f"vtpm-{g}")
        if problem:
            raise InputError(problem, path=sim.scenario.path, key=key)
    spec = HostSpec.standard(guests, boot=boot, sources=sources)
    spec.options = {"vtpmmgr": dict(mgr_opts),
                    **{f"vtpm-{g}": dict(vtpm_opts) for g in guests},
                    **_guest_options(params, guests)}
    return spec


def _check_named_guests(sim, params, guests):
    """A guest named in ``guest_kernels`` that the workload does not boot is a mistake
    (a misspelt name would otherwise leave the guest on the default era, silently)."""
    for name in params["guest_kernels"]:
        if name not in guests:
            from simxen.errors import InputError
            raise InputError(f"{name!r} is not a guest of this workload (its guests: "
                             f"{', '.join(guests) or 'none'})", path=sim.scenario.path,
                             key=f"workload.{params['name']}.guest_kernels.{name}")


def _guest_keys(params):
    """The scenario key behind each guest of the standard layout."""
    where = f"workload.{params['name']}"
    if params["guest_count"] is not None:
        return [f"{where}.guest_count (guest{i + 1})" for i in range(params["guest_count"])]
    return [f"{where}.guests[{i}]" for i in range(len(params["guests"]))]


def _config_keys(params):
    """The scenario key behind each config of the host (for error messages)."""
    where = f"workload.{params['name']}"
    if params["configs"]:
        return [f"{where}.configs[{i}]" for i in range(len(params["configs"]))]
    keys = _guest_keys(params)
    return [f"{where} (its vTPM manager)"] + [f"{k} (its vTPM)" for k in keys] + keys


def serve_host_spec(sim, params):
    """The host ``simxen serve`` builds for this workload: the spec :func:`prepare` made and
    checked (``simxen serve`` prepares first), not a second parse of every config."""
    return sim.prepared.get(params["name"]) or host_spec(sim, params)


def prepare(sim, params):
    """Every check before the run (``simxen validate`` runs it too): the host
    spec as dom0's toolstack will take it, and the names of the domains it
    creates against every other domain of the scenario. Returns the spec."""
    from simxen.domains.stack import check_spec
    spec = host_spec(sim, params)
    for cfg, key in zip(check_spec(spec), _config_keys(params)):
        sim.claim_domain(cfg.name, key)
    return spec


def _guest_options(params, guests):
    """``{guest: {kernel_era, hz}}`` for the guests the workload names an era or HZ for."""
    out = {}
    for g in guests:
        opts = {}
        era = params["guest_kernels"].get(g) or params["kernel_era"]
        if era:
            opts["kernel_era"] = era
        if params["hz"]:
            opts["hz"] = params["hz"]
        if opts:
            out[g] = opts
    return out


def _guest_loop(host, guest, index, params, log, failures):
    """One guest's commands; appends ``(command, flow, ok, guest)`` to *log* and counts
    each failure in *failures* by ``(command, why)``: the response code's name, or the
    driver's errno name."""
    tpm = guest.tpm
    tpm.locality = params["locality"]
    env = host.env
    nv = _NV_BASE + index
    ak = None
    if "nv_write" in params["commands"] or "nv_read" in params["commands"]:
        yield from tpm.nv_define(nv, 8)
    for i in range(params["iterations"]):
        for name in params["commands"]:
            ok = True
            try:
                if name == "pcr_extend":
                    yield from tpm.pcr_extend(params["pcr"], b"event %d" % i)
                elif name == "pcr_read":
                    yield from tpm.pcr_read([params["pcr"]])
                elif name == "get_random":
                    yield from tpm.get_random(32)
                elif name == "nv_write":
                    yield from tpm.nv_write(nv, b"%08d" % i)
                elif name == "nv_read":
                    yield from tpm.nv_read(nv, 8)
                else:
                    if ak is None:
                        ak, _ = yield from tpm.create_ak()
                    yield from tpm.quote(ak, b"nonce %d" % i, [params["pcr"]])
            except Exception as exc:            # a TPM or transport error is a result, not a crash
                from simxen.drivers.tpmfront import TpmFrontError
                from simxen.tpm.client import ResponseError
                from simxen.tpm.constants import rc_name
                if isinstance(exc, ResponseError):
                    failures[name, rc_name(exc.rc)] += 1
                elif isinstance(exc, TpmFrontError):
                    failures[name, errno.errorcode.get(-exc.errno, str(exc.errno))] += 1
                else:
                    raise
                ok = False
            log.append((name, tpm.last_flow, ok, guest.name))
            if params["think_time"]:
                yield env.timeout(params["think_time"])


def _dom0_probe(hv):
    """dom0 probing the TPM as a Linux tpm_tis driver would: the errno name it gets, or "none"."""
    from simxen.drivers.tis import TisDriver
    from simxen.xen.errors import XenError
    try:
        TisDriver(hv, hv.dom0, locality=0).open()
    except XenError as err:
        hv.trace.emit("dom0.tpm_probe", hv.dom0.now, 0, code=err.code, error=str(err))
        return err.code_name()
    return "none"


def _stats(values_s):
    """Percentiles of simulated seconds, in milliseconds (``count`` stays a count)."""
    from simxen.analysis.hops import percentiles
    return {k: v if k == "count" else v * 1e3 for k, v in percentiles(values_s).items()}


def _unverified(hv, host, table, executions, by_name, keys):
    """``({command: share of its latency resting on U figures}, {hop: share of that hop,
    every command together})`` (simxen.scenario.estimates), each command's hops charged
    under its own guest's kernel era; ``table`` is the trace's requests
    (:class:`simxen.analysis.hops.RequestTable`) and ``executions`` its execution records,
    ``by_name`` each command's positions in ``keys``, the ``(flow, domid)`` of the
    commands measured."""
    from simxen.scenario import estimates
    attr = estimates.attribution(hv, host, records=executions, requests=table)
    if attr is None:
        return {}, {}
    by_command = {name: attr.share(list(map(keys.__getitem__, at.tolist()))) or 0.0
                  for name, at in by_name.items()}
    by_hop = {hop: share for hop, share in attr.hop_shares().items() if share is not None}
    return by_command, by_hop


def _positions(keys) -> dict:
    """``{key: positions of it in keys}`` (numpy arrays), keys in order of first appearance
    (:func:`simxen.analysis.hops.groups`: one sort, not a pass over every key per guest)."""
    import numpy as np

    from simxen.analysis import hops
    column = np.empty(len(keys), dtype=object)
    column[:] = keys
    return dict(sorted(hops.groups(column), key=lambda group: group[1][0]))


def run(sim, params):
    """SimPy process: build the host, run every guest's loop, gather results."""
    from collections import Counter
    from itertools import compress

    import numpy as np

    from simxen.analysis import certainty, hops
    from simxen.domains.stack import build_host
    from simxen.scenario.runner import END_OF_RUN_GC, fewer_collections
    hv = sim.hv
    spec = sim.prepared.get(params["name"]) or host_spec(sim, params)
    host = build_host(hv, spec)
    sim.progress[params["name"]] = host.boot_progress
    yield host.ready
    boot_seconds = hv.env.now
    dom0_tis = _dom0_probe(hv) if params["dom0_probes_tpm"] else None
    guests = [k for k in host.kernels("guest") if k.tpm is not None]
    log = []
    failures = Counter()
    procs = [hv.env.process(_guest_loop(host, g, i, params, log, failures))
             for i, g in enumerate(guests)]
    start = hv.env.now
    yield hv.env.all_of(procs)
    end = hv.env.now
    span = end - start
    # (name, flow, ok, guest) of each command: by flow, its name and its guest (C loops)
    names, flow_ids, oks, owners = zip(*log) if log else ((),) * 4
    flows = dict(zip(flow_ids, names))
    owner = dict(zip(flow_ids, owners))
    with fewer_collections(END_OF_RUN_GC):     # all it builds stays alive till it ends
        # once: the commands' hops, the manager's queue and the certainty split, each over
        # every request at once (hops.RequestTable). One read of the trace, of the kinds
        # they read (9 of the 13 records a command keeps), streamed in the trace's order
        # (hops.Matching takes it as it is: no list of them, no sort); the matching keeps
        # the executions (1 a command) for the certainty split
        matching = hops.Matching(keep=certainty.EXECUTIONS)
        matching.add_all(hv.trace.iter_records(kinds=certainty.READS))
        table = matching.table()
        rows = table.commands()
        flow = list(map(table.flow.__getitem__, rows.tolist()))
        logged = np.fromiter(map(flows.__contains__, flow), bool, len(flow))
        rows, flow = rows[logged], list(compress(flow, logged))
        split = table.hops()
        hop = {name: split[name][rows] for name in hops.HOPS}
        total = table.complete[rows] - table.submit[rows]
        by_name = _positions(list(map(flows.__getitem__, flow)))
        theirs = _positions(list(map(owner.__getitem__, flow)))
        by_guest = {g.name: theirs.get(g.name, rows[:0]) for g in guests}
        done = {g.name: 0 for g in guests}
        done.update(Counter(compress(owners, oks)))     # each guest's commands that succeeded
        completed = sum(done.values())          # (every logged command is one guest's)
        queue_mean, queue_max, waits = _manager_queue(table, host.vtpmmgr.domid, start, end)
        keys = list(zip(flow, map(table.front.__getitem__, rows.tolist())))
        unverified, unverified_by_hop = _unverified(hv, host, table, matching.kept, by_name,
                                                    keys)
        hops.release(table.requests)    # freed now: the collection after the pass skips them
        del table
    result = {
        "host": host,
        "guests": [g.name for g in guests],
        "boot_seconds": boot_seconds,
        "manager_status": "open" if host.vtpmmgr.storage.is_open else "refused",
        "commands_completed": completed,
        "commands_failed": len(log) - completed,
        # ((command, why, count), ...): for the report, not a metric (failed.<command> is)
        "failures": tuple((name, why, n) for (name, why), n in sorted(failures.items())),
        "failed": {c: sum(n for (name, _), n in failures.items() if name == c)
                   for c in params["commands"]},
        "saves": sum(k.saves for k in host.kernels("vtpm")),
        "manager_requests": hv.trace.count("vtpmmgr.request"),
        "ptpm_commands": host.ptpm.commands,
        "latency_ms": {name: _stats(total[at]) for name, at in by_name.items()},
        "hops_ms": {**{name: _stats(hop[name]) for name in hops.HOPS}, "total": _stats(total)},
        "hops_by_command_ms": {name: {h: _stats(hop[h][at]) for h in hops.HOPS}
                               for name, at in by_name.items()},
        "unverified_share": unverified,
        "unverified_share_by_hop": unverified_by_hop,
        "dom0_tis_error": dom0_tis,
        "hops_kept": hv.trace.keeps("tpm.front.complete"),
        "ops": {kind.replace(".", "_"): n for kind, n in host.op_counts().items()},
        "workload_seconds": span,
        "throughput_per_s": completed / span if span > 0 else 0.0,
        "guest": {g: {"commands_completed": done[g],
                      "throughput_per_s": done[g] / span if span > 0 else 0.0,
                      "latency_ms": _stats(total[at])}
                  for g, at in by_guest.items()},
        "manager": {"queue_mean": queue_mean, "queue_max": queue_max, "wait_ms": _stats(waits)},
    }
    return result


def _failure_list(result):
    """`` (pcr_extend: 5 x TPM_RC_LOCALITY)``: what the failures were, or nothing."""
    failures = result.get("failures")
    if not failures:
        return ""
    return " (" + "; ".join(f"{name}: {n} x {why}" for name, why, n in failures) + ")"


def report(rep, result, params):
    from simxen.analysis import hops
    guests = result["guests"]
    rep.say(f"The host booted with its firmware, Xen and dom0 measured into the physical TPM; "
            f"dom0's toolstack created the vTPM manager (which took the TIS window and "
            f"{'unsealed' if result['manager_status'] == 'open' else 'could NOT unseal'} its key), "
            f"then the vTPM stub domains and {len(guests)} guest(s) ({', '.join(guests)}); "
            f"everything was connected after {result['boot_seconds']:.3f} simulated seconds.")
    rep.say(f"Each guest ran {params['iterations']} round(s) of {', '.join(params['commands'])}: "
            f"{result['commands_completed']} commands completed, {result['commands_failed']} failed"
            f"{_failure_list(result)}. "
            f"The vTPMs saved their state {result['saves']} times "
            f"({'strong persistence on' if params['strong_persistence'] else 'strong persistence OFF'}"
            f", save on {params['save_on']}); the manager served {result['manager_requests']} "
            f"requests and the physical TPM ran {result['ptpm_commands']} commands.")
    if result.get("dom0_tis_error") is not None:
        rep.say(f"dom0 then tried to reach the TPM itself (a tpm_tis driver mapping 0xfed40000): "
                f"{'it failed with ' + result['dom0_tis_error'] if result['dom0_tis_error'] != 'none' else 'it SUCCEEDED'}"
                f" -- the window belongs to the vTPM manager alone (iomem permission).")
    from simxen.analysis.certainty import label
    from simxen.drivers.kernel_eras import describe
    from simxen.scenario import estimates
    named = _guest_options(params, guests)
    if named:
        rep.say("Guest kernel eras named by the workload (the others run the profile's): "
                + ", ".join(f"{g} {describe(o['kernel_era'], o.get('hz')) if 'kernel_era' in o else 'HZ=' + str(o['hz'])}"
                            for g, o in named.items()) + ".")
    lat = rep.section(f"Latency per command, ms simulated ({params['name']})",
                      headers=["command", "count", "p50", "mean", "max", "from U", "label"])
    shares = result.get("unverified_share", {})
    for name, s in result["latency_ms"].items():
        if s["count"]:
            share = shares.get(name, 0.0)
            lat.table.append([name, s["count"], s["p50"], s["mean"], s["max"], f"{share:.0%}",
                              label(share)])
    estimates.explain(rep, [*shares.values(), *result.get("unverified_share_by_hop", {}).values()])
    if not result.get("hops_kept", True):
        rep.say("Latency and per-hop figures are missing: they are read from the trace's TPM "
                "command records, which this run's trace level did not keep (run with "
                "--trace-level commands or full).")
    hop = rep.section("Per-hop breakdown, mean ms per command",
                      headers=["command"] + [hops.HOP_LABELS[h] for h in hops.HOPS])
    for name, hs in result["hops_by_command_ms"].items():
        hop.table.append([name] + [hs[h].get("mean", 0.0) for h in hops.HOPS])
    by_hop = result.get("unverified_share_by_hop", {})
    if by_hop:
        # each hop's own label: a hop can rest on assumed figures while the command does not
        hop.table.append(["from U"] + [f"{by_hop[h]:.0%}" if h in by_hop else "" for h in hops.HOPS])
        hop.table.append(["label"] + [label(by_hop[h]) if h in by_hop else "" for h in hops.HOPS])
    from simxen.domains.stack import COUNTED
    labels = {kind.replace(".", "_"): label for kind, label in COUNTED}
    ops = rep.section("Split-driver operations (whole run, boot included)")
    for kind, count in result["ops"].items():
        ops.row(labels[kind], count)

"""The host ``simxen serve`` builds from a scenario, and which of its guests it can serve.

``simxen serve SCENARIO --domain NAME`` boots the host of the scenario's vTPM
workload and lets real TPM tools into guest NAME's vTPM. Everything that can
be wrong with that request is known from the scenario alone, before a single
simulated event: whether a workload builds a vTPM host at all, whether NAME
is a guest of it with a vTPM frontend of its own (the names come from the
same :class:`~simxen.domains.stack.HostSpec` the boot creates the domains
from, so ``guest_count = 4`` gives ``guest1`` .. ``guest4`` here exactly as
in the booted host), and whether pv-grub measures its boot (only then is
there an event log for ``--eventlog-out``). :func:`plan` makes those checks;
``simxen serve`` calls it before booting and ``simxen validate --domain NAME``
calls it instead of booting::

    sim = runner.prepare(scenario)
    spec = serve_host.plan(sim, "guest1")        # InputError naming --domain if not
    host = build_host(sim.hv, spec)
"""

from __future__ import annotations

from simxen.domains.pvgrub import PvGrub
from simxen.domains.stack import vtpm_guest
from simxen.domains.toolstack import kernel_model
from simxen.errors import InputError
from simxen.scenario import workloads

__all__ = ["host_spec", "plan"]


def host_spec(sim):
    """The :class:`~simxen.domains.stack.HostSpec` the scenario's vTPM workload builds.

    A workload that builds a vTPM host says how with ``serve_host_spec(sim,
    params)`` (or ``host_spec(sim, params)``); serve builds that host but does
    not run the workload's own script, so the tools are the only ones talking
    to the guest's vTPM. The attestation workload's host boots each guest
    through pv-grub, so its vTPM's PCRs 4 and 5 already hold the boot.
    """
    scenario = sim.scenario
    for params in scenario.data["workload"]:
        module = workloads.module(params["type"])
        make = getattr(module, "serve_host_spec", None) or getattr(module, "host_spec", None)
        if make is not None:
            return make(sim, params)
    types = ", ".join(sorted({w["type"] for w in scenario.data["workload"]}))
    raise InputError(f"no workload here builds a vTPM host (found {types}; serve needs one "
                     "such as 'vtpm-stack' or 'attestation')", path=scenario.path, key="workload")


def plan(sim, guest, *, event_log=False):
    """The host spec to boot for serving ``guest``, once every check passed.

    ``sim`` is a prepared run (:func:`simxen.scenario.runner.prepare`: the
    checks ``simxen validate`` makes). Then: a workload builds a vTPM host;
    ``guest`` is one of its guests with a vTPM frontend
    (:func:`~simxen.domains.stack.vtpm_guest`: an unknown name gets the
    closest guest's, key ``--domain``); with ``event_log``, its ``kernel=``
    is pv-grub, the only boot that writes a TCG event log (key
    ``--eventlog-out``). Each problem is one :class:`~simxen.errors.InputError`.
    """
    try:
        spec = host_spec(sim)
    except InputError as err:       # a key --set gave is named as the --set that gave it
        from simxen.scenario.overrides import blame_scenario
        raise blame_scenario(err, sim.scenario) from None
    path = sim.scenario.path
    cfg = vtpm_guest(spec, guest, path=path, key="--domain")
    if event_log and not issubclass(kernel_model(cfg.kernel, spec.kernels), PvGrub):
        raise InputError(f"{guest} has no event log: its kernel={cfg.kernel} is booted "
                         "directly, and only pv-grub measures a boot and writes one (a "
                         "scenario with boot = \"pv-grub\")", path=path, key="--eventlog-out")
    return spec

"""CPU cost of a full-path TPM2_PCR_Extend, against a bare-SimPy floor.

The full path is the whole vTPM stack of :func:`simxen.domains.stack.build_host`
(the seed's host: vtpmmgr, one vTPM stub domain, one guest): the guest's
xen-tpmfront writes the command into its granted page and notifies; the
vTPM's tpmback takes it, its TPM engine extends the PCR, and -- the command
changed persistent state -- the vTPM saves its whole state (seal, disk
write) and sends the new ``hash || key`` to the manager over a second ring
round trip before answering; the guest sees the answer on its next poll.
Every step is costed from the timing profile and recorded in the trace.

The floor is the least any SimPy model of a request/response can do: one
request event, one timeout, one reply event per round trip
(:func:`ring_roundtrip.floor_roundtrips`). Both run in this process; the
script prints round trips per second for each, the ratio (target: at most
12x the floor for a PCR_Extend that saves no state, ``--save-on changed``), and the simulated per-hop latency breakdown
(:mod:`simxen.analysis.hops`) of the commands it timed.

Two ways in are timed: a guest process looping over ``tpm.transmit`` inside
one ``env.run`` ("in-simulation"), and ``simxen serve``'s backend, which
starts one process and one ``env.run`` per command ("serve path").

Every figure is process CPU time (:func:`time.process_time`, the same clock
as the ring benchmark), the best of ``--repeat`` interleaved runs. The
in-simulation runs and the floor run with the garbage collector set as
``simxen run`` sets it for a scenario
(:func:`simxen.scenario.runner.fewer_collections`); the serve path as
``simxen serve`` runs, with Python's default thresholds.

    python benchmarks/vtpm_roundtrip.py [--requests N] [--repeat R]
        [--save-on changed|success|both] [--no-persistence] [--interrupt] [--no-trace]
        [--count [COMMANDS]] [--instructions [COMMANDS]]

``--instructions [COMMANDS]`` prints machine instructions per command instead,
counted by valgrind (see ``instructions.py``; building the commands, done
before the clock starts when timing, is counted apart and taken off).

``--count`` prints, instead of timing, the work per command -- interpreted
opcodes and Python calls, deterministic (see ``ring_roundtrip.py --count``):
the difference between ``2 * COMMANDS`` and ``COMMANDS`` commands, divided by
``COMMANDS``, for the floor (per round trip) and the in-simulation path.
"""

import argparse
import hashlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from arguments import count  # noqa: E402
from ring_roundtrip import (clock, floor_roundtrips,  # noqa: E402  (the same floor and clock)
                            print_work, work_per_trip)

from simxen.analysis import hops  # noqa: E402
from simxen.domains.stack import HostSpec, build_host  # noqa: E402
from simxen.drivers import kernel_eras  # noqa: E402
from simxen.scenario import scenario_file  # noqa: E402
from simxen.scenario.runner import fewer_collections, load_profile  # noqa: E402
from simxen.server.sim_backend import SimulatedPath  # noqa: E402
from simxen.tpm import client  # noqa: E402
from simxen.tpm.constants import TPM_ALG  # noqa: E402
from simxen.xen import Hypervisor  # noqa: E402

GUEST = "guest1"
#: The timing profile is the vtpm-stack scenario's (default profile + its disk costs).
SCENARIO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scenarios",
                        "vtpm-stack.toml")


def extend_commands(n):
    """``n`` distinct PCR_Extend commands of PCR 16 (built before the clock starts)."""
    return [client.pcr_extend_command(16, {TPM_ALG.SHA256: hashlib.sha256(b"%d" % i).digest()})
            for i in range(n)]


def booted_host(*, seed=1, persistence=True, save_on="changed", interrupt=False, trace=True):
    """The seed's host, booted until the guest's vTPM is connected."""
    options = {f"vtpm-{GUEST}": {"strong_persistence": persistence, "save_on": save_on}}
    hv = Hypervisor(profile=load_profile(scenario_file.load(SCENARIO)), seed=seed)
    if interrupt:
        hv.profile = hv.profile.with_overrides({"switches": {"tpmfront.wait": "interrupt"}})
    if not trace:
        for kind in ("page", "evtchn", "gnttab", "mmio", "xs"):
            hv.trace.disable(kind)
    host = build_host(hv, HostSpec.standard(guests=[GUEST], options=options))
    hv.env.run(until=host.ready)
    return hv, host


def guest_wait(hv, host):
    """How the guest's tpmfront waits for a response, as this run really did it."""
    front = host.guest(GUEST).tpm.front         # the guest kernel's TpmFront
    profile = hv.profile
    era = front.kernel or kernel_eras.profile_era(profile)
    if not kernel_eras.polls(profile, era):
        return "interrupt wait"
    if profile.switch("tpmfront.wait", "era") == "poll":
        return f"poll every {profile.switch('tpmfront.poll_interval', 0.005) * 1e3:g} ms"
    how = kernel_eras.describe(era)
    if kernel_eras.ERAS[era][0] == "usleep_range":
        op = profile.op("tpmfront.usleep_range")
        if op.dist == "uniform":
            how += f" poll, sleeps of {op.params['low'] * 1e3:g}-{op.params['high'] * 1e3:g} ms"
    return how


def in_simulation(commands, **kw):
    """CPU seconds for the guest to send ``commands`` from one process; and the host."""
    hv, host = booted_host(**kw)
    tpm = host.guest(GUEST).tpm

    def guest():
        for cmd in commands:
            client.check((yield from tpm.transmit(cmd)))
    proc = hv.env.process(guest())
    start = clock()
    hv.env.run(until=proc)
    return clock() - start, hv, host


def serve_path(commands, **kw):
    """CPU seconds for ``simxen serve``'s backend to deliver ``commands`` one by one."""
    hv, host = booted_host(**kw)
    path = SimulatedPath.for_guest(host.guest(GUEST))
    start = clock()
    for cmd in commands:
        client.check(path.execute(cmd))
    return clock() - start, hv, host


def print_instructions(commands, modes, options):
    """``--instructions``: valgrind's instruction counts per command, and their ratios."""
    import instructions
    if not instructions.available():
        print(instructions.missing(), file=sys.stderr)
        return 2
    print(f"machine instructions per TPM2_PCR_Extend (valgrind, {commands} vs {2 * commands} "
          "commands)")
    floor = instructions.floor_per_trip("vtpm_roundtrip", commands)
    print(instructions.line("bare SimPy floor", floor, floor), flush=True)
    build = "vtpm_roundtrip.extend_commands({n})"
    building = instructions.per_trip("vtpm_roundtrip", build, commands)
    for m in modes:
        expr = f"vtpm_roundtrip.in_simulation({build}, **{options[m]!r})"
        value = instructions.per_trip("vtpm_roundtrip", expr, commands) - building
        print(instructions.line(f"in-simulation, {m}", value, floor), flush=True)
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=count, default=300)
    parser.add_argument("--repeat", type=count, default=3, help="best of R runs each")
    parser.add_argument("--save-on", choices=("changed", "success", "both"), default="both",
                        help="when the vTPM saves its state: after commands that changed "
                        "persistent state (a PCR extend does not: the target's path), after "
                        "every successful command (simxen's default, as Xen's vTPM does), or "
                        "time both (the default)")
    parser.add_argument("--no-persistence", action="store_true",
                        help="vTPM strong persistence off (no state save, no manager trip)")
    parser.add_argument("--interrupt", action="store_true",
                        help="the guest's tpmfront waits on the interrupt instead of polling "
                        "the page as its kernel era does (linux-6 by default: a sleep of "
                        "4.7-5.0 ms, usleep_range, between two looks)")
    parser.add_argument("--no-trace", action="store_true",
                        help="disable page/evtchn/gnttab/mmio/xs trace records")
    parser.add_argument("--count", type=count, nargs="?", const=100, metavar="COMMANDS",
                        help="count opcodes and Python calls per command instead of timing "
                        "(deterministic; COMMANDS commands, default 100)")
    parser.add_argument("--instructions", type=count, nargs="?", const=100, metavar="COMMANDS",
                        help="count machine instructions per command with valgrind instead of "
                        "timing (deterministic; COMMANDS commands, default 100)")
    args = parser.parse_args(argv)
    n = args.requests
    modes = ("changed", "success") if args.save_on == "both" else (args.save_on,)
    options = {m: dict(persistence=not args.no_persistence, save_on=m, interrupt=args.interrupt,
                       trace=not args.no_trace) for m in modes}
    if args.instructions is not None:
        return print_instructions(args.instructions, modes, options)
    if args.count is not None:
        trips = args.count
        commands = extend_commands(2 * trips)
        floor = work_per_trip(floor_roundtrips, trips)
        print(f"work per TPM2_PCR_Extend (opcodes and Python calls, {trips} vs {2 * trips} "
              "commands)")
        print_work("bare SimPy floor", floor, floor)
        for m in modes:
            work = work_per_trip(lambda k: in_simulation(commands[:k], **options[m]), trips)
            print_work(f"in-simulation, {m}", work, floor)
        return
    commands = extend_commands(n)
    floors, full_runs, serve_runs = [], {m: [] for m in modes}, {m: [] for m in modes}
    # Interleaved (floor, full path, serve path) runs: on a shared machine all
    # three see the same load, so the ratio means something.
    for _ in range(args.repeat):
        for m in modes:
            with fewer_collections():               # as simxen run runs a scenario
                floors.append(floor_roundtrips(n))
                full_runs[m].append(in_simulation(commands, **options[m]))
            serve_runs[m].append(serve_path(commands, **options[m])[0])
    floor = min(floors)
    print(f"TPM2_PCR_Extend round trips, guest -> vtpm -> (vtpmmgr) -> back, {n} per run, "
          f"best of {args.repeat}")
    print(f"bare SimPy floor : {n / floor:12,.0f} round trips/s  ({floor / n * 1e6:9.2f} us each)")
    for save_on in modes:
        full, hv, host = min(full_runs[save_on], key=lambda run: run[0])
        served, kw = min(serve_runs[save_on]), options[save_on]
        mode = ", ".join([f"save_on={save_on}" if kw["persistence"] else "no persistence",
                          guest_wait(hv, host), "full trace" if kw["trace"] else "reduced trace"])
        print(f"\n-- {mode}")
        print(f"in-simulation    : {n / full:12,.0f} round trips/s  ({full / n * 1e6:9.2f} us each)"
              f"  {full / floor:6.1f}x floor (target <= 12x with save_on=changed)")
        print(f"serve path       : {n / served:12,.0f} round trips/s  "
              f"({served / n * 1e6:9.2f} us each)  {served / floor:6.1f}x floor")
        domid = host.guest(GUEST).domid
        cmds = [c for c in hops.command_hops(hv.trace.records()) if c.dom == domid]
        print(f"simulated per-hop latency of the {len(cmds)} timed commands (ms):")
        print(hops.format_table(hops.aggregate(cmds)))


if __name__ == "__main__":
    sys.exit(main())

"""How long one sweep point takes: 32 guests x 1,000 TPM commands each, through the whole stack.

A sweep is many points times replications, so what one point costs decides
whether a sweep takes minutes or hours (the target: under 10 s on one core).
The point is run exactly as ``simxen sweep`` runs it
(:func:`simxen.experiment.sweep.run_one`: load the scenario with ``--set``
overrides, run it, read its metrics) on ``scenarios/vtpm-stack.toml`` with
the seed's stack per guest::

    --set stack.configs=[] --set stack.guest_count=32 --set stack.iterations=250

(its four commands -- PCR_Extend, PCR_Read, GetRandom, an NV write -- 250
times: 1,000 commands per guest, 32,000 in all, each crossing tpmfront ->
vTPM -> (state save -> manager) -> back).

With ``--scenario many-guests`` the point is instead ``scenarios/many-guests.toml``'s
open-loop load (Poisson arrivals of its command mix at its per-guest rate,
``duration`` stretched so each guest sends about 1,000 commands).

The baseline, in the same process, is one guest doing the same 1,000
commands: the ratio of CPU per command (32 guests / 1 guest) shows what
sharing one manager costs the *simulator* beyond the 32x more work.

Figures are process CPU time (the one core this process uses; other jobs on
a shared machine do not count) and wall time. ``--profile`` prints where
the 32-guest point's CPU time goes (cProfile, top functions by own time).

Seconds differ from one machine to the next (the same code took 11-12 s of CPU
on one machine and 16 s on a slower one), so a figure compared across machines
or rounds should be ``--instructions [COMMANDS]``: machine instructions per
command, counted by valgrind (``instructions.py``) on a point of ``--guests``
guests (2 by default) running ``COMMANDS`` (default 100) and then twice as many
commands each -- the difference, over the extra commands, so start-up and the
end-of-run fixed costs cancel. It is the same number on every machine.

    python benchmarks/sweep_point.py [--guests 32] [--commands 1000] [--profile]
        [--scenario vtpm-stack|many-guests] [--instructions [COMMANDS]]
"""

import argparse
import os
import sys
import time

from arguments import count
from simxen.experiment import sweep
from simxen.scenario import scenario_file

HERE = os.path.dirname(os.path.abspath(__file__))
SCENARIOS = {name: os.path.join(HERE, "..", "scenarios", f"{name}.toml")
             for name in ("vtpm-stack", "many-guests")}
SCENARIO = SCENARIOS["vtpm-stack"]
TARGET_S = 10.0


def point(guests, commands_per_guest):
    """The ``--set`` overrides of one point (of :data:`SCENARIO`)."""
    if SCENARIO == SCENARIOS["many-guests"]:
        rate = scenario_file.load(SCENARIO).data["workload"][0]["rate"]
        return [f"stack.guest_count={guests}", "stack.warmup=0",
                f"stack.duration={commands_per_guest / rate!r}", "scenario.until=1e6"]
    per_round = len(scenario_file.load(SCENARIO).data["workload"][0]["commands"])
    if commands_per_guest % per_round:
        raise SystemExit(f"--commands must be a multiple of {per_round} (the scenario's commands)")
    return ["stack.configs=[]", f"stack.guest_count={guests}",
            f"stack.iterations={commands_per_guest // per_round}",
            "scenario.until=1e6"]


def counted_point(commands, guests, scenario="vtpm-stack"):
    """Run one point of ``guests`` x ``commands`` of ``scenario`` (what ``--instructions``
    counts, in a process of its own)."""
    global SCENARIO
    SCENARIO = SCENARIOS[scenario]
    sweep.run_one(SCENARIO, point(guests, commands), 1)


def print_instructions(commands, guests, scenario):
    """``--instructions``: valgrind's machine instructions per command of a point."""
    import instructions
    if not instructions.available():
        print(instructions.missing(), file=sys.stderr)
        return 2
    expr = f"sweep_point.counted_point({{n}}, {guests}, {scenario!r})"
    per_guest_command = instructions.per_trip("sweep_point", expr, commands)
    per_command = per_guest_command / guests
    print(f"machine instructions per command of a sweep point ({scenario}, valgrind, "
          f"{guests} guests x {commands} vs {2 * commands} commands): {per_command:,.0f}")
    print(f"a {32} x 1,000 point: {per_command * 32_000 / 1e9:,.1f} billion instructions")
    return 0


def timed(overrides, seed=1):
    wall, cpu = time.perf_counter(), time.process_time()
    metrics = sweep.run_one(SCENARIO, overrides, seed)
    return time.perf_counter() - wall, time.process_time() - cpu, metrics


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--guests", type=count, help="guests of the point (default 32; "
                    "2 with --instructions)")
    ap.add_argument("--commands", type=count, default=1000, help="commands per guest")
    ap.add_argument("--profile", action="store_true", help="profile the point (cProfile)")
    ap.add_argument("--scenario", choices=sorted(SCENARIOS), default="vtpm-stack")
    ap.add_argument("--instructions", type=count, nargs="?", const=100, metavar="COMMANDS",
                    help="count machine instructions per command with valgrind instead of "
                    "timing (deterministic; a point of --guests guests, default 2, running "
                    "COMMANDS and twice as many commands each, default 100)")
    args = ap.parse_args(argv)
    global SCENARIO
    SCENARIO = SCENARIOS[args.scenario]
    if args.instructions is not None:
        guests = args.guests or 2
        point(guests, args.instructions)        # refuses a count the scenario cannot run
        return print_instructions(args.instructions, guests, args.scenario)
    args.guests = args.guests or 32

    timed(point(1, args.commands))       # warm: imports and first-use caches are not timed
    base_wall, base_cpu, base = timed(point(1, args.commands))
    done = "stack.commands_completed" if args.scenario == "vtpm-stack" else "stack.commands"
    base_n = base[done]
    over = point(args.guests, args.commands)
    if args.profile:
        import cProfile
        import pstats
        prof = cProfile.Profile()
        prof.enable()
    wall, cpu, m = timed(over)
    if args.profile:
        prof.disable()
    n = m[done]
    print(f"one sweep point ({args.scenario}): {args.guests} guests x {args.commands} commands "
          f"({n:,} completed, {m['stack.commands_failed']} failed)")
    print(f"  CPU  {cpu:8.2f} s   ({n / cpu:,.0f} commands per CPU second)")
    print(f"  wall {wall:8.2f} s")
    print(f"baseline: 1 guest x {args.commands} commands: CPU {base_cpu:.2f} s "
          f"({base_n / base_cpu:,.0f} commands per CPU second)")
    print(f"CPU per command, {args.guests} guests / 1 guest: "
          f"{(cpu / n) / (base_cpu / base_n):.2f}x")
    verdict = "met" if cpu < TARGET_S else "NOT met"
    print(f"target: under {TARGET_S:g} s on one core -> {verdict} ({cpu:.2f} s CPU)")
    if args.profile:
        stats = pstats.Stats(prof)
        stats.sort_stats("tottime").print_stats(20)


if __name__ == "__main__":
    sys.exit(main())

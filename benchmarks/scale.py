"""How wall time and memory grow with the number of guests: the fleet workload.

For each size (1, 10, 100 and 1,000 guests; 10,000 with ``--big``) this runs
``scenarios/fleet.toml`` -- every guest booted through pv-grub, its AK
enrolled, then ``--rounds`` attestation rounds (10 by default) by one
verifier, against one vTPM manager -- as ``simxen run`` in a child process
of its own, and prints:

* wall seconds (and the child's CPU seconds, user + system: on a shared
  machine the CPU figure is the one to compare),
* peak resident memory of that child (``ru_maxrss`` from ``os.wait4``),
* the growth factor of each from the size ten times smaller (1.0x would be
  constant; 10x linear in the number of guests).

``--big`` also runs 10,000 guests with the manager on the 2-level
event-channel ABI: Xen's 4,095 usable ports per 64-bit domain cannot hold
one channel per vTPM, so the manager's backend refuses the rest with
``-ENOSPC``; the timed 10,000 run uses the FIFO ABI (131,072 ports).

Targets (issue 9): 1,000 guests under 60 s wall and 2 GiB on one core;
at most 12x growth per 10x guests between 100 and 1,000; 10,000 under 10
minutes and 8 GiB.

    python benchmarks/scale.py [--big] [--sizes 1,10,100] [--rounds 10]
        [--trace-level commands|full|off]
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from arguments import count, counts

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "fleet.toml"


def child_run(guests, rounds, abi, trace_level):
    """One ``simxen run`` of the fleet, in a wrapper process of its own so that its
    ``RUSAGE_CHILDREN`` (peak RSS, CPU) is that one run's: (figures, metrics)."""
    code = ("import resource, subprocess, sys, json, time;"
            "t=time.monotonic();"
            "p=subprocess.run(sys.argv[1:], capture_output=True, text=True);"
            "w=time.monotonic()-t;"
            "u=resource.getrusage(resource.RUSAGE_CHILDREN);"
            "sys.stderr.write(p.stderr);"
            "print(json.dumps({'wall': w, 'cpu': u.ru_utime + u.ru_stime, "
            "'rss': u.ru_maxrss * 1024, 'rc': p.returncode, 'out': p.stdout}))")
    until = 1e7     # simulated seconds: never the limit (xl creates ~1 s per domain, in turn)
    cmd = [sys.executable, "-c", code, sys.executable, "-m", "simxen.cli", "run",
           "--no-progress", "--json", "--trace-level", trace_level,
           "--set", f"fleet.guest_count={guests}", "--set", f"fleet.rounds={rounds}",
           "--set", f'fleet.manager_evtchn_abi="{abi}"', "--set", f"scenario.until={until}",
           str(SCENARIO)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0 or not done.stdout.strip():
        raise SystemExit(f"{guests} guests: the wrapper failed:\n{done.stderr}")
    figures = json.loads(done.stdout)
    if not figures["out"].strip():
        raise SystemExit(f"{guests} guests: simxen run failed:\n{done.stderr}")
    report = json.loads(figures["out"])
    results = {name: entry["value"] for name, entry in report["metrics"].items()}
    return figures, results


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--big", action="store_true", help="also 10,000 guests (2-level and FIFO)")
    ap.add_argument("--sizes", type=counts, default="1,10,100,1000",
                    help="comma-separated guest counts (default 1,10,100,1000)")
    ap.add_argument("--rounds", type=count, default=10, help="attestation rounds per guest")
    ap.add_argument("--trace-level", default="commands", choices=("full", "commands", "off"))
    args = ap.parse_args(argv)
    sizes = args.sizes
    if args.big and 10_000 not in sizes:
        sizes.append(10_000)
    print(f"fleet: pv-grub boot, enrolment and {args.rounds} attestation rounds per guest; "
          f"trace level {args.trace_level}; one child process per size")
    print(f"{'guests':>7} {'ABI':>8} {'wall s':>9} {'cpu s':>9} {'peak RSS':>10} "
          f"{'x wall':>7} {'x cpu':>7} {'x RSS':>7}  enrolled  trusted/rounds  refused")
    previous = {}
    for n in sizes:
        abi = "fifo" if n > 4000 else "2-level"
        figures, r = child_run(n, args.rounds, abi, args.trace_level)
        growth = ""
        before = previous.get(n // 10)
        if before is not None:
            growth = (f"{figures['wall'] / before['wall']:>6.1f}x {figures['cpu'] / before['cpu']:>6.1f}x "
                      f"{figures['rss'] / before['rss']:>6.1f}x")
        else:
            growth = f"{'':>7} {'':>7} {'':>7}"
        print(f"{n:>7,} {abi:>8} {figures['wall']:>9.1f} {figures['cpu']:>9.1f} "
              f"{figures['rss'] / 2**20:>7.0f} MiB {growth}  {r['fleet.enrolled']:>8,}  "
              f"{r['fleet.trusted']:>7,}/{r['fleet.guests'] * args.rounds:<7,} "
              f"{r['fleet.manager_refusals']:>7,}", flush=True)
        previous[n] = figures
    if args.big:
        figures, r = child_run(10_000, args.rounds, "2-level", args.trace_level)
        print(f"10,000 guests, manager on the 2-level ABI: {r['fleet.manager_refusals']:,} vTPM "
              f"connections refused ({r['fleet.manager_ports']:,} of "
              f"{r['fleet.manager_port_limit']:,} ports in use): {r['fleet.manager_error']}; "
              f"{figures['wall']:.1f} s wall, {figures['rss'] / 2**20:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Does ``simxen validate`` refuse exactly what ``simxen run`` refuses?

For every key ``simxen validate --keys`` documents, sets it with ``--set`` to
wrong or edge values (a string, an empty string, arrays, tables, -1, 0, NaN,
the infinities, 1.5, true, a TOML date-time, an array of tables...) on a
shipped scenario of its workload type, and runs both commands in this process
with a short ``scenario.until``. Each pair of verdicts -- accepted (exit 0 or
1), refused (2), internal error (3) or hang (past the time limit) -- must
agree, and neither may be an internal error or a hang. Values far too large
(1e308, 10**20, 10**9) are given to ``validate`` alone, which must answer
(``run`` would rightly simulate for ever at such a rate). Prints each
disagreement, then a count; exit status 1 when there is one::

    python3 scripts/validate-run-parity.py            # every key: about 40 min on 2 cores
    python3 scripts/validate-run-parity.py stack.rate # the keys whose name holds this

Not a test (too long for the suite); run it after adding keys or checks.
Memory is capped at 4 GiB so that a value that makes a run grow without end
fails here rather than on the machine.
"""

import contextlib
import io
import os
import re
import resource
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from simxen import cli
from simxen.scenario import scenario_file

ROOT = Path(__file__).resolve().parents[1]

#: workload type -> (the shipped scenario that has it first, a simulated horizon
#: long enough for its host to boot and its workload to start)
BASES = {"ring-pingpong": ("scenarios/ring-pingpong.toml", 0.2),
         "vtpm-stack": ("scenarios/vtpm-stack.toml", 12),
         "attestation": ("scenarios/boot-attest.toml", 15),
         "load": ("scenarios/many-guests.toml", 12),
         "fleet": ("scenarios/fleet.toml", 15)}

VALUES = ['"x"', '""', '[]', '{}', '[1, 2]', '-1', '0', 'nan', 'inf', '-inf', '1.5',
          'true', '2026-12-07T00:00:00Z', '[{a = 1}]', '["a", "a"]', '{a = "b"}']
HUGE = ['1e308', '99999999999999999999', '1000000000']


class Timeout(BaseException):
    """Past the time limit (a BaseException, so that the CLI does not take it for a bug)."""


def _alarm(*_):
    raise Timeout()


def call(argv, limit):
    """``simxen ARGV`` in this process: (verdict, its last line of standard error)."""
    out, err = io.StringIO(), io.StringIO()
    signal.alarm(limit)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = cli.main(argv)
    except Timeout:
        status = "hang"
    except SystemExit as exc:
        status = exc.code
    finally:
        signal.alarm(0)
    lines = err.getvalue().strip().splitlines()
    verdict = {0: "accepted", 1: "accepted", 2: "refused", 3: "INTERNAL"}.get(status, str(status))
    return verdict, lines[-1][:200] if lines else ""


def keys():
    """(workload type or None, documented key) of every line of the key reference."""
    kind = None
    for line in scenario_file.reference().splitlines():
        m = re.match(r"\s*type = '([^']+)'", line)
        if m:
            kind = m.group(1)
            continue
        m = re.match(r"\s*([a-z_]+(?:\.[a-z_]+)?) = ", line)
        if m and not (m.group(1).startswith("workload.") and kind is None):
            yield (kind if m.group(1).startswith("workload.") else None), m.group(1)


def target(key):
    """Where ``--set`` puts ``key``: the first table of its array."""
    head, _, field = key.partition(".")
    if head in ("workload", "domain", "expect"):
        return f"{head}[0].{field}"
    return key


def main(argv):
    only = argv[0] if argv else ""
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
    signal.signal(signal.SIGALRM, _alarm)
    # on a copy of scenarios/: a value such as workload.export = "x" writes files beside
    # the scenario, and those belong in a temporary folder, not in the checkout
    work = tempfile.mkdtemp(prefix="simxen-parity-")
    shutil.copytree(ROOT / "scenarios", Path(work) / "scenarios")
    os.chdir(work)
    try:
        return _compare(only)
    finally:
        os.chdir(ROOT)
        shutil.rmtree(work, ignore_errors=True)


def _compare(only):
    cases = bad = 0
    for kind, key in keys():
        if only not in key or key.startswith("plot."):     # plots: sweep only
            continue
        if kind is None:
            kind = "ring-pingpong" if key.startswith(("domain.", "expect.")) else "vtpm-stack"
        path, until = BASES[kind]
        where = target(key)
        for value in VALUES:
            sets = ["--set", f"{where}={value}"]
            if key != "scenario.until":
                sets += ["--set", f"scenario.until={until}"]
            a, b = call(["validate", path, *sets], 30), call(["run", path, *sets], 60)
            cases += 1
            if a[0] != b[0] or {a[0], b[0]} & {"INTERNAL", "hang"}:
                bad += 1
                print(f"{path} {where}={value}: validate {a[0]} [{a[1]}]; run {b[0]} [{b[1]}]",
                      flush=True)
        for value in HUGE:
            a = call(["validate", path, "--set", f"{where}={value}"], 30)
            cases += 1
            if a[0] not in ("accepted", "refused"):
                bad += 1
                print(f"{path} {where}={value}: validate {a[0]} [{a[1]}]", flush=True)
    print(f"{cases} cases, {bad} where validate and run disagree or fail")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

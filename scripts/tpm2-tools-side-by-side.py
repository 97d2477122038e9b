#!/usr/bin/env python3
"""Run the same tpm2-tools sequences against swtpm and against simxen.

Each sequence in ``tests/interop/sequences/*.sh`` is a short story told with
tpm2-tools (create a key, duplicate it, import it, sign, verify with
openssl ...).  This script runs every sequence (or those named) against

* ``swtpm`` -- swtpm 0.7 (libtpms), the reference a TSS user knows; with no
  resource manager in front of it, transient objects are flushed after every
  tool, as tpm2-abrmd would do;
* ``simxen`` -- ``simxen tpm serve`` (the TPM engine alone, mssim protocol);
* ``guest`` (with ``--guest``) -- ``simxen serve SCENARIO --domain guest1``:
  a simulated guest's vTPM, every command crossing tpmfront, the vTPM stub
  domain and the manager,

each sequence against a fresh TPM, and prints one line per sequence with the
outcome on each target, then, for every sequence whose outcomes differ, the
tail of what failed.  Exit status 1 when a sequence works against swtpm and
fails against a simxen target, else 0::

    python3 scripts/tpm2-tools-side-by-side.py                 # all sequences
    python3 scripts/tpm2-tools-side-by-side.py encrypt-decrypt duplicate-import
    python3 scripts/tpm2-tools-side-by-side.py --guest scenarios/vtpm-stack.toml

Run it with the project's Python (``.venv/bin/python``); it needs tpm2-tools,
swtpm and openssl (``scripts/setup-system.sh`` installs them).
"""

import argparse
import concurrent.futures
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from simxen.server import reference_swtpm
from simxen.server.reference_swtpm import stop     # (any process started in a session of its own)
from simxen.server.loopback import free_port_pair, wait_listening

ROOT = Path(__file__).resolve().parent.parent
SEQUENCES = ROOT / "tests" / "interop" / "sequences"


def sequences(names=()):
    """The sequence files, all or those named (with or without ``.sh``)."""
    every = sorted(p for p in SEQUENCES.glob("*.sh") if p.name != "run.sh")
    if not names:
        return every
    by_name = {p.stem: p for p in every}
    missing = [n for n in names if n.removesuffix(".sh") not in by_name]
    if missing:
        raise SystemExit(f"no such sequence: {', '.join(missing)} "
                         f"(have: {', '.join(sorted(by_name))})")
    return [by_name[n.removesuffix(".sh")] for n in names]


def describe(path):
    """The first comment line of a sequence: what it tells."""
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


class Target:
    """One kind of TPM to run a sequence against: how to start a fresh one."""

    def __init__(self, name, guest=None, python=sys.executable):
        self.name = name
        self.guest = guest
        self.python = python

    def start(self, workdir):
        """``(process, TCTI string, extra environment)``."""
        if self.name == "swtpm":
            state = Path(workdir) / "swtpm-state"
            state.mkdir()
            proc, port = reference_swtpm.start(state)
            return proc, f"swtpm:host=127.0.0.1,port={port}", {"SEQ_FLUSH_TRANSIENTS": "1"}
        port = free_port_pair()
        if self.name == "simxen":
            argv = [self.python, "-m", "simxen.cli", "tpm", "serve", "--port", str(port),
                    "--quiet", "--seed", "side-by-side"]
            tcti = f"mssim:host=127.0.0.1,port={port}"
        else:
            argv = [self.python, "-m", "simxen.cli", "serve", str(self.guest), "--domain",
                    "guest1", "--port", str(port), "--quiet"]
            tcti = f"mssim:host=127.0.0.1,port={port}"
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        if not wait_listening(port, timeout=30.0, process=proc):
            stop(proc)
            raise RuntimeError(f"{self.name} did not start: {proc.stderr.read()[-500:]}")
        return proc, tcti, {}


def run_sequence(path, target, timeout=300):
    """``(ok, seconds, output tail)`` of one sequence against a fresh ``target``."""
    with tempfile.TemporaryDirectory(prefix=f"seq-{path.stem}-") as work:
        started = time.monotonic()
        try:
            proc, tcti, env = target.start(work)
        except RuntimeError as exc:
            return False, 0.0, str(exc)
        try:
            run_dir = Path(work) / "run"
            run_dir.mkdir()
            result = subprocess.run(
                ["bash", str(SEQUENCES / "run.sh"), str(path)], cwd=run_dir,
                env=dict(os.environ, TPM2TOOLS_TCTI=tcti, **env),
                capture_output=True, text=True, timeout=timeout)
            ok = result.returncode == 0
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-12:])
        except subprocess.TimeoutExpired:
            ok, tail = False, f"timed out after {timeout} s"
        finally:
            stop(proc)
        return ok, time.monotonic() - started, tail


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Exit status: 1 if a sequence works against swtpm "
                                        "and fails against simxen, else 0.")
    ap.add_argument("names", nargs="*", metavar="SEQUENCE",
                    help="sequences to run (default: every one in tests/interop/sequences)")
    ap.add_argument("--guest", metavar="SCENARIO",
                    help="also run each sequence through `simxen serve SCENARIO` (guest1)")
    ap.add_argument("--no-swtpm", action="store_true", help="run against simxen only")
    ap.add_argument("--jobs", type=int, default=2, help="sequences run at once (default 2)")
    ap.add_argument("--list", action="store_true", help="list the sequences and exit")
    args = ap.parse_args(argv)
    paths = sequences(args.names)
    if args.list:
        for p in paths:
            print(f"{p.stem:28s} {describe(p)}")
        return 0
    for tool in ["tpm2_startup", "openssl"] + ([] if args.no_swtpm else ["swtpm"]):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed (bash scripts/setup-system.sh)", file=sys.stderr)
            return 2
    targets = ([] if args.no_swtpm else [Target("swtpm")]) + [Target("simxen")]
    if args.guest:
        targets.append(Target("guest", guest=Path(args.guest).resolve()))
    jobs = [(p, t) for p in paths for t in targets]
    results = {}
    with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
        futures = {pool.submit(run_sequence, p, t): (p.stem, t.name) for p, t in jobs}
        for fut in concurrent.futures.as_completed(futures):
            results[futures[fut]] = fut.result()
    names = [t.name for t in targets]
    print(f"{'sequence':28s} " + " ".join(f"{n:>8s}" for n in names))
    regressions, differing = [], []
    for p in paths:
        row = [results[(p.stem, n)] for n in names]
        print(f"{p.stem:28s} " + " ".join(f"{'ok' if ok else 'FAIL':>8s}" for ok, _, _ in row))
        outcomes = {n: r[0] for n, r in zip(names, row)}
        if len(set(outcomes.values())) > 1:
            differing.append(p.stem)
            if outcomes.get("swtpm", True) and not all(outcomes.values()):
                regressions.append(p.stem)
    total = {n: sum(results[(p.stem, n)][0] for p in paths) for n in names}
    print("passed: " + ", ".join(f"{n} {total[n]}/{len(paths)}" for n in names))
    for stem in [p.stem for p in paths]:
        for n in names:
            ok, _, tail = results[(stem, n)]
            if not ok:
                print(f"\n--- {stem} failed against {n}:\n{tail}")
    if regressions:
        print(f"\nworks against swtpm, fails against simxen: {', '.join(regressions)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

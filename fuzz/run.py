"""Run one fuzz target for a given time: ``python -m fuzz.run TARGET SECONDS``.

Drivers:

``atheris`` (default when it is installed)
    coverage-guided: libFuzzer mutates the inputs, steered by which branches
    of simxen (instrumented at import) each input reaches. A crash or a
    broken invariant stops the run and leaves the input as
    ``FINDINGS/crash-<sha1>``; an input running over ``--timeout`` seconds is
    a hang (``timeout-<sha1>``).
``random``
    a seeded mutator (byte flips, inserts, deletes, splices of the target's
    seed inputs) without coverage feedback; needs nothing but the standard
    library, so CI's smoke runs it in-process. A finding is written to
    ``FINDINGS/<target>-<sha1>.bin``.

Either way the last line printed is one JSON object: target, driver,
seconds, inputs per second, the target's counters, crashes and hangs -- the
figures ``docs/fuzzing.rst`` records. ``--replay FILE`` runs one saved input
and shows the traceback.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import sys
import tempfile
import time
import traceback

from fuzz.targets import TARGETS, Finding, target as make_target


class Hang(Exception):
    """An input ran longer than the time limit."""


def mutate(rng, data, corpus, max_len):
    """One mutant of ``data``: 1-8 random byte-level edits, sometimes a splice."""
    out = bytearray(data)
    for _ in range(1 + rng.randrange(8)):
        choice = rng.randrange(7)
        pos = rng.randrange(len(out) + 1)
        if choice == 0 and out:                                   # flip bits
            out[pos % len(out)] ^= 1 << rng.randrange(8)
        elif choice == 1 and out:                                 # random byte
            out[pos % len(out)] = rng.randrange(256)
        elif choice == 2:                                         # insert bytes
            out[pos:pos] = rng.randbytes(1 + rng.randrange(8))
        elif choice == 3 and out:                                 # delete a run
            del out[pos:pos + 1 + rng.randrange(16)]
        elif choice == 4 and out:                                 # an interesting value
            value = rng.choice((b"\x00", b"\xff", b"\x7f", b"\x80", b"\x00\x00",
                                b"\xff\xff", b"\x00\x00\x00\x00", b"\xff\xff\xff\xff",
                                b"\x00\x00\x10\x00", b"\x00\x00\x0f\xf8"))
            out[pos:pos + len(value)] = value
        elif choice == 5 and corpus:                              # splice another input
            other = rng.choice(corpus)
            a = rng.randrange(len(other) + 1)
            out[pos:] = other[a:a + rng.randrange(64)] + out[pos:]
        elif choice == 6 and out:                                 # duplicate a run
            a = rng.randrange(len(out))
            out[pos:pos] = out[a:a + 1 + rng.randrange(32)]
    return bytes(out[:max_len])


def _save(findings, name, data):
    os.makedirs(findings, exist_ok=True)
    path = os.path.join(findings, f"{name}-{hashlib.sha1(data).hexdigest()}.bin")
    with open(path, "wb") as f:
        f.write(data)
    return path


def _alarm(*_):
    raise Hang()


def run_random(t, seconds, *, seed=0, findings="fuzz-findings", timeout=10, max_len=8192,
               out=sys.stdout, at_least=0):
    """Run target ``t`` for ``seconds`` with the seeded mutator; return the summary dict.

    ``at_least`` mutated inputs are run even when ``seconds`` run out first (on a slow or
    busy machine, the seeds alone can take the whole time)."""
    rng = random.Random(seed)
    corpus = list(t.seeds()) or [b""]
    summary = {"target": t.name, "driver": "random", "seed": seed, "crashes": 0, "hangs": 0}
    use_alarm = hasattr(signal, "SIGALRM") and _main_thread()
    previous = signal.signal(signal.SIGALRM, _alarm) if use_alarm else None
    start = time.monotonic()
    deadline = start + seconds
    try:
        for data in corpus:                                  # the seeds themselves first
            _one(t, data, summary, findings, use_alarm, timeout, out)
        mutated = 0
        while ((time.monotonic() < deadline or mutated < at_least)
               and not summary["crashes"] and not summary["hangs"]):
            mutated += 1
            data = mutate(rng, rng.choice(corpus), corpus, max_len)
            _one(t, data, summary, findings, use_alarm, timeout, out)
            if len(corpus) < 256 and rng.random() < 0.01:
                corpus.append(data)
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    elapsed = time.monotonic() - start
    summary.update(seconds=round(elapsed, 1),
                   inputs_per_second=round(t.counts["inputs"] / elapsed, 1) if elapsed else None,
                   counts=dict(t.counts))
    return summary


def _main_thread():
    import threading
    return threading.current_thread() is threading.main_thread()


def _one(t, data, summary, findings, use_alarm, timeout, out):
    if use_alarm:
        signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        t.one(data)
    except Hang:
        summary["hangs"] += 1
        summary["finding"] = _save(findings, f"{t.name}-hang", data)
        print(f"fuzz {t.name}: hang over {timeout} s, input saved to {summary['finding']}",
              file=out)
    except Exception as exc:                                # noqa: BLE001 -- that is the point
        summary["crashes"] += 1
        summary["finding"] = _save(findings, t.name, data)
        summary["error"] = f"{type(exc).__name__}: {exc}"[:500]
        kind = "invariant broken" if isinstance(exc, Finding) else "crash"
        print(f"fuzz {t.name}: {kind}: {summary['error']}; input saved to "
              f"{summary['finding']}", file=out)
        traceback.print_exc(file=out)
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)


def run_atheris(name, seconds, *, findings="fuzz-findings", timeout=10, max_len=8192):
    """Run target ``name`` under atheris for ``seconds``; never returns (exits the process)."""
    import atheris

    with atheris.instrument_imports(include=["simxen"]):
        t = make_target(name)
    start = time.monotonic()
    deadline = start + seconds
    corpus = tempfile.mkdtemp(prefix=f"simxen-fuzz-{name}-")
    for i, seed in enumerate(t.seeds()):
        with open(os.path.join(corpus, f"seed-{i}"), "wb") as f:
            f.write(seed)
    os.makedirs(findings, exist_ok=True)

    def report(crashes=0):
        elapsed = time.monotonic() - start
        print(json.dumps({"target": name, "driver": "atheris", "seconds": round(elapsed, 1),
                          "inputs_per_second": round(t.counts["inputs"] / elapsed, 1),
                          "counts": t.counts, "crashes": crashes, "hangs": 0}), flush=True)

    def test_one(data):
        if time.monotonic() >= deadline:
            report()
            os._exit(0)
        try:
            t.one(data)
        except BaseException:
            report(crashes=1)
            raise

    argv = [sys.argv[0], corpus, f"-timeout={timeout}", f"-max_len={max_len}",
            f"-artifact_prefix={findings.rstrip('/')}/", f"-max_total_time={int(seconds) + 120}",
            "-print_final_stats=1"]
    atheris.Setup(argv, test_one)
    atheris.Fuzz()


def build_parser():
    """The command line of ``python -m fuzz.run`` (and of ``scripts/fuzz.sh``)."""
    parser = argparse.ArgumentParser(prog="python -m fuzz.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("target", choices=sorted(TARGETS))
    parser.add_argument("seconds", type=float, nargs="?", default=10.0)
    parser.add_argument("--driver", choices=("auto", "atheris", "random"), default="auto")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random driver")
    parser.add_argument("--findings", default="fuzz-findings", metavar="DIR",
                        help="where failing inputs are written (default fuzz-findings/)")
    parser.add_argument("--timeout", type=int, default=10, help="seconds before an input is a hang")
    parser.add_argument("--replay", metavar="FILE", help="run one saved input and show what happens")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    max_len = 4097 if args.target == "tpmif" else 8192
    if args.replay:
        t = make_target(args.target)
        with open(args.replay, "rb") as f:
            t.one(f.read())
        print(json.dumps({"target": t.name, "replayed": args.replay, "counts": t.counts}))
        return 0
    driver = args.driver
    if driver == "auto":
        try:
            import atheris  # noqa: F401
            driver = "atheris"
        except ImportError:
            driver = "random"
    if driver == "atheris":
        run_atheris(args.target, args.seconds, findings=args.findings, timeout=args.timeout,
                    max_len=max_len)
    summary = run_random(make_target(args.target), args.seconds, seed=args.seed,
                         findings=args.findings, timeout=args.timeout, max_len=max_len)
    print(json.dumps(summary))
    return 1 if summary["crashes"] or summary["hangs"] else 0


if __name__ == "__main__":
    sys.exit(main())

"""Settings for every test.

Hypothesis gives each example a deadline (200 ms) by default; on a busy
2-core CI machine a slow example then fails a test whose behaviour is right
(``test_cobham_conserves_the_mg1_mean`` did, at 292 ms). Tests here check
behaviour, never speed (speed is what ``benchmarks/`` measures), so no
example has a deadline.

``shipped_traces`` runs every shipped scenario once per test run, for the
analysis tests (schema, exports) and the interoperability tests (Mermaid's own
parser, rsvg-convert) alike. ``simxen_on_a_terminal`` runs a command whose
stderr is a terminal, for the tests of progress lines (``run``, ``sweep``).

``make test`` runs the suite with pytest-xdist (``-n auto --dist loadfile``,
docs/testing.rst says why): each worker is a process with a session of its own,
so what must happen once per run is shared through files (``shipped_traces``),
and what must never be shared -- a loopback port -- is reserved
(:func:`simxen.server.loopback.free_port_pair`).
"""

import fcntl
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import settings

from simxen.analysis import trace_format

settings.register_profile("simxen", deadline=None)
settings.load_profile("simxen")

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
#: The queueing-validation scenarios run for a simulated hour of the same few
#: commands; their first seconds already hold every record kind they emit.
VALIDATION_UNTIL = 4.0


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config):
    """``-n auto``: one worker per CPU this process may run on (``sched_getaffinity``:
    what taskset or a container's cpuset allows). pytest-xdist's own count is
    psutil's *physical* cores of the whole host: one on a 2-vCPU machine whose
    vCPUs are two threads of one core, and every core of the host inside a
    container given two. ``PYTEST_XDIST_AUTO_NUM_WORKERS`` still decides when set."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None
    return max(1, len(os.sched_getaffinity(0)))


def shared_folder(tmp_path_factory):
    """A folder every process of this test run sees: the session's temporary folder,
    or under pytest-xdist its parent, which holds each worker's (pytest-xdist's
    documented way for workers to share what a session fixture makes)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture
def simxen_on_a_terminal():
    """Run ``simxen ARGS`` with its stderr on a pseudo-terminal, where a command draws its
    progress line (piped, it stays silent): ``proc, err = simxen_on_a_terminal("run", path)``.

    ``proc`` is the finished process, its stdout captured as bytes; ``err`` is all the
    terminal received, decoded. Reading stops when the child's side closes (Linux then
    fails ``read`` with EIO, hence the ``OSError``)."""
    import pty

    def run(*args):
        master, slave = pty.openpty()
        try:
            proc = subprocess.run([sys.executable, "-m", "simxen.cli", *args],
                                  stdout=subprocess.PIPE, stderr=slave, timeout=300)
            os.close(slave)
            chunks = []
            while True:
                try:
                    data = os.read(master, 4096)
                except OSError:
                    break
                if not data:
                    break
                chunks.append(data)
        finally:
            os.close(master)
        return proc, b"".join(chunks).decode()
    return run


@pytest.fixture(scope="session")
def shipped_traces(tmp_path_factory):
    """``{scenario name: records as dicts}`` for every shipped scenario at its own seed
    (``scenarios/*.toml`` whole, ``scenarios/validation/*.toml`` for their first
    :data:`VALIDATION_UNTIL` seconds): ``simxen run --trace`` in as many processes as
    there are cores (two at most). The session shares them between the schema test and
    the export tests; the first pytest-xdist worker to ask writes the trace files (the
    others wait on its lock) and every worker reads them."""
    shared = shared_folder(tmp_path_factory)
    folder = shared / "shipped"
    jobs = [(p.stem, p, []) for p in sorted(SCENARIOS.glob("*.toml"))]
    jobs += [(f"validation/{p.stem}", p, ["--until", str(VALIDATION_UNTIL)])
             for p in sorted(SCENARIOS.glob("validation/*.toml"))]

    def trace_file(name):
        return folder / (name.replace("/", "-") + ".jsonl")

    def run(job):
        name, path, extra = job
        done = subprocess.run([sys.executable, "-m", "simxen.cli", "run", str(path), "--trace",
                               str(trace_file(name)), "--no-progress", *extra],
                              capture_output=True, text=True, timeout=600)
        # 1: an expectation failed (a validation scenario cut short) -- the trace is written
        assert done.returncode in (0, 1), f"{name}: {done.stderr}"

    with open(shared / "shipped.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)        # released when the file is closed
        complete = folder / "complete"
        if not complete.exists():
            folder.mkdir(exist_ok=True)
            with ThreadPoolExecutor(max_workers=max(1, min(2, os.cpu_count() or 1))) as pool:
                list(pool.map(run, jobs))
            complete.touch()
    return {name: trace_format.load(trace_file(name)) for name, _, _ in jobs}

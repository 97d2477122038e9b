"""Machine instructions per round trip, counted by valgrind: a figure noise cannot blur.

CPU time on a shared machine moves 10-30 % from one hour to the next, and
``--count`` (interpreted opcodes, :mod:`sys.settrace`) sees neither the work
done in C nor how dear each opcode is. Valgrind's callgrind tool counts every
machine instruction the process executes ("Ir"), the same number on every
run of the same code with the same hash seed (``PYTHONHASHSEED=0``).

Each figure is the difference between a run of ``2 * TRIPS`` and a run of
``TRIPS`` round trips, divided by ``TRIPS``, so start-up (the interpreter,
imports, building the domains) cancels out. Every run is its own
``valgrind --tool=callgrind`` process (about 50x slower than native: a few
seconds to a minute each) with the garbage collector set as ``simxen run``
sets it (:func:`simxen.scenario.runner.fewer_collections`), as the timed
runs are. The runs import the tree one after the other, so a tree that changes
while they run (a checkout, a landing) is refused: count a frozen copy of a tree
that others change. Used by ``ring_roundtrip.py --instructions`` and
``vtpm_roundtrip.py --instructions``; valgrind comes from Debian's
``valgrind`` package.
"""

import hashlib
import os
import re
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

#: what a counted process runs: ``EXPR`` with ``{n}`` replaced by the number of round trips,
#: evaluated after ``import MODULE`` (a script of this folder)
_CHILD = """\
import sys
sys.path[:0] = [{here!r}]
from simxen.scenario.runner import fewer_collections
import {module}
with fewer_collections():
    {expr}
"""


def available() -> bool:
    """Whether valgrind is on ``PATH``."""
    return shutil.which("valgrind") is not None


def missing() -> str:
    """The line to print when :func:`available` is false."""
    return ("--instructions needs valgrind (Debian: apt-get install valgrind); "
            "--count gives a deterministic opcode count without it")


def count(module, expr, n) -> int:
    """Instructions of one process that imports ``module`` and runs ``expr`` for ``n``."""
    code = _CHILD.format(here=HERE, module=module, expr=expr.replace("{n}", str(n)))
    env = dict(os.environ, PYTHONHASHSEED="0", OPENBLAS_NUM_THREADS="1")
    proc = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                           sys.executable, "-c", code],
                          env=env, cwd=ROOT, capture_output=True, text=True)
    found = re.search(r"Collected : (\d+)", proc.stderr)
    if proc.returncode != 0 or found is None:
        raise SystemExit(f"valgrind run of {module}: {expr} failed:\n"
                         + proc.stderr[-2000:])
    return int(found.group(1))


def _tree_digest() -> str:
    """A digest of every ``.py`` file the counted processes may import (``simxen/`` and
    this folder): what must not change between the runs a figure compares."""
    digest = hashlib.sha256()
    for top in (os.path.join(ROOT, "simxen"), HERE):
        for folder, dirs, files in sorted(os.walk(top)):
            dirs.sort()
            for name in sorted(f for f in files if f.endswith(".py")):
                path = os.path.join(folder, name)
                digest.update(path.encode() + b"\0")
                with open(path, "rb") as f:
                    digest.update(f.read())
    return digest.hexdigest()


#: the tree's digest when this process counted first (every figure it prints is compared
#: with the others, the floor's included)
_FIRST = []


def per_trip(module, expr, trips) -> float:
    """Instructions per round trip of ``expr``: ``(count(2 * trips) - count(trips)) / trips``.

    Each run imports the tree afresh, so a tree that changes while they run (a checkout,
    another engineer's landing) puts two versions of the code into one difference:
    refused, rather than printed (on a live tree shared with others, count a frozen copy:
    ``git archive HEAD | tar -x -C /tmp/frozen``)."""
    if not _FIRST:
        _FIRST.append(_tree_digest())
    value = (count(module, expr, 2 * trips) - count(module, expr, trips)) / trips
    if _tree_digest() != _FIRST[0]:
        raise SystemExit(f"the source tree under {ROOT} changed while its instructions were "
                         "counted: the figures would mix two versions of the code; count a "
                         "copy that nothing changes (git archive HEAD | tar -x -C DIR)")
    return value


#: round trips the floor is counted over, at least: its trip is small, and with fewer
#: a few per cent of one-off work is left in the difference
FLOOR_TRIPS = 1000


def floor_per_trip(module, trips) -> float:
    """:func:`per_trip` of ``module``'s bare-SimPy floor (``floor_roundtrips``), over at
    least :data:`FLOOR_TRIPS` round trips."""
    return per_trip(module, f"{module}.floor_roundtrips({{n}})", max(trips, FLOOR_TRIPS))


def line(name, value, floor) -> str:
    """One printed figure: instructions per trip and the ratio to ``floor``'s."""
    return f"{name:<22}{value:12,.0f} instructions/trip  {value / floor:6.2f}x floor"

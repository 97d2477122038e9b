"""A sweep: one scenario run over a grid of parameter values, each point replicated.

::

    simxen sweep scenarios/many-guests.toml --vary stack.guest_count=1,2,4,8 \\
        --replications 3 --jobs 2 --out /tmp/mg

**The plan.** Each ``--vary KEY=V1,V2,...`` is one axis; the *points* are the
cross product of the axes, in the order given (the last axis varies
fastest). Each point runs ``R`` times (*replications*) with seeds derived
from the scenario's ``seed`` alone -- replication ``r`` gets
``SeedSequence(seed, spawn_key=(r,))`` -- so the same sweep gives the same
numbers, and replication ``r`` of every point draws from the same random
streams (common random numbers: differences *between* points are not
drowned in seed noise). A run is exactly ``simxen run SCENARIO --set ...
--seed S``: the point's values are ``--set`` overrides, checked by the
scenario's schema before anything runs.

**The output** (``--out DIR``):

``runs.csv``
    one row per run: every varied key (the value as written), ``replication``,
    ``seed``, then every numeric metric the scenario publishes at any point
    (``simxen metrics``), booleans as 0/1; a metric a run did not produce
    is empty. Rows are appended as runs finish (flushed and synced, so an
    interrupted sweep keeps them) and sorted into plan order at the end.
``summary.csv``
    one row per point and metric: the varied keys, ``metric``, ``unit``,
    ``n``, ``mean``, ``std`` (sample, ``n - 1``), and ``ci95_low`` /
    ``ci95_high``, the 95 % Student-t confidence interval of the mean
    (empty with fewer than two replications).
``sweep.json``
    what was asked (scenario, its SHA-256, axes, overrides, replications,
    seeds, the scenario's ``[[plot]]`` tables), so ``--resume`` can refuse to
    mix two different sweeps and ``simxen plot`` can redraw the defaults.

Numbers are written with Python's ``repr`` (shortest exact round trip), so
the same sweep writes the same bytes on local processes and on a Dask
cluster (``--scheduler tcp://HOST:PORT``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simxen.errors import InputError
from simxen.scenario import metrics as metrics_mod
from simxen.scenario import overrides as overrides_mod
from simxen.scenario import scenario_file

#: columns of runs.csv between the varied keys and the metrics (a metric named like a
#: varied key -- the load workload publishes its guest_count -- is left to the key's column)
RUN_COLUMNS = ("replication", "seed")

#: most runs (points x replications) a sweep makes: each point's scenario is loaded and
#: checked before the first run, so a grid of millions would exhaust memory and time
#: before it said how many runs it is
MAX_RUNS = 100_000
#: columns of summary.csv after the varied keys
SUMMARY_COLUMNS = ("metric", "unit", "n", "mean", "std", "ci95_low", "ci95_high")


@dataclass(frozen=True)
class Axis:
    """One ``--vary KEY=V1,V2,...``: the key (as ``--set`` writes it) and the value texts."""

    key: str
    values: tuple


def split_values(text: str) -> list:
    """``'1,2,[3, 4],"a,b"'`` -> ``['1', '2', '[3, 4]', '"a,b"']`` (commas inside brackets,
    braces or quotes do not split)."""
    out, current, depth, quoted = [], [], 0, False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in "[{":
            depth += 1
        elif not quoted and ch in "]}":
            depth -= 1
        if ch == "," and depth == 0 and not quoted:
            out.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    out.append("".join(current).strip())
    return out


def parse_axis(text: str) -> Axis:
    """``"stack.guest_count=1,2,4"`` -> :class:`Axis`; :class:`InputError` if malformed."""
    key, sep, values = text.partition("=")
    key = key.strip()
    where = f"--vary {text}"
    if not sep or not key:
        raise InputError("expected KEY=V1,V2,... (e.g. stack.guest_count=1,2,4)", key=where)
    segments = overrides_mod.split_key(key, where=where)
    vals = split_values(values)
    if any(v == "" for v in vals):
        raise InputError("expected a comma-separated list of values, found an empty one",
                         key=where)
    # as the scenario takes them: 4 and +4, interrupt and "interrupt" are one point twice
    seen = {}
    for v in vals:
        try:
            value = _comparable(overrides_mod.parse_value(v))
        except InputError as err:               # nested past the parser
            raise InputError(err.message, key=where) from None
        if value in seen:
            raise InputError("a value is listed twice" + (f" ({seen[value]} and {v} are the "
                             "same value)" if seen[value] != v else ""), key=where)
        seen[value] = v
    if segments == ("scenario", "seed"):        # however spelled: scenario."seed" too
        raise InputError("the seed is not a parameter to vary: --replications R runs every "
                         "point with R seeds derived from scenario.seed", key=where)
    return Axis(key, tuple(vals))


def _comparable(value):
    """A TOML value as a key that equals another value's exactly when the scenario would
    take them alike (4 and 4.0 for a number; a boolean is not the integer 0 or 1)."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, list):
        return ("list", tuple(_comparable(v) for v in value))
    if isinstance(value, dict):
        return ("table", tuple(sorted((k, _comparable(v)) for k, v in value.items())))
    return value


def derive_seeds(base: int, replications: int) -> list:
    """The seed of each replication: ``SeedSequence(base, spawn_key=(r,))``, as 63-bit ints.

    Depends only on ``base`` and ``r``: adding replications keeps the first ones."""
    seeds = []
    for r in range(replications):
        words = np.random.SeedSequence(base, spawn_key=(r,)).generate_state(2, dtype=np.uint32)
        seeds.append(int(words[0]) << 31 ^ int(words[1]))
    return seeds


@dataclass(frozen=True)
class Run:
    """One run of the plan: which point (its value texts), which replication, which seed."""

    point: int
    values: tuple
    replication: int
    seed: int

    @property
    def key(self) -> tuple:
        return (self.values, self.replication)


class Plan:
    """Every run a sweep makes, and the columns its CSVs will have, checked before any run."""

    def __init__(self, scenario, axes, replications=1, fixed=()):
        self.path = Path(scenario).resolve()
        self.shown_path = str(scenario)
        self.axes = list(axes)
        self.fixed = tuple(fixed)
        if replications < 1:
            raise InputError(f"--replications: expected an integer >= 1, found {replications}")
        self.replications = replications
        if not self.axes:
            raise InputError("expected at least one --vary KEY=V1,V2,...")
        keys = [a.key for a in self.axes]
        varied = set()                   # as the scenario's keys: stack."rate" is stack.rate
        for a in self.axes:
            segments = overrides_mod.split_key(a.key, where=f"--vary {a.key}")
            if segments in varied:
                raise InputError("a key is varied twice", key=f"--vary {a.key}")
            varied.add(segments)
        for text in self.fixed:
            if overrides_mod.parse(text).segments in varied:
                raise InputError("the key is varied too: give it to --vary or to --set, not both",
                                 key=f"--set {text}")
        runs = math.prod(len(a.values) for a in self.axes) * replications
        if runs > MAX_RUNS:
            grid = " x ".join(f"{len(a.values):,}" for a in self.axes)
            raise InputError(f"{grid} points x {replications:,} replications is {runs:,} runs; "
                             f"a sweep makes at most {MAX_RUNS:,} (at a second each, more than "
                             "a day): vary fewer values")
        base = scenario_file.load(scenario, self.fixed)
        self.base_seed = base.data["scenario"]["seed"]
        self.seeds = derive_seeds(self.base_seed, replications)
        self.points = list(itertools.product(*(a.values for a in self.axes)))
        self.columns, self.units = [], {}
        self.default_plots = [dict(p) for p in base.data.get("plot", [])]
        for values in self.points:
            sc = self._load(values)
            for m in metrics_mod.of_scenario(sc):
                if m.numeric and m.name not in self.units and m.name not in keys:
                    self.columns.append(m.name)
                    self.units[m.name] = m.unit
        self.runs = [Run(i, values, r, seed) for i, values in enumerate(self.points)
                     for r, seed in enumerate(self.seeds)]

    def overrides(self, values) -> list:
        return list(self.fixed) + [f"{a.key}={v}" for a, v in zip(self.axes, values)]

    def _load(self, values):
        """The scenario of the point ``values``, checked as ``simxen validate`` checks it
        (:func:`~simxen.scenario.runner.prepare`, a few milliseconds): a point that
        ``simxen run`` would refuse is refused before the sweep writes anything."""
        from simxen.scenario import runner
        try:
            sc = scenario_file.load(self.path, self.overrides(values))
            runner.prepare(sc).hv.trace.close()
            return sc
        except InputError as err:
            key = str(err.key or "")
            for a, v in zip(self.axes, values):
                if key == f"--set {a.key}={v}":
                    raise InputError(err.message, path=self.shown_path,
                                     key=f"--vary {a.key}={v}") from None
            raise

    @property
    def keys(self) -> list:
        return [a.key for a in self.axes]

    def spec(self) -> dict:
        """What ``sweep.json`` records (and ``--resume`` compares)."""
        return {"scenario": self.shown_path,
                "scenario_sha256": hashlib.sha256(self.path.read_bytes()).hexdigest(),
                "vary": {a.key: list(a.values) for a in self.axes}, "set": list(self.fixed),
                "replications": self.replications, "seed": self.base_seed, "seeds": self.seeds,
                "plots": self.default_plots}


def run_one(path, overrides, seed, trace_level="commands") -> dict:
    """Run the scenario at *path* with *overrides* and *seed*: ``{metric: value}`` of its
    numeric metrics. This is what a worker process (or a Dask worker) executes."""
    from simxen.scenario import runner
    sc = scenario_file.load(path, overrides)
    result = runner.run(sc, seed=seed, trace_level=trace_level)
    try:
        return {name: value for name, value in result.metrics.items()
                if result.registry.get(name).numeric}
    finally:
        # its spilled rows' temporary file goes now: the run is a cycle of objects that
        # only the collector frees, and a worker kept one open file per run until then
        result.trace.close()


def cell(value) -> str:
    """A CSV cell: ``repr`` of floats (exact, shortest), 0/1 for booleans, empty for none."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    return str(value)


def _damaged(replication, metrics):
    """What is wrong with a complete runs.csv line whose replication and metric cells
    are these (what :func:`cell` wrote: a number, or empty), or ``None``."""
    if not replication.isdigit():
        return f"replication {replication!r} is not a whole number"
    for value in metrics:
        if value:
            try:
                float(value)
            except ValueError:
                return f"{value!r} is not a number"
    return None


def _line(cells) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(cells)
    return buf.getvalue()


class RunsFile:
    """``runs.csv``: the header, rows appended (and synced) as runs finish, sorted at the end."""

    def __init__(self, path: Path, plan: Plan):
        self.path = path
        self.plan = plan
        self.header = plan.keys + list(RUN_COLUMNS) + plan.columns

    def row(self, run: Run, values: dict) -> list:
        return (list(run.values) + [str(run.replication), str(run.seed)]
                + [cell(values.get(name)) for name in self.plan.columns])

    def read(self) -> dict:
        """``{(values, replication): row}`` of the complete rows already in the file."""
        if not self.path.exists():
            return {}
        try:
            text = self.path.read_text(encoding="utf-8")
            # a last line without its newline was cut short when the sweep was stopped,
            # even if what is left of its last cell still reads as a number
            complete = text[:text.rfind("\n") + 1]
            rows = list(csv.reader(io.StringIO(complete, newline="")))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise InputError(f"cannot be read as a sweep's runs ({exc}); use another --out",
                             path=self.path) from None
        if not rows or rows[0] != self.header:
            raise InputError("holds runs with other columns than this sweep's (another "
                             "scenario or --vary?); use another --out", path=self.path)
        n = len(self.plan.keys)
        metrics = n + len(RUN_COLUMNS)
        done = {}
        for line, row in enumerate(rows[1:], start=2):
            if len(row) != len(self.header):
                continue                 # a line cut short when the sweep was interrupted
            bad = _damaged(row[n], row[metrics:])
            if bad:
                raise InputError(f"line {line}: {bad}: not a line this sweep wrote; mend or "
                                 "delete it (that run is then made again), or use another --out",
                                 path=self.path)
            done[(tuple(row[:n]), int(row[n]))] = row
        return done

    def start(self, kept: dict):
        """Rewrite the file with the header and the *kept* rows (drops a cut-short line)."""
        self._write(kept.values())
        self._fp = open(self.path, "a", encoding="utf-8", newline="")

    def append(self, row):
        self._fp.write(_line(row))
        self._fp.flush()
        os.fsync(self._fp.fileno())

    def close(self):
        fp = getattr(self, "_fp", None)
        if fp is not None:
            fp.close()
            self._fp = None

    def finish(self, rows: dict):
        """Rewrite the file in plan order (points as listed, replications ascending)."""
        self.close()
        self._write(rows[r.key] for r in self.plan.runs if r.key in rows)

    def _write(self, rows):
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8", newline="") as fp:
            fp.write(_line(self.header))
            for row in rows:
                fp.write(_line(row))
            fp.flush()
            os.fsync(fp.fileno())
        os.replace(tmp, self.path)


def summarise(plan: Plan, rows: dict) -> list:
    """``summary.csv`` rows: per point and metric, n, mean, std and the 95 % t interval."""
    from scipy import stats
    n_keys = len(plan.keys)
    first = n_keys + len(RUN_COLUMNS)
    out = [plan.keys + list(SUMMARY_COLUMNS)]
    for values in plan.points:
        reps = [rows[(tuple(values), r)] for r in range(plan.replications)
                if (tuple(values), r) in rows]
        for j, name in enumerate(plan.columns):
            xs = [float(row[first + j]) for row in reps if row[first + j] != ""]
            if not xs:
                continue
            n = len(xs)
            mean = float(np.mean(xs))
            std = float(np.std(xs, ddof=1)) if n > 1 else float("nan")
            if n > 1 and std > 0:
                low, high = stats.t.interval(0.95, n - 1, loc=mean, scale=std / math.sqrt(n))
                low, high = float(low), float(high)
            elif n > 1:
                low = high = mean
            else:
                low = high = float("nan")
            out.append(list(values) + [name, plan.units[name], str(n), cell(mean), cell(std),
                                       cell(low), cell(high)])
    return out


def write_summary(path: Path, table: list):
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as fp:
        for row in table:
            fp.write(_line(row))
    os.replace(tmp, path)


# ------------------------------------------------------------------ executing
def _ignore_sigint():
    """Worker processes leave Ctrl-C to the parent, which stops them (no traceback per worker)."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _call(item):
    tag, args = item
    return tag, run_one(*args)


class LocalExecutor:
    """Runs on this machine: in this process (``jobs = 1``) or a pool of ``jobs`` processes."""

    def __init__(self, jobs: int):
        if jobs < 1:
            raise InputError(f"--jobs: expected an integer >= 1, found {jobs}")
        self.jobs = jobs

    def map_unordered(self, calls):
        """Yield ``(tag, result)`` as each ``(tag, args)`` call of :func:`run_one` finishes."""
        if self.jobs == 1:
            for tag, args in calls:
                yield tag, run_one(*args)
            return
        import multiprocessing
        pool = multiprocessing.Pool(self.jobs, initializer=_ignore_sigint)
        try:
            yield from pool.imap_unordered(_call, calls)
            pool.close()
        except BaseException:
            pool.terminate()             # interrupted: stop the runs in flight, keep the rest
            raise
        finally:
            pool.join()


class DaskExecutor:
    """Runs on an existing Dask distributed cluster (``--scheduler tcp://HOST:PORT``).

    The workers must see the scenario file (and the files it names) at the same
    absolute path, and have simxen installed (``pip install 'simxen[dask]'``)."""

    def __init__(self, address: str, timeout: float = 10.0):
        try:
            from distributed import Client
        except ImportError:
            raise InputError("--scheduler needs Dask's distributed scheduler: "
                             "pip install 'simxen[dask]'") from None
        try:
            self.client = Client(address, timeout=timeout)
        except (OSError, TimeoutError) as exc:
            raise InputError(f"cannot reach the Dask scheduler: {exc}",
                             key=f"--scheduler {address}") from None
        except ValueError as exc:        # Dask's address parser: no port, unknown scheme
            raise InputError(f"not a Dask scheduler address ({exc}); expected tcp://HOST:PORT",
                             key=f"--scheduler {address}") from None

    def map_unordered(self, calls):
        from distributed import as_completed
        futures = {}
        for tag, args in calls:
            fut = self.client.submit(run_one, *args, pure=False)
            futures[fut.key] = (fut, tag)
        try:
            for fut in as_completed([f for f, _ in futures.values()]):
                yield futures[fut.key][1], fut.result()
        finally:
            self.client.cancel([f for f, _ in futures.values() if not f.done()])

    def close(self):
        self.client.close()


def execute(plan: Plan, out, *, executor, resume=False, progress=None,
            trace_level="commands") -> dict:
    """Run every run of *plan* not already in ``out/runs.csv``; write both CSVs.

    *progress*, if given, is called ``progress(done, total)`` at the start and
    after each run. Returns ``{"ran": n, "kept": n, "total": n}``."""
    out = Path(out)
    runs_path, spec_path = out / "runs.csv", out / "sweep.json"
    # the level is part of the sweep: at off a run has no value for a metric read from
    # the trace's records, so runs at two levels do not belong in one runs.csv
    spec = {**plan.spec(), "trace_level": trace_level}
    if out.exists() and not out.is_dir():
        raise InputError("is not a folder", path=out)
    if (runs_path.exists() or spec_path.exists()) and not resume:
        raise InputError("already holds a sweep: add --resume to finish it, or choose another "
                         "--out", path=out)
    if resume and spec_path.exists():
        try:
            old = json.loads(spec_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = None
        if old != spec:
            raise InputError("holds a different sweep (scenario, --vary, --set, --replications "
                             "or --trace-level differ); --resume only finishes the same sweep",
                             path=spec_path)
    out.mkdir(parents=True, exist_ok=True)
    spec_path.write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")
    runs = RunsFile(runs_path, plan)
    rows = runs.read() if resume else {}
    rows = {k: v for k, v in rows.items() if k in {r.key for r in plan.runs}}
    todo = [r for r in plan.runs if r.key not in rows]
    kept = len(rows)
    runs.start(rows)
    if progress:
        progress(kept, len(plan.runs))
    calls = [(run, (str(plan.path), plan.overrides(run.values), run.seed, trace_level))
             for run in todo]
    try:
        for run, values in executor.map_unordered(calls):
            row = runs.row(run, values)
            runs.append(row)
            rows[run.key] = row
            if progress:
                progress(len(rows), len(plan.runs))
    finally:
        runs.close()
    runs.finish(rows)
    write_summary(out / "summary.csv", summarise(plan, rows))
    return {"ran": len(todo), "kept": kept, "total": len(plan.runs)}

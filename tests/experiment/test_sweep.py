"""`simxen sweep`: the plan, the CSVs, resuming, and the same bytes locally and on Dask."""

import csv
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from scipy import stats

from simxen.errors import InputError
from simxen.experiment import sweep

ROOT = Path(__file__).resolve().parents[2]


def simxen(*args, **kw):
    return subprocess.run([sys.executable, "-m", "simxen.cli", *args], capture_output=True,
                          text=True, timeout=300, **kw)


@pytest.fixture
def pingpong(tmp_path):
    """ring-pingpong with 60 requests: a run takes a fraction of a second."""
    text = (ROOT / "scenarios" / "ring-pingpong.toml").read_text()
    p = tmp_path / "pp.toml"
    p.write_text(text.replace("requests = 2000", "requests = 60").replace("equals = 2000",
                                                                         "equals = 60"))
    return p


def plan(path, reps=2):
    return sweep.Plan(path, [sweep.parse_axis("pingpong.window=1,4"),
                             sweep.parse_axis("pingpong.push_each=true,false")], reps)


def read(path):
    with open(path, newline="") as fp:
        return list(csv.reader(fp))


def test_axes_split_values_outside_brackets_and_quotes():
    assert sweep.split_values('1,[2, 3],"a,b", x') == ["1", "[2, 3]", '"a,b"', "x"]
    a = sweep.parse_axis('stack.commands=["quote"],["nv_write","quote"]')
    assert a.values == ('["quote"]', '["nv_write","quote"]')
    for bad, words in (("stack.guest_count", "expected KEY=V1,V2"), ("x=1,,2", "empty one"),
                       ("x=1,1", "listed twice"), ("scenario.seed=1,2", "--replications")):
        with pytest.raises(InputError, match=words):
            sweep.parse_axis(bad)


def test_a_value_listed_twice_or_the_seed_is_refused_however_spelled():
    """Values were compared as text and the seed key by its plain spelling: --vary
    pingpong.window=4,+4 swept one point twice, and --vary 'scenario."seed"=1,2' was a
    sweep of two identical points (each run's seed is the replication's, not the point's)."""
    for bad, words in (("pingpong.window=4,+4", r"\(4 and \+4 are the same value\)"),
                       ("stack.rate=20,20.0", "20 and 20.0"),
                       ('pingpong.frontend=guest1,"guest1"', "guest1 and \"guest1\""),
                       ("stack.mix={a = 1, b = 2},{b = 2, a = 1}", "are the same value"),
                       ('scenario."seed"=1,2', "--replications"),
                       ('"scenario".seed=1,2', "--replications")):
        with pytest.raises(InputError, match=words):
            sweep.parse_axis(bad)
    # alike only as text, or not alike: different points
    assert sweep.parse_axis("x.y=1,true,[1],[true],{a = 1},{a = 2}").values[1] == "true"
    assert len(sweep.parse_axis("x.y=1,1.5,-1").values) == 3


def test_seeds_derive_from_the_scenario_seed_only():
    s = sweep.derive_seeds(1, 4)
    assert s == sweep.derive_seeds(1, 4) and len(set(s)) == 4
    assert sweep.derive_seeds(1, 2) == s[:2]           # more replications keep the first ones
    assert sweep.derive_seeds(2, 4) != s
    assert all(0 <= x < 2**63 for x in s)


def test_plan_is_the_cross_product_checked_by_the_schema(pingpong):
    p = plan(pingpong, reps=3)
    assert p.points == [("1", "true"), ("1", "false"), ("4", "true"), ("4", "false")]
    assert len(p.runs) == 12 and [r.seed for r in p.runs[:3]] == p.seeds
    assert p.units["pingpong.latency_us.p95"] == "us"
    with pytest.raises(InputError) as e:
        sweep.Plan(pingpong, [sweep.parse_axis("pingpong.window=1,0")])
    assert "--vary pingpong.window=0: expected an integer >= 1, found 0" in str(e.value)


def test_csvs_are_tidy_and_the_interval_is_students_t(pingpong, tmp_path):
    p = plan(pingpong, reps=3)
    out = tmp_path / "out"
    counts = sweep.execute(p, out, executor=sweep.LocalExecutor(1))
    assert counts == {"ran": 12, "kept": 0, "total": 12}
    runs = read(out / "runs.csv")
    head = runs[0]
    assert head[:4] == ["pingpong.window", "pingpong.push_each", "replication", "seed"]
    assert "pingpong.latency_us.p99" in head and len(runs) == 13
    assert [r[:3] for r in runs[1:4]] == [["1", "true", "0"], ["1", "true", "1"],
                                           ["1", "true", "2"]]
    col = head.index("pingpong.requests_completed")
    assert {r[col] for r in runs[1:]} == {"60"}
    # each run is exactly `simxen run --set ... --seed S`
    one = sweep.run_one(str(pingpong), ["pingpong.window=4", "pingpong.push_each=false"],
                        int(runs[10][3]))
    assert runs[10][:3] == ["4", "false", "0"]
    lat = head.index("pingpong.latency_us.mean")
    assert float(runs[10][lat]) == one["pingpong.latency_us.mean"]
    # the summary: mean and 95 % t interval of the three replications
    summary = read(out / "summary.csv")
    assert summary[0] == ["pingpong.window", "pingpong.push_each", "metric", "unit", "n", "mean",
                          "std", "ci95_low", "ci95_high"]
    row = next(r for r in summary if r[:3] == ["4", "false", "pingpong.latency_us.mean"])
    xs = [float(r[lat]) for r in runs[1:] if r[:2] == ["4", "false"]]
    half = stats.t.ppf(0.975, 2) * np.std(xs, ddof=1) / math.sqrt(3)
    assert row[3:5] == ["us", "3"]
    assert float(row[5]) == pytest.approx(np.mean(xs))
    assert float(row[7]) == pytest.approx(np.mean(xs) - half)
    assert float(row[8]) == pytest.approx(np.mean(xs) + half)
    assert float(row[7]) < float(row[5]) < float(row[8])


def test_resume_runs_only_the_missing_runs_and_writes_the_same_bytes(pingpong, tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    sweep.execute(plan(pingpong), full, executor=sweep.LocalExecutor(1))
    # an interrupted sweep: three finished rows (out of order) and a line cut short
    lines = (full / "runs.csv").read_text().splitlines(keepends=True)
    cut.mkdir()
    (cut / "runs.csv").write_text(lines[0] + lines[5] + lines[2] + lines[3] + lines[7][:40])
    (cut / "sweep.json").write_bytes((full / "sweep.json").read_bytes())
    with pytest.raises(InputError, match="--resume"):
        sweep.execute(plan(pingpong), cut, executor=sweep.LocalExecutor(1))
    counts = sweep.execute(plan(pingpong), cut, executor=sweep.LocalExecutor(1), resume=True)
    assert counts == {"ran": 5, "kept": 3, "total": 8}
    for name in ("runs.csv", "summary.csv"):
        assert (cut / name).read_bytes() == (full / name).read_bytes()
    # a different sweep in the same folder is refused
    other = sweep.Plan(pingpong, [sweep.parse_axis("pingpong.window=1,2")], 2)
    with pytest.raises(InputError, match="different sweep"):
        sweep.execute(other, cut, executor=sweep.LocalExecutor(1), resume=True)


def test_two_processes_write_the_same_bytes_as_one(pingpong, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    sweep.execute(plan(pingpong), a, executor=sweep.LocalExecutor(1))
    sweep.execute(plan(pingpong), b, executor=sweep.LocalExecutor(2))
    for name in ("runs.csv", "summary.csv", "sweep.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes()


@pytest.mark.slow
def test_dask_cluster_writes_the_same_bytes(pingpong, tmp_path):
    distributed = pytest.importorskip("distributed")
    local = tmp_path / "local"
    sweep.execute(plan(pingpong), local, executor=sweep.LocalExecutor(1))
    with distributed.LocalCluster(host="127.0.0.1", n_workers=2, threads_per_worker=1,
                                  processes=False, protocol="tcp", dashboard_address=None) as cluster:
        r = simxen("sweep", str(pingpong), "--vary", "pingpong.window=1,4",
                   "--vary", "pingpong.push_each=true,false", "--replications", "2",
                   "--scheduler", cluster.scheduler_address, "--out", str(tmp_path / "dask"),
                   "--no-plots")
    assert r.returncode == 0, r.stderr
    for name in ("runs.csv", "summary.csv"):
        assert (tmp_path / "dask" / name).read_bytes() == (local / name).read_bytes()
    with pytest.raises(InputError, match="cannot reach the Dask scheduler"):
        sweep.DaskExecutor("tcp://127.0.0.1:9", timeout=1)


@pytest.mark.parametrize("address", ["foo", "tcp://127.0.0.1:notaport", "http://127.0.0.1:8786"])
def test_a_malformed_scheduler_address_is_a_one_line_error(pingpong, tmp_path, address):
    pytest.importorskip("distributed")
    r = simxen("sweep", str(pingpong), "--vary", "pingpong.window=1", "--scheduler", address,
               "--out", str(tmp_path / "o"), "--no-plots")
    assert r.returncode == 2, r.stderr
    line, = r.stderr.strip().splitlines()
    assert line.startswith(f"simxen sweep: --scheduler {address}: not a Dask scheduler address")
    assert line.endswith("expected tcp://HOST:PORT")


def test_cli_errors_are_one_line(pingpong, tmp_path):
    r = simxen("sweep", str(pingpong), "--vary", "pingpong.window=1,x", "--out",
               str(tmp_path / "o"))
    assert r.returncode == 2
    assert r.stderr.strip().endswith("--vary pingpong.window=x: expected an integer >= 1, "
                                     "found 'x' (a string)")
    r = simxen("sweep", str(pingpong), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "at least one --vary" in r.stderr
    assert "Traceback" not in r.stderr


def test_progress_bar_on_a_terminal_and_plots(pingpong, tmp_path, simxen_on_a_terminal):
    out = tmp_path / "o"
    proc, err = simxen_on_a_terminal("sweep", str(pingpong), "--vary", "pingpong.window=1,2,4,8",
                                     "--out", str(out))
    assert proc.returncode == 0
    assert "sweep" in err and "4/4" in err and "100%" in err
    assert f"{out}: 4 runs (4 points x 1 replication; 4 run now, 0 kept)" in proc.stdout.decode()
    printed = proc.stdout.decode().split()
    png = out / "plots" / "pingpong.throughput_per_s--pingpong.window.png"
    assert str(png) in printed and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = png.with_suffix(".svg").read_text()
    assert "pingpong.window" in svg and "pingpong.throughput_per_s [1/s]" in svg


class _Interrupted(sweep.LocalExecutor):
    """Ctrl-C after ``after`` runs finished."""

    def __init__(self, after):
        super().__init__(1)
        self.after = after

    def map_unordered(self, calls):
        for i, item in enumerate(super().map_unordered(calls)):
            if i == self.after:
                raise KeyboardInterrupt
            yield item


def test_an_interrupted_sweep_keeps_its_finished_runs(pingpong, tmp_path):
    out = tmp_path / "o"
    with pytest.raises(KeyboardInterrupt):
        sweep.execute(plan(pingpong), out, executor=_Interrupted(3))
    assert len(read(out / "runs.csv")) == 1 + 3          # synced as they finished
    counts = sweep.execute(plan(pingpong), out, executor=sweep.LocalExecutor(2), resume=True)
    assert counts == {"ran": 5, "kept": 3, "total": 8}
    assert len(read(out / "runs.csv")) == 1 + 8


_KEYS = {"window": "1", "push_each": "true", "request_size": "64"}


def _spelling(draw_quote, key):
    """``pingpong.window`` as --set/--vary may spell it: either segment in double quotes."""
    head, tail = "pingpong", key
    return (f'"{head}"' if draw_quote[0] else head) + "." + (f'"{tail}"' if draw_quote[1] else tail)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(sorted(_KEYS)), st.tuples(st.booleans(), st.booleans())),
                min_size=1, max_size=4),
       st.lists(st.tuples(st.sampled_from(sorted(_KEYS)), st.tuples(st.booleans(), st.booleans())),
                max_size=2))
def test_a_key_varied_twice_or_both_varied_and_set_is_refused_however_spelled(
        pingpong, vary, fixed):
    """`--vary stack.guest_count=1,2 --set stack.guest_count=8` ran the sweep with the
    --vary values and ignored the --set silently; a key varied twice was refused naming the
    first --vary, not the repeated one, and two spellings of one key were not caught."""
    axes = [sweep.parse_axis(f"{_spelling(q, k)}={_KEYS[k]}") for k, q in vary]
    sets = [f"{_spelling(q, k)}={_KEYS[k]}" for k, q in fixed]
    seen, problem = set(), None
    for axis, (k, _) in zip(axes, vary):
        if k in seen:
            problem = problem or f"--vary {axis.key}: a key is varied twice"
        seen.add(k)
    for text, (k, _) in zip(sets, fixed):
        if k in seen:
            problem = problem or f"--set {text}: the key is varied too"
    if problem is None:
        assert sweep.Plan(pingpong, axes, 1, sets).keys == [a.key for a in axes]
    else:
        with pytest.raises(InputError) as e:
            sweep.Plan(pingpong, axes, 1, sets)
        assert str(e.value).startswith(problem), (str(e.value), problem)


def test_resume_at_another_trace_level_is_another_sweep_and_plot_says_why_a_metric_is_empty(
        tmp_path):
    """At --trace-level off the load workload has no value for the metrics it reads from TPM
    command records. sweep.json did not record the level, so --resume at another level mixed
    runs with and without them; `simxen plot --y` of such a metric said the summary had
    'no such metric' though `simxen metrics` lists it."""
    many = ROOT / "scenarios" / "many-guests.toml"
    p = sweep.Plan(many, [sweep.parse_axis("stack.guest_count=1")], 1, ["stack.duration=0.5"])
    out = tmp_path / "off"
    sweep.execute(p, out, executor=sweep.LocalExecutor(1), trace_level="off")
    with pytest.raises(InputError, match="--trace-level differ"):
        sweep.execute(p, out, executor=sweep.LocalExecutor(1), resume=True)
    from simxen.experiment import plot as plot_mod
    with pytest.raises(InputError) as e:
        plot_mod.draw(out, y="stack.manager.requests")
    assert str(e.value) == ("--y stack.manager.requests: no run of this sweep has a value for "
                            "it (a metric read from the trace's records has none at "
                            "--trace-level off)")
    assert plot_mod.draw(out, y="stack.commands")


def test_a_point_that_run_would_refuse_is_refused_before_the_sweep_writes_anything(tmp_path):
    """The plan checked each point's keys against the schema only: a point the workload's own
    checks refuse (here a million-arrival open loop) failed after sweep.json and the header of
    runs.csv were written, and the folder then held 'a sweep' that --resume could not finish."""
    out = tmp_path / "out"
    r = simxen("sweep", str(ROOT / "scenarios" / "many-guests.toml"), "--vary",
               "stack.rate=20,1e6", "--out", str(out), "--no-plots")
    assert r.returncode == 2 and not out.exists()
    (line,) = r.stderr.strip().splitlines()
    assert "many-guests.toml: --vary stack.rate=1e6: " in line and "10,000,000 arrivals" in line


@pytest.mark.parametrize("where", [lambda t: t / "a-file" / "out", lambda t: t / "a-file"],
                         ids=["under-a-file", "a-file"])
def test_an_out_that_cannot_be_a_folder_is_one_line_before_any_run(pingpong, tmp_path, where,
                                                                   capsys, monkeypatch):
    from simxen.cli import main
    (tmp_path / "a-file").write_text("kept\n")
    monkeypatch.setattr(sweep, "run_one", lambda *a: pytest.fail("a run started"))
    status = main(["sweep", str(pingpong), "--vary", "pingpong.window=1,4", "--out",
                   str(where(tmp_path)), "--no-plots", "--no-progress"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "internal error" not in err, err
    assert f"simxen sweep: {where(tmp_path)}:" in err
    assert (tmp_path / "a-file").read_text() == "kept\n"


def test_more_jobs_than_runs_start_a_worker_per_run_not_the_number_asked(pingpong, tmp_path,
                                                                          capsys, monkeypatch):
    from simxen.cli import main
    started = []
    monkeypatch.setattr(sweep, "LocalExecutor", lambda jobs: _Recording(jobs, started))
    status = main(["sweep", str(pingpong), "--vary", "pingpong.window=1,4", "--jobs",
                   "100000", "--out", str(tmp_path / "o"), "--no-plots", "--no-progress"])
    assert status == 0, capsys.readouterr().err
    assert started == [2]
    assert len(read(tmp_path / "o" / "runs.csv")) == 1 + 2


class _Recording:
    """A local executor in this process that notes how many workers it was asked for."""

    def __init__(self, jobs, started):
        started.append(jobs)
        self.inner = _LOCAL(1)

    def map_unordered(self, calls):
        return self.inner.map_unordered(calls)


_LOCAL = sweep.LocalExecutor


def test_resume_refuses_a_damaged_runs_file_naming_it_and_keeps_it(pingpong, tmp_path):
    """A runs.csv that is not what the sweep wrote -- binary, a folder, an edited line --
    is one line naming the file (and the line), and the file is left as it was; a last
    line cut short, even one whose last cell still reads as a number, is run again."""
    full = tmp_path / "full"
    sweep.execute(plan(pingpong), full, executor=sweep.LocalExecutor(1))
    lines = (full / "runs.csv").read_text().splitlines(keepends=True)
    spec = (full / "sweep.json").read_bytes()

    def folder(name, runs):
        out = tmp_path / name
        out.mkdir()
        (out / "sweep.json").write_bytes(spec)
        if runs is not None:
            (out / "runs.csv").write_bytes(runs)
        return out

    edited = lines[1].split(",")
    edited[2] = "abc"                                  # the replication
    metric = lines[2].rstrip("\n").split(",")
    metric[-1] = "n/a"
    for name, runs, words in (
            ("binary", b"\xff\xfe\x00garbage", "cannot be read"),
            ("replication", (lines[0] + ",".join(edited)).encode(), "line 2: replication 'abc'"),
            ("metric", (lines[0] + lines[1] + ",".join(metric) + "\n").encode(),
             "line 3: 'n/a' is not a number")):
        out = folder(name, runs)
        with pytest.raises(InputError, match=words) as exc:
            sweep.execute(plan(pingpong), out, executor=sweep.LocalExecutor(1), resume=True)
        assert str(out / "runs.csv") in str(exc.value)
        assert (out / "runs.csv").read_bytes() == runs          # nothing lost
    out = folder("dir", None)
    (out / "runs.csv").mkdir()
    with pytest.raises(InputError, match="cannot be read"):
        sweep.execute(plan(pingpong), out, executor=sweep.LocalExecutor(1), resume=True)
    # cut inside its last cell: as many cells as a whole line, the last a shorter number
    out = folder("cut", (lines[0] + lines[1] + lines[2].rstrip("\n")[:-1]).encode())
    counts = sweep.execute(plan(pingpong), out, executor=sweep.LocalExecutor(1), resume=True)
    assert counts["kept"] == 1
    assert (out / "runs.csv").read_bytes() == (full / "runs.csv").read_bytes()


def test_a_grid_of_more_runs_than_a_sweep_makes_is_refused_at_once(pingpong):
    """9 million points used to be loaded one by one until memory ran out."""
    with pytest.raises(InputError, match=r"3,000 x 3,000 points x 1 replications is "
                                         r"9,000,000 runs; a sweep makes at most 100,000"):
        values = ",".join(map(str, range(1, 3001)))
        sweep.Plan(pingpong, [sweep.parse_axis(f"pingpong.window={values}"),
                              sweep.parse_axis(f"pingpong.requests={values}")], 1)


def test_the_help_says_the_default_folder_and_levels_as_the_sweep_makes_them(tmp_path, capsys,
                                                                             monkeypatch):
    """--out's help said 'sweep-<scenario name>', but the folder is named after the file
    (a scenario.name that differs from it is not used); --trace-level's did not say its
    levels."""
    from simxen.cli import main
    text = (ROOT / "scenarios" / "ring-pingpong.toml").read_text()
    (tmp_path / "mine.toml").write_text(text.replace('name = "ring-pingpong"', 'name = "other"')
                                        .replace("requests = 2000", "requests = 20")
                                        .replace("equals = 2000", "equals = 20"))
    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    said = " ".join(capsys.readouterr().out.split())
    assert "(default: sweep-<SCENARIO's file name without .toml>, in the current folder)" in said
    assert "what each run's trace keeps: full, commands or off" in said
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", "mine.toml", "--vary", "pingpong.window=1", "--no-plots"]) == 0
    assert (tmp_path / "sweep-mine" / "runs.csv").exists()

"""Pictures of a sweep: one metric against one varied key, from ``summary.csv``.

::

    simxen plot /tmp/mg --x stack.guest_count --y stack.latency_ms.p95

draws ``/tmp/mg/plots/stack.latency_ms.p95--stack.guest_count.png`` (and
``.svg``): the mean of each point, with error bars spanning its 95 %
confidence interval, the axes named with the key and the metric's unit. With
``--hue KEY`` each value of another varied key gets its own line; varied keys
that are neither ``x`` nor ``hue`` also split the lines, so no two points
of different settings are ever joined. A numeric ``x`` that spans a factor
of 8 or more (guest counts 1, 2, 4 ... 32) is drawn on a log-2 axis, each
value a tick.

Matplotlib runs with its ``Agg`` back end: no display is needed.
"""

from __future__ import annotations

import csv
import difflib
import math
import re
from pathlib import Path

from simxen.errors import InputError
from simxen.experiment.sweep import SUMMARY_COLUMNS

#: what ``simxen sweep`` draws when the scenario declares no ``[[plot]]``: the first of
#: these (after the workload's name) that the summary has, each one picture
DEFAULT_Y = ("throughput_per_s", "latency_ms.p95", "hops_ms.total.p95", "latency_us.p95")


def read_summary(folder) -> tuple:
    """``(varied keys, rows as dicts)`` of ``folder/summary.csv``."""
    path = Path(folder) / "summary.csv"
    try:
        with open(path, newline="", encoding="utf-8") as fp:
            table = list(csv.reader(fp))
    except FileNotFoundError:
        raise InputError("no summary.csv here: is it the --out folder of a `simxen sweep`?",
                         path=Path(folder)) from None
    if not table or "metric" not in table[0]:
        raise InputError("not a sweep summary (no 'metric' column)", path=path)
    header = table[0]
    keys = header[:header.index("metric")]
    if header[len(keys):] != list(SUMMARY_COLUMNS):
        raise InputError(f"expected the columns {', '.join(SUMMARY_COLUMNS)} after the varied "
                         "keys", path=path)
    return keys, [dict(zip(header, row)) for row in table[1:] if len(row) == len(header)]


def default_plots(keys, rows, declared=()) -> list:
    """The pictures a sweep draws: the scenario's ``[[plot]]`` tables, else :data:`DEFAULT_Y`."""
    if declared:
        return [{"x": p.get("x") or keys[0], "y": p["y"], "hue": p.get("hue") or None,
                 "title": p.get("title") or None} for p in declared]
    names = list(dict.fromkeys(r["metric"] for r in rows))
    out = []
    for workload in dict.fromkeys(n.split(".", 1)[0] for n in names):
        for suffix in DEFAULT_Y:
            if f"{workload}.{suffix}" in names:
                out.append({"x": keys[0], "y": f"{workload}.{suffix}", "hue": None, "title": None})
    return out


def _run_columns(folder) -> list:
    """The header of ``folder/runs.csv`` (every metric the sweep asked for), or ``[]``."""
    try:
        with open(Path(folder) / "runs.csv", newline="", encoding="utf-8") as fp:
            return next(csv.reader(fp), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def _number(text):
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _safe(name) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def draw(folder, *, x=None, y, hue=None, title=None, out=None) -> list:
    """Draw metric *y* against varied key *x* from ``folder/summary.csv``; return the files."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    folder = Path(folder)
    keys, rows = read_summary(folder)
    x = x or keys[0]
    for flag, key in (("--x", x), ("--hue", hue)):
        if key is not None and key not in keys:
            raise InputError(f"not a varied key of this sweep (varied: {', '.join(keys)})",
                             key=f"{flag} {key}")
    if hue == x:
        raise InputError("--hue must be another varied key than --x", key=f"--hue {hue}")
    mine = [r for r in rows if r["metric"] == y]
    if not mine and y in _run_columns(folder):
        raise InputError("no run of this sweep has a value for it (a metric read from the "
                         "trace's records has none at --trace-level off)", key=f"--y {y}")
    if not mine:
        names = sorted({r["metric"] for r in rows})
        close = difflib.get_close_matches(y, names, n=1)
        raise InputError("the summary has no such metric" +
                         (f"; did you mean {close[0]!r}?" if close else
                          " (`simxen metrics SCENARIO` lists them)"), key=f"--y {y}")
    unit = mine[0]["unit"]
    others = [k for k in keys if k not in (x, hue)]
    numeric = all(_number(r[x]) is not None for r in mine)
    order = list(dict.fromkeys(r[x] for r in mine))
    if numeric:
        order.sort(key=_number)
    position = {v: (_number(v) if numeric else i) for i, v in enumerate(order)}

    lines = {}
    for r in mine:
        label_parts = ([f"{hue}={r[hue]}"] if hue else []) + [f"{k}={r[k]}" for k in others
                                                              if len({q[k] for q in mine}) > 1]
        lines.setdefault(", ".join(label_parts), []).append(r)

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for label, pts in lines.items():
        pts.sort(key=lambda r: position[r[x]])
        xs = [position[r[x]] for r in pts]
        means = [float(r["mean"]) for r in pts]
        low = [m - float(r["ci95_low"]) if r["ci95_low"] else 0.0 for m, r in zip(means, pts)]
        high = [float(r["ci95_high"]) - m if r["ci95_high"] else 0.0 for m, r in zip(means, pts)]
        ax.errorbar(xs, means, yerr=[low, high], marker="o", capsize=4, linewidth=1.5,
                    label=label or y)
    positive = numeric and all(position[v] > 0 for v in order)
    if positive and max(position.values()) / min(position.values()) >= 8:
        ax.set_xscale("log", base=2)
    if numeric:
        ax.xaxis.set_major_locator(FixedLocator([position[v] for v in order]))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(ScalarFormatter())
    else:
        ax.set_xticks(range(len(order)), order)
    ax.set_xlabel(x)
    ax.set_ylabel(f"{y} [{unit}]" if unit else y)
    n = max(int(r["n"]) for r in mine)
    ax.set_title(title or f"{y} vs {x}", fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.legend(title=(f"mean, 95 % CI, n = {n}" if n > 1 else "one run per point"),
              fontsize=9, title_fontsize=9)
    fig.tight_layout()
    out = Path(out) if out else folder / "plots"
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{_safe(y)}--{_safe(x)}"
    files = [out / f"{stem}.png", out / f"{stem}.svg"]
    # fixed metadata: the same summary draws the same bytes
    fig.savefig(files[0], dpi=120, metadata={"Software": None})
    with matplotlib.rc_context({"svg.hashsalt": "simxen"}):      # stable element ids
        fig.savefig(files[1], metadata={"Date": None, "Creator": None})
    plt.close(fig)
    return files

"""Pictures of a sweep: one metric against one varied key, from ``summary.csv``.

::

    simxen plot /tmp/mg --x stack.guest_count --y stack.latency_ms.p95

draws ``/tmp/mg/plots/stack.latency_ms.p95--stack.guest_count.png`` (and
``.svg``): the mean of each point, with error bars spanning its 95 %
confidence interval, the axes named with the key and the metric's unit. With
``--hue KEY`` each value of another varied key gets its own line; varied keys
that are neither ``x`` nor ``hue`` also split the lines, so no two points
of different settings are ever joined. Every point of the sweep is a tick,
labelled as the sweep wrote it; a numeric ``x`` is drawn on the scale that
keeps its ticks apart (:func:`x_scale`: guest counts 1, 2, 4 ... 32 on a
log-2 axis), and ``y`` on a log axis when the bars span three decades or more
above 0 (:func:`y_scale`). A point where no run gave the metric a value is a
gap in its line, named in a note under the plot; a point of one run has no
error bar (``summary.csv`` leaves its ``std`` and interval empty) and the
legend says so. ``tests/interop/test_plot_rsvg.py`` has rsvg-convert and
Pillow open what this module draws.

Matplotlib runs with its ``Agg`` back end: no display is needed.
"""

from __future__ import annotations

import csv
import hashlib
import math
import re
from pathlib import Path

from simxen.errors import InputError, did_you_mean
from simxen.experiment.sweep import SUMMARY_COLUMNS
from simxen.scenario import output

#: what ``simxen sweep`` draws when the scenario declares no ``[[plot]]``: the first of
#: these (after the workload's name) that the summary has, each one picture
DEFAULT_Y = ("throughput_per_s", "latency_ms.p95", "hops_ms.total.p95", "latency_us.p95")


def read_summary(folder) -> tuple:
    """``(varied keys, rows as dicts)`` of ``folder/summary.csv``.

    A file that is not the summary a sweep writes -- no such file, a folder in its
    place, bytes that are not text, no varied key before ``metric``, a row cut short
    (the file was truncated or edited), a run count that is not a count, no row at
    all -- is an :class:`~simxen.errors.InputError` naming the file (and the line),
    not a picture missing its points."""
    path = Path(folder) / "summary.csv"
    try:
        with open(path, newline="", encoding="utf-8") as fp:
            table = list(csv.reader(fp))
    except FileNotFoundError:
        raise InputError("no summary.csv here: is it the --out folder of a `simxen sweep`?",
                         path=Path(folder)) from None
    except NotADirectoryError:
        raise InputError("is a file, not a folder: expected the --out folder of a `simxen "
                         "sweep`", path=Path(folder)) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", path=path) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (byte {exc.start}): not a summary `simxen sweep` "
                         "wrote", path=path) from None
    except csv.Error as exc:
        raise InputError(f"not CSV ({exc}): not a summary `simxen sweep` wrote",
                         path=path) from None
    if not table or "metric" not in table[0]:
        raise InputError("not a sweep summary (no 'metric' column)", path=path)
    header = table[0]
    keys = header[:header.index("metric")]
    if header[len(keys):] != list(SUMMARY_COLUMNS):
        raise InputError(f"expected the columns {', '.join(SUMMARY_COLUMNS)} after the varied "
                         "keys", path=path)
    if not keys:
        raise InputError("no varied key before the 'metric' column: a sweep's summary starts "
                         "with a column per --vary key", path=path)
    rows = []
    for line, row in enumerate(table[1:], start=2):
        if len(row) != len(header):
            raise InputError(f"{len(row)} fields where the header has {len(header)}: the file "
                             "was cut short or edited; `simxen sweep --resume` with the same "
                             "arguments writes it again from runs.csv", path=path,
                             key=f"line {line}")
        row = dict(zip(header, row))
        if not row["n"].isdigit():
            raise InputError(f"n: expected the number of runs behind the point, found "
                             f"{row['n']!r}", path=path, key=f"line {line}")
        rows.append(row)
    if not rows:
        raise InputError("holds no point (only its header): nothing to draw", path=path)
    return keys, rows


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


#: the longest file name stem :func:`draw` writes: a file name may be 255 bytes (NAME_MAX
#: of Linux's file systems); a longer stem keeps its start and a hash of the whole
_MAX_STEM = 160


def _stem(y, x, hue=None) -> str:
    """The pictures' file name without its suffix: ``<y>--<x>``, and ``--by-<hue>`` when a
    hue is given (so that the same metric drawn by two hues is two files, not the second
    over the first), shortened when long."""
    stem = f"{_safe(y)}--{_safe(x)}" + (f"--by-{_safe(hue)}" if hue else "")
    if len(stem) <= _MAX_STEM:
        return stem
    return f"{stem[:_MAX_STEM - 13]}-{hashlib.sha256(stem.encode()).hexdigest()[:12]}"


def _wrap(text, width) -> str:
    """``text`` in lines of at most ``width`` characters, broken after a ``.``, ``_``,
    ``,``, ``=`` or space where it can (key and metric names have no spaces)."""
    lines, line = [], ""
    for part in re.split(r"(?<=[._,= ])", text):
        while len(part) > width:                      # a part longer than a line: cut it
            if line:
                lines.append(line)
                line = ""
            lines.append(part[:width])
            part = part[width:]
        if len(line) + len(part) > width and line:
            lines.append(line)
            line = ""
        line += part
    return "\n".join(l.rstrip() for l in lines + [line] if l)


def x_scale(values) -> tuple:
    """``(scale, options)`` of matplotlib's ``set_xscale`` for the numeric x ``values``:
    the scale whose closest two ticks are furthest apart (as a share of the axis), of
    linear, log-2 (values all above 0) and symmetric log (a 0, then values above it:
    linear up to the smallest, log-2 beyond), a log one only for values spanning a
    factor of 8 or more. Guest counts 1, 2, 4 ... 32 are log-2; 0, 1, 2 ... 12 linear;
    0, 1, 2, 4 ... 1024 symmetric log (linear, 1024 squeezed 0 to 16 into one label)."""
    values = sorted(set(values))
    positive = [v for v in values if v > 0]
    if len(positive) < 2 or positive[-1] / positive[0] < 8 or values[0] < 0:
        return "linear", {}
    if values[0] > 0:
        log = ("log", {"base": 2}, [math.log2(v) for v in values])
    else:
        low = positive[0]
        log = ("symlog", {"base": 2, "linthresh": low},
               [v / low if v <= low else 1 + math.log2(v / low) for v in values])

    def closest(at):
        return min(b - a for a, b in zip(at, at[1:])) / (at[-1] - at[0])

    return log[:2] if closest(log[2]) > closest(values) else ("linear", {})


def y_scale(values) -> str:
    """``"log"`` when every value (the bars' ends) is above 0 and they span three
    decades or more -- a linear axis drew 1e-9 s and 1e-3 s both on the 0 line under
    1e3 s -- else ``"linear"`` (a log axis has no place for 0 or below)."""
    values = [v for v in values if v is not None]
    if values and min(values) > 0 and max(values) / min(values) >= 1e3:
        return "log"
    return "linear"


#: a line's colour (matplotlib's ten "tab10" colours), then marker, then dash: the 11th
#: line is told from the 1st by its marker
_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22", "#17becf")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_DASHES = ("-", "--", ":", "-.")


def line_styles(n) -> list:
    """The look of ``n`` lines (``color``, ``marker``, ``linestyle``): all different up
    to 320 lines."""
    return [{"color": _COLOURS[i % 10], "marker": _MARKERS[i // 10 % 8],
             "linestyle": _DASHES[i // 80 % 4]} for i in range(n)]


#: a picture's height in inches (more when a legend beside it needs it: :func:`_fit_height`)
_HEIGHT = 4.8


def _fit_height(fig, legend, rect):
    """Make *fig*, laid out in *rect*, taller when *legend* (beside the plot, hanging from
    its top) runs past its bottom edge: twenty entries of one line fill the picture's
    :data:`_HEIGHT`, and twelve wrapped onto two lines were cut off in the files."""
    below = -legend.get_window_extent(fig.canvas.get_renderer()).y0 / fig.dpi
    if below > 0:
        width, height = fig.get_size_inches()
        fig.set_size_inches(width, height + below + 0.15)
        fig.tight_layout(rect=rect)


def _legend_title(ns) -> str:
    """What the legend says of the runs behind each point (``ns``: their counts)."""
    low, high = min(ns), max(ns)
    if high == 1:
        return "one run per point"
    if low == high:
        return f"mean, 95 % CI, n = {high}"
    return f"mean, 95 % CI, n = {low} to {high}" + ("; one run: no bar" if low == 1 else "")


def _missing_note(missing, x) -> str:
    """The note naming the points of the sweep that have no value of the metric."""
    said = [f"{x} = {v}" + (f" ({label})" if label else "") for v, label in missing[:3]]
    more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
    return "no value at " + "; ".join(said) + more


def _rows_of(folder, rows, y) -> list:
    """The summary's rows of metric ``y``; refused, saying why, when it has none."""
    mine = [r for r in rows if r["metric"] == y]
    if not mine and y in _run_columns(folder):
        raise InputError("no run of this sweep has a value for it (a metric read from the "
                         "trace's records has none at --trace-level off)", key=f"--y {y}")
    if not mine:
        names = sorted({r["metric"] for r in rows})
        raise InputError("the summary has no such metric" +
                         (did_you_mean(y, names) or " (`simxen metrics SCENARIO` lists them)"),
                         key=f"--y {y}")
    return mine


def _shared_name(names) -> str:
    """What several metrics' names share, for the axis they share: ``stack.latency_ms.*``
    for ``stack.latency_ms.p50`` and ``stack.latency_ms.p99``."""
    parts = [n.split(".") for n in names]
    shared = []
    for segments in zip(*parts):
        if len(set(segments)) > 1:
            break
        shared.append(segments[0])
    return ".".join(shared + ["*"]) if shared else "value"


def draw(folder, *, x=None, y, hue=None, title=None, out=None) -> list:
    """Draw metric *y* against varied key *x* from ``folder/summary.csv``; return the files.

    *y* may be a list of metrics of one unit, drawn on one axis, a line (or a line per
    setting) each: the offered load and the throughput, or p50, p95 and p99 together.

    Every point of the sweep is a tick on the x axis, labelled as the sweep wrote it; a
    point where no run gave the metric a value breaks its line and is named in a note
    under the plot; a point of one run has no error bar, and the legend says so when
    others have one. Each line has its own colour and marker (:func:`line_styles`);
    a legend of more than eight lines stands beside the plot. Long names are wrapped
    and a long file name shortened (:func:`_stem`)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

    folder = Path(folder)
    keys, rows = read_summary(folder)
    x = x or keys[0]
    for flag, key in (("--x", x), ("--hue", hue)):
        if key is not None and key not in keys:
            raise InputError(f"not a varied key of this sweep (varied: {', '.join(keys)})",
                             key=f"{flag} {key}")
    if hue == x:
        raise InputError("--hue must be another varied key than --x", key=f"--hue {hue}")
    ys = list(dict.fromkeys([y] if isinstance(y, str) else y))
    per_y = {name: _rows_of(folder, rows, name) for name in ys}
    units = {name: mine[0]["unit"] for name, mine in per_y.items()}
    if len(set(units.values())) > 1:
        raise InputError("metrics of different units share no vertical axis ("
                         + ", ".join(f"{n} [{u}]" for n, u in units.items())
                         + "): draw them in pictures of their own", key="--y")
    unit = units[ys[0]]
    others = [k for k in keys if k not in (x, hue)]
    split = ([hue] if hue else []) + others           # what puts two points on two lines
    # every point of the sweep (of any metric): a point this metric lacks is a gap
    points = list(dict.fromkeys(tuple(r[k] for k in keys) for r in rows))
    order = list(dict.fromkeys(p[keys.index(x)] for p in points))
    numeric = all(_number(v) is not None for v in order)
    if numeric:
        order.sort(key=_number)
    position = {v: (_number(v) if numeric else i) for i, v in enumerate(order)}
    for name, mine in per_y.items():
        per_y[name] = [r for r in mine if _number(r["mean"]) is not None]
        if not per_y[name]:
            raise InputError("no point of this sweep has a value for it (its means are empty)",
                             key=f"--y {name}")
    every = [r for mine in per_y.values() for r in mine]
    shown = [k for k in split if len({r[k] for r in every}) > 1 or k == hue]

    def label_of(name, setting):
        said = [f"{k}={v}" for k, v in zip(split, setting) if k in shown]
        return ", ".join(([name] if len(ys) > 1 else []) + said)

    drawn = []
    for name, mine in per_y.items():
        lines = {}
        for p in points:
            setting = tuple(p[keys.index(k)] for k in split)
            lines.setdefault(setting, {})[p[keys.index(x)]] = None
        for r in mine:
            lines[tuple(r[k] for k in split)][r[x]] = r
        drawn += [(label_of(name, s), pts) for s, pts in lines.items()
                  if any(r is not None for r in pts.values())]
    legend_beside = len(drawn) > 8
    columns = math.ceil(len(drawn) / 20) if legend_beside else 1
    fig, ax = plt.subplots(figsize=(7.5 + (2.4 * columns if legend_beside else 0), _HEIGHT))
    ends, missing = [], []
    for (label, pts), style in zip(drawn, line_styles(len(drawn))):
        xs, means, low, high = [], [], [], []
        for v in sorted(pts, key=lambda v: position[v]):
            r = pts[v]
            if r is None:
                missing.append((v, label))
                xs.append(position[v])              # a gap: the line breaks here
                means.append(math.nan)
                low.append(0.0)
                high.append(0.0)
                continue
            m = float(r["mean"])
            lo, hi = _number(r["ci95_low"]), _number(r["ci95_high"])
            xs.append(position[v])
            means.append(m)
            low.append(m - lo if lo is not None else 0.0)
            high.append(hi - m if hi is not None else 0.0)
            ends += [m - low[-1], m + high[-1]]
        ax.errorbar(xs, means, yerr=[low, high], capsize=4, linewidth=1.5,
                    label=_wrap(label or ys[0], 40), **style)
    # the axis spans every point of the sweep, a gap at either end too: the data's limits
    # reached only the points drawn, so a first or last point without a value was a tick
    # outside the picture
    ax.update_datalim([(position[v], 0.0) for v in order], updatey=False)
    if numeric:
        scale, options = x_scale(position.values())
        if scale != "linear":
            ax.set_xscale(scale, **options)
        ax.xaxis.set_major_locator(FixedLocator([position[v] for v in order]))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(FixedFormatter(order))
    else:
        ax.set_xticks(range(len(order)), order)
    if sum(len(v) + 2 for v in order) > 70:           # labels that would run into each other
        ax.tick_params(axis="x", labelrotation=35)
        for tick in ax.get_xticklabels():
            tick.set_horizontalalignment("right")
    if y_scale(ends) == "log":
        ax.set_yscale("log")
    ax.set_xlabel(_wrap(x, 80))
    named = ys[0] if len(ys) == 1 else _shared_name(ys)
    ax.set_ylabel(_wrap(f"{named} [{unit}]" if unit else named, 45))
    listed = ys[0] if len(ys) == 1 else f"{', '.join(ys[:-1])} and {ys[-1]}"
    ax.set_title(_wrap(title or f"{listed} vs {x}", 75), fontsize=11)
    ax.grid(True, alpha=0.3)
    where = dict(loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=columns) \
        if legend_beside else {}
    legend = ax.legend(title=_legend_title([int(r["n"]) for r in every]), fontsize=9,
                       title_fontsize=9, **where)
    if missing:
        fig.text(0.01, 0.01, _wrap(_missing_note(missing, x), 110), fontsize=8, color="#555",
                 va="bottom")
    rect = (0, 0.05 if missing else 0, 1, 1)
    fig.tight_layout(rect=rect)
    if legend_beside:       # a label wrapped onto two lines makes its entry twice as tall
        _fit_height(fig, legend, rect)
    out = Path(out) if out else folder / "plots"
    stem = _stem("+".join(ys), x, hue)
    files = [out / f"{stem}.png", out / f"{stem}.svg"]
    try:
        output.make_folder(out, "--out")
        # fixed metadata: the same summary draws the same bytes
        fig.savefig(files[0], dpi=120, metadata={"Software": None})
        with matplotlib.rc_context({"svg.hashsalt": "simxen"}):      # stable element ids
            fig.savefig(files[1], metadata={"Date": None, "Creator": None})
    except OSError as exc:
        raise InputError(f"cannot write the pictures: {exc.strerror}", path=out,
                         key="--out") from None
    finally:
        plt.close(fig)
    return files


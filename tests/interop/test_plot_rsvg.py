"""The pictures of a sweep (``simxen plot`` / ``simxen sweep``), opened with the tools people
open them with: rsvg-convert (librsvg) draws each SVG, Pillow opens each PNG, and both
must be pictures of the size matplotlib was asked for, with ink in several colours.

The summaries are the shapes a user's sweep makes: one point, one replication (no
interval), points of one run among points of three, a point with no value for the metric
(every replication empty or NaN), a 0 among x values spanning a factor of 1,024,
negative values, 25 hue values, names longer than a file name may be, x and y spanning
1e-9..1e3.
"""

from pathlib import Path

import pytest

from picture_checks import inked, rsvg, svg_size
from tpm_serve_helpers import require_tool

from simxen.experiment import plot, sweep

pytestmark = pytest.mark.interop

LONG_Y = "workload_with_a_long_name.latency_ms_of_the_command_round_trip_p95_" * 3
LONG_X = "workload_with_a_long_name.some_parameter_that_is_long_" * 3


def _ci(m, half):
    return [m, half, m - half, m + half]


#: name -> (varied keys, rows: key values + metric, unit, n, mean, std, low, high; hue)
CASES = {
    "one point": (["a.x"], [[4, "a.y", "ms", 3, *_ci(5.0, 2.0)]], None),
    "one replication": (["a.x"], [[x, "a.y", "ms", 1, x * 1.5, "", "", ""]
                                  for x in (1, 2, 4)], None),
    "mixed n": (["a.x"], [[1, "a.y", "ms", 3, *_ci(1.0, 0.2)],
                          [2, "a.y", "ms", 1, 2.0, "", "", ""],
                          [4, "a.y", "ms", 3, *_ci(4.0, 0.2)]], None),
    "no value at a point": (["a.x"], [[1, "a.y", "ms", 3, *_ci(1.0, 0.2)],
                                      [2, "a.z", "ms", 3, *_ci(4.0, 0.2)],
                                      [4, "a.y", "ms", 3, *_ci(4.0, 0.2)],
                                      [8, "a.y", "ms", 3, *_ci(8.0, 0.2)]], None),
    "zero and 1024": (["a.x"], [[x, "a.y", "ms", 3, *_ci(float(x % 5), 0.0)]
                                for x in (0, 1, 2, 4, 8, 16, 1024)], None),
    "negative": (["a.x"], [[x, "a.y", "ms", 3, *_ci(-x, 2.0)] for x in (-4, -1, 0, 3)], None),
    "25 hues": (["a.x", "a.h"], [[x, h, "a.y", "ms", 3, *_ci(x * h, 0.5)]
                                 for h in range(25) for x in (1, 2, 4)], "a.h"),
    "long names": ([LONG_X], [[x, LONG_Y, "ms", 3, *_ci(x, 0.2)] for x in (1, 2)], None),
    "1e-9 to 1e3": (["a.x"], [[x, "a.y", "s", 3, *_ci(float(x), float(x) / 10)]
                              for x in ("1e-09", "1e-06", "0.001", "1", "1000.0")], None),
}


def _write(folder, keys, rows):
    folder.mkdir()
    sweep.write_summary(folder / "summary.csv", [list(keys) + list(sweep.SUMMARY_COLUMNS)] + rows)
    return folder


def test_rsvg_and_pillow_open_every_picture_of_a_users_sweep(tmp_path):
    tool = require_tool("rsvg-convert")
    for i, (name, (keys, rows, hue)) in enumerate(CASES.items()):
        folder = _write(tmp_path / str(i), keys, rows)
        png, svg = plot.draw(folder, y=rows[0][len(keys)], hue=hue)
        assert len(png.name.encode()) <= 255, name
        # matplotlib's PNG: 120 dots an inch of a figure 4.8 inches high
        width, height = inked(png, min_colours=3)
        assert height == 576 and width >= 900, (name, width, height)
        # its SVG, drawn by librsvg at 96 pixels an inch: the same figure
        svg_width, svg_height, _ = svg_size(svg)
        drawn = rsvg(tool, svg, tmp_path / f"{i}.rsvg.png")
        assert inked(drawn, min_colours=3) == (round(svg_width), round(svg_height)), name
        assert abs(svg_width * 120 / 96 - width) <= 2, name


def test_a_real_sweep_of_one_replication_says_it_has_no_interval_and_its_pictures_open(
        tmp_path, capsys):
    """``simxen sweep`` with one replication: summary.csv leaves ``std`` and the interval
    empty (there is none with one run), and each default picture says 'one run per
    point' -- rsvg-convert draws its SVG and Pillow opens its PNG."""
    import csv
    import re

    from simxen.cli import main
    tool = require_tool("rsvg-convert")
    out = tmp_path / "sweep"
    scenario = Path(__file__).resolve().parents[2] / "scenarios" / "ring-pingpong.toml"
    assert main(["sweep", str(scenario), "--vary", "pingpong.window=1,4",
                 "--replications", "1", "--out", str(out), "--no-progress"]) == 0
    with open(out / "summary.csv", newline="") as fp:
        rows = list(csv.DictReader(fp))
    assert rows and all(r["n"] == "1" and r["std"] == r["ci95_low"] == r["ci95_high"] == ""
                        for r in rows)
    svgs = sorted((out / "plots").glob("*.svg"))
    assert len(svgs) == 2
    for svg in svgs:
        assert "<!-- one run per point -->" in svg.read_text()
        assert re.search(r"<!-- pingpong\.\w+(\.p95)? \[", svg.read_text())
        inked(rsvg(tool, svg, svg.with_suffix(".rsvg.png")), min_colours=3)
        assert inked(svg.with_suffix(".png"), min_colours=3) == (900, 576)

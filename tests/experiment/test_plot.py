"""`simxen plot`: pictures of a summary.csv, with the CIs as error bars and units on the axes."""

import pytest

from simxen.errors import InputError
from simxen.experiment import plot, sweep

SUMMARY = """\
stack.guest_count,stack.policy,metric,unit,n,mean,std,ci95_low,ci95_high
1,priority,stack.latency_ms.p95,ms,3,6.0,0.5,4.8,7.2
1,fifo,stack.latency_ms.p95,ms,3,6.1,0.5,4.9,7.3
8,priority,stack.latency_ms.p95,ms,3,9.0,1.0,6.5,11.5
8,fifo,stack.latency_ms.p95,ms,3,8.0,1.0,5.5,10.5
32,priority,stack.latency_ms.p95,ms,3,30.0,2.0,25.0,35.0
32,fifo,stack.latency_ms.p95,ms,3,20.0,2.0,15.0,25.0
1,priority,stack.throughput_per_s,1/s,3,20.0,0.1,19.8,20.2
"""


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "summary.csv").write_text(SUMMARY)
    return tmp_path


def test_draws_png_and_svg_with_units_and_one_line_per_hue(folder):
    files = plot.draw(folder, x="stack.guest_count", y="stack.latency_ms.p95",
                      hue="stack.policy")
    png, svg = files
    assert png.name == "stack.latency_ms.p95--stack.guest_count--by-stack.policy.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = svg.read_text()
    for words in ("stack.latency_ms.p95 [ms]", "stack.guest_count", "stack.policy=priority",
                  "stack.policy=fifo", "n = 3"):
        assert words in text
    # the same summary draws the same bytes (no dates in the files)
    again = plot.draw(folder, x="stack.guest_count", y="stack.latency_ms.p95",
                      hue="stack.policy", out=folder / "again")
    assert [f.read_bytes() for f in again] == [f.read_bytes() for f in files]


def test_other_varied_keys_split_lines_without_hue(folder):
    svg = plot.draw(folder, y="stack.latency_ms.p95")[1].read_text()
    assert "stack.policy=priority" in svg and "stack.policy=fifo" in svg


def test_defaults_and_errors(folder):
    keys, rows = plot.read_summary(folder)
    assert keys == ["stack.guest_count", "stack.policy"]
    assert [p["y"] for p in plot.default_plots(keys, rows)] == ["stack.throughput_per_s",
                                                                 "stack.latency_ms.p95"]
    declared = [{"y": "stack.latency_ms.p95", "x": "", "hue": "stack.policy", "title": "t"}]
    assert plot.default_plots(keys, rows, declared) == [
        {"x": "stack.guest_count", "y": "stack.latency_ms.p95", "hue": "stack.policy",
         "title": "t"}]
    with pytest.raises(InputError, match="did you mean 'stack.latency_ms.p95'"):
        plot.draw(folder, y="stack.latency_ms.p59")
    with pytest.raises(InputError, match="not a varied key"):
        plot.draw(folder, x="stack.rate", y="stack.latency_ms.p95")
    with pytest.raises(InputError, match="no summary.csv"):
        plot.draw(folder / "nope", y="stack.latency_ms.p95")


# -- what a user's sweep makes: each of these misled or failed before -------------------------

def _summary(tmp_path, keys, rows, name="s"):
    """A folder holding a summary.csv of ``rows`` (varied key values, metric, unit, n, mean,
    std, ci95_low, ci95_high)."""
    folder = tmp_path / name
    folder.mkdir()
    sweep.write_summary(folder / "summary.csv", [list(keys) + list(sweep.SUMMARY_COLUMNS)] + rows)
    return folder


def _texts(svg_path):
    """What matplotlib's SVG says in words: each text is drawn as glyphs after a comment
    holding it."""
    import re
    return re.findall(r"<!-- (.*?) -->", svg_path.read_text())


def test_points_of_one_run_among_more_are_said_to_have_no_interval(tmp_path):
    """A replication whose metric was empty (NaN) leaves that point with fewer runs; the
    legend said 'n = 3' over a point of one run drawn without a bar."""
    folder = _summary(tmp_path, ["a.x"], [[1, "a.y", "ms", 3, 1.0, 0.1, 0.8, 1.2],
                                          [2, "a.y", "ms", 1, 2.0, "", "", ""],
                                          [4, "a.y", "ms", 3, 4.0, 0.1, 3.8, 4.2]])
    texts = _texts(plot.draw(folder, y="a.y")[1])
    assert "mean, 95 % CI, n = 1 to 3; one run: no bar" in texts
    assert not any(t.endswith("n = 3") for t in texts)


def test_a_point_without_the_metric_is_a_gap_and_said(tmp_path):
    """A point where every run had no value for the metric has no summary row: the line
    was drawn straight through it and its x was not even a tick."""
    folder = _summary(tmp_path, ["a.x"], [[1, "a.y", "ms", 3, 1.0, 0.1, 0.8, 1.2],
                                          [2, "a.z", "ms", 3, 5.0, 0.1, 4.8, 5.2],
                                          [4, "a.y", "ms", 3, 4.0, 0.1, 3.8, 4.2],
                                          [8, "a.y", "ms", 3, 8.0, 0.1, 7.8, 8.2]])
    texts = _texts(plot.draw(folder, y="a.y")[1])
    assert {"1", "2", "4", "8"} <= set(texts)              # every point of the sweep a tick
    assert "no value at a.x = 2" in texts


def test_x_ticks_are_the_values_as_the_sweep_wrote_them(tmp_path):
    """Values spanning 1e-9..1e3 were labelled by a ScalarFormatter: '0', '0', '0', '1',
    '1000'."""
    xs = ["1e-09", "1e-06", "0.001", "1", "1000.0"]
    folder = _summary(tmp_path, ["a.x"], [[x, "a.y", "s", 3, float(x), 0.1, float(x) - 0.1,
                                           float(x) + 0.1] for x in xs])
    texts = _texts(plot.draw(folder, y="a.y")[1])
    assert set(xs) <= set(texts)


def test_axis_scales():
    # x: log-2 from a factor of 8; with a 0 among them, linear near 0 and log-2 beyond
    # (1024 squeezed 0, 1, 2, 4, 8 and 16 into one unreadable tick label)
    assert plot.x_scale([1, 2, 4]) == ("linear", {})
    assert plot.x_scale([1, 8, 32]) == ("log", {"base": 2})
    assert plot.x_scale([0, 1, 2, 4, 1024]) == ("symlog", {"base": 2, "linthresh": 1})
    assert plot.x_scale([0, 0.5, 64]) == ("symlog", {"base": 2, "linthresh": 0.5})
    assert plot.x_scale([0, 1, 2]) == ("linear", {})
    assert plot.x_scale(range(13)) == ("linear", {})        # evenly spaced: linear reads best
    assert plot.x_scale(range(1, 13)) == ("linear", {})
    assert plot.x_scale([1e-9, 1e-6, 1e-3, 1, 1e3]) == ("log", {"base": 2})
    assert plot.x_scale([-4, -1, 0, 3]) == ("linear", {})
    assert plot.x_scale([5]) == ("linear", {})
    # y: log-10 when every bar is above 0 and they span three decades or more (values of
    # 1e-9..1e3 s all sat on the axis but the last); never with a 0 or below
    assert plot.y_scale([1e-9, 1e-6, 1e3]) == "log"
    assert plot.y_scale([1, 10, 100]) == "linear"
    assert plot.y_scale([0.0, 1e-6, 1e3]) == "linear"
    assert plot.y_scale([-1e3, 1e-6, 1e3]) == "linear"


def test_twenty_five_lines_each_have_their_own_look_and_the_legend_fits(tmp_path):
    """matplotlib's colour cycle has 10 colours: the 11th hue value was drawn exactly as
    the 1st, and the legend of 25 covered the plot and broke tight_layout."""
    styles = plot.line_styles(25)
    assert len({tuple(sorted(s.items())) for s in styles}) == 25
    folder = _summary(tmp_path, ["a.x", "a.h"], [[x, h, "a.y", "ms", 3, x * h, 0.1, x * h - 0.5,
                                                  x * h + 0.5] for h in range(25) for x in (1, 2, 4)])
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")                    # tight_layout's "not compatible"
        png, svg = plot.draw(folder, y="a.y", hue="a.h")
    texts = _texts(svg)
    assert {f"a.h={h}" for h in range(25)} <= set(texts)


def test_very_long_names_draw_with_a_file_name_the_system_takes(tmp_path):
    """A picture's file is named after its metric and key: two long names made it longer
    than a file name may be (255 bytes): OSError, an internal error."""
    metric = "workload_with_a_long_name.latency_ms_of_the_command_round_trip_p95_" * 3
    key = "workload_with_a_long_name.some_parameter_that_is_long_" * 3
    folder = _summary(tmp_path, [key], [[x, metric, "ms", 3, x, 0.1, x - 0.2, x + 0.2]
                                        for x in (1, 2)])
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        png, svg = plot.draw(folder, y=metric)
    assert len(png.name.encode()) <= 255 and png.name.startswith("workload_with_a_long_name.")
    other = plot.draw(folder, y=metric, out=tmp_path / "again", title="t")[0]
    assert other.name == png.name                          # the same picture, the same name
    text = svg.read_text()
    assert "workload_with_a_long_name." in text


def test_one_point_and_negative_values_draw(tmp_path):
    folder = _summary(tmp_path, ["a.x"], [[4, "a.y", "ms", 3, 5.0, 1.0, 3.0, 7.0]])
    assert "4" in _texts(plot.draw(folder, y="a.y")[1])
    folder = _summary(tmp_path, ["a.x"], [[x, "a.y", "ms", 3, -x, 1, -x - 2, -x + 2]
                                          for x in (-4, -1, 0, 3)], name="neg")
    assert {"-4", "-1", "0", "3"} <= set(_texts(plot.draw(folder, y="a.y")[1]))
    folder = _summary(tmp_path, ["a.x"], [[1, "a.y", "ms", 3, "", "", "", ""]], name="empty")
    with pytest.raises(InputError, match="no point of this sweep has a value"):
        plot.draw(folder, y="a.y")


def test_metrics_of_one_unit_draw_together_a_line_each(tmp_path):
    """The offered load and the throughput belong on one axis: where they part is the
    saturation point. --y repeated (or [[plot]] y = [...]) draws one line per metric."""
    rows = []
    for x, offered, done in ((1, 20.0, 20.0), (8, 160.0, 159.0), (32, 640.0, 200.0)):
        rows += [[x, "s.offered_per_s", "1/s", 3, offered, 1.0, offered - 2, offered + 2],
                 [x, "s.throughput_per_s", "1/s", 3, done, 1.0, done - 2, done + 2],
                 [x, "s.latency_ms.p50", "ms", 3, 5.0, 0.1, 4.8, 5.2]]
    folder = _summary(tmp_path, ["s.guest_count"], rows)
    png, svg = plot.draw(folder, y=["s.offered_per_s", "s.throughput_per_s"])
    assert png.name == "s.offered_per_s_s.throughput_per_s--s.guest_count.png"
    texts = _texts(svg)
    assert {"s.offered_per_s", "s.throughput_per_s", "s.* [1/s]"} <= set(texts)
    assert "s.offered_per_s and s.throughput_per_s vs s.guest_count" in " ".join(texts)
    # one metric given as a list of one draws exactly what the name alone draws
    one = plot.draw(folder, y=["s.offered_per_s"], out=folder / "a")
    alone = plot.draw(folder, y="s.offered_per_s", out=folder / "b")
    assert [f.read_bytes() for f in one] == [f.read_bytes() for f in alone]
    with pytest.raises(InputError, match=r"^--y: metrics of different units share no vertical "
                                         r"axis \(s.offered_per_s \[1/s\], s.latency_ms.p50 "):
        plot.draw(folder, y=["s.offered_per_s", "s.latency_ms.p50"])
    with pytest.raises(InputError, match="--y s.thruput: .*did you mean 's.throughput_per_s'"):
        plot.draw(folder, y=["s.offered_per_s", "s.thruput"])


# -- a summary.csv, sweep.json or --out that is not what a sweep left: one line, exit 2 ---------

def _plot(argv, capsys):
    """``simxen plot ARGV``: (exit status, standard error)."""
    from simxen.cli import main
    status = main(["plot", *map(str, argv)])
    return status, capsys.readouterr().err


@pytest.mark.parametrize("damage, said", [
    (lambda f: (f / "summary.csv").write_bytes(SUMMARY.encode()[:130]),
     "summary.csv: line 3: 2 fields where the header has 9: the file was cut short or edited"),
    (lambda f: (f / "summary.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff"),
     "summary.csv: not UTF-8 text"),
    (lambda f: ((f / "summary.csv").unlink(), (f / "summary.csv").mkdir()),
     "summary.csv: cannot read: Is a directory"),
    (lambda f: (f / "summary.csv").write_text(
        "\n".join(line.split(",", 2)[2] for line in SUMMARY.splitlines())),
     "summary.csv: no varied key before the 'metric' column"),
    (lambda f: (f / "summary.csv").write_text(SUMMARY.replace(",ms,3,6.1,", ",ms,three,6.1,")),
     "summary.csv: line 3: n: expected the number of runs behind the point, found 'three'"),
    (lambda f: (f / "summary.csv").write_text(SUMMARY.splitlines()[0] + "\n"),
     "summary.csv: holds no point (only its header)"),
    (lambda f: (f / "sweep.json").write_text('{"plots": [{"y": 3}]}'),
     "sweep.json: plots[0].y: expected a string or an array of strings, found 3 (an integer)"),
    (lambda f: (f / "sweep.json").write_text('{"plots": "stack.latency_ms.p95"}'),
     "sweep.json: plots: expected an array of tables"),
    (lambda f: (f / "sweep.json").write_text('{"plots": [{"y": "stack.latency_ms.p95", '
                                             '"colour": "red"}]}'),
     "sweep.json: plots[0].colour: unknown key 'colour'"),
    (lambda f: (f / "sweep.json").write_text('{"plots": ['), "sweep.json: not the JSON"),
    (lambda f: (f / "sweep.json").write_text('["plots"]'), "sweep.json: expected a JSON object"),
], ids=["truncated", "binary", "folder", "no-varied-key", "n-not-a-count", "header-only",
        "plot-y-number", "plots-not-array", "plot-unknown-key", "json-cut", "json-array"])
def test_a_damaged_sweep_folder_is_one_line_naming_the_file_and_draws_nothing(
        folder, capsys, damage, said):
    damage(folder)
    status, err = _plot([folder], capsys)
    assert (status, err.count("\n")) == (2, 1), err
    assert f"simxen plot: {folder}" in err and said in err, err
    assert "internal error" not in err
    assert not (folder / "plots").exists()


def test_the_folder_argument_being_a_file_is_said(folder, capsys):
    status, err = _plot([folder / "summary.csv"], capsys)
    assert status == 2
    assert "summary.csv: is a file, not a folder: expected the --out folder" in err


@pytest.mark.parametrize("where, said", [
    (lambda f: f / "summary.csv", "--out: is a file; expected a folder"),
    (lambda f: f / "summary.csv" / "pictures", "--out: cannot make this folder: Not a directory"),
], ids=["a-file", "under-a-file"])
def test_out_where_no_folder_can_be_is_one_line_and_the_summary_is_kept(folder, capsys,
                                                                        where, said):
    status, err = _plot([folder, "--y", "stack.latency_ms.p95", "--out", where(folder)], capsys)
    assert status == 2 and said in err and "internal error" not in err, err
    assert (folder / "summary.csv").read_text() == SUMMARY


def test_plots_declared_in_sweep_json_are_drawn(folder, capsys):
    (folder / "sweep.json").write_text('{"plots": [{"y": "stack.latency_ms.p95", '
                                       '"hue": "stack.policy", "title": "by policy"}]}')
    status, _ = _plot([folder], capsys)
    assert status == 0
    assert [p.name for p in sorted((folder / "plots").iterdir())] == [
        "stack.latency_ms.p95--stack.guest_count--by-stack.policy.png",
        "stack.latency_ms.p95--stack.guest_count--by-stack.policy.svg"]


def test_one_metric_drawn_with_and_without_a_hue_is_two_pictures(folder):
    """The second picture of the same y and x, with a hue, overwrote the first."""
    plain = plot.draw(folder, x="stack.guest_count", y="stack.latency_ms.p95")
    by_policy = plot.draw(folder, x="stack.guest_count", y="stack.latency_ms.p95",
                          hue="stack.policy")
    assert {f.name for f in plain}.isdisjoint(f.name for f in by_policy)
    assert all(f.exists() for f in plain + by_policy)


def test_a_legend_of_wrapped_labels_beside_the_plot_is_not_cut_off(tmp_path, monkeypatch):
    """Twenty one-line entries fill the picture's height; labels longer than a legend line
    (a long key, or several --y) wrap onto two, and twelve such entries ran past the
    picture's bottom edge: the last lines of the legend were cut off in the PNG and SVG."""
    import matplotlib.pyplot as plt
    boxes = []                  # (the legend's box, the picture's) of each picture drawn
    close = plt.close

    def measure_and_close(fig):
        legend = fig.axes[0].get_legend().get_window_extent(fig.canvas.get_renderer())
        boxes.append((legend, fig.bbox))
        close(fig)

    monkeypatch.setattr(plt, "close", measure_and_close)
    hue = "stack.manager.some_quite_long_parameter_name"
    for n in (12, 20):
        folder = _summary(tmp_path, ["a.x", hue],
                          [[x, v, "a.y", "ms", 3, x * (v + 1), 0.1, x * (v + 1) - 0.5,
                            x * (v + 1) + 0.5] for v in range(n) for x in (1, 2, 4)],
                          name=f"n{n}")
        plot.draw(folder, y="a.y", hue=hue)
        legend, picture = boxes[-1]
        assert legend.y0 >= 0 and legend.y1 <= picture.height, (n, legend.bounds,
                                                                 picture.bounds)


def test_a_first_or_last_point_without_the_metric_is_still_on_the_axis(tmp_path):
    """The axis spanned only the points drawn: a sweep whose shortest run (say
    scenario.until=0.1) finished no command had its first point named in the note but
    neither drawn as a tick nor inside the picture."""
    for gap in (1, 8):
        folder = _summary(tmp_path, ["a.x"], [[x, "a.y" if x != gap else "a.z", "ms", 3, x, 0.1,
                                               x - 0.2, x + 0.2] for x in (1, 2, 4, 8)],
                          name=f"gap{gap}")
        texts = _texts(plot.draw(folder, y="a.y")[1])
        assert {"1", "2", "4", "8"} <= set(texts), gap
        assert f"no value at a.x = {gap}" in texts


def test_plot_without_y_redraws_the_sweeps_pictures_with_their_title_and_hue(folder, capsys):
    """`simxen plot DIR` without --y is to draw the pictures `simxen sweep` drew (the
    scenario's [[plot]] tables, from sweep.json), but it dropped each table's title and hue:
    the same files were drawn again titled '<y> vs <x>', over the sweep's. --title and
    --hue given on the command line still win."""
    import json
    from simxen.cli import main
    (folder / "sweep.json").write_text(json.dumps({"plots": [
        {"y": "stack.latency_ms.p95", "hue": "stack.policy", "title": "Tail latency as guests grow"}]}))
    swept = plot.draw(folder, x="stack.guest_count", y="stack.latency_ms.p95", hue="stack.policy",
                      title="Tail latency as guests grow", out=folder / "swept")
    assert main(["plot", str(folder)]) == 0
    redrawn = [folder / "plots" / f.name for f in swept]
    assert capsys.readouterr().out.split() == [str(f) for f in redrawn]
    assert [f.read_bytes() for f in redrawn] == [f.read_bytes() for f in swept]
    assert main(["plot", str(folder), "--title", "mine"]) == 0
    assert "mine" in _texts(redrawn[1]) and "Tail latency as guests grow" not in _texts(redrawn[1])

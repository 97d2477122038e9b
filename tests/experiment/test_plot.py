"""`simxen plot`: pictures of a summary.csv, with the CIs as error bars and units on the axes."""

import pytest

from simxen.errors import InputError
from simxen.experiment import plot

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
    assert png.name == "stack.latency_ms.p95--stack.guest_count.png"
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

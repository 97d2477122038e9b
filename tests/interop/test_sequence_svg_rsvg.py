"""rsvg-convert draws every sequence diagram ``simxen trace --format sequence`` writes as
SVG, at any length of run.

librsvg draws on a cairo image surface, and cairo makes none over 32,767 pixels high or
wide: rsvg-convert stops with "The resulting image would be larger than 32767 pixels on
either dimension" (GNOME/librsvg ``rsvg_convert/src/main.rs``; cairo
``src/cairo-image-surface.c``, ``MAX_IMAGE_SIZE``). Before the cut, ``fleet``'s whole
diagram was 288,820 pixels high (9,623 messages) and rsvg-convert drew nothing of it.
"""

import json
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from picture_checks import SVG, inked, rsvg, svg_size
from tpm_serve_helpers import require_tool

from simxen.analysis import sequence
from simxen.cli import main

pytestmark = pytest.mark.interop

#: rsvg-convert's limit, as its own message states it
RSVG_LIMIT = 32_767


def cut_note(root):
    return " ".join(t.text for t in root.iter(f"{SVG}text") if t.get("class") == "cut-note")


@pytest.mark.slow
def test_rsvg_draws_every_shipped_scenarios_whole_diagram(shipped_traces, tmp_path):
    """Every shipped scenario's whole diagram is at most 32,767 pixels a side; the long
    ones end with a note saying what was left out; rsvg-convert draws each one (the
    distinct ones; scaled to 4,096 pixels high, two at a time: text layout is the cost)
    and the PNG Pillow opens is a picture."""
    tool = require_tool("rsvg-convert")
    distinct, cut = {}, []
    assert sequence.SVG_MAX_PIXELS == RSVG_LIMIT
    for name, records in shipped_traces.items():
        msgs = sequence.messages(records)
        if not msgs:
            continue
        text, drawn = sequence.svg_drawn(msgs, None)
        width, height, root = svg_size(text)
        assert width <= RSVG_LIMIT and height <= RSVG_LIMIT, (name, width, height)
        note = cut_note(root)
        if drawn < len(msgs):
            cut.append(name)
            assert note.startswith(f"{len(msgs) - drawn} more messages from "), (name, note)
            assert "narrow the diagram with --start/--end, --domain or --command" in note
            # nothing left out could have been drawn: one more row is over the limit
            assert height + 30 > RSVG_LIMIT or width + 240 > RSVG_LIMIT, name
        else:
            assert note == "", name
        distinct.setdefault(text, (name, height))
    assert {"fleet", "many-guests"} <= set(cut)

    def draw(item):
        i, (text, (name, height)) = item
        path = tmp_path / f"{i}.svg"
        path.write_text(text, encoding="utf-8")
        zoom = min(1.0, 4096 / height)
        png = rsvg(tool, path, tmp_path / f"{i}.png", "--zoom", f"{zoom:.4f}")
        return name, inked(png, min_colours=4)

    with ThreadPoolExecutor(max_workers=2) as pool:
        drawn = list(pool.map(draw, enumerate(distinct.items())))
    assert len(drawn) >= 10


@pytest.mark.slow
def test_a_diagram_over_the_limit_is_cut_and_rsvg_draws_it_at_its_natural_size(
        shipped_traces, tmp_path, capsys):
    """The fleet's manager and its first three vTPMs exchange 1,440 messages: 43,330
    pixels of rows. ``simxen trace`` draws the first ones that fit, ends with the note,
    says so, and rsvg-convert draws it unscaled -- the very size it refused before."""
    tool = require_tool("rsvg-convert")
    source = tmp_path / "fleet.jsonl"
    with source.open("w", encoding="utf-8") as fp:
        for r in shipped_traces["fleet"]:
            fp.write(json.dumps(r) + "\n")
    out = tmp_path / "fleet.svg"
    lifelines = ["vtpmmgr", "vtpm-guest1", "vtpm-guest2", "vtpm-guest3"]
    assert main(["trace", "--from", str(source), "-f", "sequence", "-o", str(out),
                 *[a for n in lifelines for a in ("--domain", n)]]) == 0
    said = capsys.readouterr().err
    found = re.search(r": (\d+) messages \(SVG; the first (\d+) of \1: (\d+) more messages "
                      r"from [\d.]+ ms to [\d.]+ ms not drawn: librsvg draws an image at most "
                      r"32,767 pixels high or wide; narrow the diagram", said)
    assert found, said
    total, drawn, left = map(int, found.groups())
    assert drawn + left == total and 1000 < drawn < total
    width, height, root = svg_size(out)
    assert RSVG_LIMIT - 30 < height <= RSVG_LIMIT
    assert cut_note(root).startswith(f"{left} more messages")
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert set(lifelines) <= set(texts)
    size = inked(rsvg(tool, out, tmp_path / "fleet.png"), min_colours=4)
    assert size == (int(width), int(height))

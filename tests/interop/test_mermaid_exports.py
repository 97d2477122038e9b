"""The sequence diagrams read by the tools a lecturer pastes them into: Mermaid's
own parser (the ``mermaid`` npm package, at the version
``tests/interop/mermaid/package-lock.json`` pins, under node with jsdom) for the
Mermaid text, Python's expat and rsvg-convert (librsvg) for the SVG.

Node's start-up is the slow part, so every diagram of a test goes to ONE node
process (``tests/interop/mermaid/check.mjs``), which answers, for each text,
whether Mermaid's grammar took it and what Mermaid understood: the participants'
labels, the messages and notes in order, the title. A diagram is right when
Mermaid takes it, holds the lifelines and messages we drew, in order, with the
text a reader should see -- nothing cut by a comment, nothing read as markup --
and is no longer than Mermaid's own ``maxTextSize`` (over it, ``mermaid.render``
draws only "Maximum text size in diagram exceeded").
"""

import html
import json
import os
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tpm_serve_helpers import require_tool

from simxen.analysis import sequence
from simxen.cli import main

pytestmark = pytest.mark.interop

CHECKER = Path(__file__).resolve().parent / "mermaid"
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def mermaid_parse(tmp_path_factory):
    """``parse(texts) -> answer`` (check.mjs's JSON) with Mermaid's own parser."""
    node = require_tool("node")
    if not (CHECKER / "node_modules" / "mermaid" / "package.json").exists():
        if os.environ.get("SIMXEN_REQUIRE_TOOLS") == "1":
            pytest.fail("Mermaid is required (SIMXEN_REQUIRE_TOOLS=1) but not installed: make js-tools")
        pytest.skip("Mermaid not installed (make js-tools: npm ci in tests/interop/mermaid)")
    folder = tmp_path_factory.mktemp("mermaid")

    def parse(texts):
        path = folder / "diagrams.json"
        path.write_text(json.dumps(texts), encoding="utf-8")
        done = subprocess.run([node, str(CHECKER / "check.mjs"), str(path)], capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        answer = json.loads(done.stdout)
        assert len(answer["results"]) == len(texts)
        return answer

    return parse


def shown(text):
    """What a reader sees of a text Mermaid holds: no markup may be left in it (a ``<``
    opens a tag, a bare ``&`` a reference), and character references are characters."""
    assert "<" not in text, text
    assert not re.search(r"&(?!#\d+;|#x[0-9a-fA-F]+;|[A-Za-z]+;)", text), text
    return html.unescape(text)


#: what JavaScript's String.prototype.trim removes and Python's str.strip keeps
_JS_SPACE = "\ufeff"


def seen(text):
    """``text`` as it should reach the reader: one drawable line, its ends trimmed
    (Mermaid trims them; a line break is a space, a character XML forbids U+FFFD)."""
    text = re.sub("[\t\n\v\f\r\x1c-\x1f\x85\u2028\u2029]", " ", text)
    text = re.sub("[\x00-\x08\x0e-\x1b\x7f\ud800-\udfff\ufffe\uffff]", "\ufffd", text)
    return text.strip().strip(_JS_SPACE).strip()


def expect_drawn(answer, msgs, title=None, where=""):
    """Mermaid's ``answer`` for one diagram holds ``msgs`` (or its first ones and the cut
    note), each with the text we meant; returns how many of ``msgs`` it drew."""
    assert answer["ok"], f"{where}: Mermaid refused it: {answer['error']}"
    assert answer["type"] == "sequence", where
    labels = {a["id"]: shown(a["label"]) for a in answer["actors"]}
    drawn = answer["messages"]
    cut = len(drawn) < len(msgs)
    if cut:
        note = drawn.pop()
        assert note["type"] == 2 and "not drawn: Mermaid draws at most" in shown(note["text"]), where
        assert shown(note["text"]).startswith(f"{len(msgs) - len(drawn)} more message"), where
    assert len(drawn) == len(msgs[:len(drawn)]) and drawn, where
    for m, d in zip(msgs, drawn):
        assert (labels[d["from"]], labels[d["to"]]) == (seen(m.src), seen(m.dst)), (where, m)
        assert shown(d["text"]) == seen(f"{m.t * 1e3:.3f} ms {m.label}"), (where, m)
        note = m.src == m.dst
        assert d["type"] == (2 if note else 1 if m.kind in ("response", "map") else 0), (where, m)
    if title is not None:
        assert shown(answer["title"]) == seen(title), where
    return len(drawn)


def svg_texts(text, where=""):
    """The ``<text>`` contents of an SVG, read by expat (a real XML parser)."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        raise AssertionError(f"{where}: not well-formed XML: {e}") from None
    assert root.tag == f"{SVG}svg", where
    return [t.text for t in root.iter(f"{SVG}text")]


def render_png(rsvg, svg_path, png_path, height=None):
    """rsvg-convert's PNG of ``svg_path``; asserts it has ink: a fair share of pixels
    that are not the white background, in more than one colour."""
    matplotlib_image = pytest.importorskip("matplotlib.image")
    args = [rsvg, str(svg_path), "-o", str(png_path)] + (["-h", str(height)] if height else [])
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{svg_path.name}: {done.stderr}"
    pixels = matplotlib_image.imread(png_path)[..., :3]
    ink = (pixels < 0.95).any(axis=-1)
    assert ink.mean() > 0.002, f"{svg_path.name}: blank ({ink.mean():.4%} ink)"
    colours = {tuple(p) for p in (pixels[ink] * 255).round().astype(int)[::97].tolist()}
    assert len(colours) > 3, f"{svg_path.name}: {len(colours)} colours"
    return pixels.shape


def shipped_cases(shipped_traces):
    """``(name, msgs, title)`` for every shipped scenario: its whole diagram, one
    ``--command`` journey (a TPM2_PCR_Extend when it has one), a 20 ms window from
    its first TPM command (or its first message) and its first two lifelines."""
    cases = []
    for name, records in shipped_traces.items():
        whole = sequence.messages(records)
        cases.append((f"{name} whole", whole, None))
        commands = [r["cc_name"] for r in records if r["kind"] == "tpm.front.submit"
                    and r.get("cc_name")]
        if commands:
            command = "TPM2_PCR_Extend" if "TPM2_PCR_Extend" in commands else commands[0]
            title = f"{command} (number 1)"
            cases.append((f"{name} --command {command}",
                          sequence.messages(records, command=command), title))
        t0 = next((r["t"] for r in records if r["kind"] == "tpm.front.submit"), whole[0].t)
        cases.append((f"{name} --start/--end", sequence.messages(records, start=t0, end=t0 + 0.02),
                      None))
        two = list(dict.fromkeys(n for m in whole for n in (m.src, m.dst)))[:2]
        cases.append((f"{name} --domain {' --domain '.join(two)}",
                      sequence.messages(records, domains=two), None))
    return [c for c in cases if c[1]]


@pytest.mark.slow
def test_mermaid_parses_every_shipped_scenarios_diagrams(shipped_traces, mermaid_parse):
    cases = shipped_cases(shipped_traces)
    texts = [sequence.mermaid(msgs, None, title=title) for _, msgs, title in cases]
    distinct = list(dict.fromkeys(texts))     # scenarios that differ in their report only
    parsed = mermaid_parse(distinct)
    answer = dict(parsed, results=[parsed["results"][distinct.index(t)] for t in texts])
    assert answer["mermaid"] == json.loads((CHECKER / "package.json").read_text())[
        "dependencies"]["mermaid"]
    limit = answer["maxTextSize"]
    assert limit == sequence.MERMAID_MAX_TEXT
    cut = 0
    for (where, msgs, title), text, result in zip(cases, texts, answer["results"]):
        assert result["length"] <= limit, f"{where}: {result['length']} characters"
        cut += expect_drawn(result, msgs, title, where) < len(msgs)
    assert len(cases) >= 3 * len(shipped_traces)      # a scenario without TPM commands has 3
    # the long runs are cut, with their note (12 shipped scenarios' whole diagrams are over
    # 50,000 characters; none of the filtered ones is)
    assert cut >= 6
    assert not any(r["ok"] is False for r in answer["results"])


@pytest.mark.slow
def test_every_shipped_scenarios_svg_is_xml_and_rsvg_draws_it(shipped_traces, tmp_path):
    rsvg = require_tool("rsvg-convert")
    cases = shipped_cases(shipped_traces)
    rendered = set()
    for where, msgs, title in cases:
        text, drawn = sequence.svg_drawn(msgs, None, title=title)
        texts = svg_texts(text, where)
        assert {m.label for m in msgs[:drawn]} <= set(texts), where   # a long run is cut
        # rsvg draws every distinct --command journey and boot-attest's whole diagram (641
        # rows, scaled: cairo draws at most 32,767 pixels a side); the rest are parsed
        if ("--command" in where or where == "boot-attest whole") and text not in rendered:
            path = tmp_path / f"{len(rendered)}.svg"
            path.write_text(text, encoding="utf-8")
            render_png(rsvg, path, path.with_suffix(".png"),
                       height=4000 if len(msgs) > 200 else None)
            rendered.add(text)
    assert len(rendered) >= 5


# -- what the shipped scenarios do not hold -----------------------------------------------

#: domain names as Xen takes them: libxl keeps a name as a XenStore value
#: (/local/domain/<domid>/name) and xl looks one up by that string (an all-digit
#: one is read as a domid by xl's find_domain); simxen's xl configs keep to
#: letters, digits, '.', '_' and '-', and a trace file may hold anything.
XEN_NAMES = ["guest-1", "web.example.org", "dom_u", "0day", "1234", "a" * 64, "vtpm-guest-1.a_b",
             "Domain-0"]
AWKWARD = ["a;b", "a#b", "#1", "a:b: c", "<guest>", "a<br>b", "a&b", "a &amp; b", 'say "hi"',
           "it's", "100%", "%%{init: {}}%%", "a\nb", "a\rb", "a\tb", "a\x01b", "tpm\x7f",
           "end", "participant p0 as x", "Note over p0", "->>", "ﬂ°°35¶ß", "#35;", "😀 ünïcode",
           " edges ", "-->>p1: x"]


def renamed(records, names, command=None):
    """``records`` with its domains' names replaced in order by ``names`` (and the TPM
    command names by ``command``): a trace the recorder writes for domains so named."""
    order = []
    for r in records:
        if r["kind"] == "domain.create" and r["domid"] not in order:
            order.append(r["domid"])
    table = {domid: names[i % len(names)] + ("" if i < len(names) else f"-{i}")
             for i, domid in enumerate(order)}
    out = []
    for r in records:
        r = dict(r)
        if r["kind"] == "domain.create":
            r["name"] = table[r["domid"]]
        if r.get("dom_name") is not None:
            r["dom_name"] = table.get(r["dom"], r["dom_name"])
        if command is not None and r.get("cc_name"):
            r["cc_name"] = command
        out.append(r)
    return out


def journey_records(shipped_traces):
    """The records around vtpm-stack's first TPM2_PCR_Extend, domains included."""
    records = shipped_traces["vtpm-stack"]
    msgs = sequence.messages(records, command="TPM2_PCR_Extend")
    first, last = msgs[0].t, msgs[-1].t
    return [r for r in records if r["kind"] == "domain.create" or first <= r["t"] <= last]


def awkward_cases(records):
    """``(where, msgs, title)``: the journey with Xen's and awkward domain names, command
    names and titles, each filter's way in, and XenStore values with every odd character."""
    cases = []
    for names in [XEN_NAMES, AWKWARD[:9], AWKWARD[9:18], AWKWARD[18:]]:
        for command in ("TPM2_PCR_Extend", "TPM2_PCR_Extend;#<x>&y", "TPM2 \"quoted\" 'cmd'"):
            trace = renamed(records, names, command)
            msgs = sequence.messages(trace, command=command)
            cases.append((f"{names[:3]} {command!r}", msgs, f"{command} (number 1)"))
    trace = renamed(records, AWKWARD)
    whole = sequence.messages(trace)
    cases.append(("awkward whole", whole, "; # : < > & \" ' %% title"))
    cases.append(("awkward --domain", sequence.messages(trace, domains=[whole[0].src,
                                                                         whole[0].dst]), None))
    odd = sequence.Message(whole[0].t, whole[0].src, sequence.XENSTORE,
                           "write /local/domain/1/name = 'a;b#c<d>e&f\"g:h%%i'", "xenstore")
    cases.append(("odd XenStore value", [odd], None))
    return cases


def test_mermaid_and_rsvg_take_any_name_xen_takes_and_awkward_labels(journey, mermaid_parse,
                                                                      tmp_path):
    rsvg = require_tool("rsvg-convert")
    cases = awkward_cases(journey)
    answer = mermaid_parse([sequence.mermaid(m, None, title=t) for _, m, t in cases])
    for (where, msgs, title), result in zip(cases, answer["results"]):
        assert expect_drawn(result, msgs, title, where) == len(msgs), where
    for i, (where, msgs, title) in enumerate(cases[:4] + cases[-3:]):
        text = sequence.svg(msgs, None, title=title)
        assert {seen(m.label) for m in msgs} <= set(svg_texts(text, where)), where
        path = tmp_path / f"{i}.svg"
        path.write_text(text, encoding="utf-8")
        render_png(rsvg, path, tmp_path / f"{i}.png")


def test_a_run_too_long_for_mermaid_is_cut_with_a_note_mermaid_reads(shipped_traces,
                                                                      mermaid_parse, tmp_path,
                                                                      capsys):
    """vtpm-stack's whole diagram is 53,852 characters (904 messages): simxen trace writes
    its first messages and a note, says so, and Mermaid reads every line of it."""
    source = tmp_path / "vtpm-stack.jsonl"
    with source.open("w", encoding="utf-8") as fp:
        for r in shipped_traces["vtpm-stack"]:
            fp.write(json.dumps(r) + "\n")
    out = tmp_path / "vtpm-stack.mmd"
    assert main(["trace", "--from", str(source), "-f", "sequence", "-o", str(out)]) == 0
    said = capsys.readouterr().err
    assert re.search(r"the first (\d+) of (\d+): \d+ more messages from [\d.]+ ms to [\d.]+ ms "
                     r"not drawn: Mermaid draws at most 50,000 characters", said), said
    text = out.read_text(encoding="utf-8")
    msgs = sequence.messages(shipped_traces["vtpm-stack"])
    result = mermaid_parse([text])["results"][0]
    assert result["length"] <= sequence.MERMAID_MAX_TEXT < result["length"] + 200
    drawn = expect_drawn(result, msgs, None, "vtpm-stack")
    assert 100 < drawn < len(msgs)
    assert f"the first {drawn} of {len(msgs)}:" in said


class Journey(list):
    """A list of records whose repr is short (hypothesis prints its test's arguments)."""

    def __repr__(self):
        return f"<the {len(self)} records of vtpm-stack's first TPM2_PCR_Extend>"


@pytest.fixture(scope="module")
def journey(shipped_traces):
    return Journey(journey_records(shipped_traces))


# any names the recorder can be given: the hypervisor takes any non-empty string
_names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)


# Each example is one node process (3 s): a few examples, and no shrinking (a failure
# names the one trace of its batch that failed, which is all shrinking would find).
@settings(max_examples=3, phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large])
@given(batch=st.lists(st.tuples(st.lists(_names, min_size=3, max_size=3), _names),
                      min_size=20, max_size=20))
def test_any_names_the_recorder_takes_give_text_mermaid_parses(journey, mermaid_parse, batch):
    """Property, twenty traces a node process: whatever the domains and the TPM command
    are called, Mermaid parses the diagram and shows each name and label as written."""
    cases = []
    for names, command in batch:
        if len(set(map(seen, names))) < len(names) or not all(map(seen, names)) \
                or not seen(command):
            continue        # two lifelines drawn alike, or a name of spaces, are not told apart
        trace = renamed(journey, names, command)
        cases.append((names, command, sequence.messages(trace, command=command)))
    answer = mermaid_parse([sequence.mermaid(m, None, title=f"{c} (number 1)")
                            for _, c, m in cases])
    for (names, command, msgs), result in zip(cases, answer["results"]):
        where = f"domains {names!r}, command {command!r}"
        assert expect_drawn(result, msgs, f"{command} (number 1)", where) == len(msgs)

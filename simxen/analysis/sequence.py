"""Sequence diagrams of a run: domains as lifelines, messages between them.

Every cross-domain message the trace holds becomes an arrow, in time order:

========================  =============================================
grant                     ``gnttab.grant``: granter -> the domain allowed
map                       ``gnttab.map``: the mapping domain -> granter
notify                    ``evtchn.send``: sender -> receiver (port to port)
page write                ``page.write`` into a peer's granted page, or into
                          one's own page that a peer has been granted
XenStore write            ``xs.write``: domain -> the ``XenStore`` lifeline
TPM command / response    ``tpm.front.submit`` (front -> back),
                          ``tpm.back.respond`` (back -> front), ``tis.go`` /
                          ``tis.complete`` (manager <-> ``physical TPM``)
========================  =============================================

and a TPM's execution (``tpm.exec``) and a frontend reading its answer
(``tpm.front.complete``, with the command's whole latency) are notes on their
lifelines. Rows are in
time order, not to scale; the left margin gives each row's simulated time.

Filters (:func:`messages`): ``domains`` keeps the messages between the named
lifelines; ``start``/``end`` a time window (seconds); ``command`` (a command
name such as ``TPM2_PCR_Extend``, and ``nth``) keeps the journey of one TPM
command: from the moment its frontend began copying it into the page to the
moment it read the response, between the domains it crossed. Output as SVG
(:func:`svg`) or Mermaid text (:func:`mermaid`).

Any text a trace holds can be drawn: a domain's name is whatever its creator
gave (libxl stores it as a XenStore value, ``/local/domain/<domid>/name``;
simxen's own xl configs keep to letters, digits, ``.``, ``_`` and ``-``,
but a trace file may come from anywhere). Both outputs first make a text
drawable (:func:`drawable`): a line break or tab becomes a space, and a
character XML 1.0 forbids (the other control characters, a lone surrogate)
becomes U+FFFD, so that the SVG stays well-formed and the Mermaid text stays
one statement a line. Mermaid text then writes each character its grammar or
its renderer would take as syntax as one of Mermaid's entity codes
(``#35;`` for ``#``, see :data:`MERMAID_CODES`), and a diagram longer than
Mermaid's default ``maxTextSize`` is cut, with a note saying what was left
out (:func:`mermaid_drawn`); so is an SVG higher or wider than librsvg draws,
:data:`SVG_MAX_PIXELS` (:func:`svg_drawn`). ``tests/interop/test_mermaid_exports.py``
and ``tests/interop/test_sequence_svg_rsvg.py`` have Mermaid's own parser and
rsvg-convert read what these functions write.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from xml.sax.saxutils import escape as _xml_escape

from simxen.analysis import hops
from simxen.analysis.trace_format import domain_names, first_reading
from simxen.errors import InputError, did_you_mean
from simxen.tpm.constants import rc_name
from simxen.xen.trace import Record

__all__ = ["Message", "messages", "svg", "svg_drawn", "mermaid", "mermaid_drawn", "drawable",
           "cut_note", "svg_cut_note", "XENSTORE", "PHYSICAL_TPM", "SVG_MAX_PIXELS",
           "MERMAID_MAX_TEXT", "MERMAID_CODES"]

XENSTORE = "XenStore"
PHYSICAL_TPM = "physical TPM"


@dataclass(frozen=True)
class Message:
    t: float            #: seconds
    src: str            #: lifeline the arrow starts at
    dst: str            #: lifeline it ends at (== src: a note)
    label: str
    kind: str           #: grant, map, notify, write, xenstore, command, response, exec
    flow: object = None  #: the TPM command's flow id, when the record has one


def _fmt_rc(rc, command=None):
    """A response code by name: TPM 2.0's, or the manager protocol's (TPM 1.2 numbering)."""
    if rc is None:
        return "(short response)"
    if command is not None and not command.startswith("TPM2_"):
        return hops.MANAGER_RCS.get(rc, f"return code {rc:#x}")
    return rc_name(rc)


def _all_messages(records, names):
    """Every message of ``records`` (in time order; ``names``: their domain_names)."""

    def name(dom):
        return names.get(dom, f"dom{dom}")

    shared = {}                 # (owner, gfn) -> the domain it is granted to
    asked = {}                  # (flow, front dom) -> command name, to name its response code
    announced = {}              # (sender, receiver) -> the flow of what it last put in their page
    out = []
    for r in records:
        k, t, dom = r["kind"], r["t"], r["dom"]
        if k == "gnttab.grant":
            shared[(dom, r["frame"])] = r["domid"]
            out.append(Message(t, name(dom), name(r["domid"]),
                               f"grant gref {r['gref']} (frame {r['frame']}"
                               f"{', read-only' if r.get('readonly') else ''})", "grant"))
        elif k == "gnttab.map":
            out.append(Message(t, name(dom), name(r["domid"]), f"map gref {r['gref']}", "map"))
        elif k == "evtchn.send" and "remote_dom" in r:
            # a notification tells the peer to look at what the sender put in their
            # shared page since the last one: it is part of that command's journey
            src, dst = name(dom), name(r["remote_dom"])
            out.append(Message(t, src, dst, f"notify port {r['port']} -> {r['remote_port']}",
                               "notify", announced.pop((src, dst), None)))
        elif k == "page.write":
            peer = r.get("granter")
            where = f"gref {r['gref']}" if peer is not None else f"own page {r.get('gfn')}"
            if peer is None:
                peer = shared.get((dom, r.get("gfn")))
            if peer is None or peer == dom:
                continue
            out.append(Message(t, name(dom), name(peer),
                               f"write {r.get('what', '')} {r['length']} B @{r['offset']} ({where})",
                               "write", r.get("flow")))
            announced[(name(dom), name(peer))] = r.get("flow")
        elif k == "xs.write":
            value = r.get("value", "")
            value = value if len(value) <= 24 else value[:21] + "..."
            out.append(Message(t, name(dom), XENSTORE, f"write {r['path']} = {value!r}", "xenstore"))
        elif k == "tpm.front.submit":
            asked[(r.get("flow"), dom)] = r.get("cc_name")
            out.append(Message(t, name(dom), name(r["backend"]),
                               f"{r.get('cc_name') or '(short command)'} ({r['length']} B)", "command",
                               r.get("flow")))
        elif k == "tpm.front.complete" and not r.get("cancelled"):
            out.append(Message(t, name(dom), name(dom), f"tpmfront reads the response "
                               f"({(r.get('latency') or 0) * 1e3:.3f} ms)", "exec", r.get("flow")))
        elif k == "tpm.back.respond":
            out.append(Message(t, name(dom), name(r["domid"]),
                               f"response {_fmt_rc(r.get('rc'), asked.get((r.get('flow'), r['domid'])))} "
                               f"({r['length']} B)", "response", r.get("flow")))
        elif k == "tis.go":
            out.append(Message(t, name(dom), PHYSICAL_TPM, f"{r['cc_name']} via TIS (locality "
                               f"{r['locality']})", "command"))
        elif k == "tis.complete":
            out.append(Message(t, PHYSICAL_TPM, name(dom), f"response {_fmt_rc(r.get('rc'))}",
                               "response"))
        elif k == "tpm.exec" and dom is not None:
            out.append(Message(t, name(dom), name(dom), f"execute {r.get('cc_name')} "
                               f"({(r.get('duration') or 0) * 1e3:.3f} ms)", "exec", r.get("flow")))
    return out


def messages(records, *, domains=None, start=None, end=None, command=None, nth=1) -> list:
    """The :class:`Message` list of ``records`` after the filters (module doc).

    ``records``: a list, or a stream (:mod:`~simxen.analysis.trace_format`),
    read a record at a time -- two or three times: the domains' names, the
    messages, and for ``command`` the requests (:class:`hops.Matching`);
    only the messages, and the requests' timings, are kept. A ``domains`` name no
    lifeline has is an :class:`InputError` naming the closest one."""
    records, names = first_reading(records, domain_names)
    msgs = _all_messages(records, names)
    if domains:                         # every name, before the filters narrow them
        known = sorted({n for m in msgs for n in (m.src, m.dst)})
        unknown = [d for d in domains if d not in known]
        if unknown:
            raise InputError(f"the trace has no lifeline called {unknown[0]!r}"
                             f"{did_you_mean(unknown[0], known, cutoff=0.75)}"
                             f" (it has: {', '.join(known)})",
                             key="--domain")
    if command is not None:
        named = {}
        matching = hops.Matching()
        for r in records:
            if r["kind"] == "tpm.front.submit":
                named[(r.get("flow"), r["dom"])] = r.get("cc_name")
            if r["kind"].startswith(_MATCHED):
                matching.add(_as_record(r))
        found = [req for req in matching.requests()
                 if req.parent is None and req.done
                 and named.get((req.flow, req.front_dom)) == command]
        if len(found) < nth:
            raise InputError(f"the trace has {len(found)} completed {command} command(s); "
                             f"asked for number {nth}", key="--command")
        req = found[nth - 1]
        start = req.submit if start is None else max(start, req.submit)
        end = req.complete if end is None else min(end, req.complete)
        involved = {names.get(req.front_dom), names.get(req.back_dom)}
        for child in req.children:
            involved.add(names.get(child.back_dom))
        if req.ptpm or any(c.ptpm for c in req.children):
            involved.add(PHYSICAL_TPM)
        domains = set(domains or involved) & involved if domains else involved
        flows = {req.flow} | {c.flow for c in req.children}
        msgs = [m for m in msgs if m.flow is None or m.flow in flows]
    if start is not None:
        msgs = [m for m in msgs if m.t >= start - 1e-12]
    if end is not None:
        msgs = [m for m in msgs if m.t <= end + 1e-12]
    if domains:
        keep = set(domains)
        msgs = [m for m in msgs if m.src in keep and m.dst in keep]
    return msgs


#: the kinds a command's journey is matched from (hops reads them)
_MATCHED = ("tpm.", "tis.")
_COMMON = ("t", "kind", "dom", "seq", "dom_name")


def _as_record(r):
    return Record(r["seq"], r["t"], r["kind"], r["dom"],
                  {k: v for k, v in r.items() if k not in _COMMON})


def _lifelines(msgs):
    """Lifelines in the order they first speak (a guest's command then reads left to
    right), then XenStore and the physical TPM at the right."""
    lines = []
    for m in msgs:
        for n in (m.src, m.dst):
            if n not in lines and n not in (XENSTORE, PHYSICAL_TPM):
                lines.append(n)
    used = {m.src for m in msgs} | {m.dst for m in msgs}
    return lines + [n for n in (XENSTORE, PHYSICAL_TPM) if n in used]


_COLOURS = {"grant": "#8e44ad", "map": "#8e44ad", "notify": "#c0392b", "write": "#2471a3",
            "xenstore": "#7f8c8d", "command": "#1e8449", "response": "#b9770e", "exec": "#1e8449"}


#: a line break or tab: drawn as a space
_BREAKS = re.compile("[\t\n\v\f\r\x1c-\x1f\x85\u2028\u2029]")
#: what XML 1.0 does not allow in a document (its ``Char`` production), drawn as U+FFFD
_NOT_XML = re.compile("[\x00-\x08\x0e-\x1b\x7f\ud800-\udfff\ufffe\uffff]")


def drawable(text) -> str:
    """``text`` as one line a diagram can hold: line breaks and tabs as spaces,
    every character XML 1.0 does not allow as U+FFFD (REPLACEMENT CHARACTER)."""
    return _NOT_XML.sub("\ufffd", _BREAKS.sub(" ", str(text)))


def escape(text) -> str:
    """``text`` as SVG (XML) character data (:func:`drawable`, then ``&``, ``<``, ``>``)."""
    return _xml_escape(drawable(text))


#: The largest image, in pixels a side, that librsvg draws (so rsvg-convert, GNOME's
#: viewers, GIMP's and Inkscape's import): it draws on a cairo image surface, and cairo
#: refuses one over ``MAX_IMAGE_SIZE`` = 32,767 pixels high or wide
#: (cairo, ``src/cairo-image-surface.c``, ``_cairo_image_surface_is_size_valid``:
#: pixman takes coordinates in 16.16 fixed point); rsvg-convert then stops with "The
#: resulting image would be larger than 32767 pixels on either dimension"
#: (GNOME/librsvg, ``rsvg_convert/src/main.rs``, ``size_limit_exceeded``). An SVG's
#: pixel is a CSS pixel: the ``width``/``height`` :func:`svg` writes.
SVG_MAX_PIXELS = 32_767

# the layout of :func:`svg`, in pixels: a lifeline's column, the left margin (the
# times), the lifelines' heads, a message's row; a cut note's line and its average
# character (DejaVu Sans at 11 px)
_COL, _LEFT, _TOP, _ROW = 240, 110, 70, 30
_NOTE_LINE, _CHAR = 15, 6.6


def _svg_width(lifelines):
    return _LEFT + _COL * max(1, lifelines) + 20


def _svg_height(rows, note_lines=0):
    """The height of ``rows`` messages, and of a cut note of ``note_lines`` lines
    (a box taking the next row's place and what its lines need below it)."""
    note = note_lines and _NOTE_LINE * note_lines - _ROW + 20
    return _TOP + _ROW * (rows + 1) + 30 + note


def _note_lines(note, width):
    """``note`` wrapped to fit a box across a diagram ``width`` pixels wide."""
    return textwrap.wrap(note, max(20, int((width - 28) / _CHAR)), break_long_words=False,
                         break_on_hyphens=False)


def svg_cut_note(cut, limit=SVG_MAX_PIXELS) -> str:
    """What the note at the end of a cut SVG diagram says about the messages ``cut``."""
    return cut_note(cut, reader=f"librsvg draws an image at most {limit:,} pixels high or wide")


def svg_drawn(msgs, records, *, title=None, limit=SVG_MAX_PIXELS):
    """``(text, drawn)``: the SVG sequence diagram of ``msgs`` and how many of them it
    draws. A diagram higher or wider than ``limit`` pixels draws the longest run of
    first messages that fits (their lifelines are the first ones: a lifeline's
    column is placed when it first speaks), then a note across the page naming how
    many messages it left out, the time they span and the filters that narrow it
    -- as :func:`mermaid_drawn` does at Mermaid's limit. ``InputError`` if not even
    the first message fits."""
    counts, seen, special = [], set(), set()       # counts[k]: lifelines of msgs[:k + 1]
    for m in msgs:
        for n in (m.src, m.dst):
            (special if n in (XENSTORE, PHYSICAL_TPM) else seen).add(n)
        counts.append(len(seen) + len(special))
    whole = len(msgs)
    if not msgs or (_svg_height(whole) <= limit and _svg_width(counts[-1]) <= limit):
        return _svg(msgs, title), whole
    k = whole - 1
    while k > 0 and (_svg_width(counts[k - 1]) > limit or _svg_height(k) > limit):
        k -= 1
    while k > 0:
        width = _svg_width(counts[k - 1])
        lines = _note_lines(svg_cut_note(msgs[k:], limit), width)
        if _svg_height(k, len(lines)) <= limit:
            return _svg(msgs[:k], title, lines), k
        k -= 1
    raise InputError(f"not even the first message of the sequence diagram fits in the "
                     f"{limit:,} pixels a side librsvg draws; narrow it with --start/--end, "
                     "--domain or --command", key="--format sequence")


def svg(msgs, records, *, title=None) -> str:
    """An SVG sequence diagram of ``msgs`` (deterministic text): at most
    :data:`SVG_MAX_PIXELS` high and wide (:func:`svg_drawn`)."""
    return svg_drawn(msgs, records, title=title)[0]


def _svg(msgs, title, note=()):
    """The SVG of ``msgs``; with ``note`` (the cut note's lines), a last box saying what
    was left out."""
    lines = _lifelines(msgs)
    col, left, top, row = _COL, _LEFT, _TOP, _ROW
    x = {n: left + col * i + col // 2 for i, n in enumerate(lines)}
    width = _svg_width(len(lines))
    height = _svg_height(len(msgs), len(note))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Helvetica, sans-serif" '
           f'font-size="11">',
           "<defs>" + "".join(
               f'<marker id="a-{k}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
               f'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="{c}"/></marker>'
               for k, c in sorted(_COLOURS.items())) + "</defs>",
           f'<rect x="0" y="0" width="{width}" height="{height}" fill="white"/>']
    if title:
        out.append(f'<text x="10" y="18" font-size="13" font-weight="bold">{escape(title)}</text>')
    bottom = height - 20 if not note else top + row * (len(msgs) + 1) - 12   # to the note
    for n in lines:
        cx = x[n]
        out.append(f'<rect x="{cx - 80}" y="{top - 40}" width="160" height="26" rx="4" '
                   f'fill="#eef2f7" stroke="#34495e"/>')
        out.append(f'<text x="{cx}" y="{top - 22}" text-anchor="middle" font-weight="bold">'
                   f'{escape(n)}</text>')
        out.append(f'<line x1="{cx}" y1="{top - 14}" x2="{cx}" y2="{bottom}" stroke="#95a5a6" '
                   f'stroke-dasharray="4,3"/>')
    for i, m in enumerate(msgs):
        y = top + row * (i + 1)
        colour = _COLOURS.get(m.kind, "#000")
        out.append(f'<text x="8" y="{y + 4}" fill="#555">{m.t * 1e3:.3f} ms</text>')
        if m.src == m.dst:
            cx = x[m.src]
            half = 4 + len(m.label) * 3.3
            cx = min(max(cx, left + half), width - 10 - half)      # keep the note on the page
            out.append(f'<rect x="{cx - half:.0f}" y="{y - 11}" width="{2 * half:.0f}" height="18" '
                       f'fill="#fdfefe" stroke="{colour}"/>')
            out.append(f'<text x="{cx:.0f}" y="{y + 2}" text-anchor="middle" fill="{colour}">'
                       f'{escape(m.label)}</text>')
            continue
        x1, x2 = x[m.src], x[m.dst]
        dash = ' stroke-dasharray="5,3"' if m.kind in ("response", "map") else ""
        out.append(f'<line x1="{x1}" y1="{y}" x2="{x2 - 4 if x2 > x1 else x2 + 4}" y2="{y}" '
                   f'stroke="{colour}" stroke-width="1.5"{dash} marker-end="url(#a-{m.kind})"/>')
        out.append(f'<text x="{(x1 + x2) / 2}" y="{y - 4}" text-anchor="middle" fill="{colour}">'
                   f'{escape(m.label)}</text>')
    if note:
        y = top + row * (len(msgs) + 1) - 12
        out.append(f'<rect x="6" y="{y}" width="{width - 12}" height="{_NOTE_LINE * len(note) + 8}" '
                   f'fill="#fef9e7" stroke="#7f8c8d"/>')
        for i, text in enumerate(note):
            out.append(f'<text class="cut-note" x="14" y="{y + 15 + _NOTE_LINE * i}" '
                       f'fill="#333">{escape(text)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


#: Mermaid's default ``maxTextSize`` (mermaid-js/mermaid,
#: ``packages/mermaid/src/schemas/config.schema.yaml``): ``mermaid.render`` draws a
#: longer text as the one box "Maximum text size in diagram exceeded". Counted as
#: JavaScript counts a string's length: in UTF-16 code units.
MERMAID_MAX_TEXT = 50_000

#: Characters a Mermaid sequence diagram cannot hold as they are, and the entity
#: code (Mermaid's ``#<decimal>;``, drawn as the character) written instead:
#: ``#`` starts a comment and ``;`` ends a statement in the grammar; ``%`` can
#: open a ``%%{...}%%`` directive; ``<`` opens markup to the renderer (``<br>``
#: breaks a line, a title is sanitized as HTML) and ``&`` a character reference;
#: ``ﬂ`` and ``¶`` begin the placeholders Mermaid writes entity codes as between
#: parsing and drawing. (``>`` and ``"`` are drawn as they are: ``->`` stays readable.)
MERMAID_CODES = {ord(c): f"#{ord(c)};" for c in "#;%<&\ufb02\xb6"}


def _mermaid_text(s):
    return drawable(s).translate(MERMAID_CODES)


def _js_length(text):
    """The length JavaScript gives ``text`` (UTF-16 code units)."""
    return len(text.encode("utf-16-le")) // 2


def _mermaid_lines(msgs, title, cut=(), limit=MERMAID_MAX_TEXT):
    """The diagram of ``msgs``; with ``cut`` (the messages left out after them), a
    last note across the lifelines saying so."""
    lines = _lifelines(msgs)
    ids = {n: f"p{i}" for i, n in enumerate(lines)}
    out = ["sequenceDiagram"]
    if title:
        out.append(f"    title {_mermaid_text(title).strip()}")    # Mermaid keeps a leading space
    for n in lines:
        out.append(f"    participant {ids[n]} as {_mermaid_text(n)}")
    for m in msgs:
        label = f"{m.t * 1e3:.3f} ms {_mermaid_text(m.label)}"
        if m.src == m.dst:
            out.append(f"    Note over {ids[m.src]}: {label}")
        else:
            arrow = "-->>" if m.kind in ("response", "map") else "->>"
            out.append(f"    {ids[m.src]}{arrow}{ids[m.dst]}: {label}")
    if cut:
        span = ids[lines[0]] if len(lines) == 1 else f"{ids[lines[0]]},{ids[lines[-1]]}"
        out.append(f"    Note over {span}: {_mermaid_text(cut_note(cut, limit))}")
    return "\n".join(out) + "\n"


def cut_note(cut, limit=MERMAID_MAX_TEXT, *, reader=None) -> str:
    """What the note at the end of a cut diagram says about the messages ``cut``;
    ``reader``: what limit cut it (default: Mermaid's ``limit`` characters)."""
    reader = reader or f"Mermaid draws at most {limit:,} characters"
    return (f"{len(cut)} more message{'s' if len(cut) != 1 else ''} from "
            f"{cut[0].t * 1e3:.3f} ms to {cut[-1].t * 1e3:.3f} ms not drawn: {reader}; "
            f"narrow the diagram with --start/--end, --domain or --command")


def mermaid_drawn(msgs, records, *, title=None, limit=MERMAID_MAX_TEXT):
    """``(text, drawn)``: the Mermaid ``sequenceDiagram`` text of ``msgs`` and how
    many of them it draws. A diagram whose text would be longer than ``limit``
    draws the longest run of first messages that fits, then a note naming how
    many messages it left out and the time they span. ``InputError`` if not even
    the first message fits (a filter is needed)."""
    text = _mermaid_lines(msgs, title)
    if _js_length(text) <= limit:
        return text, len(msgs)
    fits, over = 0, len(msgs)           # _mermaid_lines(msgs[:fits], ..) fits, msgs[:over] not
    while over - fits > 1:
        mid = (fits + over) // 2
        if _js_length(_mermaid_lines(msgs[:mid], title, msgs[mid:], limit)) <= limit:
            fits = mid
        else:
            over = mid
    if fits == 0:
        raise InputError(f"not even the first message of the sequence diagram fits in Mermaid's "
                         f"{limit:,}-character limit; narrow it with --start/--end, --domain "
                         "or --command", key="--format sequence")
    return _mermaid_lines(msgs[:fits], title, msgs[fits:], limit), fits


def mermaid(msgs, records, *, title=None) -> str:
    """The same diagram as Mermaid ``sequenceDiagram`` text (for docs): at most
    :data:`MERMAID_MAX_TEXT` characters (:func:`mermaid_drawn`)."""
    return mermaid_drawn(msgs, records, title=title)[0]

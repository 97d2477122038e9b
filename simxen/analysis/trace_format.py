"""The trace as a file format: its JSON Schema, and records as plain dicts.

A trace file (``simxen run --trace FILE``) is JSON Lines: one object per
record, keys sorted. Every object has ``t`` (simulated seconds), ``kind``,
``dom`` (the acting domain id, or ``null``), ``dom_name`` (that domain's
name, when ``dom`` is not ``null``) and ``seq`` (emission order), then the
fields of its kind. :data:`SCHEMA_PATH` is the JSON Schema (draft-07) of every
kind; ``docs/trace.rst`` is generated from it (:func:`reference_rst`), so the
page and the schema cannot disagree.

The exports in this package (Perfetto, sequence diagrams, pcap, narrated
text) read records as the dicts this module gives, from a file
(:func:`load`) or straight from a run (:func:`from_trace`), so a trace
written yesterday and a run made now look the same to them::

    from simxen.analysis import trace_format
    records = trace_format.load("trace.jsonl")
    names = trace_format.domain_names(records)      # {0: "Domain-0", 3: "guest1", ...}

**Streams.** A list holds every record at once. :class:`TraceFile` (a file
read line by line) and :class:`TraceRecords` (a live trace, read record by
record from its buffer and spilled runs) give the same dicts *each time they
are iterated*, holding one record at a time: the exports take them as well
as lists and read them in a few passes, so ``simxen trace`` needs neither
the whole trace as text nor all its records in memory. :func:`in_order` is
how an export gets its records in time order: a list is sorted, a stream
already in order is read as it is.

**Checked on reading.** A file is a trace only if each of its records is
what the schema says its kind holds (:func:`check_record`): a record whose
``dom`` is a list, whose ``command`` is not hex, or with a field its kind
does not have is refused with the file, the line and the field, before an
export draws anything from it -- not met later as a crash inside the export.
A :class:`TraceFile` checks its records on a pass that reads it to the end
(the first, for ``simxen trace``), not on every pass.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

from simxen.errors import TOO_DEEP, InputError

__all__ = ["SCHEMA_PATH", "schema", "kinds", "check_record", "load", "loads", "from_trace",
           "domain_names",
           "note_name", "reference_rst", "TraceFile", "TraceRecords", "Window", "in_order",
           "first_reading", "time_order"]

#: The JSON Schema of one trace record (shipped as package data).
SCHEMA_PATH = Path(__file__).with_name("trace_schema.json")

_COMMON = ("t", "kind", "dom", "dom_name", "seq")


@lru_cache(maxsize=1)
def schema() -> dict:
    """The schema, parsed (cached: treat it as read-only)."""
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def kinds() -> list:
    """Every record kind the schema knows, sorted."""
    return list(schema()["properties"]["kind"]["enum"])


@lru_cache(maxsize=None)
def _checks(kind):
    """``(validate, integer fields)`` of a ``kind`` record, by ``$defs/<kind>``: the
    branch the whole schema applies to such a record, compiled to Python by
    fastjsonschema (the whole schema's if/then chain over every kind costs some 400 us
    a record; one branch, 6 us), and the fields it types as integers (or null) -- JSON
    Schema counts ``1.0`` and ``1e308`` as integers, but a record's reader needs an int.
    A kind the schema does not know gets the fields every record has."""
    import fastjsonschema
    s = schema()
    defs = s["$defs"]
    branch = kind if kind in _known_kinds() else "record"
    validate = fastjsonschema.compile({"$schema": s["$schema"], "$defs": defs,
                                       "$ref": f"#/$defs/{branch}"})
    integers = tuple(name for name, node in defs[branch].get("properties", {}).items()
                     if "integer" in (types := _json_types(node, defs))
                     and types <= {"integer", "null"})
    return validate, integers


@lru_cache(maxsize=1)
def _known_kinds() -> frozenset:
    return frozenset(kinds())


def _json_types(node, defs):
    """The JSON types a (sub)schema allows: its ``type``, through ``$ref`` and ``anyOf``;
    every type when it names none."""
    if "$ref" in node:
        target = {"$defs": defs}
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        return _json_types(target, defs)
    if "anyOf" in node:
        return frozenset().union(*(_json_types(n, defs) for n in node["anyOf"]))
    if "type" in node:
        t = node["type"]
        return frozenset([t] if isinstance(t, str) else t)
    return frozenset({"array", "boolean", "integer", "null", "number", "object", "string"})


def check_record(obj) -> str | None:
    """What is wrong with the record ``obj`` (a dict) by the schema, in one line,
    or ``None`` if nothing is: ``"dom must be integer or null"``. An integer field
    must hold an integer as JSON writes one (``3``, not ``3.0`` or ``3e0``)."""
    import fastjsonschema
    validate, integers = _checks(obj["kind"])
    try:
        validate(obj)
    except fastjsonschema.JsonSchemaException as exc:
        where, _, rest = exc.message.partition(" ")
        field = where.partition(".")[2]         # "data.dom" -> "dom"; "data" -> ""
        if field:
            return f"{field} {rest}"
        return f"the record {rest}" if rest.startswith("must") else f"the record: {rest}"
    for name in integers:
        if obj.get(name).__class__ is float:
            return f"{name} must be an integer, not {obj[name]!r}"
    return None


def _record(line, n, path, check=True):
    """The record of ``line`` (line ``n`` of ``path``), or ``None`` for a blank line;
    ``check``: also by the schema (:func:`check_record`)."""
    if not line.strip():
        return None
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(f"not JSON: {exc.msg}", path=path, key=f"line {n}") from None
    except RecursionError:
        raise InputError(f"not a trace record: {TOO_DEEP}", path=path, key=f"line {n}") from None
    if not (isinstance(obj, dict) and isinstance(obj.get("kind"), str) and "dom" in obj
            and _number(obj.get("t"), (int, float)) and _finite(obj["t"])
            and _number(obj.get("seq", 0), int)):
        raise InputError("not a trace record (expected an object with t, kind, dom)",
                         path=path, key=f"line {n}")
    if check:
        if ("\\ud" in line or "\\uD" in line) and not _text(obj):
            raise InputError("a string holds a lone UTF-16 surrogate (an escape \\ud800-\\udfff "
                             "without its pair), which is not text", path=path, key=f"line {n}")
        problem = check_record(obj)
        if problem is not None:
            raise InputError(f"not a {obj['kind']} record as the trace schema has it: {problem}",
                             path=path, key=f"line {n}")
    return obj


def _text(obj):
    """Whether every string of ``obj`` is Unicode text: JSON's ``\\ud800`` escape, alone,
    decodes to a surrogate that no file can be written with."""
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _finite(t):
    """Whether the number ``t`` is not NaN or infinite (which ``json`` reads from
    ``NaN`` and ``Infinity``)."""
    return not isinstance(t, float) or math.isfinite(t)


def _number(value, types):
    """Whether ``value`` is a JSON number of ``types`` (``true`` and ``false`` are not)."""
    return isinstance(value, types) and not isinstance(value, bool)


def loads(text, *, path="<trace>") -> list:
    """The records of JSON Lines ``text``, as dicts; :class:`InputError`
    names the line that is not a record."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        obj = _record(line, n, path)
        if obj is not None:
            out.append(obj)
    return out


def load(path) -> list:
    """The records of the trace file at ``path``, as dicts."""
    return list(TraceFile(path))


def from_trace(trace) -> list:
    """The records of a live :class:`simxen.xen.trace.Trace`, exactly as its
    JSON Lines export would give them (:class:`TraceRecords` gives them one at
    a time)."""
    return list(TraceRecords(trace))


def time_order(record):
    """The key the exports order records by: time, then emission order."""
    return record["t"], record["seq"]


def _numbered_lines(path, cut_short_ok=False):
    """``(number, line)`` of the file at ``path``, read a line at a time: what
    ``enumerate(path.read_text().splitlines(), 1)`` gives, with the same
    :class:`InputError` for a file that cannot be read or is not UTF-8 (the
    byte counted from the file's start). Reads bytes and splits them at
    ``\\n`` (never inside a UTF-8 sequence), then splits each such line as
    :meth:`str.splitlines` would (``\\r``, ``\\u2028``...), so the numbers are
    the same too."""
    try:
        with open(path, "rb") as f:
            n, at = 0, 0
            for raw in f:
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    if (cut_short_ok and exc.reason == "unexpected end of data"
                            and not raw.endswith(b"\n")):
                        # the last line, cut inside a character: not JSON, as if cut before it
                        text = raw[:exc.start].decode("utf-8", "replace")
                    elif cut_short_ok and at == 0 and raw.startswith(b"\x1f\x8b"):
                        raise InputError("gzip-compressed, not JSON Lines: gunzip it first",
                                         path=path) from None
                    else:
                        raise InputError(f"not UTF-8 text (byte {at + exc.start})",
                                         path=path) from None
                at += len(raw)
                for line in text.splitlines():
                    n += 1
                    yield n, line
    except OSError as exc:
        raise InputError(f"cannot read trace: {exc.strerror}", path=path) from None


def _ends_with_newline(path):
    """Whether the file's last byte is a newline (a line written whole)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            if f.tell() == 0:
                return True
            f.seek(-1, 2)
            return f.read(1) == b"\n"
    except OSError:
        return True


class TraceFile:
    """The records of the trace file at ``path``, as dicts, read line by line
    each time this is iterated (one record in memory at a time).

    A bad file gets the :class:`InputError` :func:`load` gives -- the same
    text, the same line number; a file that is not UTF-8 is reported as such
    even when an earlier line is not JSON, as a reading of the whole text
    first found. The first iteration that reaches the end also learns whether
    the file is in time order (:attr:`ordered`), as ``simxen run --trace``
    writes it.
    """

    def __init__(self, path, *, cut_short_ok=False):
        self.path = Path(path)
        #: ``True``/``False`` once a whole read has seen whether every record's
        #: ``(t, seq)`` is at or after the one before; ``None`` before.
        self.ordered = None
        #: with ``cut_short_ok`` (a file a user names): a last line that is not JSON
        #: and has no newline -- what a run killed while writing it leaves
        #: (docs/trace.rst) -- is left out, and its number noted here, instead of
        #: refusing the file; and a gzip-compressed file is named as such
        self.cut_short_ok = cut_short_ok
        self.cut_short = None

    def __iter__(self):
        path = self.path
        lines = _numbered_lines(path, self.cut_short_ok)
        ordered, last = True, None
        check = self.ordered is None        # until a pass has read (and checked) it all
        for n, line in lines:
            try:
                obj = _record(line, n, path, check)
            except InputError as bad:
                later = False
                for _ in lines:         # a later byte that is not UTF-8 is the error shown
                    later = True
                if (self.cut_short_ok and not later and bad.message.startswith("not JSON")
                        and not _ends_with_newline(path)):
                    self.cut_short = n
                    break
                raise bad from None
            if obj is None:
                continue
            if ordered:
                try:
                    key = (obj["t"], obj["seq"])
                    if last is not None and key < last:
                        ordered = False
                    last = key
                except (KeyError, TypeError):
                    ordered = False     # in_order sorts it, and fails as sorting a list did
            yield obj
        self.ordered = ordered


class TraceRecords:
    """The records of a live :class:`simxen.xen.trace.Trace`, as dicts, exactly
    as its JSON Lines export gives them, one at a time each time this is
    iterated (:meth:`~simxen.xen.trace.Trace.iter_dicts`: spilled runs are read
    back lazily, and no line of text is made). Always in time order."""

    ordered = True

    def __init__(self, trace):
        self.trace = trace

    def __iter__(self):
        return self.trace.iter_dicts()


class Window:
    """The records of ``records`` (a list or a stream) with ``start <= t <= end``,
    read afresh each time this is iterated."""

    def __init__(self, records, start=None, end=None):
        self.records = records
        self.start = float("-inf") if start is None else start
        self.end = float("inf") if end is None else end

    @property
    def ordered(self):
        return getattr(self.records, "ordered", False)

    def __iter__(self):
        lo, hi = self.start, self.end
        return (r for r in self.records if lo <= r["t"] <= hi)


def in_order(records):
    """``records`` in time order (:func:`time_order`), for an export to read: a
    stream known to be in order as it is; a list, or a stream that is not, sorted
    into a list. A :class:`TraceFile` not read yet is read once first, which also
    checks every line of it before anything is written."""
    return first_reading(records, _read)[0]


def _read(records):
    for _ in records:
        pass


def first_reading(records, first):
    """``(in_order(records), first(those records))``, where ``first`` is an
    export's first reading of them (the names of the domains...): a
    :class:`TraceFile` not read yet is checked by that reading itself, which is
    done again on the sorted records only when the file turns out not to be in
    order -- no reading is spent on the check."""
    if getattr(records, "ordered", False) is None:
        try:
            done = first(records)
        except InputError:
            raise
        except Exception:
            # (a record the export cannot read, e.g. a domain.create without its name):
            # a bad line further on is the error shown, as when the file was read first
            _read(records)
            raise
        if records.ordered:
            return records, done
    if not getattr(records, "ordered", False):
        records = sorted(records, key=time_order)
    return records, first(records)


def domain_names(records) -> dict:
    """``{domid: name}`` from the ``domain.create`` records (the name table)
    and the ``dom_name`` fields."""
    names = {}
    for r in records:
        note_name(names, r)
    return names


def note_name(names, record):
    """Add what ``record`` tells of a domain's name to ``names``: :func:`domain_names`
    one record at a time, for an export that reads the records for more at once."""
    if record["kind"] == "domain.create":
        names[record["domid"]] = record["name"]
    elif record.get("dom_name") is not None and record["dom"] not in names:
        names[record["dom"]] = record["dom_name"]


def _type_text(spec, defs) -> str:
    if "$ref" in spec:
        target = spec["$ref"].split("/")[-1]
        inner = defs[target]
        return {"seconds": "number (s)", "bytes": "integer (bytes)", "domid": "domid",
                "hex": "hex bytes", "flow": "string", "cc": "integer", "cc_int": "integer",
                "cc_name": "string"}.get(target, _type_text(inner, defs))
    if "anyOf" in spec:
        return " or ".join(_type_text(s, defs) for s in spec["anyOf"])
    if spec.get("type") == "array":
        return f"list of {_type_text(spec.get('items', {}), defs)}"
    kind = spec.get("type", "any")
    return " or ".join(kind) if isinstance(kind, list) else kind


def reference_rst() -> str:
    """The record reference of ``docs/trace.rst``, rendered from the schema."""
    s = schema()
    defs = s["$defs"]
    common = defs["record"]["properties"]
    lines = ["Fields every record has", "-----------------------", ""]
    for name in _COMMON:
        spec = common[name]
        lines.append(f"``{name}`` ({_type_text(spec, defs)})")
        lines.append(f"    {spec['description']}")
    lines += ["", "Record kinds", "------------", ""]
    for kind in kinds():
        d = defs[kind]
        lines += [f"``{kind}``", "~" * (len(kind) + 4), "", d["description"], ""]
        own = [(k, v) for k, v in d["properties"].items() if k not in _COMMON]
        required = set(d.get("required", ()))
        for name, spec in own:
            ref = defs.get(spec.get("$ref", "").split("/")[-1], {})
            desc = spec.get("description") or ref.get("description", "")
            opt = "" if name in required else ", optional"
            lines.append(f"``{name}`` ({_type_text(spec, defs)}{opt})")
            lines.append(f"    {desc}")
        if not own:
            lines.append("No fields of its own.")
        if d.get("additionalProperties", True) is not False:
            lines += ["", "May carry further fields that describe the violation."]
        lines.append("")
    return "\n".join(lines)

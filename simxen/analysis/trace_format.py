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
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from simxen.errors import InputError

__all__ = ["SCHEMA_PATH", "schema", "kinds", "load", "loads", "from_trace", "domain_names",
           "reference_rst"]

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


def loads(text, *, path="<trace>") -> list:
    """The records of JSON Lines ``text``, as dicts; :class:`InputError`
    names the line that is not a record."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"not JSON: {exc.msg}", path=path, key=f"line {n}") from None
        if not (isinstance(obj, dict) and isinstance(obj.get("kind"), str)
                and isinstance(obj.get("t"), (int, float)) and "dom" in obj):
            raise InputError("not a trace record (expected an object with t, kind, dom)",
                             path=path, key=f"line {n}")
        out.append(obj)
    return out


def load(path) -> list:
    """The records of the trace file at ``path``, as dicts."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read trace: {exc.strerror}", path=path) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (byte {exc.start})", path=path) from None
    return loads(text, path=path)


def from_trace(trace) -> list:
    """The records of a live :class:`simxen.xen.trace.Trace`, exactly as its
    JSON Lines export would give them."""
    return loads(trace.dumps_jsonl())


def domain_names(records) -> dict:
    """``{domid: name}`` from the ``domain.create`` records (the name table)
    and the ``dom_name`` fields."""
    names = {}
    for r in records:
        if r["kind"] == "domain.create":
            names[r["domid"]] = r["name"]
        elif r.get("dom_name") is not None and r["dom"] not in names:
            names[r["dom"]] = r["dom_name"]
    return names


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

"""Overrides: change one key of a scenario from the command line.

``simxen run SCENARIO --set KEY=VALUE`` (and ``validate``, and every point of
a ``simxen sweep``) changes the file's data *before* it is validated, so an
override is typed and checked by exactly the schema that checks the file,
and a wrong one is the same one-line error, naming the ``--set``::

    --set scenario.seed=4                       # [scenario] seed
    --set stack.guest_count=32                  # the [[workload]] whose name is "stack"
    --set guest1.vcpus=2                        # the [[domain]] whose name is "guest1"
    --set workload[0].iterations=100            # by position, as error messages name it
    --set 'profile.switches."tpmfront.wait"=interrupt'
    --set 'stack.commands=["pcr_extend", "quote"]'

KEY is a dotted path; a segment holding a dot is written in double quotes,
as in TOML. Its first segment is ``scenario``, ``profile``, a workload's or
a domain's ``name``, or ``workload[N]`` / ``domain[N]`` / ``expect[N]``.
VALUE is a TOML value (``32``, ``2.5``, ``true``, ``"text"``, ``[1, 2]``);
anything that is not one is taken as a string, so ``interrupt`` needs no
quotes.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass

from simxen.errors import TOO_DEEP, InputError

_INDEXED = re.compile(r"^(workload|domain|expect)\[(\d+)\]$")
_ARRAYS = ("workload", "domain", "expect")


@dataclass(frozen=True)
class Override:
    """One ``--set``: the text as given, its key segments and its value."""

    text: str
    segments: tuple
    value: object

    @property
    def key(self) -> str:
        return ".".join(f'"{s}"' if "." in s else s for s in self.segments)


def split_key(key: str, *, where: str) -> tuple:
    """``'profile.switches."tpmfront.wait"'`` -> ``('profile', 'switches', 'tpmfront.wait')``."""
    segments, current, quoted, i = [], [], False, 0
    while i < len(key):
        ch = key[i]
        if ch == '"':
            quoted = not quoted
        elif ch == "." and not quoted:
            segments.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    if quoted:
        raise InputError(f"unbalanced double quote in key {key!r}", key=where)
    segments.append("".join(current))
    if any(not s for s in segments):
        raise InputError(f"expected KEY=VALUE with a dotted KEY such as stack.guest_count, "
                         f"found an empty segment in {key!r}", key=where)
    return tuple(segments)


def parse_value(text: str):
    """A TOML value, or the text itself when it is not one (``interrupt``); an
    :class:`InputError` for one nested deeper than the parser follows."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
    except RecursionError:
        raise InputError(f"the value is {TOO_DEEP}") from None


def parse(text: str) -> Override:
    """``"stack.guest_count=32"`` -> an :class:`Override`; :class:`InputError` if malformed."""
    where = f"--set {text}"
    key, sep, value = _split_assignment(text)
    if not sep or not key.strip():
        raise InputError("expected KEY=VALUE (e.g. stack.guest_count=32)", key=where)
    segments = split_key(key.strip(), where=where)
    try:
        value = parse_value(value.strip())
    except InputError as err:
        raise InputError(err.message, key=where) from None
    return Override(text, segments, value)


def _split_assignment(text):
    """Split at the first ``=`` outside double quotes."""
    quoted = False
    for i, ch in enumerate(text):
        if ch == '"':
            quoted = not quoted
        elif ch == "=" and not quoted:
            return text[:i], "=", text[i + 1:]
    return text, "", ""


def _schema_name(table, array, index):
    """How validation errors name element *index* of *array*: a workload by its
    name (``workload.stack``), the others by position (``domain[0]``)."""
    name = _default_name(table, array) if array == "workload" else None
    return f"workload.{name}" if isinstance(name, str) and name else f"{array}[{index}]"


def _default_name(table, array):
    """The ``name`` a workload/domain table has once validated (its schema default)."""
    if "name" in table or array != "workload":
        return table.get("name")
    from simxen.scenario import workloads
    kind = table.get("type")
    if kind not in workloads.available():
        return None
    field = next((f for f in workloads.module(kind).SCHEMA.fields if f.name == "name"), None)
    return getattr(field, "default", None)


def _as_list(raw, array):
    items = raw.get(array, [])
    if isinstance(items, dict):        # a single [workload] table is a one-element array
        items = raw[array] = [items]
    return items if isinstance(items, list) else []


def _example_key(table) -> str:
    """A key *table* holds other than its ``type`` and ``name`` (for an example), else ``name``."""
    return next((k for k in table if k not in ("type", "name")), "name")


def resolve(raw: dict, ov: Override, path) -> tuple:
    """Where *ov* lands in *raw*: ``(the table it changes, the leaf key, its schema keys)``.

    The schema keys are how errors name the place: as validation does
    (``workload.stack.guest_count``), and by position (``workload[0].guest_count``), as
    the checks of names across tables do (a workload's ``name`` blank or used twice)."""
    head, rest = ov.segments[0], list(ov.segments[1:])
    position = None
    where = f"--set {ov.text}"
    m = _INDEXED.match(head)
    if m:
        items = _as_list(raw, m.group(1))
        index = int(m.group(2))
        if index >= len(items) or not isinstance(items[index], dict):
            raise InputError(f"the file has {len(items)} [[{m.group(1)}]] table(s); "
                             f"{head} is not one of them", path=path, key=where)
        if not rest:            # a whole table is not a value: say which key of it
            raise InputError(f"expected a key of {head} after it, e.g. {head}."
                             f"{_example_key(items[index])}=VALUE; found {head} with nothing "
                             "after it", path=path, key=where)
        node, schema_key = items[index], _schema_name(items[index], m.group(1), index)
        position = f"{m.group(1)}[{index}]"
    elif head in ("scenario", "profile") and rest:
        node, schema_key = raw.setdefault(head, {}), head
        if not isinstance(node, dict):
            raise InputError(f"[{head}] is not a table in the file", path=path, key=where)
    else:
        node = schema_key = None
        for array in ("workload", "domain"):
            for i, table in enumerate(_as_list(raw, array)):
                if isinstance(table, dict) and _default_name(table, array) == head:
                    node, schema_key = table, _schema_name(table, array, i)
                    position = f"{array}[{i}]"
                    break
            if node is not None:
                break
        if node is None or not rest:
            names = [f"{a} {_default_name(t, a)!r}" for a in ("workload", "domain")
                     for t in _as_list(raw, a) if isinstance(t, dict)]
            raise InputError(f"the key must start with scenario, profile, workload[N], domain[N], "
                             f"expect[N] or the name of a workload or domain ({', '.join(names) or 'none'}); "
                             f"found {head!r}" + ("" if rest else " with nothing after it"),
                             path=path, key=where)
    for seg in rest[:-1]:
        node = node.setdefault(seg, {})
        schema_key += f".{seg}"
        if not isinstance(node, dict):
            raise InputError(f"{schema_key} is a value, not a table", path=path, key=where)
    keys = [f"{schema_key}.{rest[-1]}"]
    if position is not None:
        keys.append(".".join([position] + rest))
    return node, rest[-1], tuple(dict.fromkeys(keys))


def apply(raw: dict, overrides, path) -> dict:
    """Apply every override to the TOML data *raw* (changed in place, and returned).

    Returns ``{schema key: override}`` so a validation error on that key can
    name the ``--set`` that caused it (see :func:`blame`)."""
    placed = {}
    for ov in overrides:
        node, leaf, schema_keys = resolve(raw, ov, path)
        node[leaf] = ov.value
        placed.update(dict.fromkeys(schema_keys, ov))
    return placed


def blame(err: InputError, placed: dict, path):
    """The error *err* re-told as a ``--set`` error when one of *placed* caused it:
    the error's key is the override's, inside it, or (a table the override
    changed a key of, e.g. a profile op) around it."""
    key = str(err.key or "")
    for schema_key, ov in placed.items():
        if key == schema_key or key.startswith((schema_key + ".", schema_key + "[")) \
                or (key and schema_key.startswith((key + ".", key + "["))):
            return InputError(err.message, path=path, key=f"--set {ov.text}")
    return err


def blame_scenario(err: InputError, scenario):
    """:func:`blame` for an error found after loading (``runner.prepare``): the
    overrides the scenario was loaded with are placed again on a copy of its data."""
    if not scenario.overrides or err.path != scenario.path:
        return err
    import copy
    try:
        placed = apply(copy.deepcopy(scenario.data), [parse(t) for t in scenario.overrides],
                       scenario.path)
    except InputError:
        return err
    return blame(err, placed, scenario.path)

"""A small declarative schema for scenario files.

A scenario file is TOML. Its shape is described here as data, once, so that
the same description

* validates a file and reports the *first* problem as one line naming the
  file, the dotted key and what was expected (``InputError``), and
* documents every key (``simxen validate --keys`` prints the reference that
  README.rst also shows).

Example::

    WORKLOAD = Table("workload", "what the guests do", [
        Field("requests", int, "how many requests", default=1000, minimum=1),
    ])
    params = WORKLOAD.validate(raw_dict, path="x.toml", prefix="workload")
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field as dc_field
from typing import Any, Callable, Sequence

from simxen.errors import TOML_TYPES, InputError, did_you_mean, finite, found

_MISSING = object()


def _type_name(t) -> str:
    if isinstance(t, tuple):
        return " or ".join(_type_name(x) for x in t)
    return TOML_TYPES.get(t, getattr(t, "__name__", str(t)))


_PLURALS = {int: "integers", float: "numbers", str: "strings", bool: "booleans",
            list: "arrays", dict: "tables"}


def _toml(value) -> str:
    """A default value as it would be written in a TOML file."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    return repr(value)


@dataclass
class Field:
    """One key of a table.

    :param name: the key as written in the file
    :param type: ``int``, ``float`` (ints are accepted), ``str``, ``bool``,
        ``list`` or ``dict``; a tuple allows several
    :param doc: one line for the key reference
    :param default: used when the key is absent; no default means required
    :param choices: allowed values
    :param minimum: smallest allowed number
    :param items: type of each element, for arrays
    :param check: extra check returning an error text, or ``None``
    """

    name: str
    type: Any
    doc: str
    default: Any = _MISSING
    choices: Sequence[Any] | None = None
    minimum: float | None = None
    items: Any = None
    check: Callable[[Any], str | None] | None = None

    @property
    def required(self) -> bool:
        return self.default is _MISSING

    def expected(self) -> str:
        if isinstance(self.type, tuple) and len(self.type) > 2:
            text = "a value (" + ", ".join(_PLURALS.get(t, str(t)) for t in self.type) + ")"
        else:
            text = _type_name(self.type)
        if self.items is not None:
            array = f"an array of {_PLURALS.get(self.items, _type_name(self.items))}"
            alone = [t for t in self.type if t is not list] if isinstance(self.type, tuple) else []
            text = " or ".join([_type_name(t) for t in alone] + [array])
        if self.choices:
            text += " (one of " + ", ".join(repr(c) for c in self.choices) + ")"
        if self.minimum is not None:
            text += f" >= {self.minimum}"
        return text

    def validate(self, value, path, key):
        t = self.type
        ok_types = t if isinstance(t, tuple) else (t,)
        if float in ok_types and isinstance(value, int) and not isinstance(value, bool) \
                and int not in ok_types:
            if not finite(value):
                raise InputError(f"expected a finite number, found {found(value)}", path=path,
                                 key=key)
            value = float(value)
        if isinstance(value, bool) and bool not in ok_types:
            ok = False
        else:
            ok = isinstance(value, ok_types)
        if not ok:
            raise InputError(f"expected {self.expected()}, found {found(value)}",
                             path=path, key=key)
        if isinstance(value, float) and not math.isfinite(value):
            raise InputError(f"expected a finite number, found {value!r}", path=path, key=key)
        if self.items is not None and isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, bool) or not isinstance(item, self.items) and not (
                        self.items is float and isinstance(item, int)):
                    raise InputError(f"expected {_type_name(self.items)}, found {found(item)}",
                                     path=path, key=f"{key}[{i}]")
                if self.items is float and not finite(item):
                    raise InputError(f"expected a finite number, found {item!r}", path=path,
                                     key=f"{key}[{i}]")
            if self.items is float:     # an integer is a number too, as for a float key
                value = [float(item) for item in value]
        if self.choices is not None and value not in self.choices:
            raise InputError(f"expected {self.expected()}, found {value!r}", path=path, key=key)
        if self.minimum is not None and value < self.minimum:
            raise InputError(f"expected {self.expected()}, found {value!r}", path=path, key=key)
        if self.check is not None:
            problem = self.check(value)
            if problem:
                raise InputError(problem, path=path, key=key)
        return value


@dataclass
class Table:
    """A TOML table: a fixed set of keys, each a :class:`Field`, :class:`Table`
    or :class:`TableArray`."""

    name: str
    doc: str
    fields: list = dc_field(default_factory=list)
    required: bool = False

    def _by_name(self):
        return {f.name: f for f in self.fields}

    def validate(self, raw, path, prefix=None) -> dict:
        prefix = prefix if prefix is not None else self.name
        if not isinstance(raw, dict):
            raise InputError(f"expected a table, found {found(raw)}", path=path, key=prefix)
        known = self._by_name()
        for key in raw:
            if key not in known:
                raise InputError(_unknown_key_message(key, known), path=path,
                                 key=_join(prefix, key))
        out = {}
        for name, spec in known.items():
            key = _join(prefix, name)
            if name in raw:
                out[name] = spec.validate(raw[name], path, key)
            elif isinstance(spec, (Table, TableArray)):
                if spec.required:
                    raise InputError(f"missing required table ({spec.doc})", path=path, key=key)
                out[name] = spec.validate({} if isinstance(spec, Table) else [], path, key)
            elif spec.required:
                raise InputError(f"missing required key: expected {spec.expected()} ({spec.doc})",
                                 path=path, key=key)
            else:
                out[name] = spec.default
        return out

    def reference(self, prefix=None, indent=""):
        """Yield lines documenting every key under this table."""
        prefix = prefix if prefix is not None else self.name
        for spec in self.fields:
            key = _join(prefix, spec.name)
            if isinstance(spec, Table):
                yield f"{indent}[{key}]  {spec.doc}"
                yield from spec.reference(key, indent + "  ")
            elif isinstance(spec, TableArray):
                yield f"{indent}[[{key}]]  {spec.doc}"
                yield from spec.reference(key, indent + "  ")
            else:
                if spec.required:
                    default = "required"
                elif spec.default is None:
                    default = "optional"
                else:
                    default = f"default {_toml(spec.default)}"
                yield f"{indent}{key} = {spec.expected()}; {default}. {spec.doc}"


@dataclass
class TableArray:
    """An array of tables (``[[name]]``). With ``variants`` the key
    ``variant_key`` (``type``) of each element selects its :class:`Table`.

    With ``name_key`` (``"name"``) an element is named in error messages by
    that key's value, as the rest of simxen names it (``workload.attest.policy``,
    not ``workload[0].policy``); the table's default applies when it is absent.
    """

    name: str
    doc: str
    table: Table | None = None
    variants: dict | None = None
    variant_key: str = "type"
    required: bool = False
    minimum: int = 0
    name_key: str | None = None

    def element_key(self, prefix, index, item, table=None) -> str:
        """How element *index* (raw table *item*) is named in messages."""
        if self.name_key is not None and isinstance(item, dict):
            name = item.get(self.name_key, _MISSING)
            if name is _MISSING and table is not None:
                spec = table._by_name().get(self.name_key)
                name = spec.default if isinstance(spec, Field) else _MISSING
            if isinstance(name, str) and name:
                return f"{prefix}.{name}"
        return f"{prefix}[{index}]"

    def validate(self, raw, path, prefix=None) -> list:
        prefix = prefix if prefix is not None else self.name
        if isinstance(raw, dict) and self.variants is not None:
            raw = [raw]          # a single [workload] table is a one-element array
        if not isinstance(raw, list):
            raise InputError(f"expected an array of tables ([[{self.name}]]), found {found(raw)}",
                             path=path, key=prefix)
        if len(raw) < self.minimum:
            raise InputError(f"expected at least {self.minimum} [[{self.name}]] table(s)",
                             path=path, key=prefix)
        out = []
        for i, item in enumerate(raw):
            key = self.element_key(prefix, i, item, self.table)
            table = self.table
            if self.variants is not None:
                if not isinstance(item, dict):
                    raise InputError(f"expected a table, found {found(item)}", path=path, key=key)
                kind = item.get(self.variant_key, _MISSING)
                if kind is _MISSING:
                    raise InputError(f"missing required key: expected one of "
                                     f"{', '.join(map(repr, self.variants))}",
                                     path=path, key=f"{key}.{self.variant_key}")
                if not isinstance(kind, str):       # an array or table is no type name
                    raise InputError(f"expected one of {', '.join(map(repr, self.variants))}, "
                                     f"found {found(kind)}",
                                     path=path, key=f"{key}.{self.variant_key}")
                if kind not in self.variants:
                    raise InputError(_unknown_key_message(kind, self.variants, what="type"),
                                     path=path, key=f"{key}.{self.variant_key}")
                table = self.variants[kind]
                key = self.element_key(prefix, i, item, table)
            out.append(table.validate(item, path, key))
        return out

    def reference(self, prefix, indent=""):
        if self.variants is None:
            yield from self.table.reference(prefix, indent)
            return
        for kind, table in self.variants.items():
            yield f"{indent}{self.variant_key} = {kind!r}: {table.doc}"
            yield from table.reference(prefix, indent + "  ")


def _join(prefix, key):
    return f"{prefix}.{key}" if prefix else key


def _unknown_key_message(key, known, what="key"):
    names = ", ".join(repr(k) for k in known)
    return f"unknown {what} {key!r} (expected one of: {names}){did_you_mean(key, known)}"

"""The one trace of a run: typed records in simulated time.

Everything observable -- hypercalls, notifications sent and delivered, grant
maps, XenStore changes and watch firings, declared page accesses, TPM
commands -- becomes one :class:`Record`::

    trace.emit("evtchn.send", t, dom=1, port=3, remote_dom=2, remote_port=5)

``kind`` is a dotted name; ``dom`` the acting domain id (or ``None``);
fields are JSON-able scalars, ``bytes`` (exported as hex) or lists of them.
Records may be emitted out of time order (a notification's delivery is
recorded when the receiver sees it, with the delivery time);
:meth:`Trace.records` sorts them by time, then emission order, so the export
is a deterministic function of the run: same scenario and seed, same bytes.

``emit`` is on the hot path of every simulation, so it only appends a tuple;
whole families can be switched off with :meth:`Trace.disable` (``"page"``
turns off ``page.read`` and ``page.write``).

Inside :mod:`simxen.xen`, the hottest records (page accesses, event-channel
sends and deliveries) skip even the dict: they append a row
``(t, kind, dom, names, *values)`` -- the tuple of field names, then the
values -- after checking ``trace._enabled.get(kind)`` (one dict lookup;
``None`` means "not decided yet", ask :meth:`Trace.wants`). A value
``None`` in such a row means the field is absent. :meth:`records` turns
every row into the same :class:`Record` an ``emit`` of those fields gives.
"""

import io
import json
from typing import NamedTuple


class Record(NamedTuple):
    """One thing that happened."""

    seq: int          #: emission order, breaks ties between equal times
    t: float          #: simulated time in seconds
    kind: str         #: dotted name, e.g. ``"gnttab.map"``
    dom: object       #: acting domain id, or ``None``
    fields: dict      #: the record's own fields

    def as_dict(self):
        """The record as the JSON object it is exported as."""
        out = {key: _jsonable(value) for key, value in self.fields.items()}
        out["t"] = self.t
        out["kind"] = self.kind
        out["dom"] = self.dom
        out["seq"] = self.seq
        return out


def _jsonable(value):
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _as_emitted(row):
    """``(t, kind, dom, fields)`` of a row, whichever of the two forms it has."""
    names = row[3]
    if names.__class__ is dict:         # emit()'s row: the fields themselves
        return row
    return row[0], row[1], row[2], {name: value for name, value in zip(names, row[4:])
                                    if value is not None}


class Trace:
    """An append-only list of :class:`Record`.

    ``disabled`` is an iterable of kind prefixes not to record.
    ``small_access`` is the largest page access whose bytes are recorded.
    """

    def __init__(self, disabled=(), *, small_access=64):
        self._rows = []
        self._disabled = set()
        self._enabled = {}
        self.small_access = small_access
        for prefix in disabled:
            self.disable(prefix)

    def disable(self, prefix):
        """Stop recording kinds equal to ``prefix`` or starting with ``prefix + '.'``."""
        self._disabled.add(prefix)
        self._enabled.clear()

    def enable(self, prefix):
        """Undo :meth:`disable` for ``prefix``."""
        self._disabled.discard(prefix)
        self._enabled.clear()

    def enabled(self, kind):
        """Whether records of ``kind`` are kept."""
        on = self._enabled.get(kind)
        if on is None:
            parts = kind.split(".")
            on = not any(".".join(parts[:i]) in self._disabled for i in range(1, len(parts) + 1))
            self._enabled[kind] = on
        return on

    def wants(self, kind):
        """Fast check used on hot paths before building a record by hand."""
        on = self._enabled.get(kind)
        return self.enabled(kind) if on is None else on

    def emit(self, kind, t, dom, **fields):
        """Record that ``kind`` happened at time ``t`` in domain ``dom``."""
        on = self._enabled.get(kind)
        if on is None:
            on = self.enabled(kind)
        if on:
            self._rows.append((t, kind, dom, fields))

    def __len__(self):
        return len(self._rows)

    def records(self):
        """All records, sorted by time, then emission order."""
        rows = self._rows
        order = sorted(range(len(rows)), key=lambda i: (rows[i][0], i))
        return [Record(i, *_as_emitted(rows[i])) for i in order]

    def count(self, prefix):
        """How many records have a kind equal to or under ``prefix``."""
        dotted = prefix + "."
        return sum(1 for row in self._rows if row[1] == prefix or row[1].startswith(dotted))

    def select(self, prefix):
        """Records (sorted) whose kind is equal to or under ``prefix``."""
        dotted = prefix + "."
        return [r for r in self.records() if r.kind == prefix or r.kind.startswith(dotted)]

    def to_jsonl(self, file):
        """Write every record as one JSON object per line (sorted keys)."""
        for record in self.records():
            file.write(json.dumps(record.as_dict(), sort_keys=True, separators=(",", ":")))
            file.write("\n")

    def dumps_jsonl(self):
        """The JSON Lines export as one string."""
        buf = io.StringIO()
        self.to_jsonl(buf)
        return buf.getvalue()

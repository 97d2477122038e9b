"""The one trace of a run: typed records in simulated time.

Everything observable -- hypercalls, notifications sent and delivered, grant
maps, XenStore changes and watch firings, declared page accesses, TPM
commands -- becomes one :class:`Record`::

    trace.emit("evtchn.send", t, dom=1, port=3, remote_dom=2, remote_port=5)

``kind`` is a dotted name; ``dom`` the acting domain id (or ``None``);
fields are JSON-able scalars, ``bytes`` (exported as hex) or lists of them.
The export adds ``dom_name``, the acting domain's name
(:meth:`Trace.name_domain`). Every record kind, its fields and their units
are in ``docs/trace.rst``; ``simxen/analysis/trace_schema.json`` is the
same as a JSON Schema.
Records may be emitted out of time order (a notification's delivery is
recorded when the receiver sees it, with the delivery time);
:meth:`Trace.records` sorts them by time, then emission order (``seq``), so
the export is a deterministic function of the run: same scenario and seed,
same bytes.

**Levels.** What the trace *keeps* is chosen by its level (:data:`LEVELS`):

``full``
    every record.
``commands``
    everything but the per-operation plumbing of the split drivers
    (:data:`PLUMBING`: page accesses, event channels, grants, XenStore, MMIO,
    ring pushes, disk and network I/O) -- the TPM commands, their hops
    through front- and backends, the manager's requests, boots, measurements
    and verdicts. What reports and :mod:`simxen.analysis.hops` read.
``off``
    nothing.

At every level each record is still *counted* (:meth:`Trace.count`,
``len(trace)``) and numbered, so ``seq`` of a kept record is the same at
every level: a ``commands`` trace is the ``full`` trace with lines left out.
:meth:`Trace.keeps` tells a reader whether a kind was kept, so a report can
say that its data is missing rather than print zeros. Families can also be
switched off entirely with :meth:`Trace.disable` (not even counted).

**Bounded memory.** Kept records wait in a buffer of ``buffer_rows`` rows;
a full buffer is sorted and spilled, as one *run*, to a temporary file (in
``spill_dir``, default the system's). Reading the trace (:meth:`records`,
:meth:`iter_records`, :meth:`to_jsonl`) merges the runs lazily, opening a run
only when the merge reaches its first record, so memory stays bounded by the
buffer however long the run is, and the export is the same bytes as one
sorted list in memory would give.

**The hot path.** ``emit`` builds a dict of fields. The hottest records
(page accesses, event-channel sends and deliveries) skip it with
:meth:`Trace.row`, which takes the tuple of field names and then the values
(``None`` = field absent); :meth:`records` turns such a row into the same
:class:`Record` an ``emit`` of those fields gives. :meth:`Trace.wants` is the
cheap check to call first when building the values costs something.
"""

import heapq
import io
import json
import pickle
import tempfile
from typing import NamedTuple

#: the trace levels, most to least kept
LEVELS = ("full", "commands", "off")

#: kind families left out at level ``commands``: the split drivers' per-operation plumbing
PLUMBING = ("page", "evtchn", "gnttab", "xs", "mmio", "ring", "disk", "net")

#: what a kind's decision is (the values of ``Trace._on``)
_SKIP, _COUNT, _KEEP = 0, 1, 2

#: rows per pickled block in a spilled run (what one open run holds in memory)
_BLOCK = 512


class Record(NamedTuple):
    """One thing that happened."""

    seq: int          #: emission order, breaks ties between equal times
    t: float          #: simulated time in seconds
    kind: str         #: dotted name, e.g. ``"gnttab.map"``
    dom: object       #: acting domain id, or ``None``
    fields: dict      #: the record's own fields

    def as_dict(self, names=None):
        """The record as the JSON object it is exported as.

        ``names`` (domid -> name, :meth:`Trace.domain_names`) adds
        ``dom_name`` beside ``dom``.
        """
        out = {key: _jsonable(value) for key, value in self.fields.items()}
        out["t"] = self.t
        out["kind"] = self.kind
        out["dom"] = self.dom
        out["seq"] = self.seq
        if names is not None and self.dom in names:
            out["dom_name"] = names[self.dom]
        return out


def _jsonable(value):
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _record(row):
    """The :class:`Record` of a row ``(t, seq, kind, dom, fields-or-names, values)``."""
    t, seq, kind, dom, names, values = row
    if values is None:                  # emit()'s row: the fields themselves
        return Record(seq, t, kind, dom, names)
    return Record(seq, t, kind, dom, {name: value for name, value in zip(names, values)
                                      if value is not None})


def _under(prefix):
    dotted = prefix + "."
    return lambda kind: kind == prefix or kind.startswith(dotted)


class _Run:
    """One sorted run of rows spilled to the trace's temporary file."""

    __slots__ = ("first", "offset", "blocks")

    def __init__(self, first, offset, blocks):
        self.first, self.offset, self.blocks = first, offset, blocks

    def rows(self, file):
        pos = self.offset
        for _ in range(self.blocks):
            file.seek(pos)
            block = pickle.load(file)
            pos = file.tell()
            yield from block


class Trace:
    """Records of a run, kept according to ``level`` (see the module doc).

    ``disabled`` is an iterable of kind prefixes not to record at all.
    ``small_access`` is the largest page access whose bytes are recorded.
    ``buffer_rows`` kept rows are held in memory before they are spilled.
    """

    def __init__(self, disabled=(), *, small_access=64, level="full",
                 buffer_rows=1 << 16, spill_dir=None):
        if level not in LEVELS:
            raise ValueError(f"trace level {level!r}: expected one of {', '.join(LEVELS)}")
        self.level = level
        self.small_access = small_access
        self._rows = []
        self._seq = 0
        self._counts = {}
        self._disabled = set()
        self._on = {}
        self._buffer_rows = buffer_rows
        self._spill_dir = spill_dir
        self._spill = None
        self._runs = []
        self._kept_spilled = 0
        self._names = {}
        for prefix in disabled:
            self.disable(prefix)

    # -- what is recorded ------------------------------------------------------
    def disable(self, prefix):
        """Stop recording kinds equal to ``prefix`` or starting with ``prefix + '.'``."""
        self._disabled.add(prefix)
        self._on.clear()

    def enable(self, prefix):
        """Undo :meth:`disable` for ``prefix``."""
        self._disabled.discard(prefix)
        self._on.clear()

    def _decide(self, kind):
        parts = kind.split(".")
        if any(".".join(parts[:i]) in self._disabled for i in range(1, len(parts) + 1)):
            on = _SKIP
        elif self.level == "full" or (self.level == "commands" and parts[0] not in PLUMBING):
            on = _KEEP
        else:
            on = _COUNT
        self._on[kind] = on
        return on

    def enabled(self, kind):
        """Whether records of ``kind`` are recorded (counted, and kept if the level keeps them)."""
        on = self._on.get(kind)
        return (self._decide(kind) if on is None else on) != _SKIP

    def wants(self, kind):
        """Fast check used on hot paths before building a record's values."""
        on = self._on.get(kind)
        if on is None:
            on = self._decide(kind)
        return on != _SKIP

    def keeps(self, kind):
        """Whether records of ``kind`` are kept (readable after the run) at this level."""
        on = self._on.get(kind)
        return (self._decide(kind) if on is None else on) == _KEEP

    # -- recording --------------------------------------------------------------
    def name_domain(self, domid, name):
        """Tell the trace what domain ``domid`` is called: exported records
        carry it as ``dom_name`` (the hypervisor calls this as it creates a
        domain; a domid is never reused within a run of simxen)."""
        self._names[domid] = name

    def domain_names(self):
        """``{domid: name}`` of every domain named so far."""
        return dict(self._names)

    def emit(self, kind, t, dom, **fields):
        """Record that ``kind`` happened at time ``t`` in domain ``dom``."""
        on = self._on.get(kind)
        if on is None:
            on = self._decide(kind)
        if on:
            seq = self._seq
            self._seq = seq + 1
            counts = self._counts
            counts[kind] = counts.get(kind, 0) + 1
            if on == _KEEP:
                rows = self._rows
                rows.append((t, seq, kind, dom, fields, None))
                if len(rows) >= self._buffer_rows:
                    self._spill_rows()

    def row(self, t, kind, dom, names, *values):
        """Record a hot-path row: ``names`` is a tuple of field names, ``values``
        their values in that order (``None`` = the field is absent). The same
        :class:`Record` as ``emit(kind, t, dom, **fields)`` of the present fields."""
        on = self._on.get(kind)
        if on is None:
            on = self._decide(kind)
        if on:
            seq = self._seq
            self._seq = seq + 1
            counts = self._counts
            counts[kind] = counts.get(kind, 0) + 1
            if on == _KEEP:
                rows = self._rows
                rows.append((t, seq, kind, dom, names, values))
                if len(rows) >= self._buffer_rows:
                    self._spill_rows()

    def _spill_rows(self):
        """Sort the buffer and write it as one run of the temporary file."""
        rows = self._rows
        rows.sort(key=_key)
        if self._spill is None:
            self._spill = tempfile.TemporaryFile(prefix="simxen-trace-", dir=self._spill_dir)
        f = self._spill
        f.seek(0, io.SEEK_END)
        offset = f.tell()
        blocks = 0
        for i in range(0, len(rows), _BLOCK):
            pickle.dump(rows[i:i + _BLOCK], f, protocol=pickle.HIGHEST_PROTOCOL)
            blocks += 1
        self._runs.append(_Run(_key(rows[0]), offset, blocks))
        self._kept_spilled += len(rows)
        self._rows = []

    # -- reading -----------------------------------------------------------------
    def __len__(self):
        """How many records were recorded (kept or only counted)."""
        return self._seq

    def kept(self):
        """How many records are kept (readable)."""
        return self._kept_spilled + len(self._rows)

    def spilled_runs(self):
        """How many sorted runs have left memory for the temporary file."""
        return len(self._runs)

    def _merged_rows(self):
        """Every kept row in (t, seq) order: the runs and the buffer, merged lazily."""
        memory = sorted(self._rows, key=_key)
        if not self._runs:
            yield from memory
            return
        f = self._spill
        f.flush()
        sources = [(run.first, run.rows(f)) for run in self._runs]
        if memory:
            sources.append((_key(memory[0]), iter(memory)))
        sources.sort(key=lambda s: s[0])
        pending = iter(sources)
        nxt = next(pending, None)
        heap = []
        while heap or nxt is not None:
            # open every source whose first row could come before the heap's smallest
            while nxt is not None and (not heap or nxt[0] < heap[0][:2]):
                rows = nxt[1]
                first = next(rows)
                heapq.heappush(heap, (first[0], first[1], first, rows))
                nxt = next(pending, None)
            _, _, top, rows = heap[0]
            yield top
            following = next(rows, None)
            if following is None:
                heapq.heappop(heap)
            else:
                heapq.heapreplace(heap, (following[0], following[1], following, rows))

    def iter_records(self, prefix=None):
        """Kept records, sorted by time then ``seq``, one at a time (``prefix``:
        only kinds equal to or under it). Memory stays bounded."""
        wanted = None if prefix is None else _under(prefix)
        for row in self._merged_rows():
            if wanted is None or wanted(row[2]):
                yield _record(row)

    def records(self):
        """All kept records, sorted by time, then emission order."""
        return list(self.iter_records())

    def counts(self) -> dict:
        """``{kind: records emitted}`` so far, at every level (kept or only counted)."""
        return dict(self._counts)

    def count(self, prefix):
        """How many records (kept or only counted) have a kind equal to or under ``prefix``."""
        wanted = _under(prefix)
        return sum(n for kind, n in self._counts.items() if wanted(kind))

    def select(self, prefix):
        """Kept records (sorted) whose kind is equal to or under ``prefix``."""
        return list(self.iter_records(prefix))

    def to_jsonl(self, file):
        """Write every kept record as one JSON object per line (sorted keys)."""
        dumps, names = json.dumps, self._names
        for record in self.iter_records():
            file.write(dumps(record.as_dict(names), sort_keys=True, separators=(",", ":")))
            file.write("\n")

    def dumps_jsonl(self):
        """The JSON Lines export as one string."""
        buf = io.StringIO()
        self.to_jsonl(buf)
        return buf.getvalue()

    def close(self):
        """Drop the temporary file of spilled runs (the trace is then empty)."""
        if self._spill is not None:
            self._spill.close()
            self._spill = None
        self._runs = []
        self._rows = []
        self._kept_spilled = 0


def _key(row):
    return row[0], row[1]

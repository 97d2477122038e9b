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
sorted list in memory would give. A run is stored in blocks of a few hundred
rows, each block's rows grouped by kind and each group pickled by itself, so
a reader that asks for a few kinds (``iter_records(kinds=...)``, what the
end-of-run analyses do) unpickles only those and merges only those.

**Streaming.** :meth:`Trace.stream_to` writes the export to its file as the
run goes. Records come out of time order only so far: a domain's clock runs
ahead of ``env.now`` (records stamped later are harmless), and a delivery is
stamped with the time its notification or watch event arrived, which can be
earlier than ``env.now`` while it waits in an inbox. So the hypervisor's
*low-water mark* (:meth:`~simxen.xen.hypervisor.Hypervisor.low_water`:
``env.now``, or the earliest delivery still queued) is a time below which
no record can come any more; each time the buffer fills, everything kept up
to the mark -- from the buffer and from runs spilled before -- is merged and
written, and only the records above it stay (a few: they go to a run when
they fill half the buffer). The file gets the export's bytes in the export's
order; the records written are kept in the temporary file too, so the trace
stays readable. A record below what was written is caught when the buffer is
sorted (:class:`TraceOrderError` with ``strict``, otherwise the file is
rewritten from the start at :meth:`Trace.finish_stream`).

**The hot path.** ``emit`` builds a dict of fields. The hottest records
(page accesses, event-channel sends and deliveries) skip it with
:meth:`Trace.row`, which takes the tuple of field names and then the values
(``None`` = field absent); :meth:`records` turns such a row into the same
:class:`Record` an ``emit`` of those fields gives. :meth:`Trace.wants` is the
cheap check to call first when building the values costs something.
"""

import bisect
import heapq
import io
import json
import pickle
import tempfile
import weakref
from collections import Counter
from functools import partial
from itertools import compress, groupby, islice
from operator import itemgetter
from typing import NamedTuple

from simxen.xen.memo import Memo

#: the trace levels, most to least kept
LEVELS = ("full", "commands", "off")

#: kind families left out at level ``commands``: the split drivers' per-operation plumbing
PLUMBING = ("page", "evtchn", "gnttab", "xs", "mmio", "ring", "disk", "net")

#: what a kind's decision is (the values of ``Trace._on``)
_SKIP, _COUNT, _KEEP = 0, 1, 2

#: rows per block in a spilled run (what one open run holds in memory)
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
    """The :class:`Record` of a row: ``(t, seq, kind, dom, fields)`` from :meth:`Trace.emit`
    (``fields`` a dict), or ``(t, seq, kind, dom, names, *values)`` from :meth:`Trace.add_row`
    (a ``None`` value: the field is absent). Every record a reader asks for is built here,
    so it builds the tuple directly (no call of the named tuple's ``__new__``)."""
    names = row[4]
    if names.__class__ is dict:         # emit()'s row: the fields themselves
        return _tuple_new(Record, (row[1], row[0], row[2], row[3], names))
    values = row[5:]
    fields = ({name: value for name, value in zip(names, values) if value is not None}
              if None in values else dict(zip(names, values)))
    return _tuple_new(Record, (row[1], row[0], row[2], row[3], fields))


#: ``tuple.__new__``: a :class:`Record` from its five items in one C call
_tuple_new = tuple.__new__


def _under(prefix):
    if isinstance(prefix, tuple):           # any of several families
        dotted = tuple(p + "." for p in prefix)
        return lambda kind: kind in prefix or kind.startswith(dotted)
    dotted = prefix + "."
    return lambda kind: kind == prefix or kind.startswith(dotted)


def _dump_block(file, rows):
    """Write one block of a run -- ``rows``, sorted -- at ``file``'s position: its rows
    grouped by kind, each group pickled by itself (in the block's order), after a
    header ``((kind, bytes), ...)``. A reader that wants a few kinds unpickles only
    those groups (:func:`_load_block`); the rest of the block is bytes it steps over."""
    head, parts = [], []
    for kind, group in groupby(sorted(rows, key=_kind), _kind):    # stable: (t, seq) order kept
        data = pickle.dumps(list(group), protocol=pickle.HIGHEST_PROTOCOL)
        head.append((kind, len(data)))
        parts.append(data)
    pickle.dump(tuple(head), file, protocol=pickle.HIGHEST_PROTOCOL)
    file.write(b"".join(parts))


def _load_block(file, wanted=None):
    """The rows of the block at ``file``'s position, sorted (as :func:`_dump_block`
    was given them); with ``wanted`` (``kind -> bool``), only the rows of the kinds it
    wants -- the other groups are not unpickled. Leaves ``file`` at the next block."""
    head = pickle.load(file)
    data = memoryview(file.read(sum(n for _, n in head)))
    rows, at, groups = [], 0, 0
    for kind, n in head:
        if wanted is None or wanted(kind):
            rows += pickle.loads(data[at:at + n])
            groups += 1
        at += n
    if groups > 1:
        rows.sort()         # by (t, seq), as the block was: seq is unique
    return rows


class _Run:
    """One sorted run of rows in the trace's temporary file: blocks of rows
    (:func:`_dump_block`), read from row ``pos`` of the block at ``offset`` on
    (``blocks`` blocks left). ``first`` is the (t, seq) key of its first row left;
    ``top`` the largest ``seq`` in it (or above: rows may have been used up since),
    so a read of the records from some ``seq`` on steps over a run that ends below
    it without unpickling it."""

    __slots__ = ("first", "offset", "pos", "blocks", "top")

    def __init__(self, first, offset, blocks, top):
        self.first, self.offset, self.pos, self.blocks, self.top = first, offset, 0, blocks, top

    def copy(self):
        run = _Run(self.first, self.offset, self.blocks, self.top)
        run.pos = self.pos
        return run

    def reader(self, file):
        """Its rows, each as ``(row, offset, pos, blocks)``: where the run resumes at it."""
        offset, skip, blocks = self.offset, self.pos, self.blocks
        while blocks:
            file.seek(offset)
            block = _load_block(file)
            after = file.tell()
            for pos in range(skip, len(block)):
                yield block[pos], offset, pos, blocks
            offset, skip, blocks = after, 0, blocks - 1

    def rows(self, file, wanted=None, since=0):
        """Its rows left, in order; with ``wanted`` (``kind -> bool``) only those of the
        kinds it wants (the others are never unpickled); with ``since``, only the rows
        whose ``seq`` is ``since`` or more."""
        offset, skip = self.offset, self.pos
        for _ in range(self.blocks):
            file.seek(offset)
            if skip:            # (the skipped rows are counted in the whole block)
                block = _load_block(file)[skip:]
                if wanted is not None:
                    block = _of_kinds(block, wanted)
                skip = 0
            else:
                block = _load_block(file, wanted)
            offset = file.tell()
            if since:
                block = _since(block, since)
            yield from block


#: kept rows a trace holds in memory before it spills them (its default ``buffer_rows``);
#: the run's garbage-collector thresholds are sized to outlast such a buffer
#: (:data:`simxen.scenario.runner.GC_THRESHOLDS`)
BUFFER_ROWS = 1 << 16


class Recorder:
    """What a caller on a hot path holds to record rows of one ``kind``
    (:meth:`Trace.recorder`), so that a row the level only counts costs no
    Python call and no values:

    * :attr:`keep`: the level keeps rows of this kind -- build the row and hand it
      to :meth:`Trace.keep_row`, which does not decide again;
    * else call :attr:`count` (no arguments): it counts one row of the kind, and
      the row takes its place in the run's ``seq`` all the same. It is the
      append of the trace's list of counted kinds, bound to the kind -- a call
      into C -- or, for a kind not recorded at all (:meth:`Trace.disable`), a
      call that does nothing.

    The trace sets both again when :meth:`Trace.disable` or :meth:`Trace.enable`
    changes what it records."""

    __slots__ = ("kind", "keep", "count")

    def __init__(self, kind):
        self.kind = kind
        self.keep = False
        self.count = _nothing

    def __repr__(self):
        return f"Recorder({self.kind!r}, keep={self.keep})"


def _nothing():
    """A disabled kind's :attr:`Recorder.count`."""


class Trace:
    """Records of a run, kept according to ``level`` (see the module doc).

    ``disabled`` is an iterable of kind prefixes not to record at all.
    ``small_access`` is the largest page access whose bytes are recorded.
    ``buffer_rows`` kept rows are held in memory before they are spilled.
    """

    def __init__(self, disabled=(), *, small_access=64, level="full",
                 buffer_rows=BUFFER_ROWS, spill_dir=None):
        if level not in LEVELS:
            raise ValueError(f"trace level {level!r}: expected one of {', '.join(LEVELS)}")
        self.level = level
        self.small_access = small_access
        self._rows = []
        self._seq = 0               # rows numbered so far, but those still in _counted
        self._counts = {}           # {kind: n} of the rows tallied so far (see _tally)
        self._tallied = 0           # how many rows at the head of _rows are tallied already
        self._counted = []          # kinds of the rows counted but not kept, not yet tallied
        #                             (one list for the whole run: recorders append to it)
        self._recorders = {}        # {kind: Recorder} handed out (see recorder())
        self._disabled = set()
        self._on = Memo(self._decide)   # {kind: _SKIP | _COUNT | _KEEP}, decided on first use
        self._buffer_rows = buffer_rows
        self._spill_dir = spill_dir
        self._spill = None
        self._runs = []
        self._kept_spilled = 0
        self._names = {}
        # streaming to the output file (stream_to): the file, the runs written
        # to it (in order, in the temporary file too), the key of its last row
        self._sink = self._target = self._low_water = None
        self._strict = False
        self._done = []
        self._last = None
        self._streamed = 0
        self._fallback = self._sink_error = None
        self._unnamed = set()       # domids of written rows that had no name yet
        for prefix in disabled:
            self.disable(prefix)

    # -- what is recorded ------------------------------------------------------
    def disable(self, prefix):
        """Stop recording kinds equal to ``prefix`` or starting with ``prefix + '.'``."""
        self._disabled.add(prefix)
        self._decide_again()

    def enable(self, prefix):
        """Undo :meth:`disable` for ``prefix``."""
        self._disabled.discard(prefix)
        self._decide_again()

    def _decide_again(self):
        self._on.clear()
        for rec in self._recorders.values():
            self._set_recorder(rec)

    def _decide(self, kind):
        """What to do with ``kind`` (``_SKIP``, ``_COUNT`` or ``_KEEP``), remembered in ``_on``."""
        parts = kind.split(".")
        if any(".".join(parts[:i]) in self._disabled for i in range(1, len(parts) + 1)):
            return _SKIP
        if self.level == "full" or (self.level == "commands" and parts[0] not in PLUMBING):
            return _KEEP
        return _COUNT

    def enabled(self, kind):
        """Whether records of ``kind`` are recorded (counted, and kept if the level keeps them)."""
        return self._on[kind] != _SKIP

    def wants(self, kind):
        """Fast check used on hot paths before building a record's values."""
        return self._on[kind] != _SKIP

    def keeps(self, kind):
        """Whether records of ``kind`` are kept (readable after the run) at this level."""
        return self._on[kind] == _KEEP

    def recorder(self, kind) -> "Recorder":
        """The :class:`Recorder` of ``kind``, for a caller that records rows of it on a
        hot path: the same object for every call, kept up to date by :meth:`disable` and
        :meth:`enable`."""
        rec = self._recorders.get(kind)
        if rec is None:
            rec = self._recorders[kind] = Recorder(kind)
            self._set_recorder(rec)
        return rec

    def _set_recorder(self, rec):
        on = self._on[rec.kind]
        rec.keep = on == _KEEP
        rec.count = partial(self._counted.append, rec.kind) if on == _COUNT else _nothing

    # -- recording --------------------------------------------------------------
    def name_domain(self, domid, name):
        """Tell the trace what domain ``domid`` is called: exported records
        carry it as ``dom_name`` (the hypervisor calls this as it creates a
        domain; a domid is never reused within a run of simxen)."""
        if domid in self._unnamed and self._fallback is None:
            self._fall_back(f"domain {domid} was named {name!r} after records of it were "
                            "written without a name")
        self._names[domid] = name

    def domain_names(self):
        """``{domid: name}`` of every domain named so far."""
        return dict(self._names)

    def emit(self, kind, t, dom, **fields):
        """Record that ``kind`` happened at time ``t`` in domain ``dom``."""
        if self._on[kind] == _KEEP:       # (one call to keep it, not two)
            self.keep_row(t, kind, dom, fields, None)
        else:
            self.add_row(t, kind, dom, fields, None)

    def row(self, t, kind, dom, names, *values):
        """Record a hot-path row: ``names`` is a tuple of field names, ``values``
        their values in that order (``None`` = the field is absent). The same
        :class:`Record` as ``emit(kind, t, dom, **fields)`` of the present fields."""
        self.add_row(t, kind, dom, names, values)

    def add_row(self, t, kind, dom, names, values):
        """Keep the row or only count it, as the level decides for ``kind``:
        :meth:`row` with the values as one tuple, which the hottest callers (a
        domain's page accesses, sends and deliveries) build themselves -- one call
        per record. ``values`` is ``None`` for :meth:`emit`'s fields dict (``names``)."""
        on = self._on[kind]
        if on == _KEEP:
            self.keep_row(t, kind, dom, names, values)
        elif on:                    # counted, not kept: it takes its seq all the same
            counted = self._counted
            counted.append(kind)
            if len(counted) >= self._buffer_rows:
                self._counted_full()

    def keep_row(self, t, kind, dom, names, values):
        """Keep a row of a ``kind`` the level keeps, as :meth:`add_row` does once it has
        decided: what a caller holding the kind's :class:`Recorder` calls when its
        :attr:`~Recorder.keep` is true (the decision is not made again).

        A kept row is one flat tuple, ``(t, seq, kind, dom, names, *values)``, or
        ``(t, seq, kind, dom, fields)`` for an emit: one object per record, not a
        row holding a tuple of values (half the objects the garbage collector
        counts, for a trace that keeps a buffer of them)."""
        seq = self._seq
        self._seq = seq + 1
        counted = self._counted
        if counted:                 # rows counted since the last tally come before it
            seq += len(counted)
        rows = self._rows
        # (a tuple and the values joined: one new tuple; ``(..., *values)`` builds a
        # list first and then the tuple, at twice the cost)
        rows.append((t, seq, kind, dom, names) if values is None else
                    (t, seq, kind, dom, names) + values)
        if len(rows) >= self._buffer_rows:
            self._buffer_full()

    # Counting. A kept row is counted from the rows themselves, a buffer at a
    # time (when the buffer is full, or the counts are read), not by a dict
    # update per row: the row already says its kind. The first ``_tallied``
    # rows of the buffer are counted already (rows a spill leaves in memory).
    # A row the level does not keep still takes its seq; its kind waits in
    # ``_counted``.
    def _buffer_full(self):
        if self._counted:       # (what recorders counted, tallied here at the latest)
            self._counted_full()
        self._tally_kinds(map(_kind, islice(self._rows, self._tallied, None)))
        self._spill_rows()
        self._tallied = len(self._rows)

    def _counted_full(self):
        counted = self._counted
        self._tally_kinds(counted)
        self._seq += len(counted)
        counted.clear()             # (the same list: the recorders append to it)

    def _tally_kinds(self, kinds):
        counts = self._counts
        for kind, n in Counter(kinds).items():
            counts[kind] = counts.get(kind, 0) + n

    def _spill_rows(self):
        """The buffer is full: sort it; stream what is final to the output file
        (when :meth:`stream_to` named one) and keep the few rows above the
        low-water mark; spill the rest, as one sorted run, to the temporary file."""
        rows = self._rows
        held = len(rows)
        rows.sort()         # by (t, seq): seq is unique, so no row compares past it
        if self._sink is not None:
            rows = self._stream(rows)
            if len(rows) <= self._buffer_rows // 2:
                self._rows = rows           # a few rows ahead of the mark stay
                self._kept_spilled += held - len(rows)
                return
        self._rows = []
        self._kept_spilled += held
        if rows:
            self._runs.append(self._write_run(rows))

    def _temp(self):
        if self._spill is None:
            self._spill = tempfile.TemporaryFile(prefix="simxen-trace-", dir=self._spill_dir)
            # closed when the trace is freed, if close() was not called: a run is a cycle
            # of objects, and the file left to the collector was an unclosed file
            weakref.finalize(self, self._spill.close)
        return self._spill

    def _write_run(self, rows):
        """Append the sorted ``rows`` to the temporary file as one :class:`_Run`."""
        f = self._temp()
        f.seek(0, io.SEEK_END)
        offset = f.tell()
        blocks = 0
        for i in range(0, len(rows), _BLOCK):
            _dump_block(f, rows[i:i + _BLOCK])
            blocks += 1
        return _Run(_key(rows[0]), offset, blocks, max(map(_seq, rows)))

    # -- streaming to the output file ---------------------------------------------
    def stream_to(self, file, low_water, *, strict=False):
        """Write the JSON Lines export (:meth:`to_jsonl`) to ``file`` as the run goes.

        ``low_water()`` returns a time below which no record can be emitted any
        more (:meth:`simxen.xen.hypervisor.Hypervisor.low_water`). Each time the
        buffer fills, the kept records up to that time are final: they are
        written, in the export's order and with its bytes, and leave memory;
        the rest wait. :meth:`finish_stream` writes the rest, so ``file`` ends up
        byte for byte what ``to_jsonl(file)`` at the end would have written.

        A record below what was written already would break the order; it is
        found when the buffer is sorted (and a domain named after its records
        were written would change their bytes). ``strict`` raises
        :class:`TraceOrderError` then; otherwise streaming stops there
        (:meth:`stream_fallback` says why) and :meth:`finish_stream` writes the
        whole file again from its start -- or, when ``file`` cannot seek back
        (a pipe), raises :class:`TraceOrderError`: its lines cannot be taken back.
        """
        if self._target is not None or self._done:
            raise ValueError("the trace is already streamed to a file")
        self._sink = self._target = file
        self._low_water, self._strict = low_water, strict

    def streamed(self):
        """How many records have been written to the :meth:`stream_to` file so far."""
        return self._streamed

    def buffered(self):
        """How many kept records are in memory now (the rest are in the
        temporary file, some of them written to the :meth:`stream_to` file)."""
        return len(self._rows)

    def stream_fallback(self):
        """Why streaming stopped early (see :meth:`stream_to`), or ``None``."""
        return self._fallback

    def _fall_back(self, why):
        if self._strict:
            raise TraceOrderError(why)
        self._fallback = why
        self._sink = None

    def _stream(self, rows):
        """Write every pending row up to the low-water mark; return ``rows``' rest (sorted)."""
        last = self._last
        if last is not None and rows and rows[0][0] < last[0]:
            self._fall_back(f"a trace record ({rows[0][2]}) at t={rows[0][0]!r} s came after "
                            f"the records up to t={last[0]!r} s were written")
            return rows
        mark = self._low_water()
        n = bisect.bisect_right(rows, mark, key=_time)
        if any(run.first[0] <= mark for run in self._runs):
            final = self._merge_upto(rows[:n], mark)
        else:
            final = rows[:n] if n < len(rows) else rows
        try:
            self._write_final(final)
        except OSError as exc:      # a full disk...: keep every row; finish_stream raises it
            self._sink_error = exc
            self._fallback = f"writing the trace failed: {exc.strerror or exc}"
            self._sink = None
            return rows
        return rows[n:]

    def _merge_upto(self, memory, mark):
        """Every row of the pending runs and of ``memory`` (sorted) with ``t <= mark``,
        in order; each run is left at its first row above the mark (or dropped)."""
        f = self._spill
        runs = [run for run in self._runs if run.first[0] <= mark]
        heap = []
        for i, run in enumerate(runs):
            reader = run.reader(f)
            heap.append((run.first, i, next(reader), reader))
        if memory:
            reader = ((row, 0, 0, 0) for row in memory)
            heap.append((_key(memory[0]), len(runs), next(reader), reader))
        heapq.heapify(heap)
        while heap and heap[0][0][0] <= mark:
            _, i, (row, _, _, _), reader = heap[0]
            yield row
            following = next(reader, None)
            if following is None:
                heapq.heappop(heap)
                if i < len(runs):
                    runs[i].blocks = 0      # read to its end
            else:
                heapq.heapreplace(heap, (_key(following[0]), i, following, reader))
        for key, i, (_, offset, pos, blocks), _ in heap:
            if i < len(runs):               # the run resumes at this row
                run = runs[i]
                run.first, run.offset, run.pos, run.blocks = key, offset, pos, blocks
        self._runs = [run for run in self._runs if run.blocks]

    def _write_final(self, rows):
        """Write the final ``rows`` (sorted, after everything written so far) to the
        file, and keep them, as one more written run, in the temporary file for
        reading back (:meth:`records`)."""
        sink, names, unnamed = self._sink, self._names, self._unnamed
        f = self._temp()
        f.seek(0, io.SEEK_END)
        offset = end = f.tell()
        block, blocks, n, first, row, top = [], 0, 0, None, None, -1
        for row in rows:
            if first is None:
                first = _key(row)
            if row[1] > top:
                top = row[1]
            sink.write(_line(row, names))
            dom = row[3]
            if dom not in names and dom is not None:
                unnamed.add(dom)
            block.append(row)
            if len(block) == _BLOCK:
                end = self._dump(block, end)    # (rows may be reading f: seek each time)
                blocks += 1
                n += _BLOCK
                block = []
        if block:
            end = self._dump(block, end)
            blocks += 1
            n += len(block)
        sink.flush()
        if n:
            self._done.append(_Run(first, offset, blocks, top))
            self._last = _key(row)
            self._streamed += n

    def _dump(self, block, end):
        f = self._spill
        f.seek(end)
        _dump_block(f, block)
        return f.tell()

    def finish_stream(self):
        """Write what :meth:`stream_to` has not written yet and stop streaming: the
        file is then the whole export. The trace stays readable. Raises the
        ``OSError`` of a failed write, or :class:`TraceOrderError` (see
        :meth:`stream_to`)."""
        target = self._target
        if target is None:
            return
        self._target = self._sink = None
        if self._sink_error is not None:
            raise self._sink_error
        last = self._last
        if self._fallback is None and last is not None and self._rows:
            first = min(self._rows, key=_key)
            if first[0] < last[0]:
                self._fall_back(f"a trace record ({first[2]}) at t={first[0]!r} s came after "
                                f"the records up to t={last[0]!r} s were written")
        if self._fallback is None:
            rows = self._rest_rows()
        else:
            try:
                target.seek(0)
                target.truncate()
            except (OSError, ValueError, AttributeError):
                raise TraceOrderError(f"{self._fallback}; the file cannot seek back to be "
                                      "rewritten, so it is out of order") from None
            rows = self._merged_rows()
        names = self._names
        for row in rows:
            target.write(_line(row, names))
        target.flush()

    # -- reading -----------------------------------------------------------------
    def __len__(self):
        """How many records were recorded (kept or only counted)."""
        return self._seq + len(self._counted)

    def kept(self):
        """How many records are kept (readable)."""
        return self._kept_spilled + len(self._rows)

    def spilled_runs(self):
        """How many sorted runs have left memory for the temporary file."""
        return len(self._runs) + len(self._done)

    def _merged_rows(self, wanted=None, since=0):
        """Every kept row in (t, seq) order: the runs written to the output file
        (in order, before everything else), then the pending runs and the buffer,
        merged lazily. With ``wanted`` (``kind -> bool``) only the rows of the kinds
        it wants: the others are left out before the merge, most never unpickled.
        With ``since``, only the rows whose ``seq`` is ``since`` or more: a run
        that ends below it is stepped over (:attr:`_Run.top`), never unpickled."""
        if self._fallback is None:
            f = self._spill
            for run in self._done:
                if run.top >= since:
                    f.flush()
                    yield from run.rows(f, wanted, since)
            yield from self._rest_rows(wanted=wanted, since=since)
        else:       # the written runs may not come first: merge them too
            yield from self._rest_rows(self._done, wanted, since)

    def _memory_rows(self, wanted=None, since=0):
        """The buffer's rows (``wanted``, ``since``: as in :meth:`_merged_rows`),
        unsorted. The rows appended since the last spill come after the ones it
        left (``_tallied`` of them, see :meth:`_buffer_full`) in ``seq`` order, so
        the rows from ``since`` on are found by bisection, not by a scan."""
        rows = self._rows
        if since:
            left = self._tallied
            rows = (_since(rows[:left], since)
                    + rows[bisect.bisect_left(rows, since, lo=left, key=_seq):])
        return rows if wanted is None else _of_kinds(rows, wanted)

    def _rest_rows(self, more=(), wanted=None, since=0):
        """The rows not written to the output file, in order: the pending runs
        (and ``more`` runs) and the buffer, merged lazily (``wanted``, ``since``:
        as in :meth:`_merged_rows`)."""
        memory = sorted(self._memory_rows(wanted, since))   # by (t, seq), as in _spill_rows
        # copies: a run streamed while this reads on moves on, its bytes stay
        runs = [run.copy() for run in self._runs + list(more) if run.top >= since]
        if not runs:
            yield from memory
            return
        f = self._spill
        f.flush()
        # a source's key is its first row's, or below it (a run's first row may be a kind
        # not wanted): a source opens no later than it must, and may turn out empty
        sources = [(run.first, run.rows(f, wanted, since)) for run in runs]
        if memory:
            sources.append((_key(memory[0]), iter(memory)))
        sources.sort(key=lambda s: s[0])
        pending = iter(sources)
        nxt = next(pending, None)
        # heap entries are [row, its source's rows]: rows compare by (t, seq) alone, as seq
        # is unique, and so does a row with a (t, seq) key
        heap = []
        while heap or nxt is not None:
            # open every source whose first row could come before the heap's smallest
            while nxt is not None and (not heap or nxt[0] < heap[0][0]):
                rows = nxt[1]
                first = next(rows, None)
                if first is not None:
                    heapq.heappush(heap, [first, rows])
                nxt = next(pending, None)
            if not heap:
                continue
            top, rows = heap[0]
            yield top
            # the runs overlap only where rows came out of time order: the smallest source
            # goes on by itself up to the next-smallest head (or the next source's first key)
            n = len(heap)
            bound = None if n == 1 else heap[1][0] if n == 2 or heap[1][0] < heap[2][0] \
                else heap[2][0]
            if nxt is not None and (bound is None or nxt[0] < bound):
                bound = nxt[0]
            for row in rows:
                if bound is not None and bound < row:
                    heapq.heapreplace(heap, [row, rows])
                    break
                yield row
            else:
                heapq.heappop(heap)

    def iter_records(self, prefix=None, *, kinds=None, since=0):
        """Kept records, sorted by time then ``seq``, one at a time (``prefix``:
        only kinds equal to or under it, or under one of a tuple of prefixes;
        ``kinds``: only these exact kinds, a set -- what an analysis that reads a
        few kinds asks for). The kinds not asked for are left out before the
        records are merged, and most of them are never unpickled.
        Memory stays bounded.

        ``since`` (a ``seq``, e.g. ``len(trace)`` noted earlier): only the records
        emitted since then. What it costs depends on how many those are, not on how
        long the trace is: a spilled run whose records all came before is stepped
        over unread -- ``simxen serve --hops`` reads each command's records so."""
        if kinds is not None:
            if prefix is not None:
                raise ValueError("iter_records takes prefix or kinds, not both")
            wanted = frozenset(kinds).__contains__
        else:
            wanted = None if prefix is None else _under(prefix)
        return map(_record, self._merged_rows(wanted, since))

    def records(self):
        """All kept records, sorted by time, then emission order."""
        return list(self.iter_records())

    def counts(self) -> dict:
        """``{kind: records emitted}`` so far, at every level (kept or only counted)."""
        if self._counted:
            self._counted_full()        # tallied once: the next read does not count them again
        counts = dict(self._counts)
        untallied = Counter(map(_kind, islice(self._rows, self._tallied, None)))
        for kind, n in untallied.items():
            counts[kind] = counts.get(kind, 0) + n
        return counts

    def count(self, prefix):
        """How many records (kept or only counted) have a kind equal to or under ``prefix``."""
        return self.count_each((prefix,))[prefix]

    def count_each(self, prefixes) -> dict:
        """``{prefix: count(prefix)}`` for each of ``prefixes``, from one read of the counts."""
        counts = self.counts()
        out = {}
        for prefix in prefixes:
            wanted = _under(prefix)
            out[prefix] = sum(n for kind, n in counts.items() if wanted(kind))
        return out

    def select(self, prefix):
        """Kept records (sorted) whose kind is equal to or under ``prefix``."""
        return list(self.iter_records(prefix))

    def iter_jsonl(self):
        """The JSON Lines export one line at a time (each ends in a newline): what
        a reader that streams the trace takes, without the whole text in memory."""
        names = self._names
        for row in self._merged_rows():
            yield _line(row, names)

    def iter_dicts(self):
        """Every kept record as the JSON object its export line is, parsed back --
        ``json.loads(line)`` for each line of :meth:`iter_jsonl` -- but made
        without the text (:func:`_dict`): a reader that wants the export's
        objects one at a time (:class:`simxen.analysis.trace_format.TraceRecords`)."""
        names = self._names
        for row in self._merged_rows():
            yield _dict(row, names)

    def to_jsonl(self, file):
        """Write every kept record as one JSON object per line (sorted keys)."""
        file.writelines(self.iter_jsonl())

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
        self._done = []
        self._tally_kinds(map(_kind, islice(self._rows, self._tallied, None)))  # counts outlive rows
        self._rows = []
        self._tallied = 0
        self._kept_spilled = 0


class TraceOrderError(RuntimeError):
    """A record came with a time below records already streamed to the output
    file: the low-water mark missed a way records are emitted (a simxen bug)."""


#: a row's sort key, ``(t, seq)`` (an itemgetter: sorting calls no Python function per row)
_key = itemgetter(0, 1)

#: a row's kind
_kind = itemgetter(2)

#: a row's seq
_seq = itemgetter(1)


def _of_kinds(rows, wanted):
    """The ``rows`` whose kind ``wanted`` (``kind -> bool``) wants, in order: a filter
    run in C loops -- an end-of-run analysis reads a few kinds out of every kept row."""
    return list(compress(rows, map(wanted, map(_kind, rows))))


def _since(rows, since):
    """The ``rows`` whose ``seq`` is ``since`` or more, in order (C loops, as :func:`_of_kinds`)."""
    return list(compress(rows, map(since.__le__, map(_seq, rows))))


def _time(row):
    return row[0]


def _line(row, names):
    """The export's line of a row: ``json.dumps(_record(row).as_dict(names),
    sort_keys=True, separators=(",", ":"))`` -- built without the Record and
    without walking the values (the encoder hands byte strings to :func:`_hex`)."""
    fields = row[4]
    if fields.__class__ is dict:        # emit()'s row
        out = fields.copy()
    else:
        out = {name: value for name, value in zip(fields, row[5:]) if value is not None}
    out["t"] = row[0]
    out["kind"] = row[2]
    dom = out["dom"] = row[3]
    out["seq"] = row[1]
    if dom in names:
        out["dom_name"] = names[dom]
    return _encode(out) + "\n"


def _dict(row, names):
    """``json.loads(_line(row, names))`` without the text: the same keys in the same
    (sorted) order, the same values of the same types. A ``str``, ``int``, ``float``,
    ``bool`` or ``None`` comes back from JSON as itself, ``bytes`` as its hex; anything
    else (a list, a tuple, an enum member, ...) is put through the export's encoder and
    read back, so it is what the line would give by construction."""
    fields = row[4]
    if fields.__class__ is dict:        # emit()'s row
        items = fields.items()
    else:
        items = [(name, value) for name, value in zip(fields, row[5:]) if value is not None]
    out = {}
    for key, value in items:
        cls = value.__class__
        out[key] = value if cls in _PLAIN else value.hex() if cls is bytes else _plain(value)
    for key, value in (("t", row[0]), ("kind", row[2]), ("dom", row[3]), ("seq", row[1])):
        out[key] = value if value.__class__ in _PLAIN else _plain(value)
    dom = row[3]
    if dom in names:
        out["dom_name"] = names[dom]
    return {key: out[key] for key in sorted(out)}


#: the classes JSON gives back as they were
_PLAIN = frozenset((str, int, float, bool, type(None)))


def _plain(value):
    """``value`` as the export's JSON gives it back."""
    return json.loads(_encode(value))


def _hex(value):
    """What the JSON encoder cannot encode: byte strings as hex, as :func:`_jsonable` does."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


#: one encoder for every line (json.dumps would build one per call)
_encode = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=_hex).encode

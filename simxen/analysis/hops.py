"""Per-hop latency of TPM commands, read from the trace.

A guest's TPM command crosses several domains before its answer comes back::

    guest tpmfront --(page + evtchn)--> vtpm tpmback   "front->back"
        vtpm: TPM engine, state save to disk            "vtpm"
        vtpm tpmfront --> vtpmmgr tpmback --> back      "manager"
            vtpmmgr TIS driver --> physical TPM          "ptpm"
    guest tpmfront <--(FINISH seen)-- vtpm tpmback      "back->front"

Every hop leaves trace records (``tpm.front.submit``, ``tpm.back.take``,
``tpm.back.respond``, ``tpm.front.complete``, and the physical TPM's
``tis.go`` / ``tis.complete``); this module puts them back together. It is
pure: records in, numbers out, no simulation needed::

    from simxen.analysis import hops
    commands = hops.command_hops(hv.trace.records())     # or hops.load("trace.jsonl")
    for c in commands:
        print(hops.format_line(c))
    print(hops.format_table(hops.aggregate(commands)))

**How records are tied together.** A *request* is one frontend's round trip:
its ``tpm.front.submit`` and ``tpm.front.complete`` (same ``flow``, same
domain) and the ``tpm.back.take`` / ``tpm.back.respond`` of the backend that
served it (same ``flow``, ``domid`` naming the frontend's domain). Nesting is
read from *causality*, not from how flows are named: a mini-os stub domain
serves one request at a time, so a request a backend domain submits *while it
is serving* another (between that one's take and respond) is on the other's
behalf -- the vTPM asking the manager to save its state key while a guest's
PCR_Extend is being served. The same rule puts a physical-TPM span
(``tis.go`` -> ``tis.complete`` in the manager) under the manager request it
served. A request nested in no other is a *command*; each gets one
:class:`CommandHops`. Records are matched in emission order (``seq``), which
is causal order; times are the records' own. A command starts when its
frontend began copying it into the page (the ``latency`` field of
``tpm.front.complete`` counts from there), so its total is exactly the
latency the frontend measured.

**What each hop measures** (seconds of simulated time; they add up to the
command's total exactly):

``front->back``
    submit to take: the notification, the backend noticing, and queueing
    behind other frontends (the manager's static priority shows here).
``vtpm``
    take to respond in the command's own backend, minus the time spent
    waiting on the manager: the TPM engine's work and the state save.
``manager``
    the nested manager round trips, minus the physical TPM inside them: two
    ring crossings and the manager's own work.
``ptpm``
    the physical TPM behind the TIS window, GO to completion as the
    manager's TIS driver sees it (including its polling grid).
``back->front``
    respond to complete: the response becoming visible to the guest, which
    on Linux's default is the wait for the next 5 ms poll tick.

A command whose frontend is itself a stub domain (a vTPM's own requests to
the manager while it boots) is split the same way one level down: its
``vtpm`` hop is then the work of the backend that served it, the manager.
Commands the backend rejected (a malformed header) or that were cancelled
have no take/respond pair and are left out.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from itertools import chain, repeat
from operator import attrgetter, itemgetter

import numpy as np

from simxen.analysis import trace_format
from simxen.protocols import vtpmmgr
from simxen.tpm.constants import COMMAND_NAMES, command_name, rc_name
from simxen.xen.trace import Record

__all__ = ["HOPS", "HOP_LABELS", "PTPM_SPANS", "READS", "MANAGER_ORDINALS", "MANAGER_RCS", "Request", "CommandHops", "load", "requests",
           "Matching", "RequestTable", "release", "command_hops", "hop_times", "aggregate", "format_line", "format_table", "percentiles"]

#: Hop names, in the order a command crosses them.
HOPS = ("front_to_back", "vtpm", "manager", "ptpm", "back_to_front")
#: How each hop is printed.
HOP_LABELS = {"front_to_back": "front->back", "vtpm": "vtpm", "manager": "manager",
              "ptpm": "ptpm", "back_to_front": "back->front"}
#: ``(start kind, end kind)`` pairs that time the physical TPM, per domain.
PTPM_SPANS = (("tis.go", "tis.complete"),)

#: Ordinals of the vTPM manager's protocol (a vTPM's own requests to the
#: manager are not TPM 2.0 commands) and the TPM 1.2 codes it answers with.
MANAGER_ORDINALS = vtpmmgr.ORDINAL_NAMES
MANAGER_RCS = {getattr(vtpmmgr, n): n for n in (
    "TPM_SUCCESS", "TPM_AUTHFAIL", "TPM_BADINDEX", "TPM_BAD_PARAMETER", "TPM_DISABLED",
    "TPM_DISABLED_CMD", "TPM_FAIL", "TPM_BAD_ORDINAL", "TPM_SIZE", "TPM_BADTAG", "TPM_IOERROR")}

_SUBMIT, _TAKE, _RESPOND, _COMPLETE = ("tpm.front.submit", "tpm.back.take",
                                       "tpm.back.respond", "tpm.front.complete")
_KINDS = {_SUBMIT, _TAKE, _RESPOND, _COMPLETE}
#: Every kind :func:`requests` reads (the four hops and the physical-TPM spans): a
#: caller that reads the trace for it alone asks for these (``Trace.iter_records(kinds=...)``).
READS = frozenset(_KINDS | {kind for span in PTPM_SPANS for kind in span})
_SEQ = attrgetter("seq")
_FIRST = itemgetter(0)


@dataclass(slots=True)
class Request:
    """One frontend round trip as the trace shows it (times in seconds).

    ``take``/``respond``/``complete`` are ``None`` when the trace ends (or
    the request was cancelled or rejected) before that step.
    """

    flow: object
    front_dom: int
    submit: float
    cc: object = None
    back_dom: object = None
    take: object = None
    respond: object = None
    complete: object = None
    rc: object = None
    cancelled: bool = False
    children: list = field(default_factory=list)     #: nested requests
    ptpm: list = field(default_factory=list)         #: nested (start, end) TPM spans
    parent: object = field(default=None, repr=False)  #: the request this one served, if any
    #: its hop times, once :func:`hop_times` or :func:`hops_of` has split it (a pass that
    #: reads both -- a workload's per-hop figures and its certainty split -- splits it once)
    _times: object = field(default=None, repr=False, compare=False)

    @property
    def done(self) -> bool:
        """Taken, answered and seen by the frontend."""
        return (self.take is not None and self.respond is not None and self.complete is not None
                and not self.cancelled)

    def contains(self, dom, t) -> bool:
        """Whether domain ``dom`` doing something at ``t`` was serving this request."""
        return (dom == self.back_dom and self.take is not None and self.respond is not None
                and self.take <= t <= self.respond)

    def ptpm_time(self) -> float:
        """Physical-TPM time in this request and everything nested in it."""
        if not self.ptpm and not self.children:
            return 0                    # (what the two empty sums below add up to)
        return sum(b - a for a, b in self.ptpm) + sum(c.ptpm_time() for c in self.children)

    def ptpm_count(self) -> int:
        if not self.children:
            return len(self.ptpm)
        return len(self.ptpm) + sum(c.ptpm_count() for c in self.children)


@dataclass(frozen=True)
class CommandHops:
    """One top-level command and where its simulated time went."""

    flow: object
    dom: int              #: the frontend's domain (the guest)
    cc: object            #: command code, or None for a packet shorter than a header
    rc: object            #: response code, or None
    submitted: float
    completed: float
    hops: dict            #: hop name (:data:`HOPS`) -> seconds
    manager_requests: int
    ptpm_commands: int

    @property
    def total(self) -> float:
        return self.completed - self.submitted

    @property
    def manager_protocol(self) -> bool:
        """Whether this is a request in the vTPM manager's protocol, not a TPM 2.0 command."""
        return self.cc not in COMMAND_NAMES and self.cc in MANAGER_ORDINALS

    @property
    def name(self) -> str:
        """``TPM2_PCR_Extend``, or the manager ordinal's name (``VTPM_ORD_SAVEHASHKEY``)."""
        if self.cc is None:
            return "(short command)"
        return MANAGER_ORDINALS[self.cc] if self.manager_protocol else command_name(self.cc)

    @property
    def rc_text(self) -> str:
        if self.rc is None:
            return "(short response)"
        if self.manager_protocol:
            return MANAGER_RCS.get(self.rc, f"return code {self.rc:#x}")
        return rc_name(self.rc)


def load(path) -> list:
    """The records of a JSON Lines trace file (``simxen run --trace``), each a
    :class:`Record`.

    The file is read a line at a time (:class:`simxen.analysis.trace_format.TraceFile`),
    and anything that is not a trace record raises that reader's
    :class:`~simxen.errors.InputError`, naming the file and line.
    """
    out = []
    for obj in trace_format.TraceFile(path):
        fields = dict(obj)
        t, kind, dom = fields.pop("t"), fields.pop("kind"), fields.pop("dom")
        out.append(Record(fields.pop("seq", len(out)), float(t), kind, dom, fields))
    return out


def requests(records) -> list:
    """Every frontend round trip in ``records``, nested as the module doc explains.

    Returns all requests in the order they were submitted; a nested one is
    also in its :attr:`Request.parent`'s :attr:`Request.children`.
    """
    matching = Matching()
    matching.add_all(sorted(records, key=_SEQ))         # emission order is causal order
    return matching.requests()


class Matching:
    """:func:`requests` one record at a time, for a reader that streams the trace:
    :meth:`add` each record, then :meth:`requests` (once).

    The records may come in emission order (``seq``) or in the trace's own
    order, by time then ``seq`` (:meth:`simxen.xen.trace.Trace.iter_records`, a
    trace file): the records tied together -- a request's submit, take,
    respond and complete; a ``tis.go`` and its ``tis.complete`` -- follow one
    another in time as well as in emission (each step happens after the one
    it answers, and one domain's clock never runs back), and what the steps
    are put together into is ordered by ``seq`` at the end. Only the
    requests are kept, not the records.

    ``keep``: kinds of record besides those it reads (:data:`READS`) that the caller
    wants too -- :attr:`kept` collects them, in the order they came: a reader that needs
    a few more records (the certainty split's executions) reads the trace once.
    """

    def __init__(self, keep=frozenset()):
        self._keep = frozenset(keep)
        #: the records of the ``keep`` kinds, in the order they were added
        self.kept = []
        self._open_front = {}      # (flow, front dom) -> Request awaiting complete
        self._awaiting_take = {}   # (flow, front dom) -> Request
        self._serving = {}         # (flow, front dom, back dom) -> Request awaiting respond
        self._spans_open = {}      # (dom, span index) -> start time
        self._spans = []           # (seq of the end, dom, start, end)
        self._out = []             # (seq of the submit, Request)
        self._starts = {s: i for i, (s, _) in enumerate(PTPM_SPANS)}
        self._ends = {e: i for i, (_, e) in enumerate(PTPM_SPANS)}

    def add(self, r):
        """Take one trace record (a :class:`~simxen.xen.trace.Record`) into account."""
        self.add_all((r,))

    def add_all(self, records):
        """:meth:`add` each of ``records`` (one loop: the tables are looked up once, and
        each record is unpacked once into its five items rather than read item by item)."""
        open_front, awaiting_take, serving = self._open_front, self._awaiting_take, self._serving
        spans_open, spans, out = self._spans_open, self._spans, self._out
        starts, ends, keep, kept = self._starts, self._ends, self._keep, self.kept
        for r in records:
            seq, t, kind, dom, f = r
            if kind in _KINDS:
                flow = f.get("flow")
                if kind == _SUBMIT:
                    req = Request(flow, dom, t, cc=f.get("cc"))
                    out.append((seq, req))
                    open_front[(flow, dom)] = awaiting_take[(flow, dom)] = req
                elif kind == _TAKE:
                    req = awaiting_take.pop((flow, f.get("domid")), None)
                    if req is not None:
                        req.back_dom, req.take = dom, t
                        serving[(flow, req.front_dom, dom)] = req
                elif kind == _RESPOND:
                    req = serving.pop((flow, f.get("domid"), dom), None)
                    if req is not None:
                        req.respond = t
                else:
                    req = open_front.pop((flow, dom), None)
                    if req is not None:
                        awaiting_take.pop((flow, dom), None)
                        req.complete, req.rc = t, f.get("rc")
                        latency = f.get("latency")
                        if isinstance(latency, (int, float)):
                            req.submit = t - latency        # from before the command was copied in
                        req.cancelled = bool(f.get("cancelled"))
            else:
                if kind in keep:
                    kept.append(r)
                if kind in starts:
                    spans_open[(dom, starts[kind])] = t
                elif kind in ends:
                    t0 = spans_open.pop((dom, ends[kind]), None)
                    if t0 is not None:
                        spans.append((seq, dom, t0, t))

    def requests(self) -> list:
        """The requests of the records added, as :func:`requests` gives them."""
        return self.table().requests

    def table(self) -> "RequestTable":
        """The requests of the records added, nested, and their :class:`RequestTable` (once:
        what a reader that goes on in bulk -- a workload's end-of-run figures -- asks for)."""
        out, spans = self._out, self._spans
        out.sort(key=_FIRST)                    # submit order (already so in emission order)
        spans.sort(key=_FIRST)
        self._out, self._spans = [], []
        return _nest([req for _, req in out], [span[1:] for span in spans])


def release(reqs) -> None:
    """Unlink the requests ``reqs`` (of :func:`requests`, all of them) from their parents,
    once nothing reads them any more. A nested request and its parent point at each other
    (:attr:`Request.parent`, :attr:`Request.children`), so without this a dropped list of
    them is garbage only the cyclic collector finds -- by walking every request: at the end
    of a 1,000-guest fleet's pass, one young collection of 0.4 s. Unlinked, they are freed
    as soon as the list is."""
    deque(map(setattr, reqs, repeat("parent"), repeat(None)), maxlen=0)    # (a C loop)


def _nest(reqs, spans) -> "RequestTable":
    """Hang each request and each ``(dom, start, end)`` span under the request its domain
    was serving then (the module doc), all at once: the table of ``reqs`` (unlinked, in
    submit order) finds every parent in bulk (:func:`_serving_at`), then the links are
    made -- :attr:`Request.parent`, :attr:`Request.children`, :attr:`Request.ptpm` -- for
    the readers that walk the requests."""
    table = RequestTable(reqs, parent=np.full(len(reqs), -1, np.intp), spans=())
    parent = _serving_at(table, table.front_dom, table.submit, exclude=np.arange(len(reqs)))
    nested = np.flatnonzero(parent >= 0).tolist()
    kids = list(map(reqs.__getitem__, nested))
    parents = list(map(reqs.__getitem__, parent[nested].tolist()))
    # (C loops: set each nested request's parent, append it to its parent's children)
    deque(map(setattr, kids, repeat("parent"), parents), maxlen=0)
    deque(map(list.append, map(_CHILDREN, parents), kids), maxlen=0)
    table.parent = parent
    if spans:
        doms, t0, t1 = zip(*spans)
        owner = _serving_at(table, _floats(doms), np.array(t0, dtype=float))
        kept = []
        for i, a, b in zip(owner.tolist(), t0, t1):
            if i >= 0:
                reqs[i].ptpm.append((a, b))
                kept.append((i, a, b))
        table.set_spans(kept)
    return table


def _serving_at(table, doms, times, exclude=None):
    """Per query ``i``: the row of the request that domain ``doms[i]`` was serving at
    ``times[i]`` (``-1``: none), never row ``exclude[i]``.

    A mini-os backend serves one request at a time, so among a backend's requests sorted
    by take time, the one it was serving at ``t`` can only be the last taken at or before
    ``t`` -- if it was not answered before ``t`` -- or, when that one is the query's own
    request, the one taken before it. One binary search per query, in bulk, per backend."""
    take, respond, back = table.take, table.respond, table.back_dom
    out = np.full(len(times), -1, np.intp)
    served = np.flatnonzero(~np.isnan(take) & ~np.isnan(respond))
    asked = dict(groups(doms))
    for dom, mine in groups(back[served]):
        q = asked.get(dom)
        if q is None:
            continue
        mine = served[mine]
        mine = mine[np.argsort(take[mine], kind="stable")]     # by take; ties in submit order
        t = times[q]
        i = np.searchsorted(take[mine], t, side="right") - 1
        if exclude is not None:
            i -= (i >= 0) & (mine[np.maximum(i, 0)] == exclude[q])
        cand = mine[np.maximum(i, 0)]
        ok = (i >= 0) & (t <= respond[cand])
        out[q[ok]] = cand[ok]
    return out


def groups(column):
    """``(value, positions)`` for each distinct value of the numpy array ``column``, in
    increasing order of value, the positions (an index array) increasing: what ``for v in
    numpy.unique(column): numpy.flatnonzero(column == v)`` gives, made with one sort
    rather than a pass over the whole column per value -- a fleet's columns have a
    million rows and ten thousand domains. (A NaN is a group of its own.)"""
    order = np.argsort(column, kind="stable")
    values = column[order]
    cuts = np.flatnonzero(values[1:] != values[:-1]) + 1
    firsts = np.concatenate(([0], cuts)) if values.size else cuts
    return zip(values[firsts].tolist(), np.split(order, cuts))


_CHILDREN = attrgetter("children")
#: the columns :class:`RequestTable` reads from each :class:`Request`
_COLUMNS = attrgetter("submit", "take", "respond", "complete", "front_dom", "back_dom",
                      "cancelled", "flow", "cc", "parent", "ptpm")


def _floats(values):
    """A float column of ``values`` (times, or domids, exact as floats): NaN for ``None``."""
    return np.array(values, dtype=float).reshape(-1)


class RequestTable:
    """Requests (:func:`requests`, in submit order) as columns: one numpy array per field,
    one row per request, so that what is asked of all of them -- each command's hops
    (:meth:`hops`), which are completed commands (:meth:`commands`) -- is a few array
    operations over every row at once instead of a Python call per request.

    ``submit``, ``take``, ``respond``, ``complete`` are float arrays in seconds, NaN where
    the request never got that far; ``front_dom`` and ``back_dom`` are the domids as
    floats (exact: a domid is a small integer), NaN for no backend; ``flow``, ``cc`` and
    ``front`` (the frontend domids themselves) are lists; ``parent`` the row of the
    request each one served (``-1``: top level). :attr:`requests` are the objects.

    The sums over several children or spans are made in the order the
    :class:`Request` methods make them (``numpy.add.at`` adds in index order, one at a
    time), so every figure is the same float as theirs, to the last bit.
    """

    def __init__(self, reqs, *, parent=None, spans=None):
        self.requests = reqs = list(reqs)
        n = self.size = len(reqs)
        (submit, take, respond, complete, front, back, cancelled, flow, cc, parents,
         ptpm) = zip(*map(_COLUMNS, reqs)) if n else ((),) * 11
        self.submit, self.take = _floats(submit), _floats(take)
        self.respond, self.complete = _floats(respond), _floats(complete)
        self.front, self.front_dom, self.back_dom = list(front), _floats(front), _floats(back)
        self.flow, self.cc = list(flow), list(cc)
        self.cancelled = np.array(cancelled, dtype=bool).reshape(-1)
        if parent is None:          # from the objects' links: a parent's row by its identity
            row = dict(zip(map(id, reqs), range(n)))
            parent = np.fromiter(map(row.get, map(id, parents), repeat(-1)), np.intp, n)
        self.parent = parent
        if spans is None:
            spans = [(i, a, b) for i, own in enumerate(ptpm) for a, b in own]
        self.set_spans(spans)
        self._hops = None

    def set_spans(self, spans):
        """The physical-TPM spans, ``(row, start, end)`` in the order each row holds them."""
        owner, t0, t1 = zip(*spans) if spans else ((), (), ())
        self.span_row = np.array(owner, dtype=np.intp)
        self.span_time = _floats(t1) - _floats(t0)
        self._hops = None

    @property
    def done(self):
        """Which rows are :attr:`Request.done`: taken, answered and seen, not cancelled."""
        return (~np.isnan(self.take) & ~np.isnan(self.respond) & ~np.isnan(self.complete)
                & ~self.cancelled)

    def commands(self):
        """The rows of the completed top-level requests (what :func:`command_hops` splits)."""
        return np.flatnonzero(self.done & (self.parent < 0))

    def with_nested(self, own):
        """``own`` of each row plus that of everything nested under it (added child by
        child, each child's whole before the next: as :meth:`Request.ptpm_time` does)."""
        depth = np.zeros(self.size, np.intp)
        up = self.parent.copy()
        while True:
            nested = up >= 0
            if not nested.any():
                break
            depth[nested] += 1
            up[nested] = self.parent[up[nested]]
        below = np.zeros(self.size, own.dtype)
        for d in range(int(depth.max(initial=0)), 0, -1):
            rows = np.flatnonzero(depth == d)
            np.add.at(below, self.parent[rows], own[rows] + below[rows])
        return own + below

    def hops(self) -> dict:
        """``{hop: array}``: each row's :data:`HOPS` as :func:`hop_times` splits it (read
        it for the rows of :meth:`commands`), plus ``"manager_requests"`` (completed nested
        requests) and ``"ptpm_commands"`` (physical-TPM commands under it), both counts."""
        if self._hops is None:
            n = self.size
            own = np.zeros(n)           # its own spans' time (0 + each in turn, as sum())
            np.add.at(own, self.span_row, self.span_time)
            ptpm = self.with_nested(own)        # Request.ptpm_time of every row
            count = self.with_nested(np.bincount(self.span_row, minlength=n))
            kids = np.flatnonzero(self.done & (self.parent >= 0))
            up = self.parent[kids]
            nested, nested_ptpm = np.zeros(n), np.zeros(n)
            np.add.at(nested, up, self.complete[kids] - self.submit[kids])
            np.add.at(nested_ptpm, up, ptpm[kids])
            self._hops = {
                "front_to_back": self.take - self.submit,
                "vtpm": (self.respond - self.take) - nested - own,
                "manager": nested - nested_ptpm,
                "ptpm": nested_ptpm + own,
                "back_to_front": self.complete - self.respond,
                "manager_requests": np.bincount(up, minlength=n),
                "ptpm_commands": count,
            }
        return self._hops

    def command_hops(self, row) -> "CommandHops":
        """The :class:`CommandHops` of row ``row`` (one of :meth:`commands`)."""
        h = self.hops()
        req = self.requests[row]
        return CommandHops(req.flow, req.front_dom, req.cc, req.rc, req.submit, req.complete,
                           {hop: h[hop][row].item() for hop in HOPS},
                           int(h["manager_requests"][row]), int(h["ptpm_commands"][row]))


def command_hops(records, flows=None) -> list:
    """A :class:`CommandHops` for each completed top-level command in ``records``.

    ``flows`` (an iterable of flow ids) keeps only those commands -- what
    ``simxen serve`` uses to find the command it just injected.
    """
    wanted = None if flows is None else set(flows)
    matching = Matching()
    matching.add_all(sorted(records, key=_SEQ))         # emission order is causal order
    table = matching.table()
    return [table.command_hops(row) for row in table.commands().tolist()
            if wanted is None or table.flow[row] in wanted]


def hops_of(req: Request) -> CommandHops:
    """Split a completed top-level request's time into :data:`HOPS` (by the
    :class:`RequestTable` of the request and everything nested in it)."""
    tree, parent = [], []
    _subtree(req, -1, tree, parent)
    h = RequestTable(tree, parent=np.array(parent, dtype=np.intp)).hops()
    times = req._times
    if times is None:
        times = req._times = {hop: h[hop][0].item() for hop in HOPS}
    return CommandHops(req.flow, req.front_dom, req.cc, req.rc, req.submit, req.complete,
                       times, int(h["manager_requests"][0]), int(h["ptpm_commands"][0]))


def hop_times(req: Request) -> dict:
    """``{hop: seconds}`` of a completed top-level request (:attr:`CommandHops.hops`
    without the rest of :func:`hops_of`): the same dict each time it is asked (do not
    change it), split the first time."""
    return req._times if req._times is not None else hops_of(req).hops


def _subtree(req, up, tree, parent):
    """Append ``req`` and everything nested in it to ``tree``, each parent before its
    children, in order, and the row of each one's parent to ``parent`` (read from
    :attr:`Request.children`, which :func:`release` leaves)."""
    row = len(tree)
    tree.append(req)
    parent.append(up)
    for child in req.children:
        _subtree(child, row, tree, parent)


def percentiles(values) -> dict:
    """``count``, ``min``, ``p50``, ``p90``, ``p95``, ``p99``, ``max`` and ``mean`` of ``values``."""
    a = np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype=float)
    if a.size == 0:
        return {"count": 0}
    p = np.percentile(a, [0, 50, 90, 95, 99, 100])
    return {"count": int(a.size), "min": float(p[0]), "p50": float(p[1]), "p90": float(p[2]),
            "p95": float(p[3]), "p99": float(p[4]), "max": float(p[5]), "mean": float(a.mean())}


def aggregate(commands, by_command=False) -> dict:
    """Percentiles of each hop and of the total over ``commands``.

    Returns ``{hop or "total": percentiles}``; with ``by_command`` one such
    dict per command name: ``{"TPM2_PCR_Extend": {...}, ...}``.
    """
    commands = list(commands)
    if by_command:
        names = sorted({c.name for c in commands})
        return {n: aggregate([c for c in commands if c.name == n]) for n in names}
    out = {hop: percentiles([c.hops[hop] for c in commands]) for hop in HOPS}
    out["total"] = percentiles([c.total for c in commands])
    return out


def _ms(seconds) -> str:
    return f"{seconds * 1e3:.3f}"


def format_line(c: CommandHops) -> str:
    """One line: name, response code, total and each hop, in milliseconds.

    ``TPM2_PCR_Extend TPM_RC_SUCCESS total 5.019 ms = front->back 0.014 +
    vtpm 0.402 + manager 0.031 + ptpm 0.000 + back->front 4.572 (1 manager
    request)``
    """
    parts = " + ".join(f"{HOP_LABELS[h]} {_ms(c.hops[h])}" for h in HOPS)
    extra = ""
    if c.manager_requests or c.ptpm_commands:
        extra = (f" ({c.manager_requests} manager request{'s' * (c.manager_requests != 1)}, "
                 f"{c.ptpm_commands} physical TPM command{'s' * (c.ptpm_commands != 1)})")
    return f"{c.name} {c.rc_text} total {_ms(c.total)} ms = {parts}{extra}"


def format_table(agg: dict) -> str:
    """:func:`aggregate`'s result as a fixed-width table in milliseconds."""
    cols = ("count", "min", "p50", "p90", "p99", "max", "mean")
    rows = [f"{'hop':<12}" + "".join(f"{c:>10}" for c in cols)]
    for hop in HOPS + ("total",):
        p = agg.get(hop, {"count": 0})
        label = HOP_LABELS.get(hop, hop)
        if not p.get("count"):
            rows.append(f"{label:<12}{0:>10}")
            continue
        rows.append(f"{label:<12}{p['count']:>10}"
                    + "".join(f"{p[c] * 1e3:>10.3f}" for c in cols[1:]))
    return "\n".join(rows)

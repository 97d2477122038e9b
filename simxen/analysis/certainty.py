"""How much of a simulated latency rests on figures nobody has measured.

Every op of a timing profile says how sure its numbers are (``V`` read in a
source, ``P`` derived, ``U`` assumed). A latency is an **estimate** when more
than a fifth of it (:data:`ESTIMATE_SHARE`) comes from ``U`` figures; a report
says so next to it, and its ``--json`` carries the share (``unverified_share``
metrics, unit ``fraction``).

Which figures a command's time comes from is read from its hops
(:mod:`simxen.analysis.hops`), each charged to the ops that made it:

==================  ==========================================================
hop                 ops its time comes from
==================  ==========================================================
``front->back``     ``evtchn.notify`` + ``evtchn.upcall`` (the SUBMIT's
                    notification and the vTPM waking)
``vtpm``            the vTPM engine's own execution (the ``tpm.exec`` records
                    of the command in its vTPM: ``tpm.vtpm.default``,
                    ``tpm.vtpm.rsa``... as :func:`simxen.domains.vtpm.vtpm_op`
                    picks); the rest of the hop is the state save --
                    ``disk.request``
``manager``         ``evtchn.notify`` (two more ring crossings) and, with the
                    sealed store, ``disk.flush`` -- all assumed today; time
                    queued at the manager behind other vTPMs' requests is
                    charged as the manager's service is (its physical-TPM
                    commands, its own work)
``ptpm``            each physical-TPM command under the command: the chip's
                    own op for it (``tpm.ptpm.Quote``, ``tpm.ptpm.GetRandom``,
                    else ``tpm.ptpm.default`` --
                    :func:`simxen.hw.tpm_chip.latency_op`) for the time the
                    chip drew, and mini-os ``tpm_tis``'s 5 ms polling grid
                    (``V``, a switch read in the source) for the rest
``back->front``     the guest's wait: ``tpmfront.usleep_range`` (linux-6), the
                    jiffy arithmetic of linux-4.4 (``P``), or the event
                    channel (``evtchn.upcall``) for an interrupt-driven guest
==================  ==========================================================

:class:`Attribution` does this for every command of a trace, from its actual
hops and executions; :meth:`Attribution.share` gives the share of a set of
commands, :meth:`Attribution.window` the share of a span of time that a
workload measured around some commands (an attestation round: the guest's
commands plus the network link between them). :func:`ops_share` is the same
idea for a latency that is not made of TPM commands (a ring round trip): the
mean time of the ops it is made of. :func:`unverified_share` works on a
command's mean hops alone, when no trace is at hand.

The attribution is coarse where it has to guess: a hop's time is given the
certainty of the op that dominates it, and a physical-TPM command whose
execution the trace does not show counts as its chip's *default* op, which is
assumed.
"""

from __future__ import annotations

import bisect
from itertools import compress, count, islice, repeat
from operator import attrgetter, is_, not_

import numpy as np

from simxen.analysis import hops
from simxen.hw.tpm_chip import latency_op

__all__ = ["ESTIMATE_SHARE", "READS", "EXECUTIONS", "hop_certainty", "unverified_share", "is_estimate",
           "label", "Attribution", "ops_share"]

#: What :class:`Attribution` reads besides the requests (:data:`simxen.analysis.hops.READS`):
#: the engines' and the chip's executions and the physical TPM's GO.
EXECUTIONS = frozenset({"tpm.exec", "tis.go"})

#: Every record kind :class:`Attribution` reads: the executions and what
#: :func:`simxen.analysis.hops.requests` reads. A caller that reads the trace for it
#: gives ``Trace.iter_records(kinds=READS)``.
READS = EXECUTIONS | hops.READS

#: More than this fraction of a latency from ``U`` figures makes it an estimate.
ESTIMATE_SHARE = 0.2


def _cert(profile, op, fallback="U"):
    return profile.op(op).certainty if profile.has(op) else fallback


def hop_certainty(profile, *, polls=True, era="linux-6") -> dict:
    """``{hop: "V" | "P" | "U"}`` for the hops of a guest command under *profile*."""
    evtchn = "U" if "U" in (_cert(profile, "evtchn.notify"), _cert(profile, "evtchn.upcall")) else "P"
    if not polls:
        wait = _cert(profile, "evtchn.upcall")
    elif era == "linux-6":
        wait = _cert(profile, "tpmfront.usleep_range", "V")
    else:
        wait = "P"                              # msleep's jiffies: arithmetic on the source
    return {"front_to_back": evtchn, "vtpm": _cert(profile, "tpm.vtpm.default"),
            "save": _cert(profile, "disk.request"), "manager": evtchn,
            "ptpm": _cert(profile, "tpm.ptpm.default"), "back_to_front": wait}


def unverified_share(hop_means: dict, profile, *, polls=True, era="linux-6",
                     unit=1.0) -> float:
    """The fraction of ``sum(hop_means.values())`` that rests on ``U`` figures.

    :param hop_means: ``{hop: time}`` of a command, hops as in
        :data:`simxen.analysis.hops.HOPS`.
    :param unit: seconds per unit of those times (``1e-3`` for milliseconds).
    """
    cert = hop_certainty(profile, polls=polls, era=era)
    total = sum(hop_means.values())
    if total <= 0:
        return 0.0
    parts = dict(hop_means)
    vtpm = parts.pop("vtpm", 0.0)
    engine = min(vtpm, _engine_mean(profile) / unit)
    parts["vtpm"] = engine
    parts["save"] = vtpm - engine
    return sum(v for hop, v in parts.items() if cert.get(hop, "U") == "U") / total


def _engine_mean(profile):
    """The engine's expected time in the vtpm hop, in seconds."""
    return profile.op("tpm.vtpm.default").mean() if profile.has("tpm.vtpm.default") else 0.0


def is_estimate(share: float) -> bool:
    return share > ESTIMATE_SHARE


def label(share) -> str:
    """``"estimate"`` or ``"sourced"`` for a latency with *share* from ``U`` figures."""
    return "estimate" if is_estimate(share) else "sourced"


def ops_share(profile, counts: dict) -> float:
    """The share from ``U`` figures of a latency made of ``{op: times}`` (for a
    ``..._per_byte`` op, times = bytes), each op weighted by its mean."""
    total = unverified = 0.0
    for op, n in counts.items():
        t = n * profile.op(op).mean() if profile.has(op) else 0.0
        total += t
        if _cert(profile, op) == "U":
            unverified += t
    return unverified / total if total > 0 else 0.0


#: certainties by code in :class:`Attribution`'s arrays (``-1``: no time of this kind)
_CERTS = ("V", "P", "U")
_CODE = {c: i for i, c in enumerate(_CERTS)}
#: the hops in the order a command's parts are charged (:meth:`Attribution._split`)
_CHARGED = ("front_to_back", "manager", "back_to_front", "vtpm", "ptpm")


class Attribution:
    """Every completed guest command of a trace, its time split by certainty.

    :param records: trace records, an iterable read once (the ``tpm.*`` and ``tis.*``
        kinds are read; :meth:`of_trace` streams them from a
        :class:`~simxen.xen.trace.Trace`), in emission order or the trace's own
        (by time, then ``seq``) -- :class:`simxen.analysis.hops.Matching`
    :param profile: the run's timing profile
    :param waits: ``{frontend domid: (kernel era, polls)}`` -- how each guest's
        frontend waits for an answer (:mod:`simxen.drivers.kernel_eras`); a domain
        not in it waits as ``default_wait`` says (the profile's era)
    :param vtpm_op: ``vtpm_op(profile, cc) -> op name``, the op that times a
        command in a vTPM engine (:func:`simxen.domains.vtpm.vtpm_op`; the
        analysis layer does not import the domains)
    :param requests: :func:`simxen.analysis.hops.requests` of the same records, or their
        :class:`~simxen.analysis.hops.RequestTable`, if the caller has them already
        (they are built otherwise)

    **How it is computed.** Every command is split at once, in arrays with a row per
    command (:class:`~simxen.analysis.hops.RequestTable`): each piece of time the
    module doc charges -- a hop's wait, a queue's share of the manager's mix, an engine
    execution, a physical-TPM span -- is a *term*, a column of seconds and a column of
    certainty codes (``-1`` where a command has no such piece). A command's ``V``,
    ``P`` and ``U`` seconds are its terms added in the module doc's order, and
    :attr:`hop_totals` the same terms added command after command: sums made term by
    term, in order (``numpy.cumsum``, never a pairwise sum), so each is the float a loop
    over the commands would give. The few pieces only some commands have (a second
    nested request, a physical-TPM span) are further columns, zero elsewhere; adding
    ``+0.0`` changes no sum. The dict views (:attr:`commands`, :meth:`commands_of`) are
    made only when one is read.
    """

    def __init__(self, records, profile, *, waits=None, default_wait=("linux-6", True),
                 vtpm_op=None, requests=None):
        self.profile = profile
        self._vtpm_op = vtpm_op or (lambda profile, cc: "tpm.vtpm.default")
        # one pass over the records (a trace's are streamed, never all in memory at once):
        # the requests are matched as they go by, unless the caller has them already; the
        # executions (one or two records a command) are kept and read in bulk
        owned = requests is None
        if owned:
            matching = hops.Matching(keep=EXECUTIONS)
            matching.add_all(records)
            table = matching.table()
            executions = matching.kept
        else:
            records = records if isinstance(records, list) else list(records)
            executions = list(compress(records, map(EXECUTIONS.__contains__,
                                                    map(_KIND, records))))
            table = requests if isinstance(requests, hops.RequestTable) \
                else hops.RequestTable(requests)
        engine, self._chip, self._go = _executions(executions)
        self._chip_seqs = [c[0] for c in self._chip]
        self._grid = self._grid_certainty()
        self._engine_ops = {}    # cc -> (op, mean, certainty code) of the op that times it
        self._crossing = sum(profile.op(op).mean() for op in ("evtchn.notify", "evtchn.upcall")
                             if profile.has(op))
        self._table = table
        done = table.done
        nested = np.flatnonzero(done & (table.parent >= 0))
        spans_below = table.with_nested(np.bincount(table.span_row, minlength=table.size))
        self._serve(nested, spans_below)
        top = np.flatnonzero(done & (table.parent < 0))
        self._top = top
        self._split(top, engine, spans_below, waits or {}, default_wait)
        self._commands = self._by_dom = self._row_of = None
        self._submits = {}       # domid -> submit times of _by_dom[domid] (see _starts)
        if owned:       # no one else has them: no cycles left, freed with this attribution
            hops.release(table.requests)

    def _serve(self, rows, spans_below):
        """Charge each nested request's service (take to respond in its backend, the vTPM
        manager): its physical-TPM commands by the chip's ops, the rest -- the server's own
        work, its sealed store's disk -- to assumed figures. Sets ``_mix``, ``{backend
        domid: {"V", "P", "U": seconds}}`` of all its service (added request after request),
        and what :meth:`service_share` reads."""
        table = self._table
        time = table.respond[rows] - table.take[rows]
        parts = np.zeros((3, rows.size))          # V, P, U seconds of each request's spans
        for j in np.flatnonzero(spans_below[rows]).tolist():
            req = table.requests[rows[j]]
            for code, t, _ in self._span_terms(_nested_spans(req)):
                parts[code, j] += t
        v, p, u = parts
        u = u + _at_least_0(time - v - p - u)
        self._mix = {}
        for _, mine in hops.groups(table.back_dom[rows]):
            key = table.requests[rows[mine[0]]].back_dom      # the domid itself
            self._mix[key] = {c: _in_order(x[mine]) for c, x in zip(_CERTS, (v, p, u))}
        self._served_rows, self._served_u, self._served_time = rows, u, time
        self._served = None

    def _split(self, rows, engine, spans_below, waits, default_wait):
        """Split the completed top-level commands ``rows`` (see the module doc and the class
        doc): sets ``_parts`` (V, P, U seconds, a row per command) and :attr:`hop_totals`."""
        table, profile = self._table, self.profile
        m = rows.size
        h = table.hops()
        hop = {name: h[name][rows] for name in hops.HOPS}
        # each hop's certainty as the command's frontend waits (a domid as a float finds
        # its int key: 3.0 == 3, same hash); a fleet's thousands of frontends wait in a
        # few ways, each way's certainties found once
        cert = np.zeros((4, m), np.intp)          # front->back, manager, back->front, save
        ways = {}
        for dom, mine in hops.groups(table.front_dom[rows]):
            key = waits.get(dom, default_wait)
            if key not in ways:
                c = hop_certainty(profile, polls=key[1], era=key[0])
                ways[key] = [[_CODE[c[name]]] for name in
                             ("front_to_back", "manager", "back_to_front", "save")]
            cert[:, mine] = ways[key]
        terms = {name: [] for name in hops.HOPS}      # hop -> [(seconds, code)] in order
        terms["front_to_back"].append((hop["front_to_back"], cert[0]))
        # the manager hop: ring crossings and its own work, and any wait in its queue behind
        # other vTPMs' requests -- time made of its service, charged as that service is
        queued = np.zeros(m)
        for kids, at in _slots(table.parent, table.done, rows):
            wait = (table.take[kids] - table.submit[kids]) - self._crossing
            mix = np.zeros((4, kids.size))        # its backend's V, P, U and their sum
            for dom, mine in hops.groups(table.back_dom[kids]):
                x = self._mix.get(dom)          # (a domid as a float finds its int key)
                if x is not None:
                    mix[:, mine] = [[x["V"]], [x["P"]], [x["U"]], [sum(x.values())]]
            charged = (wait > 0) & (mix[3] > 0)
            with np.errstate(divide="ignore", invalid="ignore"):    # (not charged: unread)
                for i, c in enumerate(_CERTS):
                    terms["manager"].append(_term(m, at, wait * mix[i] / mix[3], charged,
                                                  _CODE[c]))
            queued[at] = queued[at] + np.where(charged, wait, 0.0)
        terms["manager"].append((_at_least_0(hop["manager"] - queued), cert[1]))
        terms["back_to_front"].append((hop["back_to_front"], cert[2]))
        # the vTPM hop: the engine's executions of this command, the rest the state save
        ran = np.zeros(m, bool)
        spent = np.zeros(m)
        for code, d, at in self._runs(rows, engine):
            terms["vtpm"].append(_term(m, at, d, True, code))
            spent[at] = spent[at] + d
            ran[at] = True
        if not ran.all():                         # no execution kept: the op's mean
            idle = np.flatnonzero(~ran)
            op = [self._engine_op(table.cc[rows[i]]) for i in idle.tolist()]
            mean = np.array([x[1] for x in op])
            t = np.where(mean < hop["vtpm"][idle], mean, hop["vtpm"][idle])
            term = _term(m, idle, t, True, np.array([x[2] for x in op], dtype=np.intp))
            if terms["vtpm"]:               # in the first run's place, which these lack
                first = terms["vtpm"][0]
                term = (np.where(ran, first[0], term[0]), np.where(ran, first[1], term[1]))
                terms["vtpm"][0] = term
            else:
                terms["vtpm"].append(term)
            spent[idle] = t
        terms["vtpm"].append((_at_least_0(hop["vtpm"] - spent), cert[3]))
        # the physical TPM: each span's command, by the chip's op for it
        rest = hop["ptpm"].copy()
        spans = {}
        for j in np.flatnonzero(spans_below[rows]).tolist():
            spans[j] = list(self._span_terms(_spans(table.requests[rows[j]])))
        for k in range(max(map(len, spans.values()), default=0)):
            at = np.array([j for j, s in spans.items() if len(s) > k], dtype=np.intp)
            code = np.array([spans[j][k][0] for j in at.tolist()], dtype=np.intp)
            t = np.array([spans[j][k][1] for j in at.tolist()])
            terms["ptpm"].append(_term(m, at, t, True, code))
            if k % 2 == 1:                      # (drawn, grid) pairs: the span's whole
                whole = np.array([spans[j][k][2] for j in at.tolist()])
                rest[at] = rest[at] - whole
        terms["ptpm"].append((_at_least_0(rest), np.full(m, _CODE["U"], np.intp)))
        # each command's V, P, U: its terms in the order they are charged above; each
        # hop's: command after command, each command's terms of it in order
        parts = np.zeros((3, m))
        for name in _CHARGED:
            for t, code in terms[name]:
                for c in range(3):
                    parts[c] = parts[c] + np.where(code == c, t, 0.0)
        self.hop_totals = {}
        for name in hops.HOPS:
            seconds = np.stack([t for t, _ in terms[name]], axis=1)     # a row per command
            code = np.stack([c for _, c in terms[name]], axis=1)
            self.hop_totals[name] = {c: _in_order(np.where(code == i, seconds, 0.0).ravel())
                                     for i, c in enumerate(_CERTS)}
        self._parts = parts

    def _engine_op(self, cc):
        """``(op, mean, code)`` of the op that times command ``cc`` in a vTPM engine."""
        op = self._engine_ops.get(cc)
        if op is None:
            name = self._vtpm_op(self.profile, cc)
            mean = self.profile.op(name).mean() if self.profile.has(name) else 0.0
            op = self._engine_ops[cc] = (name, mean, _CODE[_cert(self.profile, name)])
        return op

    def _runs(self, rows, engine):
        """Each command's engine executions, slot by slot: ``(certainty codes, seconds,
        positions in rows)`` of every command's first run, then of its second..."""
        table = self._table
        if not engine[0] or not rows.size:
            return
        keys, t, cc, d = engine
        # the executions of each command's (backend, flow) -- a flow may come again after a
        # reboot, so each execution is paired with every command of its key -- inside its
        # take .. respond
        ids = {}
        # (a domid as a float is the same key: (3.0, flow) == (3, flow), same hash)
        mine = np.fromiter(map(ids.setdefault, zip(table.back_dom[rows].tolist(),
                                                   map(table.flow.__getitem__, rows.tolist())),
                               count()), np.intp, rows.size)
        theirs = np.fromiter(map(ids.get, keys, repeat(-1)), np.intp, len(keys))
        order = np.argsort(mine, kind="stable")
        lo = np.searchsorted(mine[order], theirs, side="left")
        n = np.searchsorted(mine[order], theirs, side="right") - lo
        n[theirs < 0] = 0
        run = np.repeat(np.arange(len(keys)), n)
        cmd = order[np.repeat(lo, n) + np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)]
        t = np.asarray(t, dtype=float)
        inside = (table.take[rows[cmd]] <= t[run]) & (t[run] <= table.respond[rows[cmd]])
        run, cmd = run[inside], cmd[inside]
        pair = np.lexsort((run, cmd))             # by command, each one's runs in order
        run, cmd = run[pair], cmd[pair]
        slot = np.arange(cmd.size) - np.searchsorted(cmd, cmd, side="left")
        ccs = list(map(cc.__getitem__, run.tolist()))
        codes = {x: self._engine_op(x)[2] for x in set(ccs)}
        code = np.fromiter(map(codes.__getitem__, ccs), np.intp, len(ccs))
        d = np.asarray(d, dtype=float)[run]
        for k in range(int(slot.max(initial=-1)) + 1):
            here = slot == k
            yield code[here], d[here], cmd[here]

    def _span_terms(self, spans):
        """``(code, seconds, span)`` of ``(dom, start, end)`` spans: per span the time the
        chip drew, by its op's certainty, then the rest, by the polling grid's (``span``:
        the span's whole time, on the second)."""
        for dom, t0, t1 in spans:
            op, drawn = self._chip_run(dom, t0, t1)
            drawn = min(drawn, t1 - t0)
            yield _CODE[_cert(self.profile, op)], drawn, 0.0
            yield _CODE[self._grid], (t1 - t0) - drawn, t1 - t0

    @property
    def commands(self) -> dict:
        """``{(flow, frontend domid): {"V": s, "P": s, "U": s}}`` per completed top-level
        command (a flow that comes again after a host reboot: its last command)."""
        if self._commands is None:
            table = self._table
            parts = [dict(zip(_CERTS, x)) for x in self._parts.T.tolist()]
            rows = self._top.tolist()
            self._commands = dict(zip(zip(map(table.flow.__getitem__, rows),
                                          map(table.front.__getitem__, rows)), parts))
        return self._commands

    def _dom_commands(self):
        """``{domid: [(submit, complete, parts)]}`` of the completed top-level commands."""
        if self._by_dom is None:
            table = self._table
            self._by_dom = {}
            parts = [dict(zip(_CERTS, x)) for x in self._parts.T.tolist()]
            for i, p in zip(self._top.tolist(), parts):
                req = table.requests[i]
                # by domain, with times: a flow name may come again after a host reboot
                self._by_dom.setdefault(req.front_dom, []).append(
                    (table.submit[i].item(), table.complete[i].item(), p))
        return self._by_dom

    def service_share(self, dom, flows) -> float | None:
        """The share from ``U`` figures of the service domain ``dom`` (the manager) gave the
        requests made on behalf of ``flows``; ``None`` when it served none of them or they
        took no time. A wait in its queue gets the same share: it is made of that service."""
        if self._served is None:     # {backend domid: {flow: [U seconds, seconds]}}, once
            self._served = {}
            reqs = self._table.requests
            for i, u, t in zip(self._served_rows.tolist(), self._served_u.tolist(),
                               self._served_time.tolist()):
                req = reqs[i]
                acc = self._served.setdefault(req.back_dom, {}).setdefault(req.flow, [0.0, 0.0])
                acc[0] += u
                acc[1] += t
        served = self._served.get(dom, {})
        u = total = 0.0
        for flow in flows:
            acc = served.get(flow)
            if acc is not None:
                u += acc[0]
                total += acc[1]
        return u / total if total > 0 else None

    @classmethod
    def of_trace(cls, trace, profile, *, requests=None, **kw):
        """From a :class:`~simxen.xen.trace.Trace`'s kept records of the kinds it reads
        (:data:`READS`), streamed; ``None`` when the trace's level did not keep the
        command records.

        ``requests``: :func:`simxen.analysis.hops.requests` of the same trace (or their
        :class:`~simxen.analysis.hops.RequestTable`), if the caller has them already (it
        keeps them: they are not released here); then only the executions
        (:data:`EXECUTIONS`) are read, one or two records per command instead of every
        record the requests were matched from."""
        if not trace.keeps("tpm.front.complete"):
            return None
        # two reads, each of its own kinds (a spilled trace unpickles only those): the
        # requests' records into the matching, then the executions
        owned = requests is None
        if owned:
            matching = hops.Matching()
            matching.add_all(trace.iter_records(kinds=hops.READS))
            requests = matching.table()
        attribution = cls(list(trace.iter_records(kinds=EXECUTIONS)), profile,
                          requests=requests, **kw)
        if owned:
            hops.release(requests.requests)     # no one else has them: freed as this returns
        return attribution

    def hop_shares(self) -> dict:
        """``{hop: share from U figures}`` of each hop (:data:`simxen.analysis.hops.HOPS`)
        over every completed command together; ``None`` for a hop that took no time."""
        out = {}
        for name, parts in self.hop_totals.items():
            total = parts["V"] + parts["P"] + parts["U"]
            out[name] = parts["U"] / total if total > 0 else None
        return out

    def _grid_certainty(self):
        """Certainty of the time between the chip finishing and the manager's TIS driver
        seeing it: mini-os tpm_tis polls STS every 5 ms (read in its source)."""
        if self.profile.switch("tis.wait", "poll") == "poll":
            return "V"
        return _cert(self.profile, "evtchn.upcall")

    def _chip_run(self, dom, t0, t1):
        """``(op, drawn seconds)`` of the physical TPM command started by the tis.go at
        ``(dom, t0)``: the first chip execution after it, else the default op."""
        seq = self._go.get((dom, t0))
        if seq is not None:
            i = bisect.bisect_right(self._chip_seqs, seq)
            if i < len(self._chip):
                _, t, command, drawn = self._chip[i]
                if t0 <= t <= t1 and command is not None:
                    if isinstance(command, str):
                        command = bytes.fromhex(command)
                    return latency_op(self.profile, command), drawn
        return "tpm.ptpm.default", t1 - t0

    def share(self, keys) -> float | None:
        """The share from ``U`` figures of the commands ``keys`` (``(flow, domid)`` pairs)
        together; ``None`` when none of them is in the trace. A latency that also counts
        time queued behind other commands (a load generator's arrival to response) gets
        the same share: the queue is made of those commands' times."""
        table = self._table
        if self._row_of is None:     # (flow, domid) -> its column (the last, as commands)
            rows = self._top.tolist()
            self._row_of = dict(zip(zip(map(table.flow.__getitem__, rows),
                                        map(table.front.__getitem__, rows)), range(len(rows))))
        at = np.fromiter(map(self._row_of.get, keys, repeat(-1)), np.intp)
        at = at[at >= 0]
        if not at.size:
            return None
        v, p, u = self._parts[:, at]
        total = _in_order(v + p + u)
        return _in_order(u) / total if total > 0 else None

    def window(self, start, end, doms, *, rest="net.link") -> float | None:
        """The share from ``U`` figures of the span ``start`` .. ``end`` that a workload
        timed around the commands of the domains ``doms``: those commands (submitted and
        completed inside it) as they are split, and the rest of the span charged to op
        *rest* (an attestation round's other time is its network messages)."""
        return self.windows([(start, end, doms)], rest=rest)

    def windows(self, spans, *, rest="net.link") -> float | None:
        """:meth:`window` of several ``(start, end, doms)`` spans together (the share of
        their summed time); ``None`` for no time at all."""
        u = time = 0.0
        rest_u = _cert(self.profile, rest) == "U"
        for start, end, doms in spans:
            span = end - start
            if span <= 0:
                continue
            cu = ctotal = 0.0
            lo, hi = start - 1e-12, end + 1e-12
            for dom in doms:
                commands = self._dom_commands().get(dom, ())
                starts = self._starts(dom)
                if starts is None:              # not in submit order: each one looked at
                    inside = (c for c in commands if lo <= c[0] and c[1] <= hi)
                else:                           # from the first submitted at lo on, in order
                    inside = (c for c in islice(commands, bisect.bisect_left(starts, lo),
                                                bisect.bisect_right(starts, hi))
                              if c[1] <= hi)
                for _, _, parts in inside:
                    cu += parts["U"]
                    ctotal += parts["V"] + parts["P"] + parts["U"]
            u += min(span, cu + (max(0.0, span - ctotal) if rest_u else 0.0))
            time += span
        return u / time if time > 0 else None

    def commands_of(self, dom) -> list:
        """``[(submit, complete, {"V", "P", "U": seconds})]`` of domain ``dom``'s completed
        top-level commands, in the order they were submitted (emission order)."""
        return list(self._dom_commands().get(dom, ()))

    def _starts(self, dom):
        """The submit times of domain ``dom``'s commands, when they are in submit order
        (as one guest's commands are: one at a time) and none completed before it was
        submitted -- so none submitted after a span's end is inside it -- else ``None``."""
        starts = self._submits.get(dom, False)
        if starts is False:
            commands = self._dom_commands().get(dom, ())
            starts = [c[0] for c in commands]
            if any(a > b for a, b in zip(starts, starts[1:])) or \
                    any(c[1] < c[0] for c in commands):
                starts = None
            self._submits[dom] = starts
        return starts


_KIND, _DOM = attrgetter("kind"), attrgetter("dom")


def _executions(records):
    """``(engine, chip, go)`` of the execution records ``records`` (in the order read):
    ``engine`` the vTPM engines' as columns ``(keys, times, ccs, durations)``, a key
    ``(dom, flow)``; ``chip`` the physical TPM's, ``(seq, t, command, duration)`` in
    emission order; ``go`` ``{(dom, t): seq}`` of its GOs. Sorted out by C loops
    (``compress``, ``map``): one or two records a command, none of them touched by
    Python code but the GOs."""
    kinds = list(map(_KIND, records))
    execs = list(compress(records, map("tpm.exec".__eq__, kinds)))
    on_chip = list(map(is_, map(_DOM, execs), repeat(None)))
    chip = list(compress(execs, on_chip))
    if chip:
        seq, t, _, _, fields = zip(*chip)
        chip = sorted(zip(seq, t, map(dict.get, fields, repeat("command")),
                          map(dict.get, fields, repeat("duration"), repeat(0.0))))
    go = {(r.dom, r.t): r.seq for r in compress(records, map("tis.go".__eq__, kinds))}
    engine = list(compress(execs, map(not_, on_chip)))
    if not engine:
        return ((), (), (), ()), chip, go
    _, t, _, dom, fields = zip(*engine)
    keys = list(zip(dom, map(dict.get, fields, repeat("flow"))))
    return ((keys, t, list(map(dict.get, fields, repeat("cc"))),
             list(map(dict.get, fields, repeat("duration"), repeat(0.0)))), chip, go)


def _in_order(values) -> float:
    """``0.0 + values[0] + values[1] + ...``, one at a time, in order (``numpy.cumsum``):
    the float a ``+=`` loop gives, not numpy's pairwise sum."""
    return np.concatenate(([0.0], values)).cumsum()[-1].item()


def _at_least_0(x):
    """``max(0.0, x)`` of each element (0.0 where ``x`` is not above it)."""
    return np.where(x > 0.0, x, 0.0)


def _term(m, at, seconds, charged, code):
    """A term's two columns over ``m`` commands: ``seconds`` and certainty ``code`` at the
    positions ``at`` where ``charged``, 0.0 and ``-1`` elsewhere."""
    t, c = np.zeros(m), np.full(m, -1, np.intp)
    charged = np.broadcast_to(charged, at.shape)
    t[at[charged]] = np.broadcast_to(seconds, at.shape)[charged]
    c[at[charged]] = np.broadcast_to(code, at.shape)[charged]
    return t, c


def _slots(parent, done, rows):
    """The completed requests nested directly in the commands ``rows``, slot by slot:
    ``(their rows, their commands' positions in rows)`` of each command's first one, then
    of its second... (in the order :attr:`~simxen.analysis.hops.Request.children` holds
    them: submit order)."""
    pos = np.full(len(parent), -1, np.intp)
    pos[rows] = np.arange(rows.size)
    kids = np.flatnonzero(done & (parent >= 0))
    at = pos[parent[kids]]
    kids, at = kids[at >= 0], at[at >= 0]
    order = np.argsort(at, kind="stable")
    kids, at = kids[order], at[order]
    slot = np.arange(at.size) - np.searchsorted(at, at, side="left")
    for k in range(int(slot.max(initial=-1)) + 1):
        here = slot == k
        yield kids[here], at[here]


def _spans(req):
    """``(dom, start, end)`` of the physical-TPM spans :func:`simxen.analysis.hops.hops_of`
    counts in *req*'s ``ptpm`` hop: its own and those of its completed nested requests."""
    for t0, t1 in req.ptpm:
        yield req.back_dom, t0, t1
    for child in req.children:
        if child.done:
            yield from _nested_spans(child)


def _nested_spans(req):
    for t0, t1 in req.ptpm:
        yield req.back_dom, t0, t1
    for child in req.children:
        yield from _nested_spans(child)

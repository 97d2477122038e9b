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
from collections import deque
from itertools import islice

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
    :param requests: :func:`simxen.analysis.hops.requests` of the same records, if the
        caller has them already (they are built otherwise)
    """

    def __init__(self, records, profile, *, waits=None, default_wait=("linux-6", True),
                 vtpm_op=None, requests=None):
        self.profile = profile
        self._vtpm_op = vtpm_op or (lambda profile, cc: "tpm.vtpm.default")
        engine = {}       # (dom, flow) -> [(t, cc, duration)] of a vTPM engine's executions
        chip = []         # (seq, t, command, duration) of the physical TPM's executions
        go = {}           # (dom, t) of a tis.go -> its seq
        # one pass over the records (a trace's are streamed, never all in memory at once):
        # the requests are matched as they go by, unless the caller has them already
        owned = requests is None
        if owned:
            matching = hops.Matching()
            matching.add_all(_executions(records, engine, chip, go))
            requests = matching.requests()
        else:
            deque(_executions(records, engine, chip, go), maxlen=0)
        chip.sort()                              # emission order: a GO, then its execution
        self._engine, self._chip, self._go = engine, chip, go
        self._chip_seqs = [c[0] for c in chip]
        cert = {}
        #: ``{(flow, frontend domid): {"V": s, "P": s, "U": s}}`` per completed top-level command
        self.commands = {}
        #: ``{hop: {"V": s, "P": s, "U": s}}`` of every completed top-level command together
        self.hop_totals = {name: {"V": 0.0, "P": 0.0, "U": 0.0} for name in hops.HOPS}
        self._by_dom = {}
        self._submits = {}       # domid -> submit times of _by_dom[domid] (see _starts)
        self._served = {}        # backend domid -> {flow: [U seconds, seconds]} of nested requests
        self._mix = {}           # backend domid -> {"V", "P", "U": seconds} of all its service
        self._grid = self._grid_certainty()
        self._engine_cert = {}   # cc -> certainty of the op that times it in a vTPM engine
        top = []
        for req in requests:
            if not req.done:
                continue
            if req.parent is None:
                top.append(req)
            else:                               # (a request that is done was taken)
                self._serve(req)
        self._crossing = sum(profile.op(op).mean() for op in ("evtchn.notify", "evtchn.upcall")
                             if profile.has(op))
        for req in top:
            key = (waits or {}).get(req.front_dom, default_wait)
            if key not in cert:
                cert[key] = hop_certainty(profile, polls=key[1], era=key[0])
            parts = self._split(req, hops.hop_times(req), cert[key])
            self.commands[(req.flow, req.front_dom)] = parts
            # by domain too, with times: a flow name may come again after a host reboot
            self._by_dom.setdefault(req.front_dom, []).append((req.submit, req.complete, parts))
        if owned:
            hops.release(requests)      # no one else has them: freed as this returns

    def _serve(self, req):
        """Charge a nested request's service (take to respond in its backend, the vTPM
        manager) : its physical-TPM commands by the chip's ops, the rest -- the server's own
        work, its sealed store's disk -- to assumed figures."""
        time = req.respond - req.take
        parts = {"V": 0.0, "P": 0.0, "U": 0.0}
        for dom, t0, t1 in _nested_spans(req):
            op, drawn = self._chip_run(dom, t0, t1)
            drawn = min(drawn, t1 - t0)
            parts[_cert(self.profile, op)] += drawn
            parts[self._grid] += (t1 - t0) - drawn
        parts["U"] += max(0.0, time - parts["V"] - parts["P"] - parts["U"])
        mix = self._mix.setdefault(req.back_dom, {"V": 0.0, "P": 0.0, "U": 0.0})
        for c, t in parts.items():
            mix[c] += t
        acc = self._served.setdefault(req.back_dom, {}).setdefault(req.flow, [0.0, 0.0])
        acc[0] += parts["U"]
        acc[1] += time

    def service_share(self, dom, flows) -> float | None:
        """The share from ``U`` figures of the service domain ``dom`` (the manager) gave the
        requests made on behalf of ``flows``; ``None`` when it served none of them or they
        took no time. A wait in its queue gets the same share: it is made of that service."""
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

        ``requests``: :func:`simxen.analysis.hops.requests` of the same trace, if the
        caller has them already (it keeps them: they are not released here); then only
        the executions (:data:`EXECUTIONS`) are read, one or two records per command
        instead of every record the requests were matched from."""
        if not trace.keeps("tpm.front.complete"):
            return None
        # two reads, each of its own kinds (a spilled trace unpickles only those): the
        # requests' records into the matching, then the executions
        owned = requests is None
        if owned:
            matching = hops.Matching()
            matching.add_all(trace.iter_records(kinds=hops.READS))
            requests = matching.requests()
        attribution = cls(trace.iter_records(kinds=EXECUTIONS), profile, requests=requests, **kw)
        if owned:
            hops.release(requests)      # no one else has them: freed as this returns
        return attribution

    def _split(self, req, hop, cert):
        """``{"V", "P", "U": seconds}`` of one command (see the module doc); each
        hop's part is also added to :attr:`hop_totals`."""
        by_hop = self.hop_totals
        parts = {"V": 0.0, "P": 0.0, "U": 0.0}

        def add(name, c, t):
            parts[c] += t
            by_hop[name][c] += t

        add("front_to_back", cert["front_to_back"], hop["front_to_back"])
        # the manager hop: ring crossings and its own work, and any wait in its queue behind
        # other vTPMs' requests -- time made of its service, charged as that service is
        queued = 0.0
        for child in req.children:
            if child.done:
                wait = (child.take - child.submit) - self._crossing
                mix = self._mix.get(child.back_dom)
                total = sum(mix.values()) if mix else 0.0
                if wait > 0 and total > 0:
                    for c, t in mix.items():
                        add("manager", c, wait * t / total)
                    queued += wait
        add("manager", cert["manager"], max(0.0, hop["manager"] - queued))
        add("back_to_front", cert["back_to_front"], hop["back_to_front"])
        # the vTPM hop: the engine's executions of this command, the rest the state save
        runs = [(cc, d) for t, cc, d in self._engine.get((req.back_dom, req.flow), ())
                if req.take <= t <= req.respond]
        if runs:
            engine = 0.0
            known = self._engine_cert
            for cc, d in runs:
                c = known.get(cc)
                if c is None:
                    c = known[cc] = _cert(self.profile, self._vtpm_op(self.profile, cc))
                add("vtpm", c, d)
                engine += d
        else:                                   # no execution kept: the op's mean
            op = self._vtpm_op(self.profile, req.cc)
            engine = min(hop["vtpm"], self.profile.op(op).mean() if self.profile.has(op) else 0.0)
            add("vtpm", _cert(self.profile, op), engine)
        add("vtpm", cert["save"], max(0.0, hop["vtpm"] - engine))
        # the physical TPM: each span's command, by the chip's op for it
        ptpm = hop["ptpm"]
        for dom, t0, t1 in _spans(req):
            op, drawn = self._chip_run(dom, t0, t1)
            drawn = min(drawn, t1 - t0)
            add("ptpm", _cert(self.profile, op), drawn)
            add("ptpm", self._grid, (t1 - t0) - drawn)
            ptpm -= t1 - t0
        add("ptpm", "U", max(0.0, ptpm))        # nothing should be left; if it is, assumed
        return parts

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
        u = total = 0.0
        for key in keys:
            parts = self.commands.get(key)
            if parts is not None:
                u += parts["U"]
                total += parts["V"] + parts["P"] + parts["U"]
        return u / total if total > 0 else None

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
                commands = self._by_dom.get(dom, ())
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
        return list(self._by_dom.get(dom, ()))

    def _starts(self, dom):
        """The submit times of domain ``dom``'s commands, when they are in submit order
        (as one guest's commands are: one at a time) and none completed before it was
        submitted -- so none submitted after a span's end is inside it -- else ``None``."""
        starts = self._submits.get(dom, False)
        if starts is False:
            commands = self._by_dom.get(dom, ())
            starts = [c[0] for c in commands]
            if any(a > b for a, b in zip(starts, starts[1:])) or \
                    any(c[1] < c[0] for c in commands):
                starts = None
            self._submits[dom] = starts
        return starts


def _executions(records, engine, chip, go):
    """Each of ``records``, passed on; on the way, the executions go into ``engine``
    (``{(dom, flow): [(t, cc, duration)]}`` of the vTPM engines), ``chip`` (``(seq, t,
    command, duration)`` of the physical TPM) and ``go`` (``{(dom, t): seq}`` of its GOs)."""
    for r in records:
        kind = r.kind
        if kind == "tpm.exec":
            f = r.fields
            if r.dom is None:
                chip.append((r.seq, r.t, f.get("command"), f.get("duration", 0.0)))
            else:
                engine.setdefault((r.dom, f.get("flow")), []).append(
                    (r.t, f.get("cc"), f.get("duration", 0.0)))
        elif kind == "tis.go":
            go[(r.dom, r.t)] = r.seq
        yield r


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

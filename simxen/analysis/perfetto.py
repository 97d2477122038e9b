"""A run as a timeline for ui.perfetto.dev and chrome://tracing.

The output is the Chrome trace-event format (JSON, ``{"traceEvents": [...]}``;
times in microseconds of simulated time), which both viewers open:

* a **process per domain**, named ``guest1 (dom3)`` -- ``guest1 (dom3, 64
  vCPUs)`` when it has more than one -- with a **thread per vCPU that carries
  events**: ``vcpu0``, where the domain's kernel runs and its events are
  drawn, always, and no empty track for the others (a domain may have 8,192
  of them); the physical TPM and the world outside the host (verifier,
  network) are processes of their own;
* **slices for TPM commands**, named by command code: the frontend's round
  trip (``tpm.front.submit`` -> ``tpm.front.complete``) and the backend's
  service (``tpm.back.take`` -> ``tpm.back.respond``) as async slices (they
  overlap freely), each TPM's execution (``tpm.exec``) and the TIS driver's
  wait for the physical TPM (``tis.go`` -> ``tis.complete``) as complete
  slices;
* **flow arrows** from each event-channel send to its delivery and from each
  grant to its map;
* **counters** for queue occupancy: requests waiting in each tpmback (the
  manager's queue is its tpmback's), and requests in flight on each ring.h
  ring.

Only the records a trace kept can be drawn: at trace level ``commands`` there
are no event-channel or grant records, so no arrows (:func:`build` says which
families it missed in the ``"metadata"`` of the output).
"""

from __future__ import annotations

import json

from simxen.analysis.trace_format import first_reading

__all__ = ["build", "dumps", "write", "check"]

_US = 1e6
_HW_PID = 100000          # the physical TPM
_WORLD_PID = 100001       # verifier and network (dom null, not hardware)


def _ts(t) -> float:
    return round(t * _US, 3)


class _Builder:
    """The events of ``records`` (in time order), made in one reading of them:
    each family's events go to a list of their own, in the order
    :meth:`build` gives them (slices, the slices the trace does not end, flow
    arrows, counters)."""

    def __init__(self, records):
        self.records = records
        self.events = []
        self.made = {}              # family -> its events, as build() reads the records
        self.names = {}
        self.vcpus = {}
        self.tracks = set()         # (pid, tid) of every event made
        self.kinds = set()          # the families seen
        self.end = 0                # the trace's last time (µs)

    def pid(self, r):
        dom = r["dom"]
        if dom is None:
            return _HW_PID if r["kind"] in ("tpm.exec", "host.measure") else _WORLD_PID
        return dom + 1

    def ev(self, **e):
        self.tracks.add((e["pid"], e["tid"]))
        self.events.append(e)

    def build(self):
        slices, flows, counters = self.slices(), self.flows(), self.counters()
        names, vcpus, kinds = self.names, self.vcpus, self.kinds
        r = None
        for r in self.records:
            k = r["kind"]
            kinds.add(k.split(".")[0])
            if k == "domain.create":
                names[r["domid"]] = r["name"]
                vcpus[r["domid"]] = r.get("vcpus", 1)
            elif r.get("dom") is not None and "dom_name" in r:
                names.setdefault(r["dom"], r["dom_name"])
            slices(r)
            flows(r)
            counters(r)
        self.end = _ts(r["t"]) if r is not None else 0
        made = self.made
        self.events = made["slices"]
        self.close_unfinished()
        self.events += made["flows"] + made["counters"]
        self.metadata()
        return self.events

    def _into(self, family):
        """An :meth:`ev` that adds to ``family``'s list of events."""
        out = self.made.setdefault(family, [])
        tracks = self.tracks

        def ev(**e):
            tracks.add((e["pid"], e["tid"]))
            out.append(e)
        return ev

    # -- slices ----------------------------------------------------------------
    def slices(self):
        """The function that makes one record's slice events."""
        ev, pid = self._into("slices"), self.pid
        tis_open = None

        def one(r):
            nonlocal tis_open
            k = r["kind"]
            if k in ("tpm.front.submit", "tpm.back.take"):
                side = "front" if k == "tpm.front.submit" else "back"
                ev(ph="b", cat=f"tpm.{side}", name=r.get("cc_name") or "(short)",
                   id=f"{side}:{r['dom']}:{r.get('flow')}", pid=pid(r), tid=0,
                   ts=_ts(r["t"]), args={"flow": r.get("flow"), "cc": r.get("cc"),
                                         "length": r.get("length")})
            elif k in ("tpm.front.complete", "tpm.back.respond"):
                side = "front" if k == "tpm.front.complete" else "back"
                ev(ph="e", cat=f"tpm.{side}", name="", id=f"{side}:{r['dom']}:{r.get('flow')}",
                   pid=pid(r), tid=0, ts=_ts(r["t"]), args={"rc": r.get("rc")})
            elif k == "tpm.exec":
                dur = r.get("duration") or 0.0
                ev(ph="X", cat="tpm.exec", name=r.get("cc_name") or "(short)",
                   pid=pid(r), tid=0, ts=_ts(r["t"] - dur), dur=round(dur * _US, 3),
                   args={"tpm": r.get("tpm"), "rc": r.get("rc"), "flow": r.get("flow")})
            elif k == "tis.go":
                tis_open = r
            elif k == "tis.complete":
                go = tis_open
                if go is not None and go["dom"] == r["dom"]:
                    ev(ph="X", cat="tis", name=f"TIS {r.get('cc_name')}", pid=pid(r),
                       tid=0, ts=_ts(go["t"]), dur=round((r["t"] - go["t"]) * _US, 3),
                       args={"rc": r.get("rc"), "flow": r.get("flow")})
                tis_open = None
            elif k in ("pvgrub.measure", "host.measure", "ima.measure", "attest.verdict",
                       "vtpm.save", "vtpmmgr.request"):
                ev(ph="i", s="t", cat=k.split(".")[0], name=k, pid=pid(r), tid=0,
                   ts=_ts(r["t"]), args={key: v for key, v in r.items()
                                         if key not in ("t", "kind", "dom", "dom_name", "seq")
                                         and isinstance(v, (int, float, str, bool))})
        return one

    def close_unfinished(self):
        """End the async slices whose end the trace does not hold (the run stopped first,
        or the command was dropped), at the trace's last time."""
        opened, where = {}, {}
        for e in self.events:
            if e["ph"] in ("b", "e"):
                key = (e["cat"], e["id"])
                opened[key] = opened.get(key, 0) + (1 if e["ph"] == "b" else -1)
                where.setdefault(key, (e["pid"], e["tid"]))
        end = self.end
        for (cat, id_), n in sorted(opened.items(), key=lambda kv: str(kv[0])):
            pid, tid = where[(cat, id_)]
            for _ in range(n):
                self.ev(ph="e", cat=cat, name="", id=id_, pid=pid, tid=tid, ts=end,
                        args={"unfinished": True})

    # -- flows -----------------------------------------------------------------
    def flows(self):
        """The function that makes one record's flow arrows (and their markers)."""
        ev, pid = self._into("flows"), self.pid
        sent = {}          # (receiver dom, receiver port) -> [send records]
        grants = {}        # (granter, gref) -> grant record
        n = 0

        def marker(r, name, cat):
            """A zero-length slice for a flow end to bind to."""
            ev(ph="X", cat=cat, name=name, pid=pid(r), tid=0, ts=_ts(r["t"]), dur=0)

        def pair(a, b, name, cat, n):
            marker(a, name, cat)
            marker(b, name, cat)
            ev(ph="s", cat=cat, name=name, id=n, pid=pid(a), tid=0, ts=_ts(a["t"]))
            ev(ph="f", bp="e", cat=cat, name=name, id=n, pid=pid(b), tid=0, ts=_ts(b["t"]))

        def one(r):
            nonlocal n
            k = r["kind"]
            if k == "evtchn.send" and "remote_dom" in r:
                sent.setdefault((r["remote_dom"], r["remote_port"]), []).append(r)
            elif k == "evtchn.deliver" and "remote_dom" in r:
                queue = sent.get((r["dom"], r["port"]))
                if queue:
                    s = queue.pop(0)
                    n += 1
                    pair(s, r, f"evtchn port {s['port']}->{r['port']}", "evtchn", n)
            elif k == "gnttab.grant":
                grants[(r["dom"], r["gref"])] = r
            elif k == "gnttab.map":
                g = grants.get((r["domid"], r["gref"]))
                if g is not None:
                    n += 1
                    pair(g, r, f"grant gref {r['gref']}", "gnttab", n)
        return one

    # -- counters --------------------------------------------------------------
    def counters(self):
        """The function that makes one record's counter events."""
        ev, pid = self._into("counters"), self.pid
        waiting = {}       # backend dom -> requests ready but not taken
        ring = {}          # (dom, port, side) -> prod

        def one(r):
            k = r["kind"]
            if k == "tpm.back.ready":
                waiting[r["dom"]] = waiting.get(r["dom"], 0) + 1
            elif k in ("tpm.back.take", "tpm.back.cancel", "tpm.back.reject"):
                waiting[r["dom"]] = max(0, waiting.get(r["dom"], 0) - 1)
            elif k == "ring.push":
                ring[(r["dom"], r["port"], r["side"])] = r["prod"]
                front = [p for (d, port, side), p in ring.items() if side == "front"]
                back = [p for (d, port, side), p in ring.items() if side == "back"]
                ev(ph="C", name="ring in flight", pid=pid(r), tid=0, ts=_ts(r["t"]),
                   args={"requests": (max(front, default=0) - max(back, default=0)) & 0xFFFFFFFF})
                return
            else:
                return
            ev(ph="C", name="tpmback queue", pid=pid(r), tid=0, ts=_ts(r["t"]),
               args={"waiting": waiting[r["dom"]]})
        return one

    # -- names -----------------------------------------------------------------
    def metadata(self):
        """Name each process, and each thread that carries events, plus vcpu0 of every
        domain (where its kernel runs): a thread named but empty is an empty track in
        the viewer, and a domain may have 8,192 vCPUs. The process's name says how many
        a domain has when it is more than one."""
        threads = {}                # pid -> the tids its events are on
        for pid, tid in self.tracks:
            threads.setdefault(pid, {0}).add(tid)
        meta = []
        for pid in sorted(threads.keys() | {dom + 1 for dom in self.names}):
            if pid == _HW_PID:
                pname = "physical TPM"
            elif pid == _WORLD_PID:
                pname = "outside the host (verifier, network)"
            else:
                dom = pid - 1
                n = self.vcpus.get(dom, 1)
                pname = f"{self.names.get(dom, 'dom')} (dom{dom}{f', {n} vCPUs' if n > 1 else ''})"
            meta.append({"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "ts": 0,
                         "args": {"name": pname}})
            meta.append({"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0, "ts": 0,
                         "args": {"sort_index": pid}})
            for tid in sorted(threads.get(pid, {0})):
                meta.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "ts": 0,
                             "args": {"name": f"vcpu{tid}" if pid < _HW_PID else "main"}})
        self.events[:0] = meta


def _built(records):
    builder = _Builder(records)
    builder.build()
    return builder


def build(records) -> dict:
    """The trace-event JSON object for ``records`` (dicts, :mod:`trace_format`:
    a list, or a stream read once -- a file not read yet is checked by that
    reading, and read again, sorted, only if it turns out not to be in order).

    The records are read one at a time; the events are kept (the document is
    one JSON object whose events are sorted by time, and an event is made
    when a later record pairs with an earlier one), so memory grows with the
    events drawn -- TPM commands, notifications, grants -- not with the page
    accesses and XenStore traffic that make up most of a trace."""
    _, builder = first_reading(records, _built)
    events = builder.events
    # each track's events in time order (the viewers do not need it; people reading the JSON do)
    meta = [e for e in events if e["ph"] == "M"]
    rest = sorted((e for e in events if e["ph"] != "M"), key=lambda e: (e["ts"],))
    missing = [f for f in ("evtchn", "gnttab", "ring") if f not in builder.kinds]
    return {"traceEvents": meta + rest, "displayTimeUnit": "ms",
            "metadata": {"source": "simxen", "time": "simulated",
                         "families without records (nothing drawn for them)": missing}}


def dumps(records) -> str:
    return json.dumps(build(records), sort_keys=True, separators=(",", ":")) + "\n"


def write(records, path) -> int:
    """Write the JSON to ``path``; returns the number of events."""
    doc = build(records)
    with open(path, "w", encoding="utf-8") as fp:
        json.dump(doc, fp, sort_keys=True, separators=(",", ":"))
        fp.write("\n")
    return len(doc["traceEvents"])


#: fields each phase must carry (Trace Event Format, "The Trace Event Format"
#: document by the Chromium authors, sections on each event type)
_REQUIRED = {
    "X": ("name", "cat", "ts", "dur", "pid", "tid"),
    "b": ("name", "cat", "id", "ts", "pid", "tid"),
    "e": ("cat", "id", "ts", "pid", "tid"),
    "i": ("name", "ts", "pid", "tid", "s"),
    "s": ("name", "cat", "id", "ts", "pid", "tid"),
    "f": ("name", "cat", "id", "ts", "pid", "tid"),
    "C": ("name", "ts", "pid", "args"),
    "M": ("name", "pid", "args"),
}


def check(doc) -> list:
    """Problems with a trace-event document (an empty list: none).

    Each event has the fields its phase requires; async begin/end and flow
    start/finish pair up by id; timestamps never go backwards on a track
    (a thread, an async id, a counter); complete slices on a thread nest.
    """
    problems = []
    events = doc.get("traceEvents")
    if not isinstance(events, list):
        return ["no traceEvents list"]
    last = {}
    open_async, flows = {}, {}
    stacks = {}
    for i, e in enumerate(events):
        ph = e.get("ph")
        need = _REQUIRED.get(ph)
        if need is None:
            problems.append(f"event {i}: unknown phase {ph!r}")
            continue
        missing = [f for f in need if f not in e]
        if missing:
            problems.append(f"event {i} ({ph}): missing {', '.join(missing)}")
            continue
        if ph == "M":
            continue
        ts = e["ts"]
        if not isinstance(ts, (int, float)) or ts < 0:
            problems.append(f"event {i}: bad ts {ts!r}")
            continue
        track = {"b": ("async", e.get("cat"), e.get("id")), "e": ("async", e.get("cat"), e.get("id")),
                 "C": ("counter", e["pid"], e["name"])}.get(ph, ("thread", e["pid"], e["tid"]))
        if ts < last.get(track, 0):
            problems.append(f"event {i}: ts {ts} goes back on track {track}")
        last[track] = ts
        key = (e.get("cat"), e.get("id"))
        if ph == "b":
            open_async[key] = open_async.get(key, 0) + 1
        elif ph == "e":
            if not open_async.get(key):
                problems.append(f"event {i}: async end {key} without a begin")
            else:
                open_async[key] -= 1
        elif ph == "s":
            flows[key] = flows.get(key, 0) + 1
        elif ph == "f":
            if not flows.get(key):
                problems.append(f"event {i}: flow finish {key} without a start")
            else:
                flows[key] -= 1
        elif ph == "X":
            if e["dur"] < 0:
                problems.append(f"event {i}: negative dur")
            stack = stacks.setdefault((e["pid"], e["tid"]), [])
            while stack and stack[-1] <= ts:
                stack.pop()
            end = ts + e["dur"]
            if stack and end > stack[-1] + 1e-3:
                problems.append(f"event {i}: slice {e['name']!r} [{ts}, {end}] overlaps its "
                                f"enclosing slice ending at {stack[-1]}")
            stack.append(end)
    problems += [f"async begin {k} never ends" for k, n in open_async.items() if n]
    problems += [f"flow start {k} never finishes" for k, n in flows.items() if n]
    return problems

"""Per-hop latency of one TPM command, read back from the trace.

Every record a guest's TPM command causes carries the same ``flow`` id (see
``docs/conventions.rst``): the guest's ``tpm.front.submit``, the vTPM's
``tpm.back.take``, its ``tpm.exec``, the save (``vtpm.save`` with its own
``tpm.front.submit`` towards the manager), the manager's ``tpm.back.take``
/ ``vtpmmgr.request`` / ``tpm.back.respond``, any ``tis.go`` /
``tis.complete`` of the physical TPM, then the vTPM's ``tpm.back.respond``
and the guest's ``tpm.front.complete``. :func:`breakdown` turns them into
the hops a reader wants (seconds of simulated time)::

    to_vtpm       guest submit -> the vTPM takes it (notification, wake-up, queueing)
    vtpm_exec     the TPM engine's work in the vTPM
    persistence   the state save: seal, disk write, SAVEHASHKEY round trip
      manager       of which: the manager serving (disk sync, physical TPM)
      ptpm          of which: the physical TPM (GO -> complete), if touched
    to_guest      the vTPM's FINISH -> the guest sees it (5 ms poll grid!)
    other         what remains (page copies, header checks in the vTPM)
    total         the guest's whole round trip

:func:`op_counts` gives the event-channel, grant, XenStore, page, MMIO and
disk operation counts of a whole trace.
"""

from __future__ import annotations

from collections import defaultdict

__all__ = ["HOPS", "breakdown", "breakdowns", "op_counts", "by_flow"]

#: The hop names of :func:`breakdown`, in report order.
HOPS = ("to_vtpm", "vtpm_exec", "persistence", "manager", "ptpm", "to_guest", "other", "total")

#: Trace kinds counted by :func:`op_counts`, grouped for reports.
COUNTED = (
    ("evtchn.send", "event-channel notifications sent"),
    ("evtchn.deliver", "event-channel notifications delivered"),
    ("gnttab.grant", "grants made"),
    ("gnttab.map", "grant maps"),
    ("gnttab.unmap", "grant unmaps"),
    ("xs", "XenStore operations (incl. watch events)"),
    ("xs.watch_fire", "XenStore watch events"),
    ("page.read", "declared shared-page reads"),
    ("page.write", "declared shared-page writes"),
    ("mmio.read", "TIS MMIO reads"),
    ("mmio.write", "TIS MMIO writes"),
    ("disk.write", "disk writes"),
    ("disk.flush", "disk flushes"),
)


def by_flow(records) -> dict:
    """``{flow: [record, ...]}`` (time order kept) of the records that carry a flow."""
    out = defaultdict(list)
    for r in records:
        flow = r.fields.get("flow")
        if flow is not None:
            out[flow].append(r)
    return out


def breakdown(records) -> dict:
    """The hops of one command from its records (all with one flow, time-sorted).

    Returns ``{}`` if the command did not complete (no guest ``tpm.front.complete``).
    """
    submits = [r for r in records if r.kind == "tpm.front.submit"]
    completes = [r for r in records if r.kind == "tpm.front.complete"]
    if not submits or not completes:
        return {}
    first, last = submits[0], completes[-1]
    guest = first.dom
    takes = [r for r in records if r.kind == "tpm.back.take" and r.dom != guest]
    if not takes:
        return {}
    vtpm = takes[0].dom
    responds = [r for r in records if r.kind == "tpm.back.respond" and r.dom == vtpm]
    out = dict.fromkeys(HOPS, 0.0)
    out["total"] = last.t - first.t
    out["to_vtpm"] = takes[0].t - first.t
    out["to_guest"] = last.t - responds[-1].t if responds else 0.0
    out["vtpm_exec"] = sum((r.fields.get("duration", 0.0) for r in records
                            if r.kind == "tpm.exec" and r.dom == vtpm), 0.0)
    out["persistence"] = sum((r.fields.get("duration", 0.0) for r in records if r.kind == "vtpm.save"), 0.0)
    out["manager"] = sum((r.fields.get("duration", 0.0) for r in records if r.kind == "vtpmmgr.request"),
                         0.0)
    go = None
    for r in records:
        if r.kind == "tis.go":
            go = r.t
        elif r.kind == "tis.complete" and go is not None:
            out["ptpm"] += r.t - go
            go = None
    direct_forward = out["persistence"] == 0.0 and out["manager"] > 0.0
    accounted = out["to_vtpm"] + out["vtpm_exec"] + out["to_guest"] + (
        out["manager"] if direct_forward else out["persistence"])
    out["other"] = max(0.0, out["total"] - accounted)
    out["guest"] = guest
    out["vtpm"] = vtpm
    out["cc"] = first.fields.get("cc")
    return out


def breakdowns(records, prefix: str = None) -> dict:
    """``{flow: breakdown}`` for every completed command (flows starting with *prefix*)."""
    out = {}
    for flow, rows in by_flow(records).items():
        if prefix is not None and not str(flow).startswith(prefix):
            continue
        b = breakdown(rows)
        if b:
            out[flow] = b
    return out


def op_counts(trace) -> dict:
    """``{kind: count}`` for the kinds in :data:`COUNTED` (``"xs"`` = every ``xs.*``)."""
    return {kind: trace.count(kind) for kind, _ in COUNTED}

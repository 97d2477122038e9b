"""How much of a simulated latency rests on figures nobody has measured.

Every op of a timing profile says how sure its numbers are (``V`` read in a
source, ``P`` derived, ``U`` assumed). A latency is an **estimate** when more
than a fifth of it (:data:`ESTIMATE_SHARE`) comes from ``U`` figures; a report
says so next to it.

Which figures a command's time comes from is read from its hops
(:mod:`simxen.analysis.hops`), each charged to the ops that dominate it:

==================  ==========================================================
hop                 ops its time comes from
==================  ==========================================================
``front->back``     ``evtchn.notify`` + ``evtchn.upcall`` (the SUBMIT's
                    notification and the vTPM waking)
``vtpm``            the vTPM engine, ``tpm.vtpm.default`` (its mean); the rest
                    of the hop is the state save -- ``disk.request``
``manager``         ``evtchn.notify`` (two more ring crossings) and, with the
                    sealed store, ``disk.flush``
``ptpm``            the physical TPM, ``tpm.ptpm.default`` of the chip
``back->front``     the guest's wait: ``tpmfront.usleep_range`` (linux-6), the
                    jiffy arithmetic of linux-4.4 (``P``), or the event
                    channel (``evtchn.upcall``) for an interrupt-driven guest
==================  ==========================================================

The attribution is coarse on purpose (a hop's time is given the certainty of
the op that dominates it), and conservative where it has to guess: the
physical-TPM hop counts as its chip's *default* op, which is assumed.
"""

from __future__ import annotations

__all__ = ["ESTIMATE_SHARE", "hop_certainty", "unverified_share", "is_estimate"]

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

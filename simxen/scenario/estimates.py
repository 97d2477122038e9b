"""Which latencies of a report are estimates: the glue between a run and
:mod:`simxen.analysis.certainty`.

A workload that reports a latency asks :func:`attribution` for the run's
commands split by how sure their figures are, takes the share of its latency
that rests on ``U`` (assumed) figures -- :meth:`~simxen.analysis.certainty.Attribution.share`
for a set of commands, :meth:`~simxen.analysis.certainty.Attribution.window`
for a span it timed around them -- and publishes it as a result
(``unverified_share...``, unit ``fraction``, so ``--json`` and ``simxen
metrics`` carry it). Its report then prints :func:`cell` next to the figure
and :func:`explain` once: more than a fifth from ``U`` figures is an
**estimate** (docs/profiles.rst).
"""

from __future__ import annotations

from simxen.analysis.certainty import ESTIMATE_SHARE, Attribution, is_estimate, label

__all__ = ["attribution", "eras", "cell", "tag", "explain", "unknown", "DOC"]

#: the ``doc`` of every published share (after ``<what>: ``)
DOC = ("share of it that rests on profile figures marked U (assumed); above "
       f"{ESTIMATE_SHARE:g} the report calls it an estimate")


def eras(host) -> dict:
    """``{domid: kernel era}`` of the host's Linux guests that name their own era."""
    out = {}
    for k in host.kernels("guest"):
        era = getattr(getattr(k, "front", None), "kernel", None)
        if era:
            out[k.domid] = era
    return out


def _waits(hv, host):
    """``(waits, default_wait)`` for :class:`~simxen.analysis.certainty.Attribution`."""
    from simxen.drivers.kernel_eras import polls, profile_era
    profile = hv.profile
    waits = {dom: (era, polls(profile, era)) for dom, era in eras(host).items()}
    return waits, (profile_era(profile), polls(profile))


def attribution(hv, host, *, records=None, requests=None):
    """The run's commands split by certainty (:class:`~simxen.analysis.certainty.Attribution`),
    or ``None`` when the trace level kept no command records.

    ``records`` / ``requests``: what the workload has read from the trace already. With
    ``requests`` alone (the workload matched them from the trace), only the executions
    are read from the trace (:meth:`~simxen.analysis.certainty.Attribution.of_trace`)."""
    from simxen.domains.vtpm import vtpm_op
    waits, default = _waits(hv, host)
    kw = {"waits": waits, "default_wait": default, "vtpm_op": vtpm_op}
    if records is None:
        return Attribution.of_trace(hv.trace, hv.profile, requests=requests, **kw)
    if not hv.trace.keeps("tpm.front.complete"):
        return None
    return Attribution(records, hv.profile, requests=requests, **kw)


def cell(share) -> str:
    """``"3% sourced"`` / ``"41% estimate"`` for a table cell; ``""`` if unknown."""
    return "" if share is None else f"{share:.0%} {label(share)}"


def tag(share) -> str:
    """``" (sourced: 3% from unverified figures)"`` after a figure in a row; ``""`` if unknown."""
    return "" if share is None else f" ({label(share)}: {share:.0%} from unverified figures)"


def unknown(rep) -> None:
    """Say that the run's latencies carry no label: a workload whose :func:`attribution`
    was ``None`` (the trace level kept no TPM command records) calls it, so that a
    latency printed without "sourced" or "estimate" is not read as one."""
    rep.say("Whether the latencies below are estimates is not known: the share of each that "
            "rests on profile figures marked U is read from the trace's TPM command records, "
            "which this run's trace level did not keep (run with --trace-level commands or "
            "full).")


def explain(rep, shares) -> None:
    """Add the paragraph that says what 'estimate' means, if one of *shares* is."""
    if any(s is not None and is_estimate(s) for s in shares):
        rep.say(f"A latency labelled 'estimate' has more than {ESTIMATE_SHARE:.0%} of its time "
                "from profile figures marked U (assumed, no published measurement): read it as "
                "an estimate, its ratios to other configurations as the firmer result "
                "(`simxen profile show` lists every figure with its source).")

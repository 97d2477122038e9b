"""A run told as a story: one line per thing a student would want to see.

::

    2617.968 ms  guest1 tpmfront: wrote TPM2_PCR_Extend (PCR 5, sha256) into gref 8 at offset 8; notified port 1
    2617.969 ms  vtpm-guest1 tpmback: took TPM2_PCR_Extend (87 B) from guest1
    2618.063 ms  vtpm-guest1 vTPM: executed TPM2_PCR_Extend in 0.087 ms -> TPM_RC_SUCCESS

Each line is made from one trace record (:func:`lines`). The TPM-level story
(commands crossing the domains, measurements, the manager's work, verdicts)
is told by default; ``verbose`` adds the plumbing underneath (every
notification, grant, page write and XenStore write). Parameters of the
commands a student meets first (PCR_Extend, PCR_Read, Quote, GetRandom,
PCR_Event) are read from the command bytes the TPM executed (``tpm.exec``
``command``), with the TPM library's own parsers.
"""

from __future__ import annotations

from simxen.analysis import hops
from simxen.analysis.trace_format import first_reading, note_name
from simxen.tpm.commands.integrity import parse_digest_values
from simxen.tpm import header
from simxen.tpm.constants import ALG_NAMES, TPM_CC, TPM_ST, rc_name
from simxen.tpm.errors import TpmError
from simxen.tpm.marshal import Reader
from simxen.tpm.pcr_selection import parse_pcr_selection

__all__ = ["describe_command", "lines", "iter_lines", "text", "write"]

def _alg(alg) -> str:
    return ALG_NAMES.get(alg, f"alg {alg:#x}").removeprefix("TPM_ALG_").lower()


def _selection(sel) -> str:
    parts = []
    for alg, bitmap in sel:
        pcrs = [i for i in range(len(bitmap) * 8) if bitmap[i // 8] >> (i % 8) & 1]
        parts.append(f"{_alg(alg)}:{','.join(map(str, pcrs)) or '-'}")
    return " ".join(parts)


def _params(command, handles):
    """A Reader at the parameters of ``command`` (past ``handles`` handles and any auth area)."""
    r = Reader(command, header.HEADER_SIZE + 4 * handles)
    if header.tag(command) == TPM_ST.SESSIONS:
        size = r.u32()
        r.bytes(size)
    return r


def describe_command(command: bytes) -> str:
    """A few words on a TPM 2.0 command's parameters, or ``""`` (unknown, or not parsable)."""
    cc = header.code(command)
    if cc is None:
        return ""
    try:
        if cc == TPM_CC.PCR_Extend:
            pcr = int.from_bytes(command[10:14], "big")
            banks = parse_digest_values(_params(command, 1))
            return f"PCR {pcr}, {', '.join(_alg(a) for a, _ in banks)}"
        if cc == TPM_CC.PCR_Event:
            return f"PCR {int.from_bytes(command[10:14], 'big')}"
        if cc == TPM_CC.PCR_Read:
            return _selection(parse_pcr_selection(_params(command, 0)))
        if cc == TPM_CC.GetRandom:
            return f"{_params(command, 0).u16()} bytes"
        if cc == TPM_CC.Quote:
            r = _params(command, 1)
            nonce = r.tpm2b()
            scheme = r.u16()
            if scheme != 0x10:              # TPM_ALG_NULL has no details
                r.u16()
            return f"PCRs {_selection(parse_pcr_selection(r))}, {len(nonce)}-byte nonce"
    except TpmError:
        return ""
    return ""


def _ms(t) -> str:
    return f"{t * 1e3:.3f} ms"


def _first_reading(records):
    """``(names, executed)``: the domains' names, as
    :func:`~simxen.analysis.trace_format.domain_names` gives them, and
    ``{(flow, executing dom): describe_command() of its bytes}``."""
    names = {}
    executed = {}
    for r in records:
        note_name(names, r)
        if r["kind"] == "tpm.exec" and r.get("command") and r.get("flow") is not None:
            key = (r["flow"], r["dom"])
            if key not in executed:
                executed[key] = describe_command(bytes.fromhex(r["command"]))
    return names, executed


def lines(records, **filters) -> list:
    """The narrated lines of ``records`` (dicts from :mod:`trace_format`), in time order.

    ``start``/``end`` (seconds) and ``domains`` (names) choose which lines are
    told; every record is still read, so a line in the window knows the grant
    and the command it refers to."""
    return list(iter_lines(records, **filters))


def iter_lines(records, *, verbose=False, start=None, end=None, domains=None):
    """:func:`lines` one at a time. ``records`` may be a stream
    (:class:`~simxen.analysis.trace_format.TraceFile`,
    :class:`~simxen.analysis.trace_format.TraceRecords`): it is read twice, and
    only the lines are made as it goes -- nothing but the domains' names and a
    few words on each TPM command (the parameters the line of its submission
    tells, found in its ``tpm.exec`` record, which comes later) is kept from
    the first reading to the second."""
    records, (names, executed) = first_reading(records, _first_reading)

    def who(dom):
        return "host" if dom is None else names.get(dom, f"dom{dom}")

    fronts = {}              # (dom, devid) -> (gref, port, backend)
    offsets = {}             # (flow, dom) -> offset of the command in the page
    asked = {}               # (flow, front dom) -> command name
    out = []

    lo = float("-inf") if start is None else start
    hi = float("inf") if end is None else end
    keep = None if not domains else set(domains)

    def say(r, text):
        if lo <= r["t"] <= hi and (keep is None or r.get("dom_name", "host") in keep):
            out.append(f"{_ms(r['t']):>12}  {text}")

    def rc_text(rc, command):
        if rc is None:
            return "(short response)"
        if command is not None and not command.startswith("TPM2_"):
            return hops.MANAGER_RCS.get(rc, f"return code {rc:#x}")
        return rc_name(rc)

    for r in records:
        k, dom = r["kind"], r["dom"]
        me = who(dom)
        if k == "domain.create":
            if r["domid"]:
                say(r, f"{me} toolstack: created domain {r['name']} (dom{r['domid']})")
        elif k == "tpm.front.connect":
            fronts[(dom, r["devid"])] = (r["gref"], r["port"], r["backend"])
            say(r, f"{me} tpmfront: connected to {who(r['backend'])}: shared page gref "
                   f"{r['gref']}, event channel port {r['port']}")
        elif k == "tpm.back.connect":
            say(r, f"{me} tpmback: mapped {who(r['domid'])}'s gref {r['gref']}, bound port {r['port']}")
        elif k == "page.write" and r.get("what") == "tpmif.command":
            offsets[(r.get("flow"), dom)] = r["offset"]
        elif k == "tpm.front.submit":
            name = r.get("cc_name") or "a short command"
            asked[(r.get("flow"), dom)] = r.get("cc_name")
            gref, port, backend = fronts.get((dom, r["devid"]), (None, None, r["backend"]))
            detail = executed.get((r.get("flow"), backend), "")
            where = f" into gref {gref}" if gref is not None else ""
            offset = offsets.get((r.get("flow"), dom))
            at = f" at offset {offset}" if offset is not None else ""
            note = f"; notified port {port}" if port is not None else ""
            loc = f" with locality byte {r['locality']}" if r.get("locality") else ""
            say(r, f"{me} tpmfront: wrote {name}{f' ({detail})' if detail else ''}{loc}{where}{at}"
                   f"{note}")
        elif k == "tpm.back.take":
            say(r, f"{me} tpmback: took {r.get('cc_name') or 'a short command'} ({r['length']} B) "
                   f"from {who(r['domid'])}, {_ms(r['waited'])} after it was ready")
        elif k == "tpm.exec":
            where = f"{me} vTPM" if dom is not None else f"physical TPM ({r.get('tpm')})"
            say(r, f"{where}: executed {r.get('cc_name')} in {_ms(r.get('duration') or 0)} -> "
                   f"{rc_text(r.get('rc'), r.get('cc_name'))}")
        elif k == "tpm.back.respond":
            cmd = asked.get((r.get("flow"), r["domid"]))
            say(r, f"{me} tpmback: wrote the response ({rc_text(r.get('rc'), cmd)}, {r['length']} B) "
                   f"for {who(r['domid'])} and notified it")
        elif k == "tpm.front.complete":
            cmd = asked.get((r.get("flow"), dom)) or "its command"
            if r.get("cancelled"):
                say(r, f"{me} tpmfront: the backend cancelled {cmd}")
            else:
                say(r, f"{me} tpmfront: read the response to {cmd} ({rc_text(r.get('rc'), cmd)}, "
                       f"{r['length']} B), {_ms(r['latency'])} after it began")
        elif k == "tis.go":
            say(r, f"{me} TIS driver: wrote {r['cc_name']} into the physical TPM's FIFO at "
                   f"locality {r['locality']} and set tpmGo")
        elif k == "tis.complete":
            say(r, f"{me} TIS driver: read the physical TPM's response ({rc_name(r['rc'])}, "
                   f"{r['length']} B)")
        elif k == "vtpmmgr.request":
            say(r, f"{me} manager: served {r.get('ordinal_name')} for {who(r['domid'])} in "
                   f"{_ms(r['duration'])} -> {rc_text(r.get('rc'), r.get('ordinal_name'))}")
        elif k == "vtpm.locality":
            how = ("ignored, as by Xen's vTPM: the command runs at locality 0" if not r["used"]
                   else f"the command runs at locality {r['used']} (guest_locality = honour)")
            say(r, f"{me} vTPM: the guest stored locality {r['stored']} with its command; {how}")
        elif k == "vtpm.save":
            say(r, f"{me} vTPM: sealed its state ({r['bytes']} B) and wrote slot {r['slot']}")
        elif k == "vtpm.restore":
            say(r, f"{me} vTPM: state at boot: {r['status']}")
        elif k == "host.measure":
            say(r, f"host firmware: measured {r['component']} into the physical TPM's PCR "
                   f"{r['pcr']} (sha256 {r['digest'][:16]}...)")
        elif k == "pvgrub.measure":
            say(r, f"{me} pv-grub: measured the {r['item']} ({r['size']} B) into PCR {r['pcr']} "
                   f"(sha256 {r['sha256'][:16]}...)")
        elif k == "pvgrub.kexec":
            say(r, f"{me} pv-grub: handed over to the kernel "
                   f"({'measured' if r['measured'] else 'NOT measured'} boot)")
        elif k in ("pvgrub.abort", "pvgrub.no_vtpm", "guest.tpm_probe_failed", "vtpm.no_manager"):
            say(r, f"{me} {k}: {r.get('error', '')}")
        elif k == "ima.measure":
            say(r, f"{me} IMA: measured {r['path']} into PCR 10 (sha256 {r['digest'][:16]}...)")
        elif k == "dom0.tpm_probe":
            say(r, f"{me}: tried to map the physical TPM's TIS window: refused ({r['error']})")
        elif k in ("tpm.back.reject", "tpm.back.violation", "tpm.back.refuse"):
            say(r, f"{me} tpmback: {k.split('.')[-1]} {who(r.get('domid'))}: "
                   f"{r.get('reason') or r.get('what')}")
        elif k == "net.send":
            say(r, f"network ({r['link']}): {r['what']} ({r['size']} B), {_ms(r['delay'])} one way")
        elif k == "attest.verdict":
            failed = f" (failed: {r['failed']})" if r.get("failed") else ""
            say(r, f"verifier: round {r['round']} for {r['agent']}: {r['verdict'].upper()}{failed}")
        elif verbose:
            if k == "evtchn.send" and "remote_dom" in r:
                say(r, f"{me}: notified {who(r['remote_dom'])} (port {r['port']} -> {r['remote_port']})")
            elif k == "evtchn.deliver" and "remote_dom" in r:
                say(r, f"{me}: notification from {who(r['remote_dom'])} arrived on port {r['port']}"
                       f"{' (coalesced)' if r.get('coalesced') else ''}")
            elif k == "gnttab.grant":
                say(r, f"{me}: granted {who(r['domid'])} frame {r['frame']} as gref {r['gref']}")
            elif k == "gnttab.map":
                say(r, f"{me}: mapped gref {r['gref']} of {who(r['domid'])}")
            elif k == "page.write":
                say(r, f"{me}: wrote {r['what']} ({r['length']} B) at offset {r['offset']}")
            elif k == "xs.write":
                say(r, f"{me}: XenStore {r['path']} = {r['value']!r}")
        if out:
            yield from out
            out.clear()


def text(records, **filters) -> str:
    """:func:`lines` as one string."""
    return "".join(line + "\n" for line in iter_lines(records, **filters))


def write(records, file, **filters) -> int:
    """Write :func:`lines` to ``file`` (open for text) as they are made; returns how many."""
    n = 0
    for line in iter_lines(records, **filters):
        file.write(line + "\n")
        n += 1
    return n

"""The vTPM stub domain: one guest's TPM, kept alive across restarts by the manager.

Booted by ``xl create`` from a config such as::

    name="vtpm-guest1"
    kernel="/usr/lib/xen/boot/vtpm-stubdom.gz"
    memory=8
    disk=["file:/var/vtpm-guest1.img,hda,w"]
    vtpm=["backend=vtpmmgr,uuid=ac0a5b9e-cbe2-4c07-b43b-1d69e46fb839"]

it does what Xen's ``stubdom/vtpm/vtpm.c`` does (its ``main`` and request loop):

1. sleep ``stubdom.startup_sleep`` (2 s: ``main()`` sleeps before anything);
2. start its **tpmback** (:class:`~simxen.drivers.tpmback.TpmBack`) for the
   guest, then connect its own **tpmfront** (mini-os flavour) to the manager;
3. seed its random generator (:class:`~simxen.domains.drbg.HmacDrbg`) from
   the physical TPM: a TPM 1.2 ``TPM_GetRandom`` *passthrough* through the
   manager;
4. **restore**: ``VTPM_ORD_LOADHASHKEY`` fetches the ``(hash, key)`` of its
   last save; the disk slot whose hash matches is opened with the key
   (:mod:`simxen.protocols.vtpm_disk`). No record at the manager means a
   first start (a fresh TPM). A record that matches neither slot is a
   **rollback** (an old disk copied back) or damage: the old state is not
   loaded, and the vTPM starts fresh as Xen's does (``restore_failure =
   "fresh"``) or refuses to serve (``"halt"``). When the manager itself
   fails (e.g. it could not unseal after a changed host boot) the vTPM does
   the same but **saves nothing this boot**, so its disk still opens once the
   manager can unseal again;
5. ``TPM2_Startup(CLEAR)`` (the emulator's own ``TPM_Init`` + startup);
6. serve requests one at a time, lowest ``(domid, handle)`` first.

**Strong persistence.** After every successful command (``save_on =
"success"``, the default: what Xen's vTPM does -- ``stubdom/vtpm/vtpm.c``
``main_loop`` forces ``TPM_CONF_STRONG_PERSISTENCE``, and with it the TPM
1.2 emulator's ``tpm_execute_command`` calls ``tpm_store_permanent_data()``
whenever a command returns ``TPM_SUCCESS``) -- or only after one that
changed the TPM's persistent state (``"changed"``, simxen's cheaper
alternative) -- the whole state is saved before the guest gets its response: serialise
(``engine.save_state()``), seal with a fresh 256-bit key and nonce, write to
the *other* slot, then send ``hash || key`` with ``VTPM_ORD_SAVEHASHKEY``
and wait for the manager (a second ring round trip that dominates the
latency of such a command). ``strong_persistence = False`` turns saving off
(state lives only in memory and is lost at a restart).

**Deep quote.** Xen's vTPM adds a vendor command, ``TPM_ORD_DeepQuote``
(vendor bit | TPM_ORD_Quote), that asks the manager for a physical-TPM quote
(``VTPM_ORD_GET_QUOTE``). simxen's TPM 2.0 vTPM does the same with
:data:`TPM2_CC_DeepQuote` = ``0x20000158`` (TPMA_CC vendor bit 29 |
``TPM2_CC_Quote``), parameters ``TPM2B data (<= 64 bytes) |
TPML_PCR_SELECTION (host PCRs) | u32 flags``, no sessions. The vTPM sends
``GET_QUOTE`` with ``data`` as the nonce, unchanged -- the caller binds its
vTPM quote into it, e.g. ``SHA-256(nonce || TPMS_ATTEST)`` -- and answers
``TPM_RC_SUCCESS`` with one ``TPM2B``: the manager's whole reply (which
carries the manager's own return code).

Other requests: a zero-length request gets an empty response (Xen's
``stubdom/vtpm/vtpm.c`` ``main_loop`` runs only a request with a length);
a TPM 1.2 ``VTPM_TAG_REQ2`` (0x01C2; the tags are
``stubdom/vtpmmgr/vtpm_manager.h``'s) request is forwarded to the manager
verbatim; ``VTPM_TAG_REQ`` (0x01C1) is re-tagged ``0x00C1`` and forwarded
as a physical-TPM passthrough.

**Locality.** tpmif's shared page has a ``locality`` byte that the
frontend stores. Linux's xen-tpmfront never stores it (its page starts
zeroed), mini-os's tpmback copies it into the request, and Xen's vTPM
ignores it: ``stubdom/vtpm/vtpm.c`` ``main_loop`` calls
``tpm_handle_command`` with the command bytes alone, so every command runs
at the emulator's locality 0 whatever the guest stored. simxen does the
same (``guest_locality = "ignore"``). ``guest_locality = "honour"`` runs
each command at the stored locality instead: a what-if that shows why a
vTPM must not trust it -- a guest that stores 3 or 4 may then reset and
extend the dynamic-launch PCRs 17-22, which only a CPU's late launch should
reach.

Options (``toolstack.options[name]``): ``strong_persistence`` (True),
``save_on`` ("success" | "changed"), ``restore_failure`` ("fresh" | "halt"),
``guest_locality`` ("ignore" | "honour"),
``policy`` of its tpmback ("priority"), ``multi_slot`` (False: also serve simxen's
multi-slot what-if transport, :mod:`simxen.protocols.tpmif_ring`).

Trace records: ``tpm.exec`` (``dom``, ``flow``, ``cc`` and ``cc_name``, ``rc``,
``duration``, ``changed``, ``command`` and ``response`` bytes), ``vtpm.save`` (``slot``, ``bytes``,
``duration``, ``rc``), ``vtpm.restore`` (``status``: ``new``, ``restored``,
``rollback``, ``corrupt``, ``manager-error``; ``slot``), ``vtpm.locality``
(``stored``, ``used``: a command that came with a nonzero locality byte). A config without a
``vtpm=`` line (no manager) or without a disk gives a vTPM that keeps
nothing (``restore_status`` ``"no-manager"`` / ``"no-disk"``, traced
``vtpm.no_manager`` / ``vtpm.no_disk``) instead of a crash.
"""

from __future__ import annotations

import errno
import struct

from simxen.domains.drbg import HmacDrbg
from simxen.domains.kernel import Kernel
from simxen.drivers.tpmback import TpmBack
from simxen.drivers.tpmfront import TpmFront, TpmFrontError
from simxen.protocols import vtpmmgr as mgr
from simxen.protocols.vtpmmgr import TPM2_CC_DeepQuote
from simxen.protocols.vtpm_disk import (VTPM_KEY_SIZE, VTPM_NONCE_SIZE, VtpmDiskError, open_slot,
                                        other_slot, pack_hash_key, pick_slot, read_slot, seal_slot,
                                        slot_hash, slot_offset, unpack_hash_key)
from simxen.tpm import TpmEngine, client, header
from simxen.tpm.constants import TPM_CC, TPM_RC, TPM_ST, command_name, rc_format1
from simxen.tpm.engine import error_response
from simxen.tpm.errors import StateError

__all__ = ["Vtpm", "SAVE_ON", "DEFAULT_SAVE_ON", "RESTORE_FAILURE", "GUEST_LOCALITY",
           "DEFAULT_GUEST_LOCALITY", "vtpm_op", "KEY_COMMANDS", "TPM2_CC_DeepQuote",
           "deep_quote_command", "parse_deep_quote"]



#: The deep quote's layout lives with the manager's protocol (its command is
#: GET_QUOTE's body behind a TPM 2.0 header); re-exported here, where the vTPM serves it.
deep_quote_command = mgr.deep_quote_command


def parse_deep_quote(response: bytes) -> bytes:
    """The manager's GET_QUOTE reply carried by a TPM2_CC_DeepQuote response."""
    return client.parse_response(response).params.tpm2b()

#: When a vTPM saves its state: after every successful command (Xen) or only a changing one.
SAVE_ON = ("success", "changed")
#: Xen's choice (see the module doc).
DEFAULT_SAVE_ON = "success"
RESTORE_FAILURE = ("fresh", "halt")
#: What the vTPM makes of the locality byte the guest's frontend stores in the
#: shared page: nothing (``"ignore"``, Xen's: every command runs at locality 0)
#: or the locality the command runs at (``"honour"``, a what-if).
GUEST_LOCALITY = ("ignore", "honour")
DEFAULT_GUEST_LOCALITY = "ignore"

#: Commands whose cost is a public-key operation (profile op ``tpm.vtpm.rsa``)
#: unless the profile names the command itself (``tpm.vtpm.<Name>``).
KEY_COMMANDS = frozenset({TPM_CC.CreatePrimary, TPM_CC.Create, TPM_CC.Quote, TPM_CC.Sign,
                          TPM_CC.RSA_Decrypt, TPM_CC.Certify, TPM_CC.CertifyCreation,
                          TPM_CC.ActivateCredential, TPM_CC.Import, TPM_CC.ECDH_ZGen})


def vtpm_op(profile, cc, prefix="tpm.vtpm") -> str:
    """The profile op that times command *cc* in a software TPM."""
    name = command_name(cc)[5:] if cc is not None else "none"
    specific = f"{prefix}.{name}"
    if profile.has(specific):
        return specific
    return f"{prefix}.rsa" if cc in KEY_COMMANDS else f"{prefix}.default"




class Vtpm(Kernel):
    """The vTPM stub domain's kernel (see the module doc)."""

    role = "vtpm"

    def __init__(self, toolstack, dom, config, disks=()):
        super().__init__(toolstack, dom, config, disks)
        self.engine = None
        self.back = None
        self.front = None
        self.drbg = None
        self.slot = None                 #: slot of the last good save (0 = A, 1 = B)
        self.restore_status = None
        self.saves = 0
        self.save_failures = 0
        self.save_blocked = False        #: no saves this boot (the manager could not give our key)
        self.commands = 0
        self._boot_flows = 0
        self._ops = {}                   # command code -> (profile op, trace name), cached

    # -- options -------------------------------------------------------------
    @property
    def strong_persistence(self) -> bool:
        return bool(self.options.get("strong_persistence", True))

    @property
    def save_on(self) -> str:
        return self.options.get("save_on", DEFAULT_SAVE_ON)

    @property
    def guest_locality(self) -> str:
        return self.options.get("guest_locality", DEFAULT_GUEST_LOCALITY)

    def _flow(self, what):
        self._boot_flows += 1
        return f"{self.name}/{what}/{self._boot_flows}"

    # -- life --------------------------------------------------------------
    def main(self):
        hv, dom = self.hv, self.dom
        dom.charge("stubdom.startup_sleep")
        yield dom.elapse()
        self.back = TpmBack(hv, dom, policy=self.options.get("policy", "priority"), name="vtpm",
                            multi_slot=self.options.get("multi_slot", False))
        self.back.start()
        self.front = TpmFront(hv, dom, 0, flavour="minios")
        try:
            if not self.config.vtpm:
                raise TpmFrontError(-errno.ENODEV, "the config has no vtpm= line naming the manager")
            yield from self.front.connect()
        except TpmFrontError as exc:
            # No manager: a TPM that cannot keep anything (Xen's vTPM would not start).
            self.front = None
            hv.trace.emit("vtpm.no_manager", dom.now, dom.domid, error=str(exc))
        if self.front is not None and self.disk() is None:
            hv.trace.emit("vtpm.no_disk", dom.now, dom.domid)
        entropy = yield from self._manager_get_random(32, self._flow("seed"))
        self.drbg = HmacDrbg(entropy, personalization=self.name.encode())
        if self.front is None or self.disk() is None:
            self.restore_status = "no-manager" if self.front is None else "no-disk"
            self.engine = self._new_engine()
        else:
            yield from self._restore(self._flow("restore"))
        if self.engine is not None:
            flow = self._flow("startup")
            yield from self._run_command(client.startup_command(), 0, flow)
        self.mark_ready(self.restore_status)
        while True:
            # next_request() lets the time this domain has worked pass before
            # choosing, so the ready flags its event handlers set meanwhile are
            # seen (the policy chooses among what is ready *now*, as
            # tpmback_req_any does); with nothing ready it just waits.
            request = yield from self.back.next_request()
            response = yield from self.handle(request)
            self.back.respond(request, response)

    def _manager_get_random(self, n, flow):
        """TPM 1.2 ``TPM_GetRandom`` passthrough to the physical TPM through the manager."""
        cmd = header.pack(mgr.TPM_TAG_RQU_COMMAND, mgr.TPM_ORD_GetRandom, struct.pack(">I", n))
        rsp = (yield from self.front.transmit(cmd, flow=flow)) if self.front is not None else b""
        if len(rsp) >= 14 and mgr.response_code(rsp) == 0:
            (count,) = struct.unpack_from(">I", rsp, 10)
            return rsp[14:14 + count]
        # The manager refused: fall back to the domain's own stream, and say so.
        self.hv.trace.emit("vtpm.seed_fallback", self.dom.now, self.domid, flow=flow,
                           rc=header.code(rsp))
        return self.hv.streams.random_bytes(f"{self.name}/vtpm/seed")(n)

    def _new_engine(self, state=None):
        clock = lambda: self.env.now * 1000.0          # noqa: E731  simulated milliseconds
        if state is None:
            return TpmEngine(seed=None, random_bytes=self.drbg, powered=True, clock=clock,
                             manufacturer="XVTP")
        return TpmEngine.from_state(state, random_bytes=self.drbg, clock=clock, powered=True)

    def _restore(self, flow):
        """LOADHASHKEY, pick the slot, open it; sets :attr:`restore_status`."""
        disk = self.disk()
        status, slot, state = "new", None, None
        rsp = yield from self.front.transmit(mgr.load_hash_key_request(), flow=flow)
        try:
            blob = mgr.parse_load_hash_key_response(rsp)
        except mgr.VtpmmgrError as exc:
            blob = None
            # An unknown UUID is TPM_BAD_PARAMETER: a vTPM that never saved.
            status = "new" if exc.rc == mgr.TPM_BAD_PARAMETER else "manager-error"
        if blob is not None:
            digest, key = unpack_hash_key(blob)
            image = disk.read(0, disk.size, flow=flow)
            slot = pick_slot(image, digest)
            if slot is None:
                status = "rollback"
            else:
                try:
                    state = open_slot(read_slot(image, slot), key)
                    self.engine = self._new_engine(state)
                    status = "restored"
                except (VtpmDiskError, StateError):
                    status, slot = "corrupt", None
        self.restore_status = status
        self.hv.trace.emit("vtpm.restore", self.dom.now, self.domid, flow=flow, status=status,
                           slot=slot)
        if self.engine is None:
            if status == "new" or self.options.get("restore_failure", "fresh") == "fresh":
                self.engine = self._new_engine()
            # else: halt -- serve TPM_RC_FAILURE for everything
        self.slot = slot
        # A manager that cannot keep our key must not make us overwrite the disk:
        # the state there may still open once the manager can unseal again.
        self.save_blocked = status == "manager-error"

    # -- serving -------------------------------------------------------------
    def handle(self, request):
        """Generator: the response to one guest request (see the module doc)."""
        cmd = request.command
        n = len(cmd)
        if not n:
            return b""
        tag = header.tag(cmd)
        if tag == mgr.VTPM_TAG_REQ or tag == mgr.VTPM_TAG_REQ2:     # for the manager
            if self.front is None:
                return mgr.error_response(tag, mgr.TPM_FAIL)
            if tag == mgr.VTPM_TAG_REQ2:
                return (yield from self.front.transmit(cmd, flow=request.flow))
            forwarded = header.with_tag(cmd, mgr.TPM_TAG_RQU_COMMAND)
            return (yield from self.front.transmit(forwarded, flow=request.flow))
        if self.engine is None:
            return error_response(TPM_RC.FAILURE)
        cc = request.cc                     # header.code(cmd), read by tpmback at take
        if cc == TPM2_CC_DeepQuote and self.front is not None:
            return (yield from self._deep_quote(cmd, request.flow))
        locality = request.locality
        if locality:                        # (Linux never stores one: the rare case)
            stored = locality
            locality = stored if self.guest_locality == "honour" else 0
            self.hv.trace.emit("vtpm.locality", self.dom.now, self.domid, flow=request.flow,
                               stored=stored, used=locality)
        return (yield from self._run_command(cmd, locality, request.flow, cc))

    def _deep_quote(self, cmd, flow):
        """TPM2_CC_DeepQuote: forward as VTPM_ORD_GET_QUOTE, return the manager's reply."""
        if header.tag(cmd) != TPM_ST.NO_SESSIONS:
            return error_response(TPM_RC.TAG)
        if len(cmd) != header.size(cmd):
            return error_response(TPM_RC.COMMAND_SIZE)
        try:
            q = mgr.parse_deep_quote_command(cmd)
            request = mgr.get_quote_request(q.nonce, q.pcr_selection, q.flags)
        except mgr.VtpmmgrError:
            return error_response(rc_format1(TPM_RC.VALUE, param=1))
        reply = yield from self.front.transmit(request, flow=flow)
        self.hv.trace.emit("vtpm.deep_quote", self.dom.now, self.domid, flow=flow,
                           rc=header.code(reply))
        return mgr.deep_quote_response(reply)

    def _run_command(self, cmd, locality, flow, cc=False):
        """Execute on the engine, charge its cost, save if the state changed.

        ``cc`` is ``header.code(cmd)`` when the caller has it already.
        """
        hv, dom, engine = self.hv, self.dom, self.engine
        if cc is False:
            cc = header.code(cmd)
        rsp = engine.execute(cmd, locality)
        known = self._ops.get(cc)
        if known is None:
            known = self._ops[cc] = (vtpm_op(hv.profile, cc),
                                     command_name(cc) if cc is not None else None)
        op, name = known
        cost = dom.charge(op)
        rc = client.response_code(rsp)
        changed = engine.last_command_changed_nv
        self.commands += 1
        hv.trace.emit("tpm.exec", dom.now, dom.domid, flow=flow, cc=cc, cc_name=name, rc=rc,
                      duration=cost, changed=changed, tpm="vtpm", command=cmd, response=rsp)
        # (the cheap tests first: a command that saves nothing decides here)
        if (rc == 0 and (changed or self.save_on == "success") and self.strong_persistence
                and self.front is not None and self.disk() is not None and not self.save_blocked):
            yield from self.save(flow)
        return rsp

    def save(self, flow=None):
        """Generator: seal the whole state into the other slot and SAVEHASHKEY it."""
        hv, dom = self.hv, self.dom
        start = dom.now
        disk = self.disk()
        state = self.engine.save_state()
        fresh = self.drbg(VTPM_KEY_SIZE + VTPM_NONCE_SIZE)     # a fresh key and nonce per save
        key, nonce = fresh[:VTPM_KEY_SIZE], fresh[VTPM_KEY_SIZE:]
        sealed = seal_slot(state, key, nonce)
        dom.charge("crypto.aead_per_byte", len(sealed))
        slot = 0 if self.slot is None else other_slot(self.slot)
        disk.write(slot_offset(disk.size, slot), sealed, flow=flow)
        request = mgr.save_hash_key_request(pack_hash_key(slot_hash(sealed), key))
        try:
            rsp = yield from self.front.transmit(request, flow=flow)
            rc = mgr.response_code(rsp)
        except (TpmFrontError, mgr.VtpmmgrError) as exc:
            rc = getattr(exc, "rc", None) or mgr.TPM_IOERROR
        if rc == mgr.TPM_SUCCESS:
            self.slot = slot
            self.saves += 1
        else:
            self.save_failures += 1
        now = dom.now
        hv.trace.emit("vtpm.save", now, dom.domid, flow=flow, slot=slot, bytes=len(sealed),
                      duration=now - start, rc=rc)
        return rc

"""The vTPM manager stub domain: the only domain that drives the physical TPM.

Booted by ``xl create`` from the seed's config::

    name="vtpmmgr"
    kernel="/usr/lib/xen/boot/vtpmmgr-stubdom.gz"
    memory=16
    disk=["file:/var/vtpmmgr-stubdom.img,hda,w"]
    iomem=["fed40,5"]

The ``iomem`` line gives this domain -- and, from then on, *only* this
domain -- the five 4 KiB TIS pages at ``0xfed40000``: dom0 mapping them now
fails with ``-EPERM``. What it does, in the order of Xen's
``stubdom/vtpmmgr`` (``vtpmmgr.c``, ``init.c``, ``vtpm_cmd_handler.c``; see also ``docs/man/xen-vtpmmgr.7.pod``):

1. sleep ``stubdom.startup_sleep`` (2 s);
2. start its **tpmback** (vTPM stub domains may connect from now on; their
   requests wait in their shared pages);
3. open the physical TPM through its TIS driver at locality
   ``tpmlocality=`` of its command line (``extra=``; default 0) and flush
   handles a previous manager left loaded;
4. seed its random generator from ``TPM2_GetRandom``;
5. open its storage (:mod:`simxen.domains.vtpmmgr_storage`), by option
   ``storage``: ``"xen"`` (the default, what Xen's manager does on a TPM
   2.0 host) creates this boot's keys -- ``TPM2_CreatePrimary`` of the SRK,
   ``TPM2_Create`` + ``TPM2_Load`` of a storage key, RSA-2048 both (option
   ``boot_keys = "rsa"``, Xen's ``tpm2_take_ownership`` /
   ``vtpmmgr2_create``) or ECC P-256 (``"ecc"``) -- and keeps the vTPM
   records in memory only, so they do not survive the manager;
   ``"sealed"`` (simxen's store) unseals its key with the physical TPM only
   if the host booted what it booted when the key was sealed (PolicyPCR),
   else the manager stays up but refuses every vTPM secret;
6. serve one request at a time, choosing among ready vTPMs by its tpmback
   ``policy``: ``"priority"`` (Xen: lowest ``(domid, handle)`` first; the
   default), ``"fifo"`` or ``"round-robin"``.

Requests (:mod:`simxen.protocols.vtpmmgr`), identified by the UUID that the
toolstack wrote in the backend directory (the manager trusts XenStore for
it, as Xen's does):

``VTPM_ORD_SAVEHASHKEY``
    store the vTPM's 52..64-byte ``hash || key`` (an unknown UUID is
    created; the first ever becomes the *admin* vTPM); with ``storage =
    "sealed"`` also rewrite the sealed records and flush -- a disk write, no
    physical-TPM command; with ``"xen"`` nothing is written (Xen's
    ``vtpm_sync_disk`` skips the write when group 0 has no seals);
``VTPM_ORD_LOADHASHKEY``
    return it (unknown UUID: ``TPM_BAD_PARAMETER``);
``VTPM_ORD_GET_BOOT_HASH``
    the vTPM's "kernel hash": SHA-1 of its XSM label (``seclabel=`` of its
    config, what FLASK's peer context gives Xen's manager), 20 zero bytes
    without one;
``VTPM_ORD_GET_QUOTE``
    the *deep quote*: a physical ``TPM2_Quote`` by the manager's attestation
    key over the requested pTPM PCRs, whose ``qualifyingData`` binds the
    request's nonce (into which a vTPM folds its own PCRs) and the optional
    hashes (UUID, kernel hash);
passthrough (TPM 1.2 tags 0x00C1..0x00C3)
    ``TPM_GetRandom`` -> ``TPM2_GetRandom``; ``TPM_PcrRead`` ->
    ``TPM2_PCR_Read`` of the SHA-256 bank; ``TPM_Extend`` (admin only) ->
    ``TPM2_PCR_Extend`` (SHA-256 digests, a TPM 2.0 deviation); anything else
    ``TPM_DISABLED_CMD`` -- the rule of
    :func:`simxen.protocols.vtpmmgr.dispatch_check`;
management (``VTPM_TAG_REQ2``)
    groups are not modelled: admin requests answer ``TPM_BAD_ORDINAL``.

A UUID already open on another connection is refused with ``TPM_DISABLED``
("Attempted to open vTPM twice").

Options (``toolstack.options[name]``): ``policy``, ``storage`` (``"xen"`` |
``"sealed"``), ``boot_keys`` (``"rsa"`` | ``"ecc"``), ``seal_pcrs`` (SHA-256
PCRs the sealed store's key is sealed to; default 0-9, the host boot's
measurements), ``locality`` (overrides ``tpmlocality=``), ``evtchn_abi`` ("2-level", mini-os's
only ABI and the default, or "fifo": registers a FIFO control block first).

Trace records: ``vtpmmgr.open`` (``status``, ``records``), ``vtpmmgr.request``
(``flow``, ``ordinal``, ``rc``, ``domid``, ``duration``).
"""

from __future__ import annotations

import errno
import hashlib
import struct
import uuid as uuidlib

from simxen.domains import ptpm_commands as ptpm
from simxen.domains.drbg import HmacDrbg
from simxen.domains.kernel import Kernel
from simxen.domains.vtpmmgr_storage import open_storage
from simxen.drivers.command_names import cc_name
from simxen.drivers.tis import TisError
from simxen.drivers.tpmback import TpmBack
from simxen.protocols import vtpmmgr as mgr
from simxen.tpm import client, header
from simxen.tpm.constants import TPM_CAP, TPM_HT
from simxen.xen.errors import XenError

__all__ = ["VtpmMgr", "DEFAULT_SEAL_PCRS", "TIS_BASE_MFN", "DEFAULT_STORAGE", "DEFAULT_BOOT_KEYS"]

#: SHA-256 PCRs the manager key is sealed to unless configured: the host boot's.
DEFAULT_SEAL_PCRS = tuple(range(10))
#: Xen's manager store on a TPM 2.0 host, and its boot-time key type (see the module doc).
DEFAULT_STORAGE = "xen"
DEFAULT_BOOT_KEYS = "rsa"
#: First machine frame of the TIS window (0xfed40000 >> 12).
TIS_BASE_MFN = 0xFED40
_PASSTHROUGH_TAGS = (mgr.TPM_TAG_RQU_COMMAND, mgr.TPM_TAG_RQU_AUTH1_COMMAND,
                     mgr.TPM_TAG_RQU_AUTH2_COMMAND)
#: Largest GetRandom answer that fits one tpmif page (4088 - 14-byte header).
_GET_RANDOM_MAX = 4088 - 14


def open_tis(hv, dom, locality, irq=None):
    """The manager's TIS driver, opened on the window it was given (:mod:`simxen.drivers.tis`).

    Raises ``XenError(-EPERM)`` without iomem permission, ``TisError`` if no TPM answers.
    """
    from simxen.drivers.tis import TisDriver
    return TisDriver(hv, dom, locality=locality, irq=irq).open()


class VtpmMgr(Kernel):
    """The vTPM manager's kernel (see the module doc)."""

    role = "vtpmmgr"

    def __init__(self, toolstack, dom, config, disks=()):
        super().__init__(toolstack, dom, config, disks)
        self.back = None
        self.tis = None
        self.storage = None
        self.drbg = None
        self.aik = None
        self.open_uuids = {}             #: uuid text -> (domid, handle) holding it open
        self.duplicates = set()          #: (domid, handle) refused as a second opener
        self.served = 0
        self._uuid_bytes = {}            # uuid text -> 16 bytes
        self._flows = 0

    @property
    def locality(self) -> int:
        if "locality" in self.options:
            return int(self.options["locality"])
        value = self.config.cmdline_options().get("tpmlocality", "0")
        return int(value) if value.isdigit() and int(value) <= 4 else 0

    def _flow(self, what):
        self._flows += 1
        return f"{self.name}/{what}/{self._flows}"

    # -- life --------------------------------------------------------------
    def main(self):
        hv, dom = self.hv, self.dom
        dom.charge("stubdom.startup_sleep")
        yield dom.elapse()
        if self.options.get("evtchn_abi") == "fifo":
            # mini-os speaks only the 2-level ABI; "fifo" asks what a manager that
            # registered a FIFO control block (EVTCHNOP_init_control) would do
            hv.evtchn.init_control(dom)
        self.back = TpmBack(hv, dom, policy=self.options.get("policy", "priority"), name="vtpmmgr",
                            on_open=self._on_open, on_close=self._on_close)
        self.back.start()
        flow = self._flow("boot")
        pcrs = tuple(self.options.get("seal_pcrs", DEFAULT_SEAL_PCRS))
        chip = self.toolstack.platform.get("tpm")
        try:
            if self.disk() is None:
                raise XenError(-errno.ENODEV, "the config has no disk= for the manager's storage")
            self.tis = open_tis(hv, dom, self.locality, getattr(chip, "irq", None))
            yield from self._flush_stale(flow)
            self.drbg = HmacDrbg((yield from ptpm.get_random(self.tis, 32, flow=flow)),
                                 personalization=b"vtpmmgr")
            self.storage = self._new_storage(pcrs)
            yield from self.storage.open(flow=flow)
        except (XenError, TisError, ptpm.PtpmError) as exc:
            self.storage = self._new_storage(pcrs)
            self.storage.error = f"cannot open storage: {exc}"
        status = "open" if self.storage.is_open else "refused"
        hv.trace.emit("vtpmmgr.open", dom.now, dom.domid, flow=flow, status=status,
                      storage=self.storage.kind, provisioned=self.storage.provisioned, records=self.storage.vtpm_count,
                      error=self.storage.error)
        self.mark_ready(status)
        while True:
            # next_request() lets the time this domain has worked pass before
            # choosing (the policy chooses among what is ready *now*, as
            # tpmback_req_any does); with nothing ready it just waits.
            request = yield from self.back.next_request()
            start = dom.now
            response = yield from self.handle(request)
            self.served += 1
            ordinal = request.cc                # header.code(request.command), read at take
            now = dom.now
            hv.trace.emit("vtpmmgr.request", now, dom.domid, flow=request.flow,
                          domid=request.domid, ordinal=ordinal,
                          ordinal_name=cc_name(ordinal), rc=mgr.response_code(response),
                          duration=now - start)
            self.back.respond(request, response)

    def _new_storage(self, pcrs):
        return open_storage(self.options.get("storage", DEFAULT_STORAGE), self.disk(), self.tis,
                            pcrs, self.drbg, keys=self.options.get("boot_keys", DEFAULT_BOOT_KEYS))

    def _flush_stale(self, flow):
        """Flush transient objects and sessions a previous manager left in the TPM."""
        for first in (TPM_HT.TRANSIENT << 24, TPM_HT.HMAC_SESSION << 24, TPM_HT.POLICY_SESSION << 24):
            rsp = yield from self.tis.transmit(client.get_capability_command(TPM_CAP.HANDLES, first),
                                               flow=flow)
            if client.response_code(rsp):
                continue
            _, _, handles = client.parse_get_capability(rsp)
            for handle in handles:
                yield from self.tis.transmit(client.flush_context_command(handle), flow=flow)

    def _on_open(self, info):
        holder = self.open_uuids.get(info.uuid)
        if holder is not None and holder != (info.domid, info.handle):
            self.duplicates.add((info.domid, info.handle))
        else:
            self.open_uuids[info.uuid] = (info.domid, info.handle)

    def _on_close(self, info):
        key = (info.domid, info.handle)
        self.duplicates.discard(key)
        if self.open_uuids.get(info.uuid) == key:
            del self.open_uuids[info.uuid]

    # -- requests ------------------------------------------------------------
    def kernel_hash(self, domid) -> bytes:
        """SHA-1 of the XSM label of domain *domid* (zeros if it has none)."""
        dom = self.hv.domains.get(domid)
        cfg = self.toolstack.configs.get(dom.name) if dom is not None else None
        if cfg is None or not cfg.seclabel:
            return bytes(20)
        return hashlib.sha1(cfg.seclabel.encode()).digest()

    def handle(self, request):
        """Generator: the manager's answer to one request (bytes)."""
        cmd = request.command
        uuid = self._uuid_bytes.get(request.uuid)
        if uuid is None:
            uuid = self._uuid_bytes[request.uuid] = uuidlib.UUID(request.uuid).bytes
        storage = self.storage
        admin = storage.is_open and storage.is_admin(uuid)
        rc = mgr.dispatch_check(cmd, is_admin=admin)
        tag = header.tag(cmd)
        if tag is None:
            tag = mgr.VTPM_TAG_REQ
        if rc != mgr.TPM_SUCCESS:
            return mgr.error_response(tag, rc)
        code = request.cc                     # the ordinal (dispatch_check saw a whole header)
        try:
            if tag in _PASSTHROUGH_TAGS:
                return (yield from self._passthrough(code, cmd[10:], request.flow))
            if tag == mgr.VTPM_TAG_REQ2:
                return mgr.response(mgr.TPM_BAD_ORDINAL)          # groups are not modelled
            if (request.domid, request.handle) in self.duplicates:
                return mgr.response(mgr.TPM_DISABLED)
            if not storage.is_open:
                return mgr.response(mgr.TPM_FAIL)
            if code == mgr.VTPM_ORD_SAVEHASHKEY:
                storage.put(uuid, mgr.parse_save_hash_key_request(cmd), flow=request.flow)
                return mgr.response()
            if code == mgr.VTPM_ORD_LOADHASHKEY:
                stored = storage.get(uuid)
                if stored is None:
                    return mgr.response(mgr.TPM_BAD_PARAMETER)
                return mgr.load_hash_key_response(stored)
            if code == mgr.VTPM_ORD_GET_BOOT_HASH:
                mgr.parse_get_boot_hash_request(cmd)
                return mgr.get_boot_hash_response(self.kernel_hash(request.domid))
            return (yield from self._deep_quote(mgr.parse_get_quote_request(cmd), uuid, request))
        except mgr.VtpmmgrError as exc:
            return mgr.response(exc.rc)
        except ptpm.PtpmError as exc:
            self.hv.trace.emit("vtpmmgr.ptpm_error", self.dom.now, self.domid, flow=request.flow,
                               what=exc.what, rc=exc.rc)
            return mgr.response(mgr.TPM_FAIL)
        except TisError as exc:
            # the chip did not answer (a TIS timeout or cancel): there is no TPM
            # response code to pass on, so the vTPM gets TPM_IOERROR
            self.hv.trace.emit("vtpmmgr.ptpm_error", self.dom.now, self.domid, flow=request.flow,
                               what=f"TIS: {exc}", rc=None)
            return mgr.response(mgr.TPM_IOERROR)

    def _passthrough(self, ordinal, body, flow):
        """A TPM 1.2 command the manager forwards, translated to TPM 2.0."""
        if ordinal == mgr.TPM_ORD_GetRandom:
            if len(body) != 4:
                raise mgr.VtpmmgrError(mgr.TPM_BAD_PARAMETER, "TPM_GetRandom takes a u32")
            n = min(struct.unpack(">I", body)[0], _GET_RANDOM_MAX)
            data = (yield from ptpm.get_random(self.tis, n, flow=flow)) if n else b""
            return header.pack(mgr.TPM_TAG_RSP_COMMAND, mgr.TPM_SUCCESS, struct.pack(">I", n) + data)
        # TPM_PcrRead, or TPM_Extend (dispatch_check let it through: admin only):
        # both answer with the PCR's value
        extend = ordinal != mgr.TPM_ORD_PcrRead
        if not extend and len(body) != 4:
            raise mgr.VtpmmgrError(mgr.TPM_BAD_PARAMETER, "TPM_PcrRead takes a u32")
        if extend and len(body) != 4 + 32:
            raise mgr.VtpmmgrError(mgr.TPM_BAD_PARAMETER, "TPM_Extend here takes u32 + 32-byte digest")
        index = struct.unpack_from(">I", body)[0]
        if index > 23:
            raise mgr.VtpmmgrError(mgr.TPM_BADINDEX, f"PCR {index}")
        if extend:
            yield from ptpm.pcr_extend(self.tis, index, body[4:], flow=flow)
        value = (yield from ptpm.pcr_read(self.tis, [index], flow=flow))[index]
        return header.pack(mgr.TPM_TAG_RSP_COMMAND, mgr.TPM_SUCCESS, value)

    def _deep_quote(self, q, uuid, request):
        from simxen.tpm.constants import TPM_ALG, TPM_RH
        pcrs = sorted({p for alg, sel in q.pcr_selection if alg == TPM_ALG.SHA256 for p in sel})
        if any(alg != TPM_ALG.SHA256 for alg, sel in q.pcr_selection if sel):
            raise mgr.VtpmmgrError(mgr.VTPM_INVALID_REQUEST, "only the SHA-256 bank is quoted")
        hashes = mgr.deep_quote_hashes(q.flags, uuid=uuid, kernel_hash=self.kernel_hash(request.domid))
        qualifying = mgr.deep_quote_external_data(q.nonce, q.flags, hashes)
        if self.aik is None:
            self.aik, _, _ = yield from ptpm.create_primary(self.tis, ptpm.AIK_TEMPLATE,
                                                            TPM_RH.ENDORSEMENT, flow=request.flow)
        attest, signature = yield from ptpm.quote(self.tis, self.aik, qualifying, pcrs,
                                                  flow=request.flow)
        values = (yield from ptpm.pcr_read(self.tis, pcrs, flow=request.flow)) if pcrs else {}
        return mgr.get_quote_response(attest, signature, hashes, [values[p] for p in pcrs])

    def aik_public(self):
        """Generator: the deep-quote key's public area (for a verifier)."""
        from simxen.tpm.constants import TPM_RH
        if self.aik is None:
            self.aik, _, _ = yield from ptpm.create_primary(self.tis, ptpm.AIK_TEMPLATE,
                                                            TPM_RH.ENDORSEMENT)
        rsp = yield from self.tis.transmit(client.read_public_command(self.aik))
        return client.parse_read_public(rsp)[0]

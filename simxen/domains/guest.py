"""A guest (domU) kernel: Linux with ``xen-tpmfront`` and a small TPM client.

Booted by ``xl create`` from a config such as::

    name="guest1"
    kernel="/boot/vmlinuz-guest"
    memory=512
    vtpm=["backend=vtpm-guest1"]

At boot the kernel probes its vTPM device: :class:`~simxen.drivers.tpmfront.TpmFront`
(Linux flavour: it waits for answers as its kernel era does -- option
``kernel_era`` = ``"linux-6"`` (sleeps of 4.7-5.0 ms, the default),
``"linux-4.4"`` (whole jiffies at option ``hz``) or ``"linux-3.12"``
(interrupt); :mod:`simxen.drivers.kernel_eras`) grants its page, allocates an
event channel and runs the xenbus handshake with the vTPM stub domain. Then
``guest.tpm`` is a :class:`TpmClient` -- what ``/dev/tpm0`` is to user
space, and what IMA, scenarios and the attestation agent use::

    guest = host.guest("guest1")
    rsp = yield from guest.tpm.transmit(command_bytes)          # raw
    yield from guest.tpm.pcr_extend(16, b"measured data")         # helpers
    values = yield from guest.tpm.pcr_read([16])

Every method is a generator (``yield from`` it inside a SimPy process).
Helpers raise :class:`simxen.tpm.client.ResponseError` with the TPM's
response code when the TPM refuses, and
:class:`simxen.drivers.tpmfront.TpmFrontError` (a negative errno) when the
transport fails. Each command gets its own ``flow`` id,
``"<guest>/<n>"``, so every hop it takes can be found in the trace; the
last one is :attr:`TpmClient.last_flow`.
"""

from __future__ import annotations

import errno
import hashlib

from simxen.domains.kernel import Kernel
from simxen.drivers.tpmfront import TpmFront, TpmFrontError
from simxen.tpm import client
from simxen.tpm.constants import TPM_ALG, TPM_RC, TPM_RH, TPMA_NV, TPMA_OBJECT, rc_format1
from simxen.tpm.public import Public

__all__ = ["Guest", "TpmClient", "AK_TEMPLATE", "TPM_BUFSIZE"]

#: Largest command Linux's TPM character device accepts (``TPM_BUFSIZE``).
TPM_BUFSIZE = 4096
#: hashlib's name of each bank :meth:`TpmClient.pcr_extend` can extend
_HASH_NAMES = {TPM_ALG.SHA1: "sha1", TPM_ALG.SHA256: "sha256", TPM_ALG.SHA384: "sha384"}

_A = TPMA_OBJECT
_NV_OWNER_RW = TPMA_NV.OWNERWRITE | TPMA_NV.OWNERREAD | TPMA_NV.NO_DA
#: An attestation key for :meth:`TpmClient.quote`: ECC P-256, restricted ECDSA-SHA256 signing.
AK_TEMPLATE = Public(
    TPM_ALG.ECC, TPM_ALG.SHA256,
    _A.fixedTPM | _A.fixedParent | _A.sensitiveDataOrigin | _A.userWithAuth | _A.restricted | _A.sign,
    scheme=(TPM_ALG.ECDSA, TPM_ALG.SHA256), curve=0x0003, unique=(b"", b""))


class TpmClient:
    """The guest's TPM: raw :meth:`transmit` and a few helpers (all generators)."""

    def __init__(self, kernel, front):
        self.kernel = kernel
        self.front = front
        self.commands = 0
        self.last_flow = None
        #: the locality byte stored with a command that names none: 0, as Linux's
        #: xen-tpmfront leaves it; a guest may store any (what its vTPM makes of
        #: it: :mod:`simxen.domains.vtpm`, "Locality")
        self.locality = 0

    def new_flow(self) -> str:
        self.commands += 1
        return f"{self.kernel.name}/{self.commands}"

    def transmit(self, command: bytes, *, locality: int | None = None, timeout=None, flow=None):
        """Send one marshalled TPM command; return the response bytes.

        ``locality`` is the byte stored in the shared page with it (default
        :attr:`locality`).

        What Linux checks before a command reaches the driver comes first, as
        a ``write()`` to ``/dev/tpm0`` meets it (``tpm-dev-common.c``
        ``tpm_common_write``, ``tpm-interface.c`` ``tpm_try_transmit``):
        more than ``TPM_BUFSIZE`` (4096) bytes is ``-E2BIG``; fewer than 6
        bytes, or fewer than the header's ``commandSize``, is ``-EINVAL``; a
        ``commandSize`` of 0 is ``-ENODATA`` (all :class:`TpmFrontError`);
        bytes beyond ``commandSize`` are not sent.
        """
        n = len(command)
        if n > TPM_BUFSIZE:
            raise TpmFrontError(-errno.E2BIG, f"write of {n} bytes exceeds TPM_BUFSIZE "
                                              f"({TPM_BUFSIZE})")
        size = int.from_bytes(command[2:6], "big") if n >= 6 else None
        if size is None or n < size:
            raise TpmFrontError(-errno.EINVAL, f"{n}-byte write is shorter than its "
                                               f"{'header' if size is None else f'commandSize {size}'}")
        if size == 0:
            raise TpmFrontError(-errno.ENODATA, "commandSize is 0")
        if size < n:
            command = command[:size]
        flow = flow or self.new_flow()
        self.last_flow = flow
        # (each command's latency is its tpm.front.complete record's, read from the trace)
        if locality is None:
            locality = self.locality
        return (yield from self.front.transmit(command, locality=locality, flow=flow,
                                               timeout=timeout))

    def pcr_extend(self, pcr: int, data: bytes, *, alg=TPM_ALG.SHA256, flow=None):
        """Extend *pcr* with the digest of *data* (``TPM2_PCR_Extend``); returns the digest.

        ``flow`` (here and in the other helpers) labels the command's trace
        records; one is made up when omitted."""
        digest = hashlib.new(_HASH_NAMES[alg], data).digest()
        rsp = yield from self.transmit(client.pcr_extend_command(pcr, {alg: digest}), flow=flow)
        client.check(rsp)
        return digest

    def pcr_read(self, pcrs, *, alg=TPM_ALG.SHA256, flow=None) -> dict:
        """``{pcr: value}`` of bank *alg* (``TPM2_PCR_Read``, repeated until all are read)."""
        out = {}
        while True:
            missing = [p for p in sorted(pcrs) if p not in out]
            if not missing:
                return out
            rsp = yield from self.transmit(client.pcr_read_command({alg: missing}), flow=flow)
            _, values = client.parse_pcr_read(rsp)
            got = values.get(alg, {})
            if not got:
                # the bank has none of them
                raise client.ResponseError(rc_format1(TPM_RC.VALUE, handle=1))
            out.update(got)

    def get_random(self, n: int, *, flow=None) -> bytes:
        """*n* random bytes (``TPM2_GetRandom``, repeated for large *n*)."""
        out = b""
        while len(out) < n:
            rsp = yield from self.transmit(client.get_random_command(min(n - len(out), 32)),
                                           flow=flow)
            chunk = client.parse_get_random(rsp)
            if not chunk:
                raise client.ResponseError(0x101)
            out += chunk
        return out

    def nv_define(self, index: int, size: int, *, attributes=_NV_OWNER_RW, check=True):
        """``TPM2_NV_DefineSpace`` of an index, owner-authorised (empty owner auth).

        Returns the response code; with ``check`` (the default) a failure
        raises :class:`~simxen.tpm.client.ResponseError` instead. A counter
        is ``attributes=... | TPM_NT.COUNTER << TPMA_NV.TPM_NT_SHIFT``.
        """
        rsp = yield from self.transmit(client.nv_define_space_command(index, size, attributes))
        if check:
            client.check(rsp)
        return client.response_code(rsp)

    def nv_write(self, index: int, data: bytes, offset: int = 0, *, auth_handle=TPM_RH.OWNER,
                 flow=None):
        """``TPM2_NV_Write`` (owner authorisation unless ``auth_handle`` says otherwise)."""
        rsp = yield from self.transmit(client.nv_write_command(index, data, offset,
                                                               auth_handle=auth_handle), flow=flow)
        client.check(rsp)

    def nv_read(self, index: int, size: int, offset: int = 0, *, auth_handle=TPM_RH.OWNER,
                flow=None) -> bytes:
        """``TPM2_NV_Read`` (owner authorisation unless ``auth_handle`` says otherwise)."""
        rsp = yield from self.transmit(client.nv_read_command(index, size, offset,
                                                              auth_handle=auth_handle), flow=flow)
        return client.parse_response(rsp).params.tpm2b()

    def nv_increment(self, index: int, *, auth_handle=None, flow=None):
        """``TPM2_NV_Increment`` of a counter index (its own authorisation by default)."""
        rsp = yield from self.transmit(client.nv_increment_command(index, auth_handle=auth_handle),
                                       flow=flow)
        client.check(rsp)

    def deep_quote(self, data: bytes, flags: int = 0, host_pcrs=range(10), *, flow=None) -> bytes:
        """The manager's ``VTPM_ORD_GET_QUOTE`` reply for *data* (the vTPM's
        ``TPM2_CC_DeepQuote``): a physical-TPM quote of *host_pcrs* binding *data*.
        Parse it with :func:`simxen.protocols.vtpmmgr.parse_get_quote_response`."""
        from simxen.domains.vtpm import parse_deep_quote
        from simxen.protocols.vtpmmgr import deep_quote_command
        rsp = yield from self.transmit(deep_quote_command(data, host_pcrs, flags), flow=flow)
        return parse_deep_quote(rsp)

    def create_ak(self, hierarchy=TPM_RH.ENDORSEMENT, template=AK_TEMPLATE):
        """A primary attestation key: ``(handle, Public)``."""
        rsp = yield from self.transmit(client.create_primary_command(hierarchy, template))
        handle, public, _ = client.parse_create_primary(rsp)
        return handle, public

    def quote(self, key: int, nonce: bytes, pcrs, *, alg=TPM_ALG.SHA256, flow=None):
        """``TPM2_Quote`` of *pcrs* with *key* over *nonce*: ``(attest bytes, Attest, Signature)``."""
        rsp = yield from self.transmit(client.quote_command(key, nonce, {alg: list(pcrs)}),
                                       flow=flow)
        return client.parse_quote(rsp)


class Guest(Kernel):
    """A Linux guest kernel; ``tpm`` is ready once :attr:`ready` has fired."""

    role = "guest"

    def __init__(self, toolstack, dom, config, disks=()):
        super().__init__(toolstack, dom, config, disks)
        self.front = None
        self.tpm = None
        #: why the guest has no TPM: its tpmfront probe's :class:`TpmFrontError`, or ``None``
        self.tpm_error = None

    def main(self):
        if self.config.vtpm:
            if self.options.get("transport", "tpmif") == "multi-slot":
                from simxen.drivers.tpmfront_ring import TpmRingFront
                self.front = TpmRingFront(self.hv, self.dom, 0,
                                          entry_size=self.options.get("ring_entry_size", 256))
            else:
                self.front = TpmFront(self.hv, self.dom, 0, flavour="linux",
                                      kernel=self.options.get("kernel_era"),
                                      hz=self.options.get("hz"))
            try:
                yield from self.front.connect()
                self.tpm = TpmClient(self, self.front)
            except TpmFrontError as exc:            # the probe fails: the guest has no TPM
                self.tpm_error = exc
                self.hv.trace.emit("guest.tpm_probe_failed", self.dom.now, self.domid,
                                   error=str(exc))
        self.mark_ready()
        yield self.dom.elapse()

"""The TPM 2.0 command sequences the vTPM manager sends to the physical TPM.

Each function here is a generator that talks to the physical TPM through
``port.transmit(command, flow=...)`` (the manager's TIS driver; ``yield
from`` it) and returns Python values, or raises :class:`PtpmError` with the
TPM's response code. The commands are real TPM 2.0 commands built with
:mod:`simxen.tpm.client`, so the same sequences would work against any TPM.

Sealing to the platform's state, as ``tpm2_create -L policy.dat`` does:

1. ``TPM2_CreatePrimary`` in the owner hierarchy with a fixed ECC P-256
   storage template (:data:`SRK_TEMPLATE`). A primary key is derived from
   the hierarchy's seed and the template, so every boot gets *the same*
   key without storing it (the TPM 2.0 answer to Xen's note that its
   TPM 2.0 manager "cannot persist data").
2. The policy: ``TPM2_PolicyPCR`` over the chosen PCRs of the SHA-256 bank,
   whose digest is ``H(0^32 || TPM_CC_PolicyPCR || TPML_PCR_SELECTION ||
   H(PCR values))`` (Part 3, 23.7) -- computed here from the values read
   with ``TPM2_PCR_Read``.
3. ``TPM2_Create`` of a KEYEDHASH *sealed data object* holding the secret,
   with that ``authPolicy``, ``fixedTPM | fixedParent`` and no
   ``userWithAuth``: only a policy session can unseal it.

Unsealing: ``TPM2_Load`` the object, ``TPM2_StartAuthSession`` (policy,
unbound, unsalted), ``TPM2_PolicyPCR`` (the TPM hashes its *current* PCRs
into the session), ``TPM2_Unseal`` authorised by that session (its HMAC
keyed with the empty session key), then ``TPM2_FlushContext``. If any
selected PCR differs from sealing time the session's digest differs from
the object's ``authPolicy`` and the TPM answers ``TPM_RC_POLICY_FAIL``.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

from simxen.tpm import client
from simxen.tpm.constants import (TPM_ALG, TPM_CC, TPM_RC, TPM_RH, TPM_SE, TPMA_OBJECT, rc_format1,
                                  rc_name)
from simxen.tpm.marshal import tpm2b, u16, u32
from simxen.tpm.pcr_selection import marshal_pcr_selection
from simxen.tpm.public import Public

__all__ = ["PtpmError", "SRK_TEMPLATE", "AIK_TEMPLATE", "BOOT_KEYS", "SRK_TEMPLATES",
           "STORAGE_KEY_TEMPLATES", "create_storage_key", "policy_pcr_digest", "create_primary",
           "pcr_read", "seal", "unseal", "flush", "get_random", "pcr_extend", "quote"]

_A = TPMA_OBJECT
_NIST_P256 = 0x0003

#: The manager's storage root key: ECC P-256, AES-128-CFB, restricted decrypt.
SRK_TEMPLATE = Public(
    TPM_ALG.ECC, TPM_ALG.SHA256,
    _A.fixedTPM | _A.fixedParent | _A.sensitiveDataOrigin | _A.userWithAuth | _A.noDA
    | _A.restricted | _A.decrypt,
    symmetric=(TPM_ALG.AES, 128, TPM_ALG.CFB), curve=_NIST_P256, unique=(b"", b""))

#: Xen's TPM 2.0 manager's SRK (``stubdom/vtpmmgr/init.c`` ``tpm2_take_ownership``): an
#: RSA-2048 restricted decrypt primary in the owner hierarchy, AES-128-CFB, empty auth.
SRK_RSA_TEMPLATE = Public(
    TPM_ALG.RSA, TPM_ALG.SHA256,
    _A.fixedTPM | _A.fixedParent | _A.sensitiveDataOrigin | _A.userWithAuth | _A.restricted
    | _A.decrypt,
    symmetric=(TPM_ALG.AES, 128, TPM_ALG.CFB), key_bits=2048, unique=b"")

#: Xen's TPM 2.0 manager's storage key (``init.c`` ``vtpmmgr2_create``): an RSA-2048
#: unrestricted decrypt key with RSA-OAEP-SHA256, created under the SRK and loaded.
SK_RSA_TEMPLATE = Public(
    TPM_ALG.RSA, TPM_ALG.SHA256,
    _A.fixedTPM | _A.fixedParent | _A.sensitiveDataOrigin | _A.userWithAuth | _A.decrypt,
    scheme=(TPM_ALG.OAEP, TPM_ALG.SHA256), key_bits=2048, unique=b"")

#: simxen's ECC alternative to it: an unrestricted ECC P-256 decrypt key.
SK_ECC_TEMPLATE = Public(
    TPM_ALG.ECC, TPM_ALG.SHA256,
    _A.fixedTPM | _A.fixedParent | _A.sensitiveDataOrigin | _A.userWithAuth | _A.decrypt,
    curve=_NIST_P256, unique=(b"", b""))

#: The manager's boot-time key sets: ``"rsa"`` (Xen's) or ``"ecc"`` (cheaper on every chip).
BOOT_KEYS = ("rsa", "ecc")
SRK_TEMPLATES = {"rsa": SRK_RSA_TEMPLATE, "ecc": SRK_TEMPLATE}
STORAGE_KEY_TEMPLATES = {"rsa": SK_RSA_TEMPLATE, "ecc": SK_ECC_TEMPLATE}

#: The manager's attestation key for deep quotes: ECC P-256, restricted ECDSA-SHA256 signing.
AIK_TEMPLATE = Public(
    TPM_ALG.ECC, TPM_ALG.SHA256,
    _A.fixedTPM | _A.fixedParent | _A.sensitiveDataOrigin | _A.userWithAuth | _A.noDA
    | _A.restricted | _A.sign,
    scheme=(TPM_ALG.ECDSA, TPM_ALG.SHA256), curve=_NIST_P256, unique=(b"", b""))


class PtpmError(Exception):
    """The physical TPM refused a command: :attr:`rc` and the command's name."""

    def __init__(self, rc: int, what: str):
        self.rc = rc
        self.what = what
        super().__init__(f"{what}: {rc_name(rc)} ({rc:#x})")


def _run(port, command, what, flow, parse=None):
    rsp = yield from port.transmit(command, flow=flow)
    rc = client.response_code(rsp) if len(rsp) >= 10 else 0x101
    if rc:
        raise PtpmError(rc, what)
    return parse(rsp) if parse else rsp


def policy_pcr_digest(pcrs, values) -> bytes:
    """The ``authPolicy`` a PolicyPCR over SHA-256 PCRs *pcrs* with *values* yields."""
    sel = marshal_pcr_selection(client.selection_of({TPM_ALG.SHA256: list(pcrs)}))
    pcr_digest = hashlib.sha256(b"".join(values[i] for i in sorted(pcrs))).digest()
    return hashlib.sha256(bytes(32) + u32(TPM_CC.PolicyPCR) + sel + pcr_digest).digest()


def create_primary(port, template, hierarchy=TPM_RH.OWNER, *, flow=None):
    """``TPM2_CreatePrimary``: returns ``(handle, Public, name)``."""
    return (yield from _run(port, client.create_primary_command(hierarchy, template),
                            "TPM2_CreatePrimary", flow, client.parse_create_primary))


def create_storage_key(port, parent, template, *, flow=None):
    """``TPM2_Create`` of *template* under *parent*, then ``TPM2_Load``: returns the handle."""
    private, public = yield from _run(port, client.create_command(parent, template),
                                      "TPM2_Create", flow, client.parse_create)
    handle, _ = yield from _run(port, client.load_command(parent, private, public),
                                "TPM2_Load", flow, client.parse_load)
    return handle


def pcr_read(port, pcrs, *, flow=None) -> dict:
    """SHA-256 values of *pcrs* as ``{pcr: digest}`` (several PCR_Reads if needed)."""
    out = {}
    want = sorted(pcrs)
    while True:
        missing = [p for p in want if p not in out]
        if not missing:
            return out
        _, values = yield from _run(port, client.pcr_read_command({TPM_ALG.SHA256: missing}),
                                    "TPM2_PCR_Read", flow, client.parse_pcr_read)
        got = values.get(TPM_ALG.SHA256, {})
        if not got:
            raise PtpmError(rc_format1(TPM_RC.VALUE, handle=1),
                            "TPM2_PCR_Read returned no SHA-256 values")
        out.update(got)


def flush(port, handle, *, flow=None):
    yield from _run(port, client.flush_context_command(handle), "TPM2_FlushContext", flow)


def seal(port, parent, secret: bytes, pcrs, *, flow=None):
    """Seal *secret* under *parent* to the current values of SHA-256 *pcrs*.

    Returns ``(private, public)`` bytes of the sealed object (to be stored).
    """
    values = yield from pcr_read(port, pcrs, flow=flow)
    template = Public(TPM_ALG.KEYEDHASH, TPM_ALG.SHA256, _A.fixedTPM | _A.fixedParent | _A.noDA,
                      auth_policy=policy_pcr_digest(pcrs, values), unique=b"")
    private, public = yield from _run(port, client.create_command(parent, template, data=secret),
                                      "TPM2_Create", flow, client.parse_create)
    return private, public.marshal()


def unseal(port, parent, private: bytes, public: bytes, pcrs, nonce_caller: bytes, *, flow=None):
    """The secret of a sealed object, if the PCRs still match; else :class:`PtpmError`."""
    handle, name = yield from _run(port, client.load_command(parent, private, public),
                                   "TPM2_Load", flow, client.parse_load)
    session = None
    try:
        session, nonce_tpm = yield from _run(
            port, client.start_auth_session_command(nonce_caller, session_type=TPM_SE.POLICY),
            "TPM2_StartAuthSession", flow, client.parse_start_auth_session)
        sel = marshal_pcr_selection(client.selection_of({TPM_ALG.SHA256: list(pcrs)}))
        yield from _run(port, client.build_command(TPM_CC.PolicyPCR, (session,), tpm2b(b"") + sel),
                        "TPM2_PolicyPCR", flow)
        cp_hash = hashlib.sha256(u32(TPM_CC.Unseal) + name).digest()
        attrs = b"\x00"                         # continueSession clear: the TPM flushes it
        mac = hmac.new(b"", cp_hash + nonce_caller + nonce_tpm + attrs, "sha256").digest()
        auth = u32(session) + tpm2b(nonce_caller) + attrs + tpm2b(mac)
        secret = yield from _run(port, client.build_command(TPM_CC.Unseal, (handle,), b"", [auth]),
                                 "TPM2_Unseal", flow, lambda r: client.parse_response(r).params.tpm2b())
        session = None
        return secret
    finally:
        if session is not None:
            yield from _run(port, client.flush_context_command(session), "TPM2_FlushContext", flow)
        yield from _run(port, client.flush_context_command(handle), "TPM2_FlushContext", flow)


def get_random(port, n: int, *, flow=None) -> bytes:
    """*n* bytes from the TPM's RNG (several TPM2_GetRandom calls if needed)."""
    out = b""
    while len(out) < n:
        chunk = yield from _run(port, client.get_random_command(min(32, n - len(out))),
                                "TPM2_GetRandom", flow, client.parse_get_random)
        if not chunk:
            raise PtpmError(0x101, "TPM2_GetRandom returned no bytes")
        out += chunk
    return out


def pcr_extend(port, pcr: int, digest: bytes, *, flow=None):
    """``TPM2_PCR_Extend`` of SHA-256 PCR *pcr* with *digest*."""
    yield from _run(port, client.pcr_extend_command(pcr, {TPM_ALG.SHA256: digest}),
                    "TPM2_PCR_Extend", flow)


def quote(port, key, qualifying_data: bytes, pcrs, *, flow=None):
    """``TPM2_Quote`` of SHA-256 *pcrs* with *key*: ``(attest bytes, signature bytes)``."""
    rsp = yield from _run(port, client.quote_command(key, qualifying_data, {TPM_ALG.SHA256: list(pcrs)}),
                          "TPM2_Quote", flow)
    params = client.parse_response(rsp).params
    attest = params.tpm2b()
    return attest, bytes(params.data[params.pos:params.end])     # the TPMT_SIGNATURE

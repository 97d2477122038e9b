"""The attestation agent: the guest-side half of remote attestation.

It runs in the guest kernel and speaks TPM 2.0 to the guest's vTPM through
any ``transmit(command) -> response`` generator (the guest's xen-tpmfront).
Its life follows what real agents (Keylime's, go-attestation's) do:

**Provisioning.** :meth:`AttestationAgent.provision` creates

* the **EK** -- ``TPM2_CreatePrimary`` in the endorsement hierarchy from the
  TCG EK Credential Profile's default ECC template (NIST P-256, AES-128-CFB,
  restricted decryption key, ``adminWithPolicy`` with *policy A* =
  ``PolicySecret(TPM_RH_ENDORSEMENT)``). Derived from the vTPM's endorsement
  seed, it is the same key every time: the vTPM's identity.
* the **AK** -- a restricted ECDSA P-256/SHA-256 signing key, also a primary
  of the endorsement hierarchy (so its quotes carry no obfuscated clock
  fields, and it, too, is re-created identically after a restart).

The verifier receives both public areas.

**Enrolment.** The verifier answers with ``TPM2_MakeCredential``'s output,
a secret only the TPM holding *that* EK can release, and only for an object
with *that* AK's Name. :meth:`AttestationAgent.activate` releases it with
``TPM2_ActivateCredential`` -- which needs the EK's policy, so the agent
opens a policy session and satisfies ``PolicySecret(TPM_RH_ENDORSEMENT)``
first -- and returns the secret: proof that the AK lives beside the EK.

**Evidence.** :meth:`AttestationAgent.evidence` answers a verifier's nonce
with ``TPM2_Quote`` over the PCRs asked for (nonce as ``qualifyingData``),
the PCR values (``TPM2_PCR_Read``, what ``tpm2_quote -o`` saves), the event
log pv-grub wrote and IMA's list.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from typing import Optional

from simxen.tpm import client
from simxen.tpm.constants import TPM_ALG, TPM_CC, TPM_ECC, TPM_RH, TPM_SE, TPMA_OBJECT
from simxen.tpm.marshal import tpm2b, u32
from simxen.tpm.public import Public

__all__ = ["EK_POLICY_A", "ek_template", "ek_template_rsa", "ak_template", "AgentError", "Evidence",
           "AttestationAgent", "activate_credential_command", "policy_secret_command",
           "pcr_file"]

#: TPM2_PolicySecret(TPM_RH_ENDORSEMENT) policy digest (TCG EK Credential
#: Profile 2.0, B.3.3, "policy A", SHA-256).
EK_POLICY_A = bytes.fromhex("837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa")
_NONCE_SIZE = 16


def ek_template() -> Public:
    """The TCG default EK template L-2 (ECC NIST P-256)."""
    attrs = (TPMA_OBJECT.fixedTPM | TPMA_OBJECT.fixedParent | TPMA_OBJECT.sensitiveDataOrigin
             | TPMA_OBJECT.adminWithPolicy | TPMA_OBJECT.restricted | TPMA_OBJECT.decrypt)
    return Public(TPM_ALG.ECC, TPM_ALG.SHA256, attrs, EK_POLICY_A,
                  symmetric=(TPM_ALG.AES, 128, TPM_ALG.CFB), curve=TPM_ECC.NIST_P256,
                  unique=(bytes(32), bytes(32)))


def ek_template_rsa() -> Public:
    """The TCG default EK template L-1 (RSA 2048)."""
    attrs = (TPMA_OBJECT.fixedTPM | TPMA_OBJECT.fixedParent | TPMA_OBJECT.sensitiveDataOrigin
             | TPMA_OBJECT.adminWithPolicy | TPMA_OBJECT.restricted | TPMA_OBJECT.decrypt)
    return Public(TPM_ALG.RSA, TPM_ALG.SHA256, attrs, EK_POLICY_A,
                  symmetric=(TPM_ALG.AES, 128, TPM_ALG.CFB), key_bits=2048, exponent=0,
                  unique=bytes(256))


def ak_template() -> Public:
    """A restricted ECDSA-P256-SHA256 signing key (``tpm2_createak -G ecc -s ecdsa``)."""
    attrs = (TPMA_OBJECT.fixedTPM | TPMA_OBJECT.fixedParent | TPMA_OBJECT.sensitiveDataOrigin
             | TPMA_OBJECT.userWithAuth | TPMA_OBJECT.restricted | TPMA_OBJECT.sign)
    return Public(TPM_ALG.ECC, TPM_ALG.SHA256, attrs, b"",
                  scheme=(TPM_ALG.ECDSA, TPM_ALG.SHA256), curve=TPM_ECC.NIST_P256,
                  unique=(b"", b""))


class AgentError(Exception):
    """A TPM command the agent needed failed; the message names it and the code."""


@dataclass
class Evidence:
    """What the agent sends back for one nonce."""

    attest: bytes                     #: TPMS_ATTEST bytes (TPM2B_ATTEST contents)
    signature: bytes                  #: TPMT_SIGNATURE bytes
    pcr_values: dict                  #: {bank name: {pcr: value}} read beside the quote
    event_log: bytes                  #: binary_bios_measurements
    ima_list: str                     #: ascii_runtime_measurements
    deep_quote: Optional[bytes] = None   #: the manager's GET_QUOTE reply, if asked
    deep_quote_flags: int = 0

    def export(self, folder, ak_public: bytes, *, pcr_banks=None) -> dict:
        """Write the evidence in the files tpm2-tools and evmctl read; returns ``{name: path}``.

        ``ak.pem`` (the AK's SubjectPublicKeyInfo), ``quote.msg`` (TPMS_ATTEST),
        ``quote.sig`` (TPMT_SIGNATURE), ``quote.pcrs`` (:func:`pcr_file`),
        ``binary_bios_measurements``, ``ascii_runtime_measurements`` and the
        same IMA list as ``binary_runtime_measurements``
        (:func:`simxen.protocols.ima.format_binary`), so that::

            tpm2_checkquote -u ak.pem -m quote.msg -s quote.sig -f quote.pcrs \\
                -g sha256 -q <nonce hex> -e binary_bios_measurements

        *pcr_banks* (``{bank name: {pcr: value}}``, PCRs 0..n of each bank)
        adds one ``pcrs.<bank>`` file a bank in the form
        ``evmctl ima_measurement --pcrs <bank>,pcrs.<bank>`` reads
        (:func:`simxen.protocols.ima.pcrs_text`).
        """
        from pathlib import Path
        from cryptography.hazmat.primitives import serialization
        from simxen.domains.verifier import BANK_IDS, public_key
        from simxen.protocols import ima as ima_layout
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (bank, values), = self.pcr_values.items()
        pem = public_key(Public.from_bytes(ak_public)).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        files = {"ak.pem": pem, "quote.msg": self.attest, "quote.sig": self.signature,
                 "quote.pcrs": pcr_file(BANK_IDS[bank], values),
                 "binary_bios_measurements": self.event_log,
                 "ascii_runtime_measurements": self.ima_list.encode(),
                 "binary_runtime_measurements": ima_layout.format_binary(ima_layout.parse_list(
                     self.ima_list, source="the evidence's IMA list", verify=False))}
        for name, values in (pcr_banks or {}).items():
            files[f"pcrs.{name}"] = ima_layout.pcrs_text(values).encode()
        out = {}
        for name, data in files.items():
            (folder / name).write_bytes(data)
            out[name] = folder / name
        return out

    def size(self) -> int:
        """Bytes on the wire (for the link's transfer time)."""
        pcr_bytes = sum(len(v) + 4 for bank in self.pcr_values.values() for v in bank.values())
        return (len(self.attest) + len(self.signature) + pcr_bytes + len(self.event_log)
                + len(self.ima_list.encode()) + len(self.deep_quote or b""))


#: Sizes of the C structures tpm2-tools serialises (tss2_tpm2_types.h).
TPM2_NUM_PCR_BANKS = 16
TPM2_PCR_SELECT_MAX = 4
TPML_DIGEST_MAX = 8
TPMU_HA_SIZE = 64


def pcr_file(bank_alg: int, values: dict) -> bytes:
    """PCR values in the file format of ``tpm2_quote -o`` / ``tpm2_checkquote -f``.

    tpm2-tools 5.4 writes its C structures as they lie in memory on x86
    (``pcr_fwrite_serialized`` in lib/pcr.c), little-endian:

    * a whole ``TPML_PCR_SELECTION``: count u32, then 16 x
      {hash u16, sizeofSelect u8, pcrSelect[4], 1 byte of padding};
    * a u32 count of ``TPML_DIGEST`` lists;
    * each ``TPML_DIGEST``: count u32, then 8 x {size u16, buffer[64]} --
      at most 8 PCRs per list, as TPM2_PCR_Read answers.
    """
    pcrs = sorted(values)
    bitmap = bytearray(TPM2_PCR_SELECT_MAX)
    for p in pcrs:
        bitmap[p // 8] |= 1 << (p % 8)
    out = struct.pack("<I", 1) + struct.pack("<HB", bank_alg, 3) + bytes(bitmap) + b"\0"
    out += bytes(8 * (TPM2_NUM_PCR_BANKS - 1))
    groups = [pcrs[i:i + TPML_DIGEST_MAX] for i in range(0, len(pcrs), TPML_DIGEST_MAX)]
    out += struct.pack("<I", len(groups))
    for group in groups:
        out += struct.pack("<I", len(group))
        for p in group:
            out += struct.pack("<H", len(values[p])) + values[p].ljust(TPMU_HA_SIZE, b"\0")
        out += bytes((2 + TPMU_HA_SIZE) * (TPML_DIGEST_MAX - len(group)))
    return out


def policy_secret_command(auth_handle, policy_session, password=b"") -> bytes:
    """TPM2_PolicySecret with no nonce, cpHash, policyRef or expiration."""
    params = tpm2b(b"") + tpm2b(b"") + tpm2b(b"") + u32(0)
    return client.build_command(TPM_CC.PolicySecret, (auth_handle, policy_session), params,
                                [client.password_auth(password)])


def activate_credential_command(ak_handle, ak_name, ek_handle, ek_name, credential_blob,
                                secret, policy_session, nonce_tpm, nonce_caller,
                                ak_password=b"") -> bytes:
    """TPM2_ActivateCredential: the AK by password (ADMIN role, no
    adminWithPolicy), the EK by the policy session.

    The policy session is unbound and unsalted, so its session key is empty
    and the HMAC key is empty too (the EK's policy does not ask for its
    authValue): ``HMAC(b"", cpHash || nonceCaller || nonceTPM || attrs)``.
    """
    params = tpm2b(credential_blob) + tpm2b(secret)
    cp_hash = hashlib.sha256(u32(TPM_CC.ActivateCredential) + ak_name + ek_name + params).digest()
    attrs = 0                                # continueSession clear: flushed after use
    mac = hmac.new(b"", cp_hash + nonce_caller + nonce_tpm + bytes((attrs,)),
                   "sha256").digest()
    policy_auth = u32(policy_session) + tpm2b(nonce_caller) + bytes((attrs,)) + tpm2b(mac)
    return client.build_command(TPM_CC.ActivateCredential, (ak_handle, ek_handle), params,
                                [client.password_auth(ak_password), policy_auth])


class AttestationAgent:
    """The agent of one guest.

    :param transmit: generator function ``transmit(command) -> response``.
    :param random_bytes: ``random_bytes(n)`` for session nonces (a seeded stream).
    :param ek: the EK template (default :func:`ek_template`, ECC; or
        :func:`ek_template_rsa`).
    """

    def __init__(self, transmit, random_bytes, *, name: str = "agent", ek: Public = None):
        self.transmit = transmit
        self.ek_template = ek if ek is not None else ek_template()
        self.random_bytes = random_bytes
        self.name = name
        self.ek_handle = self.ak_handle = None
        self.ek_public = self.ak_public = None
        self.ek_name = self.ak_name = None
        self.commands = 0

    def _run(self, command, what):
        rsp = yield from self.transmit(command)
        self.commands += 1
        rc = client.response_code(rsp) if len(rsp) >= 10 else 0x101
        if rc:
            from simxen.tpm.constants import rc_name
            raise AgentError(f"{what} failed: {rc_name(rc)} ({rc:#05x})")
        return rsp

    def _create_primary(self, template, what):
        rsp = yield from self._run(client.create_primary_command(TPM_RH.ENDORSEMENT, template), what)
        return client.parse_create_primary(rsp)

    def provision(self):
        """Generator: create (or re-create) the EK and the AK; returns
        ``(ek_public_bytes, ak_public_bytes)`` (TPMT_PUBLIC each)."""
        self.ek_handle, ek_pub, self.ek_name = yield from self._create_primary(
            self.ek_template, "TPM2_CreatePrimary (EK)")
        self.ak_handle, ak_pub, self.ak_name = yield from self._create_primary(
            ak_template(), "TPM2_CreatePrimary (AK)")
        self.ek_public, self.ak_public = ek_pub.marshal(), ak_pub.marshal()
        return self.ek_public, self.ak_public

    def activate(self, credential_blob: bytes, secret: bytes):
        """Generator: TPM2_ActivateCredential; returns the released credential."""
        if self.ak_handle is None:
            raise AgentError("activate before provision")
        nonce_caller = self.random_bytes(_NONCE_SIZE)
        rsp = yield from self._run(client.start_auth_session_command(
            nonce_caller, TPM_SE.POLICY, TPM_ALG.SHA256), "TPM2_StartAuthSession (policy)")
        session, nonce_tpm = client.parse_start_auth_session(rsp)
        yield from self._run(policy_secret_command(TPM_RH.ENDORSEMENT, session),
                             "TPM2_PolicySecret(TPM_RH_ENDORSEMENT)")
        nonce_caller = self.random_bytes(_NONCE_SIZE)
        rsp = yield from self._run(activate_credential_command(
            self.ak_handle, self.ak_name, self.ek_handle, self.ek_name, credential_blob, secret,
            session, nonce_tpm, nonce_caller), "TPM2_ActivateCredential")
        return client.parse_response(rsp).params.tpm2b()

    def quote(self, nonce: bytes, bank: int, pcrs):
        """Generator: TPM2_Quote with the AK; returns ``(attest, signature)`` bytes."""
        if self.ak_handle is None:
            raise AgentError("quote before provision: no AK")
        rsp = yield from self._run(client.quote_command(self.ak_handle, nonce, {bank: list(pcrs)}),
                                   "TPM2_Quote")
        r = client.parse_response(rsp).params
        attest = r.tpm2b()
        return attest, bytes(r.data[r.pos:r.end])

    def read_pcrs(self, bank: int, pcrs):
        """Generator: TPM2_PCR_Read of ``pcrs`` in ``bank`` -> ``{pcr: value}``.
        PCR_Read answers at most 8 PCRs at a time, so larger sets take several."""
        pcrs = sorted(pcrs)
        out = {}
        while len(out) < len(pcrs):
            todo = [p for p in pcrs if p not in out]
            rsp = yield from self._run(client.pcr_read_command({bank: todo}), "TPM2_PCR_Read")
            _, values = client.parse_pcr_read(rsp)
            got = values.get(bank, {})
            if not got:
                raise AgentError(f"TPM2_PCR_Read returned none of PCRs {todo}")
            out.update(got)
        return out

    def evidence(self, nonce: bytes, bank_name: str, pcrs, *, event_log: bytes, ima_list: str,
                 deep_quote=None, deep_quote_flags: int = 0):
        """Generator: the :class:`Evidence` for ``nonce``.

        ``deep_quote`` is an optional generator function ``deep_quote(data,
        flags) -> reply bytes`` (the manager's GET_QUOTE through the vTPM); it
        is given SHA-256(nonce || TPMS_ATTEST), binding the hardware quote to
        this vTPM quote and so to its PCRs.
        """
        from simxen.domains.ima import BANK_ALGS
        bank = BANK_ALGS[bank_name]
        attest, signature = yield from self.quote(nonce, bank, pcrs)
        values = yield from self.read_pcrs(bank, pcrs)
        deep = None
        if deep_quote is not None:
            deep = yield from deep_quote(hashlib.sha256(nonce + attest).digest(), deep_quote_flags)
        return Evidence(attest, signature, {bank_name: values}, event_log, ima_list, deep,
                        deep_quote_flags)


"""Part 3, chapter 18: Quote, Certify, CertifyCreation, GetTime and the two
audit digests (GetSessionAuditDigest, GetCommandAuditDigest; see
:mod:`simxen.tpm.audit`).

Every attestation is a TPMS_ATTEST (:mod:`simxen.tpm.attest`) signed over
``H_scheme(TPMS_ATTEST)``.  A quote's ``pcrDigest`` is the hash, with the
signing scheme's hash, of the selected PCR values in selection order.  The
qualifiedSigner is the key's qualified name, empty for an anonymous (ECDAA)
signature, and TPM_RH_NULL's name (the 4-byte handle) when no key signs.
For a key outside the endorsement and platform hierarchies, and with no key,
resetCount, restartCount and firmwareVersion are obfuscated with
``KDFa(shProof, "OBFUSCATE", qualifiedSigner)`` as the reference TPM's
FillInAttestInfo does, so an owner key cannot be used to learn the TPM's
reboot history.
"""

from simxen.tpm.algorithms import CONTEXT_HASH, HASHES
from simxen.tpm.attest import Attest
from simxen.tpm.commands import command
from simxen.tpm.commands.capability import FIRMWARE_VERSION_1, FIRMWARE_VERSION_2
from simxen.tpm.constants import TPM_ALG, TPM_CC, TPM_RC, TPM_RH, TPM_ST
from simxen.tpm.creation import parse_ticket, ticket_digest
from simxen.tpm.errors import TpmError
from simxen.tpm.kdf import kdfa
from simxen.tpm.marshal import tpm2b, u32
from simxen.tpm.pcr_selection import parse_pcr_selection, pcr_indices
from simxen.tpm.signature import Signature, parse_sig_scheme
from simxen.tpm.signing import resolve_scheme, sign_digest

FIRMWARE_VERSION = FIRMWARE_VERSION_1 << 32 | FIRMWARE_VERSION_2


def attest_and_sign(tpm, sign_handle, in_scheme, scheme_param, type_, extra, attested,
                    key_index=1):
    """``TPM2B_ATTEST || TPMT_SIGNATURE`` for a TPMS_ATTEST of ``type_``, signed
    by ``sign_handle`` (handle number ``key_index`` of the command)."""
    # qualifiedSigner, as the reference's FillInAttestInfo makes it: the name of
    # TPM_RH_NULL (the handle itself) with no key, empty for an anonymous (ECDAA)
    # scheme, else the key's qualified name
    if sign_handle == TPM_RH.NULL:
        obj = None
        signer = u32(TPM_RH.NULL)
        scheme = (TPM_ALG.NULL, TPM_ALG.NULL)
    else:
        obj = tpm.get_object(sign_handle)
        scheme = resolve_scheme(obj, in_scheme, scheme_param, key_index)
        signer = b"" if scheme[0] == TPM_ALG.ECDAA else obj.qualified_name
    reset, restart, fw = tpm.reset_count, tpm.restart_count, FIRMWARE_VERSION
    if scheme[0] == TPM_ALG.ECDAA:
        extra = b""                 # an anonymous signature carries no qualifying data
    # outside the endorsement and platform hierarchies (and with no key at all)
    # resetCount, restartCount and the firmware version are obfuscated, keyed by
    # shProof over the qualifiedSigner (the reference's FillInAttestInfo)
    if obj is None or obj.hierarchy not in (TPM_RH.ENDORSEMENT, TPM_RH.PLATFORM):
        o = kdfa(HASHES[CONTEXT_HASH].name, tpm.sh_proof, b"OBFUSCATE", signer, b"", 128)
        fw = (fw + int.from_bytes(o[:8], "little")) & 0xFFFFFFFFFFFFFFFF
        o1 = int.from_bytes(o[8:], "little")
        reset = (reset + (o1 >> 32)) & 0xFFFFFFFF
        restart = (restart + o1) & 0xFFFFFFFF
    attest = Attest(type_, signer, extra, tpm.clock, reset, restart, 1, fw, attested)
    data = attest.marshal()
    if obj is None:
        return tpm2b(data) + Signature(TPM_ALG.NULL).marshal()
    digest = HASHES[scheme[1]].digest(data)
    return tpm2b(data) + sign_digest(tpm, obj, scheme, digest).marshal()


def pcr_digest(tpm, hash_alg, selection):
    values = b""
    for alg, bitmap in selection:
        bank = tpm.pcrs.banks.get(alg)
        if bank is None:
            continue
        values += b"".join(bank[i] for i in pcr_indices(bitmap) if i < len(bank))
    return HASHES[hash_alg].digest(values)


@command(TPM_CC.Quote, handles=("object+",), auth=1, encrypt=True)
def quote(tpm, cmd):
    r = cmd.r
    extra = r.at(1).tpm2b(66)     # TPM2B_DATA: sizeof(TPMT_HA)
    in_scheme = parse_sig_scheme(r.at(2))
    selection = parse_pcr_selection(r.at(3), known_hashes=HASHES)
    r.done()
    handle = cmd.handles[0]
    if handle == TPM_RH.NULL:       # no key, no scheme: no hash for the PCR digest
        raise TpmError(TPM_RC.SCHEME, param=2)
    digest_alg = resolve_scheme(tpm.get_object(handle), in_scheme, 2)[1]
    attested = {"pcr_select": selection, "pcr_digest": pcr_digest(tpm, digest_alg, selection)}
    return b"", attest_and_sign(tpm, handle, in_scheme, 2, TPM_ST.ATTEST_QUOTE, extra, attested)


@command(TPM_CC.Certify, handles=("object", "object+"), auth=2, roles=("admin", "user"),
         encrypt=True)
def certify(tpm, cmd):
    r = cmd.r
    extra = r.at(1).tpm2b(66)     # TPM2B_DATA: sizeof(TPMT_HA)
    in_scheme = parse_sig_scheme(r.at(2))
    r.done()
    obj = tpm.get_object(cmd.handles[0])
    attested = {"name": obj.name, "qualified_name": obj.qualified_name}
    return b"", attest_and_sign(tpm, cmd.handles[1], in_scheme, 2, TPM_ST.ATTEST_CERTIFY,
                                extra, attested, key_index=2)


@command(TPM_CC.CertifyCreation, handles=("object+", "object"), auth=1, encrypt=True)
def certify_creation(tpm, cmd):
    r = cmd.r
    extra = r.at(1).tpm2b(66)     # TPM2B_DATA: sizeof(TPMT_HA)
    creation_hash = r.at(2).tpm2b(64)
    in_scheme = parse_sig_scheme(r.at(3))
    tag, hierarchy, digest = parse_ticket(r.at(4))
    r.done()
    obj = tpm.get_object(cmd.handles[1])
    if (tag != TPM_ST.CREATION or hierarchy != obj.hierarchy
            or digest != ticket_digest(tpm, TPM_ST.CREATION, hierarchy,
                                       obj.name + creation_hash)):
        raise TpmError(TPM_RC.TICKET, param=4)
    attested = {"object_name": obj.name, "creation_hash": creation_hash}
    return b"", attest_and_sign(tpm, cmd.handles[0], in_scheme, 3, TPM_ST.ATTEST_CREATION,
                                extra, attested)


@command(TPM_CC.GetTime, handles=("endorsement", "object+"), auth=2, encrypt=True)
def get_time(tpm, cmd):
    r = cmd.r
    extra = r.at(1).tpm2b(66)     # TPM2B_DATA: sizeof(TPMT_HA)
    in_scheme = parse_sig_scheme(r.at(2))
    r.done()
    attested = {"time": tpm.time,
                "clock_info": (tpm.clock, tpm.reset_count, tpm.restart_count, 1),
                "firmware_version": FIRMWARE_VERSION}
    return b"", attest_and_sign(tpm, cmd.handles[1], in_scheme, 2, TPM_ST.ATTEST_TIME,
                                extra, attested, key_index=2)


@command(TPM_CC.GetSessionAuditDigest, handles=("endorsement", "object+", "hmac_session"),
         auth=2, encrypt=True)
def get_session_audit_digest(tpm, cmd):
    r = cmd.r
    extra = r.at(1).tpm2b(66)     # TPM2B_DATA: sizeof(TPMT_HA)
    in_scheme = parse_sig_scheme(r.at(2))
    r.done()
    session = tpm.sessions[cmd.handles[2]]
    if session.audit_digest is None:             # never used as an audit session
        raise TpmError(TPM_RC.TYPE, handle=3)
    attested = {"exclusive_session": int(tpm.exclusive_audit == session.handle),
                "session_digest": session.audit_digest}
    return b"", attest_and_sign(tpm, cmd.handles[1], in_scheme, 2,
                                TPM_ST.ATTEST_SESSION_AUDIT, extra, attested, key_index=2)


@command(TPM_CC.GetCommandAuditDigest, handles=("endorsement", "object+"), auth=2,
         encrypt=True)
def get_command_audit_digest(tpm, cmd):
    """Sign the command audit digest, then reset it (when it was signed):
    the next audited command starts a new one and bumps auditCounter."""
    r = cmd.r
    extra = r.at(1).tpm2b(66)     # TPM2B_DATA: sizeof(TPMT_HA)
    in_scheme = parse_sig_scheme(r.at(2))
    r.done()
    ca = tpm.command_audit
    attested = {"audit_counter": ca.counter, "digest_alg": ca.alg,
                "audit_digest": ca.digest, "command_digest": ca.command_digest()}
    out = attest_and_sign(tpm, cmd.handles[1], in_scheme, 2, TPM_ST.ATTEST_COMMAND_AUDIT,
                          extra, attested, key_index=2)
    if cmd.handles[1] != TPM_RH.NULL:
        ca.digest = b""
        tpm.nv_changed = True
    return b"", out

"""Part 3, chapter 20: Sign and VerifySignature.

A restricted signing key (an attestation key) signs only digests the TPM
itself computed over data that does *not* begin with TPM_GENERATED_VALUE:
the caller proves that with the TPMT_TK_HASHCHECK ticket TPM2_Hash gave
it.  Without a valid ticket the TPM answers ``TPM_RC_TICKET``, so nobody can
make an AK sign something that looks like a quote.
"""

from simxen.tpm.algorithms import HASHES
from simxen.tpm.commands import command
from simxen.tpm.constants import TPM_CC, TPM_RC, TPM_RH, TPM_ST, TPMA_OBJECT
from simxen.tpm.creation import parse_ticket, ticket, ticket_digest
from simxen.tpm.errors import TpmError
from simxen.tpm.signature import Signature, parse_sig_scheme
from simxen.tpm.signing import (check_signature_scheme, resolve_scheme, sign_digest,
                                verify_digest)


@command(TPM_CC.Sign, handles=("object",), auth=1, decrypt=True)
def sign(tpm, cmd):
    r = cmd.r
    digest = r.at(1).tpm2b(64)
    in_scheme = parse_sig_scheme(r.at(2))
    _, hierarchy, tk_digest = parse_ticket(r.at(3), TPM_ST.HASHCHECK)
    r.done()
    obj = tpm.get_object(cmd.handles[0])
    scheme = resolve_scheme(obj, in_scheme, 2)
    if len(digest) != HASHES[scheme[1]].size:
        raise TpmError(TPM_RC.SIZE, param=1)
    # a ticket given is checked even for an unrestricted key (the reference)
    if tk_digest or obj.attributes & TPMA_OBJECT.restricted:
        if hierarchy == TPM_RH.NULL or tk_digest != ticket_digest(tpm, TPM_ST.HASHCHECK,
                                                                  hierarchy, digest):
            raise TpmError(TPM_RC.TICKET, param=3)
    return b"", sign_digest(tpm, obj, scheme, digest).marshal()


@command(TPM_CC.VerifySignature, handles=("object",), decrypt=True)
def verify_signature(tpm, cmd):
    r = cmd.r
    digest = r.at(1).tpm2b(64)
    sig = Signature.parse(r.at(2), allow_null=False)
    r.done()
    obj = tpm.get_object(cmd.handles[0])
    if not obj.attributes & TPMA_OBJECT.sign:
        raise TpmError(TPM_RC.ATTRIBUTES, handle=1)
    check_signature_scheme(obj, sig, 2)
    if not verify_digest(obj, digest, sig):
        raise TpmError(TPM_RC.SIGNATURE, param=2)
    return b"", ticket(tpm, TPM_ST.VERIFIED, obj.hierarchy, digest + obj.name)

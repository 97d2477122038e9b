"""TPMS_ATTEST, the structure every attestation command signs (Part 2, 10.12).

    magic u32 (TPM_GENERATED_VALUE) || type u16 (TPM_ST_ATTEST_*) ||
    qualifiedSigner TPM2B_NAME || extraData TPM2B_DATA ||
    clockInfo {clock u64, resetCount u32, restartCount u32, safe u8} ||
    firmwareVersion u64 || attested (by type)

``attested`` is a dict; its keys by type are:

* QUOTE: ``pcr_select`` (list of (hashAlg, bitmap)), ``pcr_digest``
* CERTIFY: ``name``, ``qualified_name``
* CREATION: ``object_name``, ``creation_hash``
* NV: ``index_name``, ``offset``, ``nv_contents``
* TIME: ``time``, ``clock_info`` (tuple), ``firmware_version``
* COMMAND_AUDIT: ``audit_counter``, ``digest_alg``, ``audit_digest``, ``command_digest``
* SESSION_AUDIT: ``exclusive_session`` (0/1), ``session_digest``

A verifier parses a quote with :meth:`Attest.from_bytes` and checks the
signature over the same bytes.
"""

from simxen.tpm.constants import TPM_GENERATED_VALUE, TPM_RC, TPM_ST
from simxen.tpm.errors import TpmError
from simxen.tpm.marshal import Reader, tpm2b, u16, u32, u64
from simxen.tpm.pcr_selection import marshal_pcr_selection, parse_pcr_selection


class Attest:
    """A TPMS_ATTEST."""

    __slots__ = ("magic", "type", "qualified_signer", "extra_data", "clock",
                 "reset_count", "restart_count", "safe", "firmware_version", "attested")

    def __init__(self, type, qualified_signer, extra_data, clock, reset_count,
                 restart_count, safe, firmware_version, attested, magic=TPM_GENERATED_VALUE):
        self.magic = magic
        self.type = type
        self.qualified_signer = qualified_signer
        self.extra_data = extra_data
        self.clock = clock
        self.reset_count = reset_count
        self.restart_count = restart_count
        self.safe = safe
        self.firmware_version = firmware_version
        self.attested = attested

    def marshal(self):
        a = self.attested
        head = (u32(self.magic) + u16(self.type) + tpm2b(self.qualified_signer)
                + tpm2b(self.extra_data) + u64(self.clock) + u32(self.reset_count)
                + u32(self.restart_count) + bytes((self.safe,)) + u64(self.firmware_version))
        t = self.type
        if t == TPM_ST.ATTEST_QUOTE:
            body = marshal_pcr_selection(a["pcr_select"]) + tpm2b(a["pcr_digest"])
        elif t == TPM_ST.ATTEST_CERTIFY:
            body = tpm2b(a["name"]) + tpm2b(a["qualified_name"])
        elif t == TPM_ST.ATTEST_CREATION:
            body = tpm2b(a["object_name"]) + tpm2b(a["creation_hash"])
        elif t == TPM_ST.ATTEST_NV:
            body = tpm2b(a["index_name"]) + u16(a["offset"]) + tpm2b(a["nv_contents"])
        elif t == TPM_ST.ATTEST_COMMAND_AUDIT:
            body = (u64(a["audit_counter"]) + u16(a["digest_alg"]) + tpm2b(a["audit_digest"])
                    + tpm2b(a["command_digest"]))
        elif t == TPM_ST.ATTEST_SESSION_AUDIT:
            body = bytes((a["exclusive_session"],)) + tpm2b(a["session_digest"])
        elif t == TPM_ST.ATTEST_TIME:
            ci = a["clock_info"]
            body = (u64(a["time"]) + u64(ci[0]) + u32(ci[1]) + u32(ci[2]) + bytes((ci[3],))
                    + u64(a["firmware_version"]))
        else:
            raise ValueError(f"unsupported attestation type {t:#06x}")
        return head + body

    @classmethod
    def from_bytes(cls, data):
        """Parse a complete TPMS_ATTEST; :class:`TpmError` if malformed."""
        r = Reader(data)
        magic = r.u32()
        t = r.u16()
        signer = r.tpm2b()
        extra = r.tpm2b()
        clock, reset, restart, safe = r.u64(), r.u32(), r.u32(), r.u8()
        fw = r.u64()
        if t == TPM_ST.ATTEST_QUOTE:
            a = {"pcr_select": parse_pcr_selection(r), "pcr_digest": r.tpm2b()}
        elif t == TPM_ST.ATTEST_CERTIFY:
            a = {"name": r.tpm2b(), "qualified_name": r.tpm2b()}
        elif t == TPM_ST.ATTEST_CREATION:
            a = {"object_name": r.tpm2b(), "creation_hash": r.tpm2b()}
        elif t == TPM_ST.ATTEST_NV:
            a = {"index_name": r.tpm2b(), "offset": r.u16(), "nv_contents": r.tpm2b()}
        elif t == TPM_ST.ATTEST_COMMAND_AUDIT:
            a = {"audit_counter": r.u64(), "digest_alg": r.u16(), "audit_digest": r.tpm2b(),
                 "command_digest": r.tpm2b()}
        elif t == TPM_ST.ATTEST_SESSION_AUDIT:
            a = {"exclusive_session": r.u8(), "session_digest": r.tpm2b()}
        elif t == TPM_ST.ATTEST_TIME:
            a = {"time": r.u64(), "clock_info": (r.u64(), r.u32(), r.u32(), r.u8()),
                 "firmware_version": r.u64()}
        else:
            raise TpmError(TPM_RC.TAG)
        r.done()
        return cls(t, signer, extra, clock, reset, restart, safe, fw, a, magic=magic)

    def __eq__(self, other):
        return isinstance(other, Attest) and self.marshal() == other.marshal()

    def __repr__(self):
        return f"Attest(type={self.type:#06x}, extra_data={self.extra_data.hex()})"

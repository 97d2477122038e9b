"""What the manager answers: deep quote, pTPM passthrough, boot hash, refusals."""

import hashlib
import struct

from domain_helpers import boot, run

from simxen.domains.host_boot import expected_pcrs
from simxen.domains.verifier import verify_signature
from simxen.domains.vtpm import deep_quote_command
from simxen.protocols import vtpmmgr as mgr
from simxen.tpm import client
from simxen.tpm.attest import Attest
from simxen.tpm.signature import Signature


def transmit(host, command):
    return (yield from host.guest("guest1").tpm.transmit(command))


def test_deep_quote_is_a_physical_quote_binding_the_data_and_the_host_pcrs():
    hv, host = boot()
    data = hashlib.sha256(b"nonce || vTPM TPMS_ATTEST").digest()
    flags = mgr.VTPM_QUOTE_FLAGS_HASH_UUID
    reply = run(hv, host.guest("guest1").tpm.deep_quote(data, flags))
    quote = mgr.parse_get_quote_response(reply, flags)
    attest = Attest.from_bytes(quote.attest)
    assert attest.extra_data == mgr.deep_quote_external_data(data, flags, quote.hashes)
    uuid = bytes.fromhex("ac0a5b9ecbe24c07b43b1d69e46fb839")
    assert quote.hashes == (hashlib.sha256(uuid).digest(),)
    golden = expected_pcrs(host.spec.boot)
    assert list(quote.pcr_values) == [golden.get(i, bytes(32)) for i in range(10)]
    aik = run(hv, host.host_aik())
    assert verify_signature(aik, quote.attest, Signature.from_bytes(quote.signature))
    assert not verify_signature(aik, quote.attest[:-1] + b"\x00", Signature.from_bytes(quote.signature))
    assert hv.trace.select("vtpm.deep_quote")[0].fields["rc"] == 0


def test_a_malformed_deep_quote_is_a_tpm_error_not_a_crash():
    hv, host = boot()
    bad = deep_quote_command(b"x" * 65)                 # nonce longer than 64 bytes
    rsp = run(hv, transmit(host, bad))
    assert client.response_code(rsp) == 0x1C4           # TPM_RC_VALUE, parameter 1
    truncated = bad[:14]
    truncated = truncated[:2] + struct.pack(">I", len(truncated)) + truncated[6:]
    assert client.response_code(run(hv, transmit(host, truncated))) == 0x1C4


def test_tpm12_passthrough_get_random_reaches_the_physical_tpm():
    hv, host = boot()
    before = host.ptpm.commands
    cmd = struct.pack(">HIII", mgr.VTPM_TAG_REQ, 14, mgr.TPM_ORD_GetRandom, 16)
    rsp = run(hv, transmit(host, cmd))
    tag, size, rc, n = struct.unpack_from(">HIII", rsp)
    assert (tag, size, rc, n) == (mgr.TPM_TAG_RSP_COMMAND, 30, 0, 16) and len(rsp) == 30
    assert host.ptpm.commands == before + 1


def test_passthrough_refuses_what_xen_refuses():
    hv, host = boot()
    # TPM_Extend is for the admin vTPM only -- but this vTPM was the first: it is the admin.
    quote12 = struct.pack(">HII", mgr.VTPM_TAG_REQ, 10, 0x16)          # TPM_Quote: never
    assert mgr.response_code(run(hv, transmit(host, quote12))) == mgr.TPM_DISABLED_CMD
    bogus_tag = struct.pack(">HII", 0x0123, 10, 1)
    rsp = run(hv, transmit(host, bogus_tag))            # an unknown tag goes to the TPM 2.0 engine
    assert client.response_code(rsp) != 0


def test_get_boot_hash_and_management_requests():
    hv, host = boot()
    # A vTPM-level request from the guest is forwarded as a passthrough (tag 0x00C1):
    # ordinal 3 is not a TPM 1.2 passthrough ordinal.
    rsp = run(hv, transmit(host, mgr.get_boot_hash_request()))
    assert mgr.response_code(rsp) == mgr.TPM_DISABLED_CMD
    # Management (VTPM_TAG_REQ2) goes verbatim; groups are not modelled.
    group_list = mgr.pack_header(mgr.VTPM_TAG_REQ2, mgr.MANAGEMENT_ORDINALS["VTPM_ORD_GROUP_LIST"])
    assert mgr.response_code(run(hv, transmit(host, group_list))) == mgr.TPM_BAD_ORDINAL


def test_second_vtpm_is_not_admin_and_cannot_extend_physical_pcrs():
    from simxen.domains.stack import HostSpec
    hv, host = boot(HostSpec.standard(["guest1", "guest2"]))
    extend = struct.pack(">HIII", mgr.VTPM_TAG_REQ, 46, mgr.TPM_ORD_Extend, 23) + bytes(32)

    def both():
        a = yield from host.guest("guest1").tpm.transmit(extend)
        b = yield from host.guest("guest2").tpm.transmit(extend)
        return a, b

    first, second = run(hv, both())
    admin = [k.name for k in host.kernels("vtpm")
             if host.vtpmmgr.storage.is_admin(_uuid_of(host, k))]
    assert len(admin) == 1
    results = {"vtpm-guest1": mgr.response_code(first), "vtpm-guest2": mgr.response_code(second)}
    assert results[admin[0]] == mgr.TPM_SUCCESS
    assert [rc for name, rc in results.items() if name != admin[0]] == [mgr.TPM_DISABLED_CMD]


def _uuid_of(host, vtpm):
    import uuid
    for (domid, _), info in host.vtpmmgr.back.frontends.items():
        if domid == vtpm.domid:
            return uuid.UUID(info.uuid).bytes
    raise KeyError(vtpm.name)


def test_a_uuid_already_open_is_refused_to_a_second_vtpm():
    from simxen.domains.stack import HostSpec, guest_config, vtpm_config, vtpmmgr_config
    uuid = "ac0a5b9e-cbe2-4c07-b43b-1d69e46fb839"
    spec = HostSpec(configs=[vtpmmgr_config(), vtpm_config("vtpm-a", uuid),
                             vtpm_config("vtpm-b", uuid), guest_config("guest1", "vtpm-a")])
    hv, host = boot(spec)
    first, second = host.vtpm("vtpm-a"), host.vtpm("vtpm-b")
    assert first.restore_status == "new" and first.saves >= 1
    assert second.restore_status == "manager-error" and second.saves == 0 and second.save_blocked
    refused = [r for r in hv.trace.select("vtpmmgr.request")
               if r.fields["domid"] == second.domid and r.fields["ordinal"] == mgr.VTPM_ORD_LOADHASHKEY]
    assert [r.fields["rc"] for r in refused] == [mgr.TPM_DISABLED]


def test_a_vtpm_quoting_pcrs_the_physical_tpm_lacks_gets_an_error_not_a_crash():
    """GET_QUOTE straight from a vTPM (not through the guest's deep quote, which the
    vTPM checks) with a 4-byte SHA-256 select of PCRs 24..31: the manager hands the
    selection to the physical TPM, as Xen's ``vtpmmgr_GetQuote`` -> ``vtpm_do_quote``
    does, instead of failing to build the command (an IndexError ended the run)."""
    hv, host = boot()
    vtpm = host.vtpm("vtpm-guest1")
    selection = struct.pack(">IHB", 1, 0x000B, 4) + b"\0\0\0\xff"
    body = struct.pack(">H", 0) + selection + struct.pack(">I", 0)
    quote = mgr.pack_header(mgr.VTPM_TAG_REQ, mgr.VTPM_ORD_GET_QUOTE, body)
    assert mgr.response_code(run(hv, vtpm.front.transmit(quote))) == mgr.TPM_FAIL
    assert hv.trace.select("vtpmmgr.ptpm_error")
    # the manager still serves
    good = mgr.get_quote_request(b"n" * 32, [(0x000B, [0, 23])])
    reply = run(hv, vtpm.front.transmit(good))
    assert len(mgr.parse_get_quote_response(reply, 0).pcr_values) == 2

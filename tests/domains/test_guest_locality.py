"""The locality byte a guest stores in tpmif's shared page.

Xen's vTPM ignores it (``stubdom/vtpm/vtpm.c`` runs every command with
``tpm_handle_command(req, len, ...)``: no locality), so a guest that stores
2 still runs at locality 0 and cannot extend the dynamic-launch PCRs.
``guest_locality = "honour"`` is the what-if that trusts the byte.
"""

import pytest
from domain_helpers import boot, run

from simxen.analysis import narrate, trace_format
from simxen.domains.stack import HostSpec
from simxen.errors import InputError
from simxen.tpm import client
from simxen.tpm.constants import TPM_ALG, TPM_RC

EXTEND_17 = client.pcr_extend_command(17, {TPM_ALG.SHA256: bytes(range(32))})


def extend_at(host, locality):
    rsp = yield from host.guest("guest1").tpm.transmit(EXTEND_17, locality=locality)
    return client.response_code(rsp)


def spec(guest_locality=None):
    s = HostSpec.standard()
    if guest_locality is not None:
        s.options = {**s.options, "vtpm-guest1": {**s.options.get("vtpm-guest1", {}),
                                                   "guest_locality": guest_locality}}
    return s


@pytest.mark.parametrize("locality", [0, 2, 3, 4])
def test_xen_vtpm_runs_every_command_at_locality_0(locality):
    hv, host = boot(spec())
    # PCR 17 extends only from localities 2-4: at locality 0 it is TPM_RC_LOCALITY
    assert run(hv, extend_at(host, locality)) == TPM_RC.LOCALITY
    takes = [r for r in hv.trace.select("tpm.back.take") if r.fields["backend"] == "vtpm"]
    assert takes[-1].fields["locality"] == locality             # stored, carried, unused
    noted = [r.fields for r in hv.trace.select("vtpm.locality")]
    assert noted == ([{"flow": takes[-1].fields["flow"], "stored": locality, "used": 0}]
                     if locality else [])


def test_the_narrated_trace_says_the_byte_was_ignored():
    hv, host = boot(spec())
    run(hv, extend_at(host, 3))
    story = narrate.text(trace_format.from_trace(hv.trace))
    assert "with locality byte 3" in story
    assert "the guest stored locality 3 with its command; ignored" in story


def test_honouring_the_guests_locality_opens_the_dynamic_launch_pcrs():
    hv, host = boot(spec("honour"))
    assert run(hv, extend_at(host, 0)) == TPM_RC.LOCALITY
    assert run(hv, extend_at(host, 2)) == TPM_RC.SUCCESS
    assert hv.trace.select("vtpm.locality")[-1].fields["used"] == 2


def test_an_unknown_guest_locality_option_is_an_input_error():
    with pytest.raises(InputError, match="guest_locality"):
        boot(spec("trust"))

"""A malicious guest against the vTPM's backend: each attack answered by its Xen/TPM error.

The attacker is a guest kernel that connects like Linux's tpmfront and then
writes its shared page directly (``page.data``: plain stores, as a hostile
kernel would) instead of through the driver.
"""

import errno
import struct

import pytest

from simxen.drivers.tpmfront import TpmFrontError
from simxen.protocols import tpmif
from simxen.protocols.grant_table import GNTST_general_error
from simxen.tpm.constants import TPM_RC
from simxen.tpm.engine import error_response
from simxen.xen.errors import GrantError

from test_tpmfront import ECHO, Rig

S = tpmif


def connected(rig, guest=None):
    """Connect a frontend in ``guest`` and return it (runs the simulation)."""
    front = rig.front(guest)
    rig.run(front.connect())
    return front


def raw_submit(rig, front, command, *, length=None, nr_extra=None):
    """Store a request with plain writes and notify: what a hostile kernel does."""
    page = front.page.data
    n = page[S.TPMIF_OFF_NR_EXTRA_PAGES] if nr_extra is None else nr_extra
    page[S.TPMIF_OFF_NR_EXTRA_PAGES] = n
    at = S.data_offset(n)
    page[at:at + len(command)] = command
    struct.pack_into("<I", page, S.TPMIF_OFF_LENGTH, len(command) if length is None else length)
    page[S.TPMIF_OFF_STATE] = S.TPMIF_STATE_SUBMIT
    rig.hv.evtchn.send(front.dom, front.port)


def response_in(front):
    page = front.page.data
    length, state = struct.unpack_from("<IB", page)
    at = S.data_offset(page[S.TPMIF_OFF_NR_EXTRA_PAGES])
    return state, bytes(page[at:at + length])


def run_for(rig, seconds):
    rig.env.run(until=rig.env.now + seconds)


# -- a guest cannot map another guest's vTPM page ------------------------------

def test_a_guest_cannot_map_another_guests_vtpm_page():
    rig = Rig(guests=2)
    victim, attacker = rig.guests
    front = connected(rig, victim)
    gref = front.grefs[0]
    with pytest.raises(GrantError) as exc:
        rig.hv.gnttab.map_grant_ref(attacker, victim.domid, gref)
    assert exc.value.code == GNTST_general_error
    # the vTPM itself may: it is the grant's peer
    assert rig.hv.gnttab.query(victim, victim.domid, gref).domid == rig.vtpm.domid


def test_naming_another_guests_gref_as_ring_ref_gets_the_backend_closed():
    """The attacker publishes the victim's ring-ref number; tpmback maps it from the
    attacker's own grant table (the directory's domain), where it is not a grant."""
    rig = Rig(guests=2)
    victim, attacker = rig.guests
    rig.responder()
    vfront = connected(rig, victim)
    xs = rig.hv.xs
    port = rig.hv.evtchn.alloc_unbound(attacker, rig.vtpm.domid)
    xs.write(attacker, "device/vtpm/0/ring-ref", str(vfront.grefs[0]))
    xs.write(attacker, "device/vtpm/0/event-channel", str(port))
    xs.write(attacker, "device/vtpm/0/feature-protocol-v2", "1")
    xs.write(attacker, "device/vtpm/0/state", "3")
    run_for(rig, 1.0)
    path = f"{rig.back.base}/{attacker.domid}/0"
    assert xs.read(rig.hv.dom0, f"{path}/state") == "6"
    assert "GNTST_general_error" in xs.read(rig.hv.dom0, f"{path}/error") or \
        "general" in xs.read(rig.hv.dom0, f"{path}/error")
    maps = [m for m in rig.vtpm.maptrack.values()]
    assert [(m.domid, m.gref) for m in maps] == [(victim.domid, vfront.grefs[0])]
    # the victim is unaffected
    assert rig.run(vfront.transmit(b"still mine")) == ECHO + b"still mine"


# -- lying about the length ----------------------------------------------------

@pytest.mark.parametrize("length, nr_extra", [
    (S.TPMIF_MAX_PAYLOAD + 1, 0),
    (2**32 - 1, 0),
    (S.payload_capacity(1) + 1, 1),    # one byte beyond the first page and one extra page
])
def test_a_length_beyond_the_granted_pages_gets_tpm_rc_command_size(length, nr_extra):
    rig = Rig()
    rig.responder()
    front = connected(rig)
    raw_submit(rig, front, b"\x80\x01" + b"A" * 30, length=length, nr_extra=nr_extra)
    run_for(rig, 0.1)
    assert response_in(front) == (S.TPMIF_STATE_FINISH, error_response(TPM_RC.COMMAND_SIZE))
    assert rig.served == []
    (reject,) = rig.hv.trace.select("tpm.back.reject")
    assert reject.fields["rc"] == TPM_RC.COMMAND_SIZE
    # and the connection still works once the kernel behaves again
    front.page.data[S.TPMIF_OFF_NR_EXTRA_PAGES] = 0
    assert rig.run(front.transmit(b"honest")) == ECHO + b"honest"


def test_extra_pages_that_are_not_granted_get_tpm_rc_failure():
    rig = Rig()
    rig.responder()
    front = connected(rig)
    page = front.page.data
    struct.pack_into("<2I", page, S.TPMIF_OFF_EXTRA_PAGES, 12345, 9)   # garbage refs
    raw_submit(rig, front, b"x" * 5000, nr_extra=2)
    run_for(rig, 0.1)
    assert response_in(front) == (S.TPMIF_STATE_FINISH, error_response(TPM_RC.FAILURE))
    assert list(rig.vtpm.maptrack.values())[0].gref == front.grefs[0]
    assert len(rig.vtpm.maptrack) == 1


# -- flipping the state ----------------------------------------------------------

def test_state_flipped_before_the_backend_takes_it_is_answered_with_an_error():
    rig = Rig()                              # server not started yet
    front = connected(rig)
    raw_submit(rig, front, b"cmd")
    run_for(rig, 0.01)                       # the handler marked it ready
    front.page.data[S.TPMIF_OFF_STATE] = S.TPMIF_STATE_FINISH    # a backend-only state
    rig.responder()
    run_for(rig, 0.01)
    assert response_in(front) == (S.TPMIF_STATE_FINISH, error_response(TPM_RC.FAILURE))
    assert rig.served == []
    assert "not SUBMIT" in rig.hv.trace.select("tpm.back.reject")[0].fields["reason"]


def test_state_flipped_while_served_is_recorded_and_answered_with_the_first_copy():
    rig = Rig()
    rig.responder(hold=0.01)
    front = connected(rig)
    raw_submit(rig, front, b"original")
    run_for(rig, 0.005)                      # taken, being served
    page = front.page.data
    for state in (S.TPMIF_STATE_IDLE, S.TPMIF_STATE_FINISH, S.TPMIF_STATE_SUBMIT):
        page[S.TPMIF_OFF_STATE] = state      # flip, and spam notifications
        rig.hv.evtchn.send(front.dom, front.port)
        run_for(rig, 0.001)
    page[S.TPMIF_OFF_STATE] = S.TPMIF_STATE_IDLE
    run_for(rig, 0.01)
    assert response_in(front) == (S.TPMIF_STATE_FINISH, ECHO + b"original")
    violations = rig.hv.trace.select("tpm.back.violation")
    whats = [r.fields["what"] for r in violations]
    assert "SUBMIT while the previous command is being served" in whats
    assert "state changed while the command was served" in whats
    details = [r.fields.get("detail") for r in violations if r.fields["what"] == "illegal state change"]
    assert "EPERM: the frontend may not write state IDLE" in details
    assert "EPERM: the frontend may not write state FINISH" in details
    assert [r.command for r in rig.served] == [b"original"]


# -- double fetch --------------------------------------------------------------

def test_rewriting_the_command_after_submitting_changes_nothing():
    """The backend copies the command once; the responder echoes that copy."""
    rig = Rig()
    rig.responder(hold=0.01)
    front = connected(rig)
    first = b"\x80\x01\x00\x00\x00\x12\x00\x00\x01\x82" + b"FIRST..."
    raw_submit(rig, front, first)
    run_for(rig, 0.002)                      # taken and copied
    assert [r.command for r in rig.served] == [first]
    page = front.page.data
    second = b"\x80\x01\x00\x00\x0f\xff\x00\x00\x01\x7e" + b"SECOND" * 50
    page[S.TPMIF_HEADER_SIZE:S.TPMIF_HEADER_SIZE + len(second)] = second
    struct.pack_into("<I", page, S.TPMIF_OFF_LENGTH, len(second))
    run_for(rig, 0.02)
    assert response_in(front) == (S.TPMIF_STATE_FINISH, ECHO + first)
    copies = [r for r in rig.hv.trace.select("page.read")
              if r.fields.get("what") == "tpmif.command"]
    assert len(copies) == 1                  # exactly one fetch of the command bytes


# -- destroying a guest mid-request -------------------------------------------------

def test_destroying_a_guest_mid_request_releases_its_grants_and_channels():
    rig = Rig(guests=2)
    victim, other = rig.guests
    rig.responder(hold=0.05)
    vfront = connected(rig, victim)
    ofront = connected(rig, other)
    vgref, vport = vfront.grefs[0], vfront.port
    back_port = next(p for p, port in rig.vtpm.ports.items() if port.remote_dom == victim.domid)
    def kernel():
        try:
            yield from vfront.transmit(b"in flight")
        except TpmFrontError as err:
            return err.errno
    in_flight = rig.env.process(kernel())
    run_for(rig, 0.01)
    assert [r.domid for r in rig.served] == [victim.domid]
    rig.hv.domain_destroy(victim.domid)
    # the vTPM still maps the victim's page: the victim is a zombie until tpmback lets go
    run_for(rig, 1.0)
    hv = rig.hv
    assert victim.domid not in hv.domains                       # reaped
    assert all(m.domid != victim.domid for m in rig.vtpm.maptrack.values())
    assert back_port not in rig.vtpm.ports
    assert not hv.xs.exists(hv.dom0, f"{rig.back.base}/{victim.domid}/0")
    assert rig.back.dropped == 1                                # its response went nowhere
    assert hv.trace.select("tpm.back.drop")[0].fields["domid"] == victim.domid
    assert [c.domid for c in rig.closed] == [victim.domid]
    assert in_flight.value == -errno.ENODEV
    assert (vgref, vport) == (vfront.grefs[0], vfront.port)     # untouched: the domain is gone
    # the backend keeps serving the other guest
    assert rig.run(ofront.transmit(b"alive")) == ECHO + b"alive"


# -- dom0 against the TIS window ------------------------------------------------------

def test_dom0_cannot_reach_the_tis_window_once_the_manager_holds_it():
    """Before the manager exists the privileged domain could drive the TPM; after the
    toolstack gives the window to vtpmmgr (iomem=["fed40,5"]) it cannot even map it."""
    from simxen.drivers.tis import TisDriver
    from simxen.hw.tpm_chip import TIS_FIRST_MFN, TpmChip
    from simxen.tpm import TpmEngine, client
    from simxen.xen import Hypervisor
    from simxen.xen import errno as xen_errno
    from simxen.xen.errors import IomemError

    hv = Hypervisor(seed=1)
    TpmChip(hv, TpmEngine(seed=b"host", random_bytes=hv.streams.random_bytes("ptpm")))
    early = hv.iomem.map(hv.dom0, TIS_FIRST_MFN, 5)          # nobody owns it yet
    mgr = hv.domain_create("vtpmmgr", iomem=[(TIS_FIRST_MFN, 5)])
    for first, count in ((TIS_FIRST_MFN, 5), (TIS_FIRST_MFN, 1), (TIS_FIRST_MFN + 2, 1)):
        with pytest.raises(IomemError) as exc:
            hv.iomem.map(hv.dom0, first, count)
        assert exc.value.code == -xen_errno.EPERM
    with pytest.raises(IomemError) as exc:                    # a mapping made before is dead
        early.read(0, 1)
    assert exc.value.code == -xen_errno.EPERM
    with pytest.raises(IomemError) as exc:                    # and dom0 cannot take it back
        hv.iomem.permission(hv.dom0, 0, TIS_FIRST_MFN, 5)
    assert exc.value.code == -xen_errno.EBUSY
    tis = TisDriver(hv, mgr).open()
    proc = hv.env.process(tis.transmit(client.startup_command()))
    hv.env.run(until=proc)
    assert proc.value[6:10] == b"\0\0\0\0"


# -- a frontend state xenbus.h does not define ---------------------------------------

@pytest.mark.parametrize("value, kept", [("99", True), ("9", True), ("7", True),
                                         ("abc", False), ("-3", False)])
def test_a_state_number_xenbus_does_not_name_is_ignored_not_taken_for_a_vanished_frontend(
        value, kept):
    """mini-os tpmback's ``frontend_changed`` reads the state with ``xenbus_read_integer``:
    a number outside ``enum xenbus_state`` hits the ``default`` case ("BAD STATE CHANGE")
    and is ignored; only a failed read or a negative number is ``XenbusStateUnknown``,
    which frees the interface and removes the backend directory."""
    rig = Rig()
    rig.responder()
    front = connected(rig)
    xs, dom0 = rig.hv.xs, rig.hv.dom0
    path = f"{rig.back.base}/{rig.guest.domid}/0"
    xs.write(rig.guest, "device/vtpm/0/state", value)
    run_for(rig, 1.0)
    assert xs.exists(dom0, path) == kept
    assert rig.back.connected(rig.guest.domid) == kept
    assert len(rig.closed) == (0 if kept else 1)
    if kept:
        assert xs.read(dom0, f"{path}/state") == "4"
        assert rig.run(front.transmit(b"still here")) == ECHO + b"still here"

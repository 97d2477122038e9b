"""Bad input to a hypercall gets Xen's error code, never a Python traceback."""

from hypothesis import HealthCheck, given, settings, strategies as st

from simxen.protocols.grant_table import pack_entry, unpack_entry
from simxen.xen import EvtchnError, GrantError, Hypervisor, XenStoreError

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def fresh():
    hv = Hypervisor(seed=0)
    return hv, hv.domain_create("a"), hv.domain_create("b")


HV, A, B = fresh()


@SETTINGS
@given(path=st.text(max_size=40), value=st.text(max_size=20))
def test_xenstore_paths(path, value):
    for op in (lambda: HV.xs.read(A, path), lambda: HV.xs.write(A, path, value),
               lambda: HV.xs.directory(A, path), lambda: HV.xs.rm(A, path),
               lambda: HV.xs.get_perms(A, path)):
        try:
            op()
        except XenStoreError as err:
            assert err.name in ("ENOENT", "EACCES", "EINVAL", "E2BIG")


@SETTINGS
@given(perms=st.lists(st.text(max_size=6), max_size=4))
def test_xenstore_perms(perms):
    HV.xs.write(A, "p", "x")
    try:
        HV.xs.set_perms(A, "p", perms)
    except XenStoreError as err:
        assert err.name in ("EINVAL", "EACCES")


@SETTINGS
@given(domid=st.integers(-5, 0x8000), gref=st.integers(-5, 1 << 20), ro=st.booleans())
def test_grant_map_arbitrary_refs(domid, gref, ro):
    try:
        HV.gnttab.map_grant_ref(B, domid, gref, readonly=ro)
    except GrantError as err:
        assert err.code in (-1, -2, -3)


@SETTINGS
@given(port=st.integers(-5, 10000), remote=st.integers(-5, 0x8000))
def test_evtchn_arbitrary_ports(port, remote):
    for op in (lambda: HV.evtchn.send(A, port), lambda: HV.evtchn.close(B, port),
               lambda: HV.evtchn.unmask(A, port),
               lambda: HV.evtchn.bind_interdomain(B, remote, port)):
        try:
            op()
        except EvtchnError as err:
            assert err.code in (-22, -3)


@given(flags=st.integers(0, 0xFFFF), domid=st.integers(0, 0xFFFF), frame=st.integers(0, 2**32 - 1))
def test_grant_entry_layout_round_trips(flags, domid, frame):
    raw = pack_entry(flags, domid, frame)
    assert len(raw) == 8 and unpack_entry(raw) == (flags, domid, frame)
    assert raw[:2] == flags.to_bytes(2, "little")

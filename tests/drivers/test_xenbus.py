"""The xenbus handshake through XenStore: connect, close, reconnect, failure."""

import pytest

from simxen.drivers.xenbus import XenbusBackend, XenbusError, XenbusFrontend, add_device
from simxen.protocols.xenbus import XenbusState as S, backend_path, frontend_path
from simxen.xen import Hypervisor


@pytest.fixture
def hv():
    return Hypervisor(seed=2)


@pytest.fixture
def setup(hv):
    fe, be = hv.domain_create("guest"), hv.domain_create("vtpm")
    fpath, bpath = add_device(hv, hv.dom0, fe.domid, be.domid, "vtpm",
                              back_extra={"uuid": "00000000-0000-0000-0000-000000000001"})
    return fe, be, fpath, bpath


def states_of(hv, path):
    """Every value written to ``path``, in order, from the trace."""
    return [int(r.fields["value"]) for r in hv.trace.select("xs.write")
            if r.fields["path"] == path]


def test_toolstack_creates_both_directories_with_reference_keys(hv, setup):
    fe, be, fpath, bpath = setup
    assert fpath == frontend_path(1, "vtpm", 0) == "/local/domain/1/device/vtpm/0"
    assert bpath == backend_path(2, "vtpm", 1, 0) == "/local/domain/2/backend/vtpm/1/0"
    xs = hv.xs
    assert {k: xs.read(fe, f"{fpath}/{k}") for k in xs.directory(fe, fpath)} == {
        "backend": bpath, "backend-id": "2", "state": "1", "handle": "0"}
    assert {k: xs.read(be, f"{bpath}/{k}") for k in xs.directory(be, bpath)} == {
        "frontend": fpath, "frontend-id": "1", "online": "1", "state": "1", "handle": "0",
        "uuid": "00000000-0000-0000-0000-000000000001"}
    assert xs.get_perms(hv.dom0, fpath) == ["n1", "r2"]
    assert xs.get_perms(hv.dom0, bpath) == ["n2", "r1"]
    third = hv.domain_create("third")
    assert not xs.exists(third, f"{bpath}/uuid")


def run_pair(hv, fe, be, frontend_steps, connect=None, disconnect=None):
    log = []

    def backend():
        bus = XenbusBackend(hv, be, fe.domid, "vtpm")

        def on_connect():
            log.append(("connect", bus.read_otherend("ring-ref")))
            if connect:
                connect()

        def on_disconnect():
            log.append(("disconnect",))

        yield from bus.serve(on_connect, on_disconnect)
        log.append(("backend done", bus.state))

    def frontend():
        bus = XenbusFrontend(hv, fe, "vtpm")
        yield from frontend_steps(bus, log)

    hv.env.process(backend())
    hv.env.process(frontend())
    hv.env.run()
    return log


def test_full_handshake_close_and_reconnect(hv, setup):
    fe, be, fpath, bpath = setup

    def steps(bus, log):
        for ref in ("8", "9"):                              # pv-grub, then the kernel
            yield from bus.connect(lambda tx, ref=ref: bus.write("ring-ref", ref, tx=tx))
            log.append(("front connected", bus.otherend_state()))
            yield from bus.close(remove_keys=("ring-ref",))
            log.append(("front closed", bus.state, bus.otherend_state()))
        hv.xs.rm(hv.dom0, fpath)                           # toolstack removes the device

    log = run_pair(hv, fe, be, steps)
    assert log == [("connect", "8"), ("front connected", S.Connected), ("disconnect",),
                   ("front closed", S.Initialising, S.InitWait),
                   ("connect", "9"), ("front connected", S.Connected), ("disconnect",),
                   ("front closed", S.Initialising, S.InitWait),
                   ("backend done", S.Closed)]
    assert states_of(hv, f"{fpath}/state") == [1, 3, 4, 5, 6, 1, 3, 4, 5, 6, 1]
    # mini-os writes Closing and Closed back to back: the backend only sees Closed.
    assert states_of(hv, f"{bpath}/state") == [1, 2, 4, 2, 4, 2, 6]


def test_backend_follows_a_slow_close_through_closing(hv, setup):
    fe, be, fpath, bpath = setup

    def steps(bus, log):
        yield from bus.connect(lambda tx: bus.write("ring-ref", "8", tx=tx))
        bus.switch_state(S.Closing)
        state = yield from bus.wait_otherend({S.Closing})
        log.append(("backend went", state))
        bus.switch_state(S.Closed)
        yield from bus.wait_otherend({S.InitWait})
        hv.xs.rm(hv.dom0, fpath)

    log = run_pair(hv, fe, be, steps)
    assert ("backend went", S.Closing) in log
    assert states_of(hv, f"{bpath}/state") == [1, 2, 4, 5, 2, 6]


def test_backend_failing_to_connect_goes_closed_and_frontend_gets_error(hv, setup):
    fe, be, fpath, bpath = setup

    def steps(bus, log):
        with pytest.raises(XenbusError) as e:
            yield from bus.connect(lambda tx: bus.write("ring-ref", "8", tx=tx))
        log.append(("front error", e.value.state))
        hv.xs.rm(hv.dom0, fpath)

    def bad_connect():
        raise ValueError("ring-ref is not a grant of yours")

    log = run_pair(hv, fe, be, steps, connect=bad_connect)
    assert ("front error", S.Closed) in log
    assert "connect failed" in hv.xs.read(hv.dom0, f"{bpath}/error")
    assert log[-1] == ("backend done", S.Closed)


def test_connect_timeout_raises(hv, setup):
    fe, be, fpath, bpath = setup               # no backend runs at all
    result = []

    def frontend():
        bus = XenbusFrontend(hv, fe, "vtpm")
        try:
            yield from bus.connect(lambda tx: None, timeout=0.5)
        except XenbusError as err:
            result.append((str(err), bus.state))

    hv.env.process(frontend())
    hv.env.run()
    (message, state), = result
    assert "not connected in time" in message and state == S.Closing


def test_frontend_may_publish_before_backend_reaches_initwait(hv, setup):
    """Linux's frontend does not wait for InitWait: the handshake still completes."""
    fe, be, fpath, bpath = setup

    def steps(bus, log):
        yield from bus.connect(lambda tx: bus.write("ring-ref", "8", tx=tx))
        log.append(("front connected",))
        hv.xs.rm(hv.dom0, fpath)

    def late_backend():
        yield be.sleep(0.5)                    # the backend domain starts late
        bus = XenbusBackend(hv, be, fe.domid, "vtpm")
        yield from bus.serve(lambda: None)

    hv.env.process(late_backend())
    log = []
    hv.env.process(steps(XenbusFrontend(hv, fe, "vtpm"), log))
    hv.env.run()
    assert log == [("front connected",)]
    assert states_of(hv, f"{fpath}/state")[:2] == [1, 3]

"""Domains: ids, pages, the time cursor and blocking."""

import pytest

from simxen.protocols.event_channel import DOMID_FIRST_RESERVED
from simxen.xen import Hypervisor, PageFault, XenError
from simxen.xen import errno


def test_domids_names_and_dom0(hv):
    assert hv.dom0.domid == 0 and hv.dom0.privileged and hv.dom0.name == "Domain-0"
    a, b = hv.domain_create("a"), hv.domain_create("b", pages=3)
    assert (a.domid, b.domid) == (1, 2) and not a.privileged
    assert len(b.pages) == 3 and all(len(p.data) == 4096 for p in b.pages.values())
    assert len({p.mfn for d in (a, b) for p in d.pages.values()}) == 3
    with pytest.raises(XenError) as e:
        hv.domain_create("a")
    assert e.value.code == -errno.EEXIST
    with pytest.raises(XenError) as e:
        hv.domain_destroy(99)
    assert e.value.code == -errno.ESRCH
    with pytest.raises(XenError):
        hv.domain_destroy(0)


@pytest.mark.parametrize("vcpus", [0, -1, 8193, 2 ** 31, True, 1.0])
def test_a_domain_outside_xens_vcpu_limits_is_refused_with_einval(hv, vcpus):
    """XEN_DOMCTL_createdomain: 1 to MAX_VIRT_CPUS (8,192) vCPUs for a PV domain."""
    with pytest.raises(XenError) as e:
        hv.domain_create("many", vcpus=vcpus)
    assert e.value.code == -errno.EINVAL
    assert "XEN_DOMCTL_createdomain" in str(e.value)
    assert hv.domain_named("many") is None
    assert hv.domain_create("most", vcpus=8192).vcpus == 8192


def test_destroyed_domain_cannot_act(hv):
    a = hv.domain_create("a")
    hv.domain_destroy(a.domid)
    with pytest.raises(XenError) as e:
        hv.evtchn.alloc_unbound(a, 0)
    assert e.value.code == -errno.ESRCH
    with pytest.raises(XenError):
        hv.xs.read(a, "name")


def test_page_access_is_declared_costed_and_bounded(hv):
    a = hv.domain_create("a")
    page = a.alloc_page()
    before = a.now
    a.page_write(page, 10, b"hello", what="greeting", flow=3)
    assert a.now > before and page.data[10:15] == b"hello"
    assert a.page_read(page, 10, 5) == b"hello"
    rec = hv.trace.select("page.write")[0]
    assert rec.fields == {"offset": 10, "length": 5, "gfn": page.gfn, "data": b"hello",
                          "what": "greeting", "flow": 3}
    big = bytes(100)
    a.page_write(page, 0, big)
    assert "data" not in hv.trace.select("page.write")[-1].fields   # large: length only
    with pytest.raises(PageFault):
        a.page_write(page, 4090, b"12345678")


def test_cursor_runs_ahead_and_block_lets_it_elapse(hv, run):
    a = hv.domain_create("a")

    def guest():
        t0 = hv.env.now
        for _ in range(10):
            hv.xs.write(a, "k", "v")            # charged, no events
        assert hv.env.now == t0 and a.cursor > t0
        charged = a.cursor
        yield a.elapse()
        assert hv.env.now == pytest.approx(charged)
        yield a.sleep(1.0)
        return hv.env.now - charged

    assert run(guest()) == pytest.approx(1.0)


def test_block_timeout_without_events(hv, run):
    a = hv.domain_create("a")

    def guest():
        start = a.now
        yield a.block(timeout=0.25)
        return hv.env.now - start

    assert run(guest()) == pytest.approx(0.25)


def test_two_processes_of_one_domain_wait_for_different_things(hv, run):
    a, b = hv.domain_create("a"), hv.domain_create("b")
    p1 = hv.evtchn.alloc_unbound(a, b.domid)
    p2 = hv.evtchn.alloc_unbound(a, b.domid)
    q1 = hv.evtchn.bind_interdomain(b, a.domid, p1)
    q2 = hv.evtchn.bind_interdomain(b, a.domid, p2)
    b.evtchn_take_pending()
    woken = []

    def waiter(port, name):
        yield b.poll([port])
        b.evtchn_clear(port)
        woken.append((name, hv.env.now))

    def sender():
        yield a.sleep(b.now - a.now + 0.1)
        hv.evtchn.send(a, p2)
        yield a.sleep(0.1)
        hv.evtchn.send(a, p1)

    hv.env.process(waiter(q1, "first"))
    hv.env.process(waiter(q2, "second"))
    run(sender())
    assert [n for n, _ in woken] == ["second", "first"]
    assert woken[1][1] - woken[0][1] == pytest.approx(0.1, abs=1e-3)


def test_random_bytes_and_profile_given_as_object():
    hv = Hypervisor(seed=3, profile="default")
    assert Hypervisor(profile=hv.profile).profile is hv.profile


@pytest.mark.slow
def test_domids_wrap_and_are_given_again_and_run_out_with_enomem(hv, pair):
    """XEN_DOMCTL_createdomain's rover: 1, 2, 3 ... up to 0x7FEF, then from 1 again,
    the first id no domain holds -- a dying (zombie) domain still holds its own --
    and -ENOMEM when every id is held (about 3 s: 32,751 domains)."""
    front, back = pair                                  # domids 1 and 2
    made = [hv.domain_create(f"d{i}") for i in range(3, DOMID_FIRST_RESERVED)]
    assert [d.domid for d in made[:2]] == [3, 4] and made[-1].domid == DOMID_FIRST_RESERVED - 1
    with pytest.raises(XenError) as e:
        hv.domain_create("one-too-many")
    assert e.value.code == -errno.ENOMEM and "no free domain id" in str(e.value)
    assert hv.domain_named("one-too-many") is None
    page = front.alloc_page()                           # front's page stays mapped by back:
    gref = hv.gnttab.grant_foreign_access(front, back.domid, page.gfn)
    hv.gnttab.map_grant_ref(back, front.domid, gref)
    hv.domain_destroy(front.domid)                      # front dies but holds domid 1
    hv.domain_destroy(7)
    hv.domain_destroy(5)
    assert front.dying and 1 in hv.domains
    assert [hv.domain_create(n).domid for n in ("again", "and-again")] == [5, 7]

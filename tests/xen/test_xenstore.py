"""XenStore: permissions, errors by errno name, watches, transactions."""

import pytest

from simxen.xen import XenStoreError
from simxen.xen import errno


def err(excinfo):
    return excinfo.value.name


def test_domain_home_nodes_exist_and_are_owned(hv, pair):
    front, back = pair
    assert hv.xs.read(front, "name") == "front"              # relative to home
    assert hv.xs.read(front, "/local/domain/1/domid") == "1"
    assert hv.xs.get_perms(front, "/local/domain/1") == ["n1"]
    assert hv.xs.directory(hv.dom0, "/local/domain") == ["0", "1", "2"]


def test_unprivileged_cannot_read_or_write_others(hv, pair):
    front, back = pair
    with pytest.raises(XenStoreError) as e:
        hv.xs.read(back, "/local/domain/1/name")
    assert err(e) == "EACCES" and e.value.code == -errno.EACCES
    with pytest.raises(XenStoreError) as e:
        hv.xs.write(back, "/local/domain/1/evil", "x")
    assert err(e) == "EACCES"
    with pytest.raises(XenStoreError) as e:
        hv.xs.rm(back, "/local/domain/1/name")
    assert err(e) == "EACCES"
    hv.xs.write(hv.dom0, "/local/domain/1/set-by-dom0", "ok")   # dom0 may
    assert hv.xs.read(front, "set-by-dom0") == "ok"


def test_permissions_grant_read_and_owner_sets_perms(hv, pair):
    front, back = pair
    hv.xs.write(front, "data/key", "v")
    with pytest.raises(XenStoreError):
        hv.xs.read(back, "/local/domain/1/data/key")
    hv.xs.set_perms(front, "data/key", ["n1", "r2"])
    assert hv.xs.read(back, "/local/domain/1/data/key") == "v"
    with pytest.raises(XenStoreError) as e:                   # read is not write
        hv.xs.write(back, "/local/domain/1/data/key", "w")
    assert err(e) == "EACCES"
    with pytest.raises(XenStoreError) as e:                   # not the owner
        hv.xs.set_perms(back, "/local/domain/1/data/key", ["b2"])
    assert err(e) == "EACCES"
    hv.xs.set_perms(front, "data/key", ["n1", "b2"])
    hv.xs.write(back, "/local/domain/1/data/key", "w")
    assert hv.xs.read(front, "data/key") == "w"


def test_created_nodes_inherit_and_unprivileged_creator_owns(hv, pair):
    front, back = pair
    hv.xs.mkdir(hv.dom0, "/shared")
    hv.xs.set_perms(hv.dom0, "/shared", ["w0"])                # everyone may write
    hv.xs.write(front, "/shared/a/b", "1")
    assert hv.xs.get_perms(hv.dom0, "/shared/a/b") == ["w1"]
    assert hv.xs.get_perms(hv.dom0, "/shared/a") == ["w1"]
    hv.xs.write(hv.dom0, "/shared/c", "2")
    assert hv.xs.get_perms(hv.dom0, "/shared/c") == ["w0"]


def test_missing_nodes_and_bad_input(hv, pair):
    front, back = pair
    for op in (lambda: hv.xs.read(front, "nope"),
               lambda: hv.xs.directory(front, "nope"),
               lambda: hv.xs.get_perms(front, "nope"),
               lambda: hv.xs.set_perms(front, "nope", ["n1"]),
               lambda: hv.xs.rm(front, "nope/deeper")):
        with pytest.raises(XenStoreError) as e:
            op()
        assert err(e) == "ENOENT"
    hv.xs.rm(front, "nope")              # missing node, existing parent: fine, as xenstored
    for bad in ("", "a//b", "/trailing/", "spa ce", "dot.ted"):
        with pytest.raises(XenStoreError) as e:
            hv.xs.read(front, bad)
        assert err(e) == "EINVAL"
    with pytest.raises(XenStoreError) as e:
        hv.xs.rm(hv.dom0, "/")
    assert err(e) == "EINVAL"
    with pytest.raises(XenStoreError) as e:
        hv.xs.write(front, "big", "x" * 4097)
    assert err(e) == "E2BIG"
    with pytest.raises(XenStoreError) as e:
        hv.xs.set_perms(front, "name", ["x1"])
    assert err(e) == "EINVAL"
    with pytest.raises(XenStoreError) as e:
        hv.xs.set_perms(front, "name", [])
    assert err(e) == "EINVAL"


def test_rm_is_recursive_and_directory_keeps_creation_order(hv, pair):
    front, _ = pair
    for key in ("z", "a", "m"):
        hv.xs.write(front, f"dir/{key}/leaf", key)
    assert hv.xs.directory(front, "dir") == ["z", "a", "m"]
    hv.xs.rm(front, "dir/a")
    assert hv.xs.directory(front, "dir") == ["z", "m"]
    assert not hv.xs.exists(front, "dir/a/leaf")
    hv.xs.rm(front, "dir")
    assert "dir" not in hv.xs.directory(front, "/local/domain/1")


def test_watch_fires_on_registration_and_on_changes_below(hv, pair, run):
    front, back = pair
    hv.xs.write(front, "device/x/state", "1")
    hv.xs.set_perms(front, "device", ["n1", "r2"])
    hv.xs.set_perms(front, "device/x", ["n1", "r2"])
    hv.xs.set_perms(front, "device/x/state", ["n1", "r2"])

    def backend():
        hv.xs.watch(back, "/local/domain/1/device", "tok")
        events = []
        while len(events) < 3:
            yield back.wait_watch("tok")
            while (ev := back.xs_read_watch("tok")) is not None:
                events.append((ev.path, ev.token))
        return events

    def frontend():
        yield front.sleep(back.now - front.now + 0.01)
        hv.xs.write(front, "device/x/state", "3")
        hv.xs.write(front, "private", "not watched")
        hv.xs.rm(front, "device/x")

    hv.env.process(frontend())
    events = run(backend())
    assert events == [("/local/domain/1/device", "tok"),
                      ("/local/domain/1/device/x/state", "tok"),
                      ("/local/domain/1/device/x", "tok")]
    fired = hv.trace.select("xs.watch_event")
    assert len(fired) == 3 and all(r.dom == back.domid for r in fired)


def test_watch_only_reports_readable_nodes_and_relative_paths(hv, pair, run):
    front, back = pair
    hv.xs.watch(hv.dom0, "/local/domain/1", "dom0")
    hv.xs.watch(front, "secret", "own")                   # relative watch path
    hv.xs.watch(back, "/local/domain", "nosy")

    def go():
        hv.xs.write(front, "secret", "s")
        yield front.sleep(0.01)
        yield back.sleep(max(front.now, back.now) - back.now + 0.01)
        return ([e.path for e in iter(lambda: back.xs_read_watch("nosy"), None)],
                [e.path for e in iter(lambda: front.xs_read_watch("own"), None)])

    nosy, own = run(go())
    assert nosy == ["/local/domain"]                      # only the registration event
    assert own == ["secret", "secret"]                    # registration, then the write


def test_duplicate_watch_and_unknown_unwatch(hv, pair):
    front, _ = pair
    hv.xs.watch(front, "name", "t")
    with pytest.raises(XenStoreError) as e:
        hv.xs.watch(front, "name", "t")
    assert err(e) == "EEXIST"
    hv.xs.unwatch(front, "name", "t")
    with pytest.raises(XenStoreError) as e:
        hv.xs.unwatch(front, "name", "t")
    assert err(e) == "ENOENT"


def test_transaction_commit_and_abort(hv, pair):
    front, back = pair
    tx = hv.xs.transaction_start(front)
    hv.xs.write(front, "a", "1", tx=tx)
    hv.xs.write(front, "b", "2", tx=tx)
    assert hv.xs.read(front, "a", tx=tx) == "1"
    assert not hv.xs.exists(front, "a")                  # invisible outside until commit
    hv.xs.transaction_end(front, tx)
    assert (hv.xs.read(front, "a"), hv.xs.read(front, "b")) == ("1", "2")
    tx = hv.xs.transaction_start(front)
    hv.xs.rm(front, "a", tx=tx)
    hv.xs.transaction_end(front, tx, commit=False)
    assert hv.xs.read(front, "a") == "1"


def test_conflicting_transaction_gets_eagain_and_retry_succeeds(hv, pair):
    front, _ = pair
    hv.xs.write(front, "counter", "0")
    tx = hv.xs.transaction_start(front)
    value = int(hv.xs.read(front, "counter", tx=tx))
    hv.xs.write(hv.dom0, "/local/domain/1/counter", "5")     # someone else changes it
    hv.xs.write(front, "counter", str(value + 1), tx=tx)
    with pytest.raises(XenStoreError) as e:
        hv.xs.transaction_end(front, tx)
    assert err(e) == "EAGAIN"
    assert hv.xs.read(front, "counter") == "5"
    tx = hv.xs.transaction_start(front)
    hv.xs.write(front, "counter", str(int(hv.xs.read(front, "counter", tx=tx)) + 1), tx=tx)
    hv.xs.transaction_end(front, tx)
    assert hv.xs.read(front, "counter") == "6"


def test_a_write_is_limited_by_its_whole_payload(hv, pair):
    """XENSTORE_PAYLOAD_MAX (4096) bounds the message: the path as sent, a NUL and the
    value (libxenstore's xs_talkv), so "big" leaves 4092 bytes for the value."""
    front, _ = pair
    hv.xs.write(front, "big", "x" * 4092)
    assert len(hv.xs.read(front, "big")) == 4092
    with pytest.raises(XenStoreError) as e:
        hv.xs.write(front, "big", "x" * 4093)
    assert err(e) == "E2BIG"
    absolute = f"/local/domain/{front.domid}/big"   # the same node, a longer message
    with pytest.raises(XenStoreError) as e:
        hv.xs.write(front, absolute, "x" * 4092)
    assert err(e) == "E2BIG"
    hv.xs.write(front, absolute, "x" * (4095 - len(absolute)))


def test_unknown_or_foreign_transaction_is_enoent(hv, pair):
    """xenstored's transaction_lookup(): an id this connection does not hold is ENOENT."""
    front, back = pair
    tx = hv.xs.transaction_start(front)
    with pytest.raises(XenStoreError) as e:
        hv.xs.read(back, "name", tx=tx)
    assert err(e) == "ENOENT"
    with pytest.raises(XenStoreError) as e:
        hv.xs.transaction_end(front, 999)
    assert err(e) == "ENOENT"


def test_destroy_removes_home_and_fires_watches(hv, pair, run):
    front, back = pair
    hv.xs.watch(hv.dom0, "@releaseDomain", "rel")
    hv.xs.watch(hv.dom0, "/local/domain/2", "home")
    hv.xs.watch(back, "name", "mine")
    hv.domain_destroy(back.domid)
    assert not hv.xs.exists(hv.dom0, "/local/domain/2")

    def dom0():
        yield hv.dom0.sleep(0.01)
        return ([e.path for e in iter(lambda: hv.dom0.xs_read_watch("rel"), None)],
                [e.path for e in iter(lambda: hv.dom0.xs_read_watch("home"), None)])

    rel, home = run(dom0())
    assert rel == ["@releaseDomain", "@releaseDomain"]    # registration + the destroy
    assert home == ["/local/domain/2", "/local/domain/2"]
    assert hv.xs.watches(back) == []


def test_ops_cost_time_and_are_traced(hv, pair):
    front, _ = pair
    before = front.now
    hv.xs.write(front, "k", "v")
    assert front.now > before
    rec = [r for r in hv.trace.select("xs.write") if r.dom == front.domid][-1]
    assert rec.fields["path"] == "/local/domain/1/k" and rec.t == front.now

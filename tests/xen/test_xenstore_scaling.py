"""XenStore at scale: indexed watches fire exactly what a walk over every watch
fires, and transactions that copy nothing keep xenstored's conflict rule."""

import pytest
from hypothesis import given, settings, strategies as st

from simxen.xen import Hypervisor, XenStoreError

NAMES = ("a", "b", "c")
paths = st.lists(st.sampled_from(NAMES), min_size=1, max_size=4).map(lambda p: "/t/" + "/".join(p))
watch_paths = st.one_of(paths, st.just("/t"), st.just("/"))


def under(path, top):
    return path == top or top == "/" or path.startswith(top + "/")


def ancestors(path):
    out = [path]
    while path.count("/") > 1:
        path = path[:path.rfind("/")]
        out.append(path)
    return out


def brute_force(watches, path, removed):
    """The rule, over every watch in registration order: a change fires the watches at
    or above it (reporting the changed path); a removal also those below it (reporting
    the watched path)."""
    out = []
    for wpath, token in watches:
        if under(path, wpath):
            out.append((path, token))
        elif removed and under(wpath, path):
            out.append((wpath, token))
    return out


@settings(max_examples=60, deadline=None)
@given(st.lists(watch_paths, min_size=1, max_size=12), st.lists(paths, max_size=6),
       st.lists(st.tuples(st.booleans(), paths), min_size=1, max_size=8))
def test_indexed_firing_equals_brute_force(watched, existing, changes):
    hv = Hypervisor(seed=1)
    xs, dom0 = hv.xs, hv.dom0
    for p in existing:
        xs.write(dom0, p, "x")
    watches = []
    for i, p in enumerate(watched):
        xs.watch(dom0, p, f"tok{i}")
        watches.append((p, f"tok{i}"))
    for remove, path in changes:
        before = len(hv.trace)
        if remove and xs.exists(dom0, path):
            xs.rm(dom0, path)
            wanted = brute_force(watches, path, True)
        elif not remove:
            # a write creates the missing parents first, top down: each is a change
            created = [p for p in ancestors(path) if not xs.exists(dom0, p)][::-1]
            xs.write(dom0, path, "y")
            wanted = [hit for p in (created or [path]) for hit in brute_force(watches, p, False)]
        else:
            continue
        fired = [(r.fields["path"], r.fields["token"]) for r in hv.trace.select("xs.watch_fire")
                 if r.seq >= before]
        assert fired == wanted
    # unwatching takes a watch out of the index
    xs.unwatch(dom0, watched[0], "tok0")
    before = len(hv.trace)
    xs.write(dom0, "/t", "z")
    fired = [r.fields["token"] for r in hv.trace.select("xs.watch_fire") if r.seq >= before]
    assert fired == [t for _, t in brute_force(watches[1:], "/t", False)]


@pytest.fixture
def xs_doms():
    hv = Hypervisor(seed=2)
    return hv.xs, hv.dom0, hv.domain_create("other", vcpus=1)


def test_a_read_node_changed_by_a_commit_elsewhere_gives_eagain(xs_doms):
    xs, dom0, _ = xs_doms
    xs.write(dom0, "/x", "1")
    tx = xs.transaction_start(dom0)
    assert xs.read(dom0, "/x", tx) == "1"
    xs.write(dom0, "/x", "2")                           # outside the transaction
    xs.write(dom0, "/y", "1", tx)
    with pytest.raises(XenStoreError) as e:
        xs.transaction_end(dom0, tx)
    assert e.value.name == "EAGAIN"
    assert not xs.exists(dom0, "/y")                    # nothing of it was applied


def test_a_change_to_a_node_it_never_touched_does_not_conflict(xs_doms):
    xs, dom0, _ = xs_doms
    xs.write(dom0, "/x", "1")
    tx = xs.transaction_start(dom0)
    xs.read(dom0, "/x", tx)
    xs.write(dom0, "/elsewhere", "2")
    xs.write(dom0, "/x/child", "3", tx)
    xs.transaction_end(dom0, tx)
    assert xs.read(dom0, "/x/child") == "3"


def test_a_transaction_sees_the_tree_as_it_started(xs_doms):
    """Snapshot isolation: a change made after the start is not seen, even on first
    read -- and committing then fails, as xenstored's does."""
    xs, dom0, _ = xs_doms
    xs.write(dom0, "/x", "old")
    tx = xs.transaction_start(dom0)
    xs.write(dom0, "/x", "new")
    xs.rm(dom0, "/x")
    xs.write(dom0, "/x", "newer")
    assert xs.read(dom0, "/x", tx) == "old"
    assert xs.read(dom0, "/x") == "newer"
    with pytest.raises(XenStoreError) as e:
        xs.transaction_end(dom0, tx)
    assert e.value.name == "EAGAIN"


def test_own_changes_are_private_until_commit_and_the_second_writer_retries(xs_doms):
    xs, dom0, other = xs_doms
    xs.mkdir(dom0, "/shared")
    xs.set_perms(dom0, "/shared", ["b0"])
    xs.set_perms(dom0, "/shared", ["w0"])
    t1 = xs.transaction_start(dom0)
    t2 = xs.transaction_start(dom0)
    xs.write(dom0, "/shared/k", "from-t1", t1)
    assert not xs.exists(dom0, "/shared/k") and not xs.exists(dom0, "/shared/k", t2)
    xs.write(dom0, "/shared/k", "from-t2", t2)
    xs.transaction_end(dom0, t1)
    assert xs.read(dom0, "/shared/k") == "from-t1"
    with pytest.raises(XenStoreError) as e:
        xs.transaction_end(dom0, t2)
    assert e.value.name == "EAGAIN"
    assert xs.read(dom0, "/shared/k") == "from-t1"


def test_remove_inside_a_transaction_and_abort(xs_doms):
    xs, dom0, _ = xs_doms
    xs.write(dom0, "/r/a/b", "1")
    tx = xs.transaction_start(dom0)
    xs.rm(dom0, "/r/a", tx)
    assert not xs.exists(dom0, "/r/a/b", tx) and xs.directory(dom0, "/r", tx) == []
    assert xs.read(dom0, "/r/a/b") == "1"
    xs.transaction_end(dom0, tx, commit=False)
    assert xs.read(dom0, "/r/a/b") == "1"
    tx = xs.transaction_start(dom0)
    xs.rm(dom0, "/r/a", tx)
    xs.transaction_end(dom0, tx)
    assert not xs.exists(dom0, "/r/a/b") and xs.directory(dom0, "/r") == []


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(("add", "rm", "tx", "commit", "abort")),
                          st.sampled_from(NAMES + ("d", "e"))), min_size=1, max_size=25))
def test_directory_listings_equal_a_plain_model(steps):
    """Children shared between a node's versions: every version lists what a list
    rebuilt at each change would hold -- the live tree, and a transaction's snapshot
    plus its own additions and removals, whatever order they come in."""
    hv = Hypervisor(seed=3)
    xs, dom0 = hv.xs, hv.dom0
    xs.mkdir(dom0, "/d")
    live = []                   # the live /d's children, in creation order
    tx, snap = None, None       # an open transaction and its model
    # the transaction lists /d after every step, so it has read /d: a change to the
    # live /d since it began (moved) makes its commit fail with EAGAIN
    changed = moved = False
    for op, name in steps:
        if op == "tx" and tx is None:
            tx, snap = xs.transaction_start(dom0), list(live)
            changed = moved = False
        elif op in ("commit", "abort") and tx is not None:
            try:
                xs.transaction_end(dom0, tx, commit=op == "commit")
                assert not (op == "commit" and moved)
                if op == "commit" and changed:
                    live = snap
            except XenStoreError as err:
                assert err.name == "EAGAIN" and op == "commit" and moved
            tx, snap = None, None
        elif op in ("add", "rm"):
            target = snap if tx is not None and name in ("a", "b") else live
            path = f"/d/{name}"
            if op == "add":
                xs.write(dom0, path, "v", tx if target is snap else None)
            else:
                xs.rm(dom0, path, tx if target is snap else None)
            before = list(target)
            if op == "add" and name not in target:
                target.append(name)
            elif op == "rm" and name in target:
                target.remove(name)
            if target != before:
                changed = changed or target is snap
                moved = moved or (tx is not None and target is live)
        assert xs.directory(dom0, "/d") == live
        if tx is not None:
            assert xs.directory(dom0, "/d", tx) == snap


def test_a_domain_is_found_by_name_while_it_lives():
    hv = Hypervisor(seed=4)
    assert hv.domain_named("Domain-0") is hv.dom0
    dom = hv.domain_create("web")
    assert hv.domain_named("web") is dom
    with pytest.raises(Exception) as e:
        hv.domain_create("web")
    assert "exists" in str(e.value)
    hv.domain_destroy(dom.domid)
    assert hv.domain_named("web") is None
    again = hv.domain_create("web")                 # the name is free again
    assert hv.domain_named("web") is again and again.domid != dom.domid

"""XenStore: the hierarchical key-value store domains use to find each other.

A tree of nodes, each with a string value, children, and xenstored's
permissions. Every request is made by a domain and checked the way
xenstored checks it; every request costs ``xenstore.op``; every change
fires the watches registered at or above the changed node::

    hv.xs.write(dom0, "/local/domain/1/device/vtpm/0/state", "1")
    hv.xs.watch(back, "/local/domain/1/device/vtpm/0/state", "fe-state")
    # ... back later: yield back.block(); back.xs_read_watch() -> WatchEvent

Permissions are xenstored's strings: ``"b0"`` means owner dom0, nobody else
may do anything; ``["w1", "r2"]`` means owner dom1 (others may write), dom2
may read. The first entry names the owner (who may do everything) and the
rights of domains not listed; letters are ``n`` none, ``r`` read, ``w``
write, ``b`` both. A privileged domain (dom0) passes every check.

Paths not starting with ``/`` are relative to the caller's home,
``/local/domain/<domid>``. Errors are :class:`~simxen.xen.errors.XenStoreError`
with the errno (``.code``) and its name on the wire (``.name``: ENOENT,
EACCES, EINVAL, EEXIST, E2BIG, EAGAIN), each one of the names xenstored can
send (the ``xsd_errors`` table of ``xen/include/public/io/xs_wire.h``).

Transactions see the tree as it was when they started, plus their own
changes. Ending one with ``commit=True`` fails with ``EAGAIN`` if any node it
read or wrote was changed meanwhile by someone else (oxenstored's and
cxenstored's rule); the client redoes the whole transaction.

**Cost.** Neither part grows with the size of the store. A transaction does
not copy the tree: it records the nodes it changed (its *overlay*) and the
nodes it touched, and the store, when it changes a node while transactions
are open, hands each of them the version they started with (copy on write,
one entry per changed node). Watches are indexed by the path they watch: a
change at ``/a/b/c`` looks up the watches on ``/a/b/c``, ``/a/b``, ``/a``
and ``/`` (and, for a removal, the watches below the removed node), so its
cost grows with the depth of the path, not with the number of watches. They
fire in the order they were registered, as a walk over every watch would.
"""

import itertools
import re
from typing import NamedTuple

from simxen.xen import errno
from simxen.xen.domain import WatchEvent
from simxen.xen.errors import XenStoreError
from simxen.xen.memo import Memo

#: largest payload of one XenStore message (XENSTORE_PAYLOAD_MAX): an
#: ``XS_WRITE`` carries the path as sent, a NUL and the value, so the value
#: gets 4096 less the path and 1 (libxenstore's ``xs_talkv`` answers more with
#: ``E2BIG``; xenstored drops a client that sends more).
PAYLOAD_MAX = 4096
#: longest absolute path (XENSTORE_ABS_PATH_MAX).
ABS_PATH_MAX = 3072
_VALID = re.compile(r"^/$|^(/[A-Za-z0-9_@\-]+)+$")
_SPECIAL = ("@introduceDomain", "@releaseDomain")
_PERM = re.compile(r"^([nrwb])(\d+)$")


class Children:
    """A node's child names in creation order; never changed in place.

    ``/local/domain`` of a host with 10,000 guests has 20,000 children, added
    one by one: a tuple rebuilt per added child would copy them all each time.
    Versions of a node share one list instead, each seeing its first ``count``
    names, so adding a child to the newest version is one ``append``; only a
    version that is not the newest (a transaction's snapshot) or a removal
    copies the names.
    """

    __slots__ = ("_names", "_count")

    def __init__(self, names=()):
        self._names = list(names)
        self._count = len(self._names)

    def plus(self, name):
        """These names and then ``name``."""
        names, count = self._names, self._count
        if count and len(names) == count:          # the newest version: share the list
            names.append(name)
            out = Children.__new__(Children)
            out._names, out._count = names, count + 1
            return out
        return Children(itertools.chain(itertools.islice(names, count), (name,)))

    def minus(self, name):
        """These names without ``name``."""
        return Children(c for c in itertools.islice(self._names, self._count) if c != name)

    def __len__(self):
        return self._count

    def __iter__(self):
        return itertools.islice(self._names, self._count)

    def __reversed__(self):
        return reversed(self._names[:self._count])

    def __repr__(self):
        return f"Children({list(self)!r})"


_NO_CHILDREN = Children()


class Node:
    """A node; never changed in place (so transactions can compare by identity).

    ``mtime`` is the simulated time of the change that made this version.
    """

    __slots__ = ("value", "perms", "children", "mtime")

    def __init__(self, value, perms, children=_NO_CHILDREN, mtime=0.0):
        self.value = value
        self.perms = perms          # tuple of (domid, letter); [0] is the owner
        self.children = children    # Children: names in creation order
        self.mtime = mtime

    def replace(self, mtime, **changes):
        return Node(changes.get("value", self.value), changes.get("perms", self.perms),
                    changes.get("children", self.children), mtime)


#: a node the transaction removed (in its overlay)
_GONE = object()


class _TxView:
    """A transaction's view of the tree: its own changes over the tree as it was
    at the start. Has the few dict methods the requests use."""

    __slots__ = ("store", "base", "overlay")

    def __init__(self, store, base):
        self.store = store          # the live tree (a dict)
        self.base = base            # path -> version at start, for nodes changed since
        self.overlay = {}           # path -> Node or _GONE: the transaction's changes

    def get(self, path, default=None):
        node = self.overlay.get(path)
        if node is None:
            base = self.base
            node = base[path] if path in base else self.store.get(path)
        elif node is _GONE:
            node = None
        return default if node is None else node

    def __contains__(self, path):
        return self.get(path) is not None

    def __getitem__(self, path):
        node = self.get(path)
        if node is None:
            raise KeyError(path)
        return node

    def __setitem__(self, path, node):
        self.overlay[path] = node

    def pop(self, path):
        node = self[path]
        self.overlay[path] = _GONE
        return node


class _Transaction:
    __slots__ = ("id", "domid", "base", "nodes", "accessed", "written", "changes")

    def __init__(self, tx_id, domid, store):
        self.id = tx_id
        self.domid = domid
        #: path -> the node as it was at the start (None: absent), for every node the
        #: store changed since; filled by XenStore._store_changing
        self.base = {}
        self.nodes = _TxView(store, self.base)
        self.accessed = set()
        self.written = set()
        self.changes = []

    def conflicts(self, store):
        """Whether a node this transaction touched differs from its version at the start."""
        base = self.base
        return any(p in base and store.get(p) is not base[p] for p in self.accessed)


class _Watch(NamedTuple):
    dom: object     # the watching Domain
    path: str       # as registered (may be relative)
    abs: str        # absolute, or the special @ name
    token: str
    seq: int        # registration order: watches fire in it


def _parent(path):
    cut = path.rfind("/")
    return "/" if cut == 0 else path[:cut]


def _under(path, top):
    return path == top or top == "/" or path.startswith(top + "/")


def _ancestors(path):
    """``path``, its parent, ... up to ``/``."""
    out = [path]
    while path != "/":
        path = _parent(path)
        out.append(path)
    return out


class XenStore:
    """The store and its protocol (``XS_READ``, ``XS_WRITE``, ...): ``hv.xs``."""

    def __init__(self, hv):
        self.hv = hv
        self._trace = trace = hv.trace
        # {op: the trace's Recorder of "xs.<op>"}: a request the level only counts
        # builds no record
        self._kinds = Memo(lambda op: trace.recorder(f"xs.{op}"))
        self.nodes = {"/": Node("", ((0, "n"),))}
        #: (domain, path as registered, token) -> _Watch, in registration order
        self._watches = {}
        #: absolute path (or @ name) -> {seq: _Watch} of the watches on it
        self._at = {}
        #: domain -> keys of its watches
        self._of_dom = {}
        #: path -> {watched path at or below it: number of watches there}
        self._below = {}
        self._watch_seq = itertools.count()
        self._tx = {}
        self._tx_ids = itertools.count(1)

    # -- paths and permissions ---------------------------------------------

    def _abs(self, caller, path):
        if not isinstance(path, str) or not path:
            raise XenStoreError(-errno.EINVAL, f"bad path {path!r}")
        if not path.startswith("/"):
            path = f"/local/domain/{caller.domid}/{path}"
        if len(path) > ABS_PATH_MAX or not _VALID.match(path):
            raise XenStoreError(-errno.EINVAL, f"bad path {path!r}")
        return path

    @staticmethod
    def _perm(caller, node):
        if caller.privileged:
            return "b"
        perms = node.perms
        if perms[0][0] == caller.domid:
            return "b"
        for domid, letter in perms[1:]:
            if domid == caller.domid:
                return letter
        return perms[0][1]

    def _can(self, caller, node, want):
        letter = self._perm(caller, node)
        return letter == "b" or letter == want

    def _view(self, caller, tx):
        if tx is None:
            return self.nodes, None
        t = self._tx.get(tx)
        if t is None or t.domid != caller.domid:
            # xenstored's transaction_lookup(): ids are per connection, so another
            # domain's id is as unknown as one never issued -- ENOENT (ESRCH is not
            # in xs_wire.h's xsd_errors, so xenstored could not even send it)
            raise XenStoreError(-errno.ENOENT, f"dom{caller.domid} has no transaction {tx!r}")
        return t.nodes, t

    def _get(self, caller, nodes, t, path, want):
        if t is not None:
            t.accessed.add(path)
        node = nodes.get(path)
        if node is None:
            raise XenStoreError(-errno.ENOENT, f"{path} does not exist")
        if not self._can(caller, node, want):
            raise XenStoreError(-errno.EACCES, f"dom{caller.domid} may not "
                                               f"{'read' if want == 'r' else 'write'} {path}")
        return node

    def _op(self, caller, op, path, tx, **fields):
        caller.check_alive()
        # xenstored answers requests in order: a domain that sees a node
        # cannot be earlier than the change that made it (a Lamport clock
        # between domain cursors, which otherwise run independently).
        t = self._tx.get(tx)
        node = (t.nodes if t is not None and t.domid == caller.domid else self.nodes).get(path)
        if node is not None and node.mtime > caller.cursor:
            caller.cursor = node.mtime
        caller.charge("xenstore.op")
        rec = self._kinds[op]
        if rec.keep:
            self._trace.emit(rec.kind, caller.cursor, caller.domid, path=path, tx=tx, **fields)
        else:
            rec.count()

    # -- requests ----------------------------------------------------------

    def read(self, caller, path, tx=None):
        """``XS_READ``: the value of ``path``."""
        path = self._abs(caller, path)
        self._op(caller, "read", path, tx)
        nodes, t = self._view(caller, tx)
        return self._get(caller, nodes, t, path, "r").value

    def exists(self, caller, path, tx=None):
        """Whether ``path`` exists and the caller may read it."""
        try:
            self.read(caller, path, tx)
        except XenStoreError as err:
            if err.code in (-errno.ENOENT, -errno.EACCES):
                return False
            raise
        return True

    def directory(self, caller, path, tx=None):
        """``XS_DIRECTORY``: the names of ``path``'s children, in creation order."""
        path = self._abs(caller, path)
        self._op(caller, "directory", path, tx)
        nodes, t = self._view(caller, tx)
        return list(self._get(caller, nodes, t, path, "r").children)

    def get_perms(self, caller, path, tx=None):
        """``XS_GET_PERMS``: the permission strings of ``path`` (owner first)."""
        path = self._abs(caller, path)
        self._op(caller, "get_perms", path, tx)
        nodes, t = self._view(caller, tx)
        return [f"{letter}{domid}" for domid, letter in self._get(caller, nodes, t, path, "r").perms]

    def write(self, caller, path, value, tx=None):
        """``XS_WRITE``: set ``path`` to ``value``, creating it (and parents) if needed.

        ``E2BIG`` when the message -- ``path`` as given (relative paths go on
        the wire relative), a NUL, the value -- is over :data:`PAYLOAD_MAX`.
        """
        sent = path
        path = self._abs(caller, path)
        if isinstance(value, (bytes, bytearray)):
            value = bytes(value).decode("utf-8", "surrogateescape")
        if not isinstance(value, str):
            raise XenStoreError(-errno.EINVAL, f"value for {path} must be str, not "
                                               f"{type(value).__name__}")
        size = len(sent) + 1 + len(value.encode("utf-8", "surrogateescape"))   # paths are ASCII
        if size > PAYLOAD_MAX:
            raise XenStoreError(-errno.E2BIG, f"write of {path}: path, NUL and value are "
                                              f"{size} bytes, over {PAYLOAD_MAX}")
        self._op(caller, "write", path, tx, value=value)
        self._set(caller, path, value, tx)

    def mkdir(self, caller, path, tx=None):
        """``XS_MKDIR``: create ``path`` with an empty value if it does not exist."""
        path = self._abs(caller, path)
        self._op(caller, "mkdir", path, tx)
        nodes, t = self._view(caller, tx)
        if t is not None:
            t.accessed.add(path)
        if path in nodes:
            self._get(caller, nodes, t, path, "w")
            return
        self._set(caller, path, None, tx)

    def _set(self, caller, path, value, tx):
        nodes, t = self._view(caller, tx)
        if t is not None:
            t.accessed.add(path)
        node = nodes.get(path)
        if node is not None:
            if not self._can(caller, node, "w"):
                raise XenStoreError(-errno.EACCES, f"dom{caller.domid} may not write {path}")
            if value is not None:
                self._put(nodes, t, path, node.replace(caller.now, value=value))
            self._changed(caller, t, path, node)
            return
        # Create: the nearest existing ancestor must be writable.
        missing = [path]
        parent = _parent(path)
        while parent not in nodes:
            missing.append(parent)
            parent = _parent(parent)
        if t is not None:
            t.accessed.add(parent)
        anchor = nodes[parent]
        if not self._can(caller, anchor, "w"):
            raise XenStoreError(-errno.EACCES, f"dom{caller.domid} may not create {path} "
                                               f"(no write permission on {parent})")
        # Inherit the parent's permissions, except that an unprivileged
        # domain owns what it creates (xenstored does the same).
        perms = anchor.perms
        if not caller.privileged:
            perms = ((caller.domid, perms[0][1]),) + perms[1:]
        for new in reversed(missing):
            pnode = nodes[parent]
            self._put(nodes, t, parent,
                      pnode.replace(caller.now,
                                    children=pnode.children.plus(new[len(parent):].lstrip("/"))))
            created = Node(value if new == path and value is not None else "", perms,
                           _NO_CHILDREN, caller.now)
            self._put(nodes, t, new, created)
            self._changed(caller, t, new, created)
            parent = new

    def _put(self, nodes, t, path, node):
        if t is not None:
            t.accessed.add(path)
            t.written.add(path)
        elif self._tx:
            self._store_changing(path)
        nodes[path] = node

    def _store_changing(self, path):
        """The live tree is about to change ``path``: every open transaction that
        has not seen it change yet keeps the version it started with."""
        old = self.nodes.get(path)
        for t in self._tx.values():
            if path not in t.base:
                t.base[path] = old

    def rm(self, caller, path, tx=None):
        """``XS_RM``: remove ``path`` and everything under it.

        Removing a node that does not exist succeeds if its parent exists
        (xenstored does this), else ``ENOENT``.
        """
        path = self._abs(caller, path)
        self._op(caller, "rm", path, tx)
        if path == "/":
            raise XenStoreError(-errno.EINVAL, "cannot remove /")
        nodes, t = self._view(caller, tx)
        if t is not None:
            t.accessed.add(path)
        node = nodes.get(path)
        if node is None:
            parent = _parent(path)
            if t is not None:
                t.accessed.add(parent)
            if parent in nodes:
                return
            raise XenStoreError(-errno.ENOENT, f"{path} does not exist")
        if not self._can(caller, node, "w"):
            raise XenStoreError(-errno.EACCES, f"dom{caller.domid} may not remove {path}")
        self._remove(caller, nodes, t, path)

    def _remove(self, caller, nodes, t, path):
        parent = _parent(path)
        pnode = nodes[parent]
        name = path[len(parent):].lstrip("/")
        self._put(nodes, t, parent,
                  pnode.replace(caller.now, children=pnode.children.minus(name)))
        stack = [path]
        removed = []
        while stack:
            p = stack.pop()
            if t is not None:
                t.accessed.add(p)
                t.written.add(p)
            elif self._tx:
                self._store_changing(p)
            node = nodes.pop(p)
            removed.append((p, node))
            stack.extend(f"{p}/{c}" for c in reversed(node.children))
        self._changed(caller, t, path, removed[0][1], removed=[p for p, _ in removed])

    def set_perms(self, caller, path, perms, tx=None):
        """``XS_SET_PERMS``: only the owner (or a privileged domain) may."""
        path = self._abs(caller, path)
        if isinstance(perms, str):
            perms = [perms]
        parsed = []
        for item in perms:
            m = _PERM.match(item) if isinstance(item, str) else None
            if m is None:
                raise XenStoreError(-errno.EINVAL, f"bad permission {item!r} (expected e.g. 'r1')")
            parsed.append((int(m.group(2)), m.group(1)))
        if not parsed:
            raise XenStoreError(-errno.EINVAL, "empty permission list")
        self._op(caller, "set_perms", path, tx, perms=list(perms))
        nodes, t = self._view(caller, tx)
        node = self._get(caller, nodes, t, path, "w")
        if not caller.privileged and node.perms[0][0] != caller.domid:
            raise XenStoreError(-errno.EACCES, f"dom{caller.domid} does not own {path}")
        self._put(nodes, t, path, node.replace(caller.now, perms=tuple(parsed)))
        self._changed(caller, t, path, node)

    # -- transactions ------------------------------------------------------

    def transaction_start(self, caller):
        """``XS_TRANSACTION_START``: a transaction id for the ``tx=`` argument."""
        caller.check_alive()
        caller.charge("xenstore.op")
        tx = next(self._tx_ids)
        self._tx[tx] = _Transaction(tx, caller.domid, self.nodes)
        self._trace.emit("xs.transaction_start", caller.cursor, caller.domid, tx=tx)
        return tx

    def transaction_end(self, caller, tx, commit=True):
        """``XS_TRANSACTION_END``: apply (``commit``) or drop the transaction.

        ``EAGAIN`` if a node it touched changed meanwhile: redo it all.
        """
        _, t = self._view(caller, tx)
        caller.charge("xenstore.op")
        del self._tx[tx]
        conflict = commit and t.conflicts(self.nodes)
        self._trace.emit("xs.transaction_end", caller.cursor, caller.domid, tx=tx,
                         commit=bool(commit), conflict=conflict)
        if conflict:
            raise XenStoreError(-errno.EAGAIN, f"transaction {tx} conflicts with a concurrent change")
        if not commit:
            return
        overlay = t.nodes.overlay
        for p in sorted(t.written):
            if self._tx:
                self._store_changing(p)
            node = overlay[p]
            if node is _GONE:
                self.nodes.pop(p, None)
            else:
                self.nodes[p] = node
        for path, node, removed in t.changes:
            self._fire(caller, path, node, removed)

    # -- watches -----------------------------------------------------------

    def watch(self, caller, path, token):
        """``XS_WATCH``: be told of changes at or below ``path``; fires once now."""
        caller.check_alive()
        abs_path = path if path in _SPECIAL else self._abs(caller, path)
        self._op(caller, "watch", abs_path, None, token=token)
        key = (caller, path, token)
        if key in self._watches:
            raise XenStoreError(-errno.EEXIST, f"dom{caller.domid} already watches "
                                               f"{path} with token {token!r}")
        w = self._watches[key] = _Watch(caller, path, abs_path, token, next(self._watch_seq))
        self._of_dom.setdefault(caller, set()).add(key)
        self._at.setdefault(abs_path, {})[w.seq] = w
        if abs_path not in _SPECIAL:
            for top in _ancestors(abs_path):
                below = self._below.setdefault(top, {})
                below[abs_path] = below.get(abs_path, 0) + 1
        self._queue(caller, caller, path, token)

    def unwatch(self, caller, path, token):
        """``XS_UNWATCH``: stop a watch (``ENOENT`` if there is none)."""
        caller.check_alive()
        self._op(caller, "unwatch", path, None, token=token)
        w = self._watches.pop((caller, path, token), None)
        if w is not None:
            self._of_dom[caller].discard((caller, path, token))
            self._forget(w)
            return
        raise XenStoreError(-errno.ENOENT, f"dom{caller.domid} has no watch on {path} "
                                           f"with token {token!r}")

    def _changed(self, caller, t, path, node, removed=None):
        if t is not None:
            t.changes.append((path, node, removed))
        else:
            self._fire(caller, path, node, removed)

    def _forget(self, w):
        at = self._at[w.abs]
        del at[w.seq]
        if not at:
            del self._at[w.abs]
        if w.abs not in _SPECIAL:
            for top in _ancestors(w.abs):
                below = self._below[top]
                if below[w.abs] == 1:
                    del below[w.abs]
                    if not below:
                        del self._below[top]
                else:
                    below[w.abs] -= 1

    def watches(self, dom=None):
        """``(path as registered, token)`` of the watches (of ``dom``), in registration order."""
        return [(w.path, w.token) for w in self._watches.values() if dom is None or w.dom is dom]

    def _watching(self, path, removed):
        """The watches a change at ``path`` reaches, in registration order, each with the
        path it reports: watches at ``path`` or above it; for a removal, also below it."""
        at = self._at
        hits = []
        top = path
        while True:                     # path, its parent, ... up to / (as _ancestors, no list)
            here = at.get(top)
            if here:
                hits.extend([(w, path) for w in here.values()])
            if top == "/":
                break
            cut = top.rfind("/")
            top = top[:cut] if cut else "/"
        if removed is not None:
            for below in self._below.get(path, {}):
                if below != path:
                    hits.extend((w, below) for w in at[below].values())
        if len(hits) > 1:
            hits.sort(key=lambda hit: hit[0].seq)
        return hits

    def _fire(self, caller, path, node, removed=None):
        for w, hit in self._watching(path, removed):
            if not w.dom.alive or not self._can(w.dom, node, "r"):
                continue
            self._queue(caller, w.dom, self._relative(w, hit), w.token)

    def fire_special(self, caller, name):
        """Fire ``@introduceDomain`` / ``@releaseDomain`` watches."""
        for w in list(self._at.get(name, {}).values()):
            if w.path == name and w.dom.alive:
                self._queue(caller, w.dom, name, w.token)

    @staticmethod
    def _relative(w, hit):
        if w.path.startswith("/") or w.path in _SPECIAL:
            return hit
        home = f"/local/domain/{w.dom.domid}/"
        return hit[len(home):] if hit.startswith(home) else hit

    def _queue(self, caller, dom, path, token):
        t = caller.now + dom.sample("xenstore.watch")
        rec = self._kinds["watch_fire"]
        if rec.keep:
            self._trace.emit(rec.kind, caller.now, caller.domid, watcher=dom.domid, path=path,
                             token=token, at=t)
        else:
            rec.count()
        dom.post_watch(t, WatchEvent(path, token))

    # -- domains -----------------------------------------------------------

    def release_domain(self, dom):
        """Forget ``dom``'s watches and transactions (domain destruction)."""
        for key in sorted(self._of_dom.pop(dom, ()), key=lambda k: self._watches[k].seq):
            self._forget(self._watches.pop(key))
        for tx in [tx for tx, t in self._tx.items() if t.domid == dom.domid]:
            del self._tx[tx]

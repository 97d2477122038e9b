"""Grant tables (v1): how a domain lets one other domain use one of its pages.

The granting side fills an entry of its own table (Linux:
``gnttab_grant_foreign_access``) and passes the *gref* to its peer, usually
through XenStore. The peer maps it (``GNTTABOP_map_grant_ref``) and gets a
view of **the same bytes**: what the granter writes later, the mapper sees --
which is exactly what makes a double-fetch (TOCTOU) attack on a shared page
expressible::

    gref = hv.gnttab.grant_foreign_access(front, back.domid, page.gfn)
    m = hv.gnttab.map_grant_ref(back, front.domid, gref)
    assert m.data is page.data                       # one bytearray
    hv.gnttab.unmap_grant_ref(back, m.handle)
    hv.gnttab.end_foreign_access(front, gref)        # refused while mapped

Every misuse fails with the ``GNTST_*`` status Xen's ``grant_table.c``
returns (see the table in ``docs/xen-api.rst``). Note that Xen answers a map
by the wrong peer and a write-map of a read-only grant with
``GNTST_general_error``, not ``GNTST_permission_denied``; the latter is for
an unprivileged copy *by frame* from another domain.
"""

import heapq

from simxen.protocols.event_channel import DOMID_SELF
from simxen.protocols.grant_table import (
    ENTRIES_PER_FRAME,
    GNTST_bad_copy_arg,
    GNTST_bad_domain,
    GNTST_bad_gntref,
    GNTST_bad_handle,
    GNTST_bad_page,
    GNTST_general_error,
    GNTST_no_space,
    GNTST_permission_denied,
    GTF_permit_access,
    GTF_reading,
    GTF_readonly,
    GTF_type_mask,
    GTF_writing,
    NR_RESERVED_ENTRIES,
)
from simxen.xen.domain import PAGE_SIZE
from simxen.xen.errors import GrantError

#: Xen's default ``gnttab_max_frames``.
DEFAULT_MAX_GRANT_FRAMES = 64
#: maptrack entries per domain (Xen: max_maptrack_frames 1024 x 512 entries).
DEFAULT_MAX_MAPTRACK = 1024 * ENTRIES_PER_FRAME


class GrantEntry:
    """One entry of a domain's grant table, with Xen's pin counts."""

    __slots__ = ("flags", "domid", "frame", "page", "pin_read", "pin_write")

    def __init__(self, flags, domid, frame, page):
        self.flags = flags
        self.domid = domid      #: the peer allowed to use the frame
        self.frame = frame      #: granted gfn
        self.page = page
        self.pin_read = 0       #: read-only maps outstanding
        self.pin_write = 0      #: writable maps outstanding

    @property
    def mapped(self):
        return bool(self.pin_read or self.pin_write)

    def __repr__(self):
        return (f"GrantEntry(flags={self.flags:#x}, domid={self.domid}, frame={self.frame:#x}, "
                f"pin_read={self.pin_read}, pin_write={self.pin_write})")


class GrantTable:
    """A domain's grant table: refs ``NR_RESERVED_ENTRIES..nr_entries-1``."""

    def __init__(self, max_frames=DEFAULT_MAX_GRANT_FRAMES):
        self.nr_entries = max_frames * ENTRIES_PER_FRAME
        self.entries = {}
        self._free = []         # freed refs, lowest first
        self._next = NR_RESERVED_ENTRIES

    def allocate(self):
        if self._free:
            return heapq.heappop(self._free)
        if self._next >= self.nr_entries:
            return None
        ref = self._next
        self._next += 1
        return ref

    def release(self, ref):
        del self.entries[ref]
        heapq.heappush(self._free, ref)


class Mapping:
    """A domain's mapping of another domain's grant (``GNTTABOP_map_grant_ref``).

    ``data`` is the granter's own ``bytearray`` (a read-only ``memoryview``
    of it for a read-only map).
    """

    __slots__ = ("mapper", "handle", "domid", "gref", "readonly", "data", "entry", "active", "page")

    def __init__(self, mapper, handle, domid, gref, readonly, data, entry):
        self.mapper = mapper
        self.handle = handle
        self.domid = domid      #: the granting domain
        self.gref = gref
        self.readonly = readonly
        self.data = data
        self.entry = entry
        self.active = True
        self.page = entry.page      #: the granter's Page

    def __repr__(self):
        mode = "ro" if self.readonly else "rw"
        return f"<Mapping dom{self.mapper}: dom{self.domid} gref {self.gref} {mode} handle {self.handle}>"


class GrantCopyPtr:
    """One side of a ``GNTTABOP_copy``: a gref of ``domid``, or a gfn of the caller."""

    __slots__ = ("domid", "offset", "gref", "gfn")

    def __init__(self, domid, offset=0, *, gref=None, gfn=None):
        if (gref is None) == (gfn is None):
            raise ValueError("GrantCopyPtr needs exactly one of gref= or gfn=")
        self.domid = domid
        self.offset = offset
        self.gref = gref
        self.gfn = gfn


class GrantTables:
    """``HYPERVISOR_grant_table_op`` and the guest-side grant calls: ``hv.gnttab``."""

    def __init__(self, hv, max_maptrack=DEFAULT_MAX_MAPTRACK):
        self.hv = hv
        self.max_maptrack = max_maptrack
        self._trace = hv.trace

    # -- granting side (guest writes to its own table) -----------------------

    def grant_foreign_access(self, caller, domid, gfn, readonly=False):
        """Let domain ``domid`` map the caller's frame ``gfn``; return the gref."""
        caller.check_alive()
        page = caller.pages.get(gfn)
        if page is None:
            raise GrantError(GNTST_bad_page, f"dom{caller.domid} has no gfn {gfn!r}")
        table = caller.grant_table
        ref = table.allocate()
        if ref is None:
            raise GrantError(GNTST_no_space, f"dom{caller.domid} grant table is full "
                                             f"({table.nr_entries} entries)")
        flags = GTF_permit_access | (GTF_readonly if readonly else 0)
        table.entries[ref] = GrantEntry(flags, domid, gfn, page)
        self._trace.emit("gnttab.grant", caller.now, caller.domid, gref=ref, domid=domid,
                         frame=gfn, readonly=bool(readonly))
        return ref

    def end_foreign_access_ref(self, caller, gref):
        """Revoke ``gref``; ``False`` (nothing changed) while it is mapped.

        Linux's semantics: the cmpxchg on the entry's flags fails while Xen
        holds ``GTF_reading``/``GTF_writing``.
        """
        entry = caller.grant_table.entries.get(gref)
        if entry is None:
            raise GrantError(GNTST_bad_gntref, f"dom{caller.domid} gref {gref} is not in use")
        if entry.mapped:
            return False
        caller.grant_table.release(gref)
        self._trace.emit("gnttab.end", caller.now, caller.domid, gref=gref)
        return True

    def end_foreign_access(self, caller, gref):
        """Revoke ``gref``; ``GNTST_general_error`` while the peer still maps it."""
        if not self.end_foreign_access_ref(caller, gref):
            entry = caller.grant_table.entries[gref]
            raise GrantError(GNTST_general_error,
                             f"dom{caller.domid} gref {gref} is still mapped by dom{entry.domid} "
                             "(GTF_reading/GTF_writing set)")

    def query(self, caller, domid, gref):
        """The :class:`GrantEntry` ``gref`` of domain ``domid`` (teaching/tests)."""
        dom = self.hv.domains.get(domid)
        if dom is None:
            raise GrantError(GNTST_bad_domain, f"no domain {domid}")
        entry = dom.grant_table.entries.get(gref)
        if entry is None:
            raise GrantError(GNTST_bad_gntref, f"dom{domid} gref {gref} is not in use")
        return entry

    # -- mapping side (hypercalls) -------------------------------------------

    def _granter(self, domid, op):
        dom = self.hv.domains.get(domid)
        if dom is None or not dom.alive:
            raise GrantError(GNTST_bad_domain, f"{op}: no live domain {domid}")
        return dom

    def _entry(self, caller, granter, gref, writable, op):
        table = granter.grant_table
        if not isinstance(gref, int) or not 0 <= gref < table.nr_entries:
            raise GrantError(GNTST_bad_gntref, f"{op}: gref {gref!r} out of range for "
                                               f"dom{granter.domid}")
        entry = table.entries.get(gref)
        if entry is None or (entry.flags & GTF_type_mask) != GTF_permit_access:
            raise GrantError(GNTST_general_error, f"{op}: dom{granter.domid} gref {gref} is not "
                                                  "a permit_access grant")
        if entry.domid != caller.domid:
            raise GrantError(GNTST_general_error, f"{op}: dom{granter.domid} gref {gref} is "
                                                  f"granted to dom{entry.domid}, not "
                                                  f"dom{caller.domid}")
        if writable and entry.flags & GTF_readonly:
            raise GrantError(GNTST_general_error, f"{op}: dom{granter.domid} gref {gref} is "
                                                  "read-only")
        return entry

    def map_grant_ref(self, caller, domid, gref, readonly=False):
        """``GNTTABOP_map_grant_ref`` (host map): a :class:`Mapping` of the granted page."""
        caller.check_alive()
        caller.charge("gnttab.map")
        granter = self._granter(domid, "map_grant_ref")
        entry = self._entry(caller, granter, gref, not readonly, "map_grant_ref")
        maptrack = caller.maptrack
        if len(maptrack) >= self.max_maptrack:
            raise GrantError(GNTST_no_space, f"dom{caller.domid} maptrack is full")
        handle = caller.next_map_handle
        caller.next_map_handle += 1
        if readonly:
            entry.pin_read += 1
            entry.flags |= GTF_reading
            data = memoryview(entry.page.data).toreadonly()
        else:
            entry.pin_write += 1
            entry.flags |= GTF_reading | GTF_writing
            data = entry.page.data
        mapping = maptrack[handle] = Mapping(caller.domid, handle, domid, gref, bool(readonly),
                                             data, entry)
        self._trace.emit("gnttab.map", caller.cursor, caller.domid, domid=domid, gref=gref,
                         handle=handle, readonly=bool(readonly))
        return mapping

    def unmap_grant_ref(self, caller, handle):
        """``GNTTABOP_unmap_grant_ref``: drop the mapping ``handle``."""
        caller.charge("gnttab.unmap")
        mapping = caller.maptrack.get(handle)
        if mapping is None:
            raise GrantError(GNTST_bad_handle, f"dom{caller.domid} has no mapping handle {handle!r}")
        self._unmap(caller, mapping)

    def _unmap(self, caller, mapping):
        del caller.maptrack[mapping.handle]
        mapping.active = False
        entry = mapping.entry
        if mapping.readonly:
            entry.pin_read -= 1
        else:
            entry.pin_write -= 1
        if not entry.pin_write:
            entry.flags &= ~GTF_writing
        if not entry.pin_read and not entry.pin_write:
            entry.flags &= ~GTF_reading
        self._trace.emit("gnttab.unmap", caller.now, caller.domid, domid=mapping.domid,
                         gref=mapping.gref, handle=mapping.handle)
        granter = self.hv.domains.get(mapping.domid)
        if granter is not None and granter.dying:
            self.hv.reap(granter)

    def copy(self, caller, src, dst, length):
        """``GNTTABOP_copy``: copy ``length`` bytes between two pages.

        Each side is a :class:`GrantCopyPtr`: by gref (the caller must be
        the grant's peer; a read-only grant cannot be the destination) or by
        gfn (only the caller's own frames, else ``GNTST_permission_denied``).
        A copy may not cross a page boundary (``GNTST_bad_copy_arg``).
        """
        caller.check_alive()
        caller.charge("gnttab.copy")
        if not isinstance(length, int) or length < 0:
            raise GrantError(GNTST_bad_copy_arg, f"copy: bad length {length!r}")
        for side in (src, dst):
            if not isinstance(side.offset, int) or side.offset < 0 or side.offset + length > PAGE_SIZE:
                raise GrantError(GNTST_bad_copy_arg, f"copy: [{side.offset}, {side.offset}+{length}) "
                                                     "crosses a page boundary")
        sbuf = self._copy_buf(caller, src, False)
        dbuf = self._copy_buf(caller, dst, True)
        data = bytes(sbuf[src.offset:src.offset + length])
        dbuf[dst.offset:dst.offset + length] = data
        caller.charge("memcpy.per_byte", length)
        fields = {"length": length, "src_dom": src.domid, "dst_dom": dst.domid,
                  "src_offset": src.offset, "dst_offset": dst.offset}
        for name, side in (("src", src), ("dst", dst)):
            fields[f"{name}_gref" if side.gref is not None else f"{name}_gfn"] = (
                side.gref if side.gref is not None else side.gfn)
        if length <= self._trace.small_access:
            fields["data"] = data
        self._trace.emit("gnttab.copy", caller.cursor, caller.domid, **fields)

    def _copy_buf(self, caller, side, writable):
        if side.gref is not None:
            granter = self._granter(caller.domid if side.domid == DOMID_SELF else side.domid, "copy")
            entry = self._entry(caller, granter, side.gref, writable, "copy")
            return entry.page.data
        if side.domid not in (DOMID_SELF, caller.domid):
            raise GrantError(GNTST_permission_denied, f"copy: dom{caller.domid} may only name its "
                                                      f"own frames, not dom{side.domid}'s")
        page = caller.pages.get(side.gfn)
        if page is None:
            raise GrantError(GNTST_bad_page, f"copy: dom{caller.domid} has no gfn {side.gfn!r}")
        return page.data

    # -- domain destruction --------------------------------------------------

    def release_domain(self, dom):
        """Unmap everything ``dom`` maps; revoke its unmapped grants."""
        for mapping in sorted(dom.maptrack.values(), key=lambda m: m.handle):
            self._unmap(dom, mapping)
        table = dom.grant_table
        for ref in sorted(table.entries):
            if not table.entries[ref].mapped:
                table.release(ref)

    def still_mapped(self, dom):
        """Whether another domain still maps a page ``dom`` granted."""
        return any(entry.mapped for entry in dom.grant_table.entries.values())

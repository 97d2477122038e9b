"""Grant tables: sharing, and every misuse failing with Xen's GNTST code."""

import pytest

from simxen.protocols.grant_table import (
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
    GTF_writing,
    NR_RESERVED_ENTRIES,
)
from simxen.protocols.event_channel import DOMID_SELF
from simxen.xen import GrantCopyPtr, GrantError, PageFault
from simxen.xen.grant_table import GrantTable


def code(excinfo):
    return excinfo.value.code


def test_mapping_is_a_view_of_the_same_bytes(hv, pair):
    front, back = pair
    page = front.alloc_page()
    gref = hv.gnttab.grant_foreign_access(front, back.domid, page.gfn)
    assert gref >= NR_RESERVED_ENTRIES
    m = hv.gnttab.map_grant_ref(back, front.domid, gref)
    front.page_write(page, 100, b"first")
    assert bytes(m.data[100:105]) == b"first"
    front.page_write(page, 100, b"later")          # granter changes it after the fetch
    assert back.page_read(m, 100, 5) == b"later"
    back.page_write(m, 0, b"\x01\x02")
    assert page.data[:2] == b"\x01\x02"


def test_flags_and_pins_follow_maps(hv, pair):
    front, back = pair
    page = front.alloc_page()
    gref = hv.gnttab.grant_foreign_access(front, back.domid, page.gfn)
    entry = hv.gnttab.query(front, front.domid, gref)
    assert entry.flags == GTF_permit_access
    m1 = hv.gnttab.map_grant_ref(back, front.domid, gref)
    m2 = hv.gnttab.map_grant_ref(back, front.domid, gref, readonly=True)
    assert entry.flags & (GTF_reading | GTF_writing) == GTF_reading | GTF_writing
    assert (entry.pin_read, entry.pin_write) == (1, 1)
    hv.gnttab.unmap_grant_ref(back, m1.handle)
    assert entry.flags & GTF_writing == 0 and entry.flags & GTF_reading
    hv.gnttab.unmap_grant_ref(back, m2.handle)
    assert entry.flags == GTF_permit_access


def test_map_bad_domain(hv, pair):
    front, back = pair
    with pytest.raises(GrantError) as e:
        hv.gnttab.map_grant_ref(back, 77, 8)
    assert code(e) == GNTST_bad_domain


def test_map_bad_gntref_out_of_range(hv, pair):
    front, back = pair
    with pytest.raises(GrantError) as e:
        hv.gnttab.map_grant_ref(back, front.domid, front.grant_table.nr_entries)
    assert code(e) == GNTST_bad_gntref
    assert "GNTST_bad_gntref" in str(e.value)


def test_map_unused_entry_is_general_error(hv, pair):
    front, back = pair
    with pytest.raises(GrantError) as e:
        hv.gnttab.map_grant_ref(back, front.domid, 100)
    assert code(e) == GNTST_general_error


def test_map_by_wrong_peer_is_general_error_as_in_xen(hv, pair):
    front, back = pair
    third = hv.domain_create("third")
    page = front.alloc_page()
    gref = hv.gnttab.grant_foreign_access(front, back.domid, page.gfn)
    with pytest.raises(GrantError) as e:
        hv.gnttab.map_grant_ref(third, front.domid, gref)
    assert code(e) == GNTST_general_error
    assert "granted to dom2" in str(e.value)


def test_write_map_of_readonly_grant_refused_read_map_allowed(hv, pair):
    front, back = pair
    page = front.alloc_page()
    gref = hv.gnttab.grant_foreign_access(front, back.domid, page.gfn, readonly=True)
    assert hv.gnttab.query(front, front.domid, gref).flags & GTF_readonly
    with pytest.raises(GrantError) as e:
        hv.gnttab.map_grant_ref(back, front.domid, gref)
    assert code(e) == GNTST_general_error
    m = hv.gnttab.map_grant_ref(back, front.domid, gref, readonly=True)
    page.data[0] = 9
    assert m.data[0] == 9
    with pytest.raises(PageFault):
        back.page_write(m, 0, b"x")
    assert page.data[0] == 9


def test_unmap_bad_handle(hv, pair):
    front, back = pair
    with pytest.raises(GrantError) as e:
        hv.gnttab.unmap_grant_ref(back, 42)
    assert code(e) == GNTST_bad_handle
    page = front.alloc_page()
    gref = hv.gnttab.grant_foreign_access(front, back.domid, page.gfn)
    m = hv.gnttab.map_grant_ref(back, front.domid, gref)
    hv.gnttab.unmap_grant_ref(back, m.handle)
    with pytest.raises(GrantError) as e:                 # twice
        hv.gnttab.unmap_grant_ref(back, m.handle)
    assert code(e) == GNTST_bad_handle
    with pytest.raises(GrantError) as e:                 # someone else's handle
        m2 = hv.gnttab.map_grant_ref(back, front.domid, gref)
        hv.gnttab.unmap_grant_ref(front, m2.handle)
    assert code(e) == GNTST_bad_handle


def test_end_access_refused_while_mapped(hv, pair):
    front, back = pair
    page = front.alloc_page()
    gref = hv.gnttab.grant_foreign_access(front, back.domid, page.gfn)
    m = hv.gnttab.map_grant_ref(back, front.domid, gref)
    assert hv.gnttab.end_foreign_access_ref(front, gref) is False
    with pytest.raises(GrantError) as e:
        hv.gnttab.end_foreign_access(front, gref)
    assert code(e) == GNTST_general_error and "still mapped" in str(e.value)
    back.page_write(m, 0, b"ok")                        # mapping still valid
    hv.gnttab.unmap_grant_ref(back, m.handle)
    hv.gnttab.end_foreign_access(front, gref)
    with pytest.raises(GrantError) as e:
        hv.gnttab.end_foreign_access(front, gref)
    assert code(e) == GNTST_bad_gntref
    with pytest.raises(GrantError) as e:
        hv.gnttab.map_grant_ref(back, front.domid, gref)
    assert code(e) == GNTST_general_error


def test_grant_of_unknown_frame_is_bad_page(hv, pair):
    front, back = pair
    with pytest.raises(GrantError) as e:
        hv.gnttab.grant_foreign_access(front, back.domid, 12345)
    assert code(e) == GNTST_bad_page


def test_grant_table_full_is_no_space(hv, pair):
    front, back = pair
    front.grant_table = GrantTable(max_frames=1)
    page = front.alloc_page()
    refs = [hv.gnttab.grant_foreign_access(front, back.domid, page.gfn)
            for _ in range(front.grant_table.nr_entries - NR_RESERVED_ENTRIES)]
    assert len(set(refs)) == len(refs)
    with pytest.raises(GrantError) as e:
        hv.gnttab.grant_foreign_access(front, back.domid, page.gfn)
    assert code(e) == GNTST_no_space
    hv.gnttab.end_foreign_access(front, refs[3])
    assert hv.gnttab.grant_foreign_access(front, back.domid, page.gfn) == refs[3]


def test_maptrack_full_is_no_space(hv, pair):
    front, back = pair
    hv.gnttab.max_maptrack = 2
    page = front.alloc_page()
    gref = hv.gnttab.grant_foreign_access(front, back.domid, page.gfn)
    hv.gnttab.map_grant_ref(back, front.domid, gref)
    hv.gnttab.map_grant_ref(back, front.domid, gref)
    with pytest.raises(GrantError) as e:
        hv.gnttab.map_grant_ref(back, front.domid, gref)
    assert code(e) == GNTST_no_space


class TestCopy:
    def setup(self, hv, pair, readonly=False):
        front, back = pair
        fpage = front.alloc_page()
        bpage = back.alloc_page()
        gref = hv.gnttab.grant_foreign_access(front, back.domid, fpage.gfn, readonly=readonly)
        return front, back, fpage, bpage, gref

    def test_copy_from_grant_into_own_frame_and_back(self, hv, pair):
        front, back, fpage, bpage, gref = self.setup(hv, pair)
        fpage.data[10:14] = b"abcd"
        hv.gnttab.copy(back, GrantCopyPtr(front.domid, 10, gref=gref),
                       GrantCopyPtr(DOMID_SELF, 0, gfn=bpage.gfn), 4)
        assert bpage.data[:4] == b"abcd"
        bpage.data[:4] = b"wxyz"
        hv.gnttab.copy(back, GrantCopyPtr(back.domid, 0, gfn=bpage.gfn),
                       GrantCopyPtr(front.domid, 20, gref=gref), 4)
        assert fpage.data[20:24] == b"wxyz"
        rec = hv.trace.select("gnttab.copy")[-1]
        assert rec.fields["data"] == b"wxyz" and rec.fields["dst_gref"] == gref

    def test_copy_crossing_page_is_bad_copy_arg(self, hv, pair):
        front, back, fpage, bpage, gref = self.setup(hv, pair)
        with pytest.raises(GrantError) as e:
            hv.gnttab.copy(back, GrantCopyPtr(front.domid, 4000, gref=gref),
                           GrantCopyPtr(DOMID_SELF, 0, gfn=bpage.gfn), 200)
        assert code(e) == GNTST_bad_copy_arg

    def test_copy_by_foreign_frame_is_permission_denied(self, hv, pair):
        front, back, fpage, bpage, gref = self.setup(hv, pair)
        with pytest.raises(GrantError) as e:
            hv.gnttab.copy(back, GrantCopyPtr(front.domid, 0, gfn=fpage.gfn),
                           GrantCopyPtr(DOMID_SELF, 0, gfn=bpage.gfn), 8)
        assert code(e) == GNTST_permission_denied

    def test_copy_into_readonly_grant_is_general_error(self, hv, pair):
        front, back, fpage, bpage, gref = self.setup(hv, pair, readonly=True)
        with pytest.raises(GrantError) as e:
            hv.gnttab.copy(back, GrantCopyPtr(DOMID_SELF, 0, gfn=bpage.gfn),
                           GrantCopyPtr(front.domid, 0, gref=gref), 8)
        assert code(e) == GNTST_general_error

    def test_copy_bad_domain_and_bad_gfn(self, hv, pair):
        front, back, fpage, bpage, gref = self.setup(hv, pair)
        with pytest.raises(GrantError) as e:
            hv.gnttab.copy(back, GrantCopyPtr(99, 0, gref=gref),
                           GrantCopyPtr(DOMID_SELF, 0, gfn=bpage.gfn), 8)
        assert code(e) == GNTST_bad_domain
        with pytest.raises(GrantError) as e:
            hv.gnttab.copy(back, GrantCopyPtr(front.domid, 0, gref=gref),
                           GrantCopyPtr(DOMID_SELF, 0, gfn=999), 8)
        assert code(e) == GNTST_bad_page


def test_map_and_unmap_cost_profile_time(hv, pair):
    front, back = pair
    page = front.alloc_page()
    gref = hv.gnttab.grant_foreign_access(front, back.domid, page.gfn)
    before = back.now
    m = hv.gnttab.map_grant_ref(back, front.domid, gref)
    mid = back.now
    hv.gnttab.unmap_grant_ref(back, m.handle)
    assert before < mid < back.now
    assert hv.env.now == 0          # no SimPy event per hypercall


def test_dying_granter_stays_until_unmapped(hv, pair):
    front, back = pair
    page = front.alloc_page()
    gref = hv.gnttab.grant_foreign_access(front, back.domid, page.gfn)
    m = hv.gnttab.map_grant_ref(back, front.domid, gref)
    page.data[0] = 5
    hv.domain_destroy(front.domid)
    assert front.domid in hv.domains and front.dying and not front.alive
    assert m.data[0] == 5                               # the page lives on
    with pytest.raises(GrantError) as e:                # but no new maps
        hv.gnttab.map_grant_ref(back, front.domid, gref)
    assert code(e) == GNTST_bad_domain
    hv.gnttab.unmap_grant_ref(back, m.handle)
    assert front.domid not in hv.domains


def test_destroying_mapper_unmaps_its_mappings(hv, pair):
    front, back = pair
    page = front.alloc_page()
    gref = hv.gnttab.grant_foreign_access(front, back.domid, page.gfn)
    hv.gnttab.map_grant_ref(back, front.domid, gref)
    hv.domain_destroy(back.domid)
    assert back.domid not in hv.domains
    hv.gnttab.end_foreign_access(front, gref)           # no longer mapped

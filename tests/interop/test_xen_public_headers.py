"""simxen's layouts and constants against Xen's public headers, as gcc reads them.

simxen's promise is that the bytes crossing a domain boundary are real
bytes at the offsets of Xen's public headers. Here one C program includes
those headers (Debian's ``libxen-dev``: ``xen/include/public/io/tpmif.h``,
``io/ring.h``, ``io/xenbus.h``, ``io/xs_wire.h``, ``grant_table.h``,
``event_channel.h``, ``errno.h``, ``xen.h``) and prints, as JSON, the
``sizeof``/``offsetof`` of every field and the value of every constant that
simxen models; each test compares one family with simxen's own definition.

The constants are found by name in simxen's modules (every ``GTF_*``,
``GNTST_*``, ``EVTCHNOP_*``, ``DOMID_*``, ... that simxen defines), so a
constant added to simxen later is checked without touching this file. A name
simxen defines that the installed headers lack fails the test unless
:data:`NOT_IN_THESE_HEADERS` says why.

What is *not* compared, and why: ``xs_wire.h``'s ``struct xsd_sockmsg`` and
``enum xsd_sockmsg_type`` -- simxen's XenStore is a call interface
(:mod:`simxen.xen.xenstore`), it frames no messages; and the entry layout
of :mod:`simxen.protocols.tpmif_ring`, which is simxen's own what-if
transport, not a Xen protocol (only its slot count, ring.h's, is checked).
"""

import ast
import inspect
import json
import struct
import subprocess

import pytest

from simxen.protocols import event_channel, grant_table, ring, tpmif, tpmif_ring
from simxen.protocols.xenbus import XenbusState
from simxen.xen import domain, errno, xenstore
from xen_headers import compile_c

pytestmark = pytest.mark.interop

#: Entry sizes whose ring.h slot count is compared: 1..20, the sizes simxen
#: uses (64 in the drivers' example, 112 blkif's, 256 the multi-slot
#: default) and, for every power of two of slots, the sizes on either side
#: of the step (where rounding down could go wrong).
ENTRY_SIZES = sorted({*range(1, 21), 64, 112, 256, 4032,
                      *(s + d for k in range(12) for s in [(4096 - 64) >> k] for d in (-1, 0, 1)
                        if 0 < s + d <= 4032)})
#: page sizes for ``__CONST_RING_SIZE`` (one page, and two for a bigger ring)
PAGE_SIZES = (4096, 8192)

#: Names simxen defines that the installed headers (Debian bookworm: Xen 4.17)
#: do not, with the reason simxen has them.
NOT_IN_THESE_HEADERS = {
    "DOMID_ANY": "added to xen/include/public/xen.h as 0x7FF5 after Xen 4.17 (Xen commit "
                 "'xen/domain: introduce DOMID_ANY'); simxen follows the newer tree",
}


def _names(module, prefix):
    """``{name: value}`` of the integer constants ``module`` defines with ``prefix``."""
    return {name: value for name, value in vars(module).items()
            if name.startswith(prefix) and isinstance(value, int) and not isinstance(value, bool)}


def _field_sizes(fmt):
    """Sizes of the fields of a little-endian :mod:`struct` format such as ``"<HHI"``."""
    return [struct.calcsize("<" + code) for code in fmt.lstrip("<")]


def _offsets(fmt):
    sizes = _field_sizes(fmt)
    return [sum(sizes[:i]) for i in range(len(sizes))]


#: Macros simxen names: the C program prints each, or null when the header lacks it.
MACROS = {**_names(grant_table, "GTF_"), **_names(grant_table, "GNTMAP_"),
          **_names(grant_table, "GNTCOPY_"), **_names(grant_table, "GNTST_"),
          **_names(grant_table, "GNTTABOP_"), **_names(event_channel, "EVTCHNOP_"),
          **_names(event_channel, "EVTCHNSTAT_"), **_names(event_channel, "DOMID_"),
          "EVTCHN_FIFO_NR_CHANNELS": event_channel.EVTCHN_FIFO_NR_CHANNELS,
          "EVTCHN_2L_NR_CHANNELS": event_channel.EVTCHN_2L_NR_CHANNELS,
          "GNTTAB_NR_RESERVED_ENTRIES": grant_table.NR_RESERVED_ENTRIES,
          "XENSTORE_PAYLOAD_MAX": xenstore.PAYLOAD_MAX,
          "XENSTORE_ABS_PATH_MAX": xenstore.ABS_PATH_MAX,
          "XEN_PAGE_SHIFT": tpmif.XEN_PAGE_SIZE.bit_length() - 1}

TPMIF_FIELDS = ("length", "state", "locality", "pad", "nr_extra_pages")

#: C expressions (not macros: always defined) -> simxen's value.
EXPRESSIONS = {
    # struct tpmif_shared_page (io/tpmif.h)
    "sizeof(struct tpmif_shared_page)": tpmif.TPMIF_HEADER_SIZE,
    **{f"offsetof(struct tpmif_shared_page, {field})": getattr(tpmif, f"TPMIF_OFF_{field.upper()}")
       for field in (*TPMIF_FIELDS, "extra_pages")},
    # the HEADER struct the drivers read and store through
    **{f"offsetof(struct tpmif_shared_page, {field}) /* HEADER */": offset
       for field, offset in zip(TPMIF_FIELDS, _offsets(tpmif.HEADER.format))},
    **{f"sizeof(((struct tpmif_shared_page *)0)->{field})": size
       for field, size in zip(TPMIF_FIELDS, _field_sizes(tpmif.HEADER.format))},
    "sizeof(((struct tpmif_shared_page *)0)->extra_pages[0])": struct.calcsize("<I"),
    "(1 << (8 * sizeof(((struct tpmif_shared_page *)0)->nr_extra_pages))) - 1":
        tpmif.TPMIF_MAX_EXTRA_PAGES,
    **{f"TPMIF_STATE_{name} /* TPMIF_STATE_NAMES */": value
       for value, name in tpmif.TPMIF_STATE_NAMES.items()},
    **{f"TPMIF_STATE_{name[len('TPMIF_STATE_'):]}": value
       for name, value in _names(tpmif, "TPMIF_STATE_").items()},
    # the shared ring's header (io/ring.h), on a ring of 8-byte entries
    "offsetof(struct e8_sring, req_prod)": ring.REQ_PROD,
    "offsetof(struct e8_sring, req_event)": ring.REQ_EVENT,
    "offsetof(struct e8_sring, rsp_prod)": ring.RSP_PROD,
    "offsetof(struct e8_sring, rsp_event)": ring.RSP_EVENT,
    "4 * offsetof(struct e8_sring, req_prod) / sizeof(RING_IDX)": 4 * ring.REQ_PROD_WORD,
    "4 * offsetof(struct e8_sring, req_event) / sizeof(RING_IDX)": 4 * ring.REQ_EVENT_WORD,
    "4 * offsetof(struct e8_sring, rsp_prod) / sizeof(RING_IDX)": 4 * ring.RSP_PROD_WORD,
    "4 * offsetof(struct e8_sring, rsp_event) / sizeof(RING_IDX)": 4 * ring.RSP_EVENT_WORD,
    "sizeof(RING_IDX)": (ring.MASK.bit_length() + 7) // 8,
    "offsetof(struct e8_sring, ring)": ring.SRING_HEADER,
    # ... and the rest of the 64 bytes sring_init() zeroes is pvt and __pad, nothing else
    "offsetof(struct e8_sring, pvt) + sizeof(((struct e8_sring *)0)->pvt)"
    " + sizeof(((struct e8_sring *)0)->__pad)": ring.SRING_HEADER,
    # slot counts: __CONST_RING_SIZE for each entry and page size, and __RING_SIZE
    # (what FRONT_RING_INIT uses) on a page
    **{f"__CONST_RING_SIZE(e{size}, {page})": ring.ring_size(size, page)
       for size in ENTRY_SIZES for page in PAGE_SIZES if size <= page - 64},
    **{f"__RING_SIZE((struct e{size}_sring *)page, 4096)": ring.ring_size(size)
       for size in ENTRY_SIZES},
    **{f"__CONST_RING_SIZE(e{size}, 4096) /* slots */": tpmif_ring.slots(size)
       for size in ENTRY_SIZES if tpmif_ring.MIN_ENTRY_SIZE <= size <= 4032},
    # struct grant_entry_v1 (grant_table.h) against the struct simxen packs
    "sizeof(grant_entry_v1_t)": grant_table.GRANT_ENTRY_V1.size,
    **{f"offsetof(grant_entry_v1_t, {field})": offset
       for field, offset in zip(("flags", "domid", "frame"),
                                _offsets(grant_table.GRANT_ENTRY_V1.format))},
    **{f"sizeof(((grant_entry_v1_t *)0)->{field})": size
       for field, size in zip(("flags", "domid", "frame"),
                              _field_sizes(grant_table.GRANT_ENTRY_V1.format))},
    "(1 << XEN_PAGE_SHIFT) / sizeof(grant_entry_v1_t)": grant_table.ENTRIES_PER_FRAME,
    "sizeof(domid_t)": struct.calcsize("<H"),
    # page size, wherever simxen names it
    "1 << XEN_PAGE_SHIFT": tpmif.XEN_PAGE_SIZE,
    "(1 << XEN_PAGE_SHIFT) /* domain.PAGE_SIZE */": domain.PAGE_SIZE,
    "XEN_PAGE_SHIFT /* domain.PAGE_SHIFT */": domain.PAGE_SHIFT,
    # enum xenbus_state (io/xenbus.h)
    **{f"XenbusState{state.name}": state.value for state in XenbusState},
    # errno.h: Xen's numbers, which simxen returns negated
    **{f"XEN_{name}": value for value, name in errno.NAMES.items()},
}

RING_TYPES = "".join(f"struct b{size} {{ uint8_t b[{size}]; }};\n"
                     f"DEFINE_RING_TYPES(e{size}, struct b{size}, struct b{size});\n"
                     for size in sorted({8, *ENTRY_SIZES})) + \
    "static unsigned char page[4096] __attribute__((aligned(4096)));\n"


def _program():
    lines = []
    for name in MACROS:
        lines.append(f'#ifdef {name}\n    printf(",\\n\\"{name}\\": %lld", (long long)({name}));\n'
                     f'#else\n    printf(",\\n\\"{name}\\": null");\n#endif')
    for expr in EXPRESSIONS:
        key = json.dumps(expr).replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'    printf(",\\n{key}: %lld", (long long)({expr}));')
    body = "\n".join(lines)
    return RING_TYPES + r"""
int main(void)
{
    size_t i;
    printf("{\"xsd_errors\": [");
    for (i = 0; i < sizeof(xsd_errors) / sizeof(xsd_errors[0]); i++)
        printf("%s[%d, \"%s\"]", i ? ", " : "", xsd_errors[i].errnum, xsd_errors[i].errstring);
    printf("]");
""" + body + r"""
    printf("\n}\n");
    return 0;
}
"""


@pytest.fixture(scope="module")
def xen(tmp_path_factory):
    """What the headers say: ``{C expression or macro name: value}``, plus ``xsd_errors``."""
    exe = compile_c(_program(), tmp_path_factory.mktemp("xen_headers"), "layouts")
    out = subprocess.run([str(exe)], capture_output=True, text=True, timeout=30, check=True)
    return json.loads(out.stdout)


def _mismatches(xen, expected):
    return [f"{key}: Xen's headers say {xen[key]}, simxen {value}"
            for key, value in expected.items() if xen[key] != value]


def test_every_macro_simxen_names_has_the_headers_value(xen):
    wrong = [f"{name}: Xen's headers say {xen[name]}, simxen {value}"
             for name, value in MACROS.items()
             if xen[name] is not None and xen[name] != value]
    absent = [name for name in MACROS if xen[name] is None and name not in NOT_IN_THESE_HEADERS]
    assert not wrong, "\n".join(wrong)
    assert not absent, f"simxen names constants the headers lack: {absent}"


@pytest.mark.parametrize("name", sorted(NOT_IN_THESE_HEADERS))
def test_names_absent_from_these_headers_are_absent_or_agree(xen, name):
    """A newer header that has the name must agree with simxen; the note then is stale."""
    assert name in MACROS
    assert xen[name] in (None, MACROS[name])


def test_tpmif_shared_page_layout_and_states(xen):
    tpmif_keys = {k: v for k, v in EXPRESSIONS.items() if "tpmif" in k or "TPMIF" in k}
    assert len(tpmif_keys) > 15
    assert not _mismatches(xen, tpmif_keys), "\n".join(_mismatches(xen, tpmif_keys))
    # the data follows the grant list, at sizeof(struct) + 4n: not at 16 + 4n
    assert tpmif.data_offset(3) == xen["sizeof(struct tpmif_shared_page)"] + 3 * xen[
        "sizeof(((struct tpmif_shared_page *)0)->extra_pages[0])"]


def test_sring_header_and_slot_counts(xen):
    ring_keys = {k: v for k, v in EXPRESSIONS.items() if "sring" in k or "RING" in k}
    assert len(ring_keys) > 2 * len(ENTRY_SIZES)
    assert not _mismatches(xen, ring_keys), "\n".join(_mismatches(xen, ring_keys))


def test_grant_entry_v1_and_page_size(xen):
    keys = {k: v for k, v in EXPRESSIONS.items() if "grant_entry" in k or "PAGE_SHIFT" in k
            or "domid_t" in k}
    assert not _mismatches(xen, keys), "\n".join(_mismatches(xen, keys))


def test_xenbus_states(xen):
    keys = {k: v for k, v in EXPRESSIONS.items() if k.startswith("XenbusState")}
    assert len(keys) == len(XenbusState) == 9
    assert not _mismatches(xen, keys), "\n".join(_mismatches(xen, keys))


def test_event_channel_state_names_are_evtchnstat(xen):
    for value, name in event_channel.STATE_NAMES.items():
        assert xen[f"EVTCHNSTAT_{name}"] == value


def test_errno_values_are_xens(xen):
    keys = {k: v for k, v in EXPRESSIONS.items() if k.startswith("XEN_E")}
    assert len(keys) == len(errno.NAMES)
    assert not _mismatches(xen, keys), "\n".join(_mismatches(xen, keys))


def _xenstore_errnos():
    """The errno names :mod:`simxen.xen.xenstore` raises (``errno.X`` in its source)."""
    tree = ast.parse(inspect.getsource(xenstore))
    return {node.attr for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
            and node.value.id == "errno"}


def test_every_xenstore_error_can_go_on_the_wire(xen):
    """xenstored sends an error as its name from ``xsd_errors`` (io/xs_wire.h); an errno
    not in that table is sent as ``EINVAL`` ("untranslatable"), so a simxen XenStore
    error outside it would be one no guest can ever receive."""
    table = {name: number for number, name in xen["xsd_errors"]}
    raised = _xenstore_errnos()
    assert {"ENOENT", "EACCES", "EINVAL", "E2BIG", "EAGAIN"} <= raised
    outside = sorted(raised - set(table))
    assert not outside, f"simxen's XenStore raises errors xsd_errors cannot carry: {outside}"
    assert {name: getattr(errno, name) for name in raised} == {name: table[name] for name in raised}

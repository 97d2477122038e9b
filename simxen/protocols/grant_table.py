"""Grant-table constants from Xen's public ``grant_table.h`` (v1).

A grant entry v1 is 8 bytes: ``flags`` (u16), ``domid`` (u16, the domain
allowed access), ``frame`` (u32, the granted frame). The first
:data:`NR_RESERVED_ENTRIES` refs are reserved (0 console, 1 xenstore).
"""

import struct

#: ``struct grant_entry_v1``: flags, domid, frame.
GRANT_ENTRY_V1 = struct.Struct("<HHI")
NR_RESERVED_ENTRIES = 8
#: entries per 4 KiB grant frame (v1).
ENTRIES_PER_FRAME = 4096 // GRANT_ENTRY_V1.size

# Entry flags.
GTF_invalid = 0
GTF_permit_access = 1
GTF_accept_transfer = 2
GTF_transitive = 3
GTF_type_mask = 3
GTF_readonly = 0x04
GTF_reading = 0x08
GTF_writing = 0x10

# Map flags.
GNTMAP_device_map = 0x1
GNTMAP_host_map = 0x2
GNTMAP_readonly = 0x4

# Copy flags.
GNTCOPY_source_gref = 0x1
GNTCOPY_dest_gref = 0x2

# Status codes.
GNTST_okay = 0
GNTST_general_error = -1
GNTST_bad_domain = -2
GNTST_bad_gntref = -3
GNTST_bad_handle = -4
GNTST_bad_virt_addr = -5
GNTST_bad_dev_addr = -6
GNTST_no_device_space = -7
GNTST_permission_denied = -8
GNTST_bad_page = -9
GNTST_bad_copy_arg = -10
GNTST_address_too_big = -11
GNTST_eagain = -12
GNTST_no_space = -13

#: status value -> name.
GNTST_NAMES = {value: name for name, value in list(globals().items())
               if name.startswith("GNTST_") and isinstance(value, int)}

# Hypercall numbers (HYPERVISOR_grant_table_op commands).
GNTTABOP_map_grant_ref = 0
GNTTABOP_unmap_grant_ref = 1
GNTTABOP_copy = 5


def pack_entry(flags, domid, frame):
    """The 8 bytes of a v1 grant entry."""
    return GRANT_ENTRY_V1.pack(flags, domid, frame)


def unpack_entry(data):
    """``(flags, domid, frame)`` from 8 bytes of a v1 grant entry."""
    return GRANT_ENTRY_V1.unpack(data)

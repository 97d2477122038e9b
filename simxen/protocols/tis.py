"""The TCG PC Client TPM Interface Specification (TIS / PTP FIFO) register map.

A discrete TPM on a PC answers memory-mapped I/O at ``0xFED40000``. The
window is five 4 KiB pages, one per *locality* (0..4); the registers of
locality ``L`` are at ``TIS_BASE + 0x1000*L + offset``. The same register
file is visible through each page, but the TPM knows which page (so which
locality) an access came through: that is how Xen restricts the vTPM manager
to, say, locality 2 (``iomem=["fed42,1"]``).

Register offsets inside one locality page (TCG PC Client Platform TPM Profile
(PTP) specification, FIFO interface; Linux ``tpm_tis_core.h``)::

    offset  width  name              notes
    ------  -----  ----------------  ----------------------------------------
     0x000      1  ACCESS            locality request / active / relinquish
     0x008      4  INT_ENABLE        interrupt enable bits, global enable b31
     0x00C      1  INT_VECTOR        SIRQ number
     0x010      4  INT_STATUS        write 1 to clear
     0x014      4  INTF_CAPABILITY   what the interface supports
     0x018      1  STS               status/command bits
     0x019      2  STS burstCount    bytes the FIFO can take/give right now (LE)
     0x01B      1  STS (byte 3)      commandCancel, resetEstablishment, family
     0x024      4  DATA_FIFO         every byte of it is the FIFO
     0x030      4  INTERFACE_ID      PTP only; 0xFFFFFFFF on a TIS 1.3 part
     0x080     64  XDATA_FIFO        PTP only
     0xF00      4  DID_VID           vendor id (low 16 bits), device id (high)
     0xF04      1  RID               revision id

Multi-byte registers are little-endian. This module holds only names and
numbers plus two small address helpers; the device that gives them meaning is
:mod:`simxen.hw.tis`.
"""

from __future__ import annotations

__all__ = [
    "TIS_BASE", "TIS_LOCALITY_STRIDE", "TIS_NUM_LOCALITIES", "TIS_WINDOW_SIZE",
    "TPM_ACCESS", "TPM_INT_ENABLE", "TPM_INT_VECTOR", "TPM_INT_STATUS",
    "TPM_INTF_CAPABILITY", "TPM_STS", "TPM_STS_BURST_COUNT", "TPM_STS_BYTE3",
    "TPM_DATA_FIFO", "TPM_INTERFACE_ID", "TPM_XDATA_FIFO", "TPM_DID_VID", "TPM_RID",
    "TIS_REGISTERS", "split_address", "tis_address",
]

#: Physical address of locality 0's page.
TIS_BASE = 0xFED40000
#: Distance between two localities' pages.
TIS_LOCALITY_STRIDE = 0x1000
#: Localities 0..4.
TIS_NUM_LOCALITIES = 5
#: The whole window, 0x5000 bytes (``iomem=["fed40,5"]``).
TIS_WINDOW_SIZE = TIS_LOCALITY_STRIDE * TIS_NUM_LOCALITIES

# Register offsets within one locality's page.
TPM_ACCESS = 0x000
TPM_INT_ENABLE = 0x008
TPM_INT_VECTOR = 0x00C
TPM_INT_STATUS = 0x010
TPM_INTF_CAPABILITY = 0x014
TPM_STS = 0x018
TPM_STS_BURST_COUNT = 0x019
TPM_STS_BYTE3 = 0x01B
TPM_DATA_FIFO = 0x024
TPM_INTERFACE_ID = 0x030
TPM_XDATA_FIFO = 0x080
TPM_DID_VID = 0xF00
TPM_RID = 0xF04

#: ``name -> (offset, width in bytes)``; STS is listed whole (4 bytes).
TIS_REGISTERS = {
    "ACCESS": (TPM_ACCESS, 1),
    "INT_ENABLE": (TPM_INT_ENABLE, 4),
    "INT_VECTOR": (TPM_INT_VECTOR, 1),
    "INT_STATUS": (TPM_INT_STATUS, 4),
    "INTF_CAPABILITY": (TPM_INTF_CAPABILITY, 4),
    "STS": (TPM_STS, 4),
    "DATA_FIFO": (TPM_DATA_FIFO, 4),
    "INTERFACE_ID": (TPM_INTERFACE_ID, 4),
    "XDATA_FIFO": (TPM_XDATA_FIFO, 0x40),
    "DID_VID": (TPM_DID_VID, 4),
    "RID": (TPM_RID, 1),
}

# --- TPM_ACCESS_x bits -----------------------------------------------------
#: read: the other bits are valid
TPM_ACCESS_VALID = 0x80
#: read: this locality is active; write: relinquish it
TPM_ACCESS_ACTIVE_LOCALITY = 0x20
#: read: this locality was seized by a higher one (write 1 to clear)
TPM_ACCESS_BEEN_SEIZED = 0x10
#: write: take the TPM from a lower active locality
TPM_ACCESS_SEIZE = 0x08
#: read: another locality is waiting for the TPM
TPM_ACCESS_PENDING_REQUEST = 0x04
#: write: ask for the TPM; read: this locality's request is pending
TPM_ACCESS_REQUEST_USE = 0x02
#: read: 0 once a dynamic OS (DRTM) has set tpmEstablishment; 1 otherwise
TPM_ACCESS_ESTABLISHMENT = 0x01

# --- TPM_STS_x, byte 0 -------------------------------------------------------
#: the dataAvail and Expect bits are valid
TPM_STS_VALID = 0x80
#: read: ready for a command; write: abort / get ready
TPM_STS_COMMAND_READY = 0x40
#: write: execute the command in the FIFO
TPM_STS_GO = 0x20
#: read: response bytes are waiting in the FIFO
TPM_STS_DATA_AVAIL = 0x10
#: read: the TPM expects more command bytes
TPM_STS_EXPECT = 0x08
#: read: the TPM finished its self test (TPM 2.0)
TPM_STS_SELF_TEST_DONE = 0x04
#: write: rewind the response so it can be read again
TPM_STS_RESPONSE_RETRY = 0x02

# --- TPM_STS_x, byte 3 (bits 24..31 of the 32-bit register) ----------------
#: write: cancel the executing command (TPM 2.0)
TPM_STS_COMMAND_CANCEL = 0x01 << 24
#: write: reset tpmEstablishment (locality 3/4 only)
TPM_STS_RESET_ESTABLISHMENT = 0x02 << 24
TPM_STS_FAMILY_SHIFT = 26
TPM_STS_FAMILY_MASK = 0x3 << TPM_STS_FAMILY_SHIFT
TPM_STS_FAMILY_TPM_1_2 = 0 << TPM_STS_FAMILY_SHIFT
TPM_STS_FAMILY_TPM_2_0 = 1 << TPM_STS_FAMILY_SHIFT

# --- TPM_INT_ENABLE_x / TPM_INT_STATUS_x ------------------------------------
TPM_GLOBAL_INT_ENABLE = 0x80000000
TPM_INTF_BURST_COUNT_STATIC = 0x100
TPM_INTF_CMD_READY_INT = 0x080
TPM_INTF_INT_EDGE_FALLING = 0x040
TPM_INTF_INT_EDGE_RISING = 0x020
TPM_INTF_INT_LEVEL_LOW = 0x010
TPM_INTF_INT_LEVEL_HIGH = 0x008
TPM_INTF_LOCALITY_CHANGE_INT = 0x004
TPM_INTF_STS_VALID_INT = 0x002
TPM_INTF_DATA_AVAIL_INT = 0x001
#: INTF_CAPABILITY bits 9..10: largest single data transfer (0=legacy 1 byte, 3=64 bytes)
TPM_INTF_DATA_TRANSFER_SHIFT = 9
#: INTF_CAPABILITY bits 28..30: interface version (0b000 TIS 1.2, 0b010 TIS 1.3, 0b011 PTP FIFO)
TPM_INTF_VERSION_SHIFT = 28
TPM_INTF_VERSION_TIS_1_3 = 0b010
TPM_INTF_VERSION_PTP_FIFO = 0b011

__all__ += [name for name in list(globals()) if name.startswith(("TPM_ACCESS_", "TPM_STS_", "TPM_INTF_"))]
__all__ += ["TPM_GLOBAL_INT_ENABLE"]


def split_address(address: int) -> tuple[int, int]:
    """``(locality, register offset)`` of an *offset from TIS_BASE*.

    Raises :class:`ValueError` outside the 0x5000-byte window.
    """
    if not 0 <= address < TIS_WINDOW_SIZE:
        raise ValueError(f"TIS offset {address:#x} is outside the 0x5000-byte window")
    return divmod(address, TIS_LOCALITY_STRIDE)


def tis_address(locality: int, register: int) -> int:
    """Offset from :data:`TIS_BASE` of *register* in *locality*'s page."""
    if not 0 <= locality < TIS_NUM_LOCALITIES:
        raise ValueError(f"locality {locality} is not 0..4")
    if not 0 <= register < TIS_LOCALITY_STRIDE:
        raise ValueError(f"register offset {register:#x} is outside a locality page")
    return locality * TIS_LOCALITY_STRIDE + register

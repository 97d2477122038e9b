"""A TPM's TIS/FIFO interface as a memory-mapped device.

:class:`TisDevice` is what a driver sees behind the 5-page window at
``0xFED40000``: it answers :meth:`~TisDevice.mmio_read` and
:meth:`~TisDevice.mmio_write` byte by byte, keeps one *active locality*, and
moves one command at a time through the FIFO state machine of the TCG PC
Client PTP specification::

      Idle --commandReady--> Ready --FIFO write--> Reception (Expect=1)
                                                     | last byte of paramSize
                                                     v
      Completion <--complete()-- Execution <--GO-- Reception (Expect=0)
      (dataAvail=1 while bytes remain; responseRetry rewinds)
      Completion --commandReady--> Idle

The device knows nothing of time and nothing of TPM commands: at GO it sets
:attr:`~TisDevice.command_started` (and calls the optional ``on_go``
callback) and stays in Execution, where STS shows neither dataAvail nor
commandReady. The simulation layer charges the TPM's latency and then calls
:meth:`~TisDevice.complete`, which runs ``execute(command, locality)`` and
makes the response readable. A driver polling STS every 5 ms therefore sees
exactly what it would see on real hardware.

Misuse is answered as hardware answers it, never by an exception:

* Reads of STS, DATA_FIFO and XDATA_FIFO through a locality that is not
  active return ``0xFF`` bytes; writes to them (and to INT_ENABLE) are
  ignored. ACCESS, INT_VECTOR, INT_STATUS, INTF_CAPABILITY, DID_VID and RID
  are readable through every locality.
* FIFO writes outside Ready/Reception, bytes beyond the command's own
  ``paramSize`` and bytes beyond ``max_command_size`` are dropped (Expect
  stays 1 in the last case, so a careful driver notices).
* GO while Expect is 1 or outside Reception is ignored.
* FIFO reads with no response byte left return ``0xFF``.
* Reads of offsets that hold no register return ``0xFF`` (nothing drives the
  bus); so does INTERFACE_ID, which a TIS 1.3 part does not implement
  (all-ones there means "TIS 1.3 FIFO" to a PTP-aware driver).
* commandReady (or commandCancel) during Execution cancels: the TPM cannot
  be stopped mid-command, so the device stays in Execution until
  :meth:`~TisDevice.complete`, then discards the response and shows Ready
  (STS = commandReady alone, which drivers read as "cancelled").
  Relinquishing or losing the locality (seize) does the same, ending in Idle.

An access of *n* bytes that starts in DATA_FIFO (or XDATA_FIFO) moves *n*
bytes through the FIFO, the way a driver's ``ioread8``/``iowrite8`` loop on
the one FIFO address does (so a burst is one call). Any other access is
decoded byte by byte against the register map.

STS always reports selfTestDone and the TPM 2.0 family (the engine behind
the device has no self-test phase); ACCESS always reports tpmEstablishment = 1
(no dynamic launch happened).

Only ``ValueError`` for an access outside the window (an address the
platform would not route to the TPM at all) is raised.
"""

from __future__ import annotations

import struct
from typing import Callable, Optional

from simxen.protocols import tis as reg

__all__ = ["TisDevice", "TIS_IDLE", "TIS_READY", "TIS_RECEPTION", "TIS_EXECUTION", "TIS_COMPLETION"]

TIS_IDLE = "idle"
TIS_READY = "ready"
TIS_RECEPTION = "reception"
TIS_EXECUTION = "execution"
TIS_COMPLETION = "completion"

#: DID_VID / RID of QEMU's emulated TIS (IBM vendor id 0x1014, device 1, rev 1).
DEFAULT_DID_VID = 0x00011014
DEFAULT_RID = 0x01

#: ``offset in a locality page -> (register name, byte index in it)``.
_REGISTER_AT = {off + i: (name, i)
                for name, (off, width) in reg.TIS_REGISTERS.items() for i in range(width)}


class TisDevice:
    """The TPM chip's FIFO interface.

    :param execute: ``execute(command, locality) -> response``; the TPM.
    :param burst_count: bytes the FIFO accepts or returns per burst.
    :param did_vid: value of DID_VID (device id << 16 | vendor id).
    :param rid: value of RID.
    :param max_command_size: largest command the FIFO buffers.
    :param on_go: called as ``on_go(command, locality)`` when GO starts a command.
    :param on_interrupt: called as ``on_interrupt(locality, int_status)`` when an
        enabled interrupt condition is raised and global interrupts are on
        (polling drivers leave it ``None``).
    """

    def __init__(self, execute: Callable[[bytes, int], bytes], *, burst_count: int = 64,
                 did_vid: int = DEFAULT_DID_VID, rid: int = DEFAULT_RID,
                 max_command_size: int = 4096,
                 on_go: Optional[Callable[[bytes, int], None]] = None,
                 on_interrupt: Optional[Callable[[int, int], None]] = None):
        if not 1 <= burst_count <= 0xFFFF:
            raise ValueError("burst_count must be 1..65535")
        self._execute = execute
        self.burst_count = burst_count
        self.did_vid = did_vid
        self.rid = rid
        self.max_command_size = max_command_size
        self.on_go = on_go
        self.on_interrupt = on_interrupt
        #: The locality that owns the FIFO, or ``None``.
        self.active_locality: Optional[int] = None
        #: Localities whose REQUEST_USE is pending.
        self.pending: set[int] = set()
        self.been_seized = [False] * reg.TIS_NUM_LOCALITIES
        self.int_enable = [0] * reg.TIS_NUM_LOCALITIES
        self.int_vector = [0] * reg.TIS_NUM_LOCALITIES
        self.int_status = [0] * reg.TIS_NUM_LOCALITIES
        #: FIFO state: one of ``TIS_IDLE`` ... ``TIS_COMPLETION``.
        self.state = TIS_IDLE
        self._command = bytearray()
        self._response = b""
        self._read_pos = 0
        self._exec_command: Optional[bytes] = None
        self._exec_locality: Optional[int] = None
        #: State to enter when a cancelled command finishes (None: not cancelled).
        self._cancel_to: Optional[str] = None
        self.commands_executed = 0

    # -- what the simulation layer uses ---------------------------------

    @property
    def command_started(self) -> bool:
        """True from GO until :meth:`complete`: the TPM is busy (even if cancelled)."""
        return self._exec_command is not None

    @property
    def cancel_requested(self) -> bool:
        """A driver cancelled (or gave up the locality of) the executing command."""
        return self._cancel_to is not None

    @property
    def pending_command(self) -> bytes:
        """The command being executed (empty when none)."""
        return self._exec_command or b""

    def complete(self) -> Optional[bytes]:
        """Finish the command started by GO: run ``execute`` and expose the response.

        Returns the response, or ``None`` when no command was executing or it
        had been cancelled: the TPM still ran it (its effects stay), nobody
        will read the answer, and the FIFO goes to Ready (commandReady
        cancel, the "STS == commandReady alone" a driver checks for) or Idle
        (locality relinquished or seized).
        """
        if not self.command_started:
            return None
        response = bytes(self._execute(self._exec_command, self._exec_locality))
        self.commands_executed += 1
        self._exec_command = None
        if self._cancel_to is not None:
            self.state, self._cancel_to = self._cancel_to, None
            return None
        self._response = response
        self._read_pos = 0
        self.state = TIS_COMPLETION
        self._raise_int(self.active_locality, reg.TPM_INTF_DATA_AVAIL_INT | reg.TPM_INTF_STS_VALID_INT)
        return response

    # -- MMIO -----------------------------------------------------------

    def mmio_read(self, offset: int, size: int) -> bytes:
        """Read *size* bytes at *offset* from ``TIS_BASE`` (within one locality page)."""
        locality, start = self._range(offset, size)
        if _is_fifo(start):
            return bytes(self._fifo_read(locality) for _ in range(size))
        out = bytearray()
        cache = {}
        for off in range(start, start + size):
            name, index = _REGISTER_AT.get(off, (None, 0))
            if name in ("DATA_FIFO", "XDATA_FIFO"):
                out.append(self._fifo_read(locality))
                continue
            if name not in cache:
                cache[name] = self._register_value(name, locality)
            value, width = cache[name]
            out.append((value >> (8 * index)) & 0xFF if value is not None else 0xFF)
        return bytes(out)

    def mmio_write(self, offset: int, data: bytes) -> None:
        """Write *data* at *offset* from ``TIS_BASE`` (within one locality page)."""
        locality, start = self._range(offset, len(data))
        if _is_fifo(start):
            for byte in data:
                self._fifo_write(locality, byte)
            return
        groups: dict = {}
        for i, byte in enumerate(data):
            name, index = _REGISTER_AT.get(start + i, (None, 0))
            if name in ("DATA_FIFO", "XDATA_FIFO"):
                self._fifo_write(locality, byte)
            elif name is not None:
                groups.setdefault(name, {})[index] = byte
        for name, bytes_by_index in groups.items():
            self._register_write(name, locality, bytes_by_index)

    @staticmethod
    def _range(offset: int, size: int) -> tuple[int, int]:
        locality, start = reg.split_address(offset)
        if size < 1 or (start + size > reg.TIS_LOCALITY_STRIDE and not _is_fifo(start)):
            raise ValueError(f"TIS access of {size} bytes at {offset:#x} crosses a locality page")
        return locality, start

    # -- registers --------------------------------------------------------

    def _register_value(self, name, locality):
        """``(value or None, width)`` of register *name* as *locality* reads it."""
        active = locality == self.active_locality
        if name == "ACCESS":
            return self._access(locality), 1
        if name == "STS":
            return (self._sts() if active else None), 4
        if name == "INT_ENABLE":
            return self.int_enable[locality], 4
        if name == "INT_VECTOR":
            return self.int_vector[locality], 1
        if name == "INT_STATUS":
            return self.int_status[locality], 4
        if name == "INTF_CAPABILITY":
            return self.intf_capability, 4
        if name == "DID_VID":
            return self.did_vid, 4
        if name == "RID":
            return self.rid, 1
        return None, 4  # INTERFACE_ID (not a TIS 1.3 register) and holes

    @property
    def intf_capability(self) -> int:
        """What this interface advertises: TIS 1.3, static burst count, 64-byte transfers."""
        return (reg.TPM_INTF_DATA_AVAIL_INT | reg.TPM_INTF_STS_VALID_INT
                | reg.TPM_INTF_LOCALITY_CHANGE_INT | reg.TPM_INTF_INT_LEVEL_LOW
                | reg.TPM_INTF_CMD_READY_INT | reg.TPM_INTF_BURST_COUNT_STATIC
                | (3 << reg.TPM_INTF_DATA_TRANSFER_SHIFT)
                | (reg.TPM_INTF_VERSION_TIS_1_3 << reg.TPM_INTF_VERSION_SHIFT))

    def _access(self, locality: int) -> int:
        value = reg.TPM_ACCESS_VALID | reg.TPM_ACCESS_ESTABLISHMENT
        if locality == self.active_locality:
            value |= reg.TPM_ACCESS_ACTIVE_LOCALITY
        if self.been_seized[locality]:
            value |= reg.TPM_ACCESS_BEEN_SEIZED
        if self.pending - {locality}:
            value |= reg.TPM_ACCESS_PENDING_REQUEST
        if locality in self.pending:
            value |= reg.TPM_ACCESS_REQUEST_USE
        return value

    def _sts(self) -> int:
        bits = reg.TPM_STS_VALID | reg.TPM_STS_SELF_TEST_DONE | reg.TPM_STS_FAMILY_TPM_2_0
        burst = 0
        if self.state == TIS_READY:
            bits |= reg.TPM_STS_COMMAND_READY
            burst = min(self.burst_count, self.max_command_size)
        elif self.state == TIS_RECEPTION:
            if self._expect():
                bits |= reg.TPM_STS_EXPECT
            burst = min(self.burst_count, self.max_command_size - len(self._command))
        elif self.state == TIS_COMPLETION:
            left = len(self._response) - self._read_pos
            if left:
                bits |= reg.TPM_STS_DATA_AVAIL
            burst = min(self.burst_count, left)
        return bits | (burst << 8)

    def _expect(self) -> bool:
        """More command bytes wanted: the header is incomplete or short of paramSize."""
        if len(self._command) < 6:
            return True
        (size,) = struct.unpack_from(">I", self._command, 2)
        return len(self._command) < size

    def _register_write(self, name, locality, bytes_by_index):
        if name == "ACCESS":
            self._access_write(locality, bytes_by_index[0])
        elif name == "STS":
            if locality != self.active_locality:
                return
            value = sum(b << (8 * i) for i, b in bytes_by_index.items())
            self._sts_write(value)
        elif name == "INT_ENABLE":
            if locality == self.active_locality:
                self.int_enable[locality] = _merge(self.int_enable[locality], bytes_by_index)
        elif name == "INT_VECTOR":
            if locality == self.active_locality:
                self.int_vector[locality] = bytes_by_index.get(0, self.int_vector[locality])
        elif name == "INT_STATUS":
            self.int_status[locality] &= ~_merge(0, bytes_by_index)
        # INTF_CAPABILITY, DID_VID, RID, INTERFACE_ID: read-only

    def _access_write(self, locality: int, value: int) -> None:
        if value & reg.TPM_ACCESS_BEEN_SEIZED:
            self.been_seized[locality] = False
        if value & reg.TPM_ACCESS_SEIZE:
            if self.active_locality is not None and locality > self.active_locality:
                self.been_seized[self.active_locality] = True
                self._abort_command()
                self._set_active(locality)
        if value & reg.TPM_ACCESS_REQUEST_USE:
            if self.active_locality is None:
                self._set_active(locality)
            elif self.active_locality != locality:
                self.pending.add(locality)
        if value & reg.TPM_ACCESS_ACTIVE_LOCALITY:
            if locality == self.active_locality:
                self._abort_command()
                self.active_locality = None
                if self.pending:
                    self._set_active(max(self.pending))
            else:
                self.pending.discard(locality)  # withdraws a pending request

    def _set_active(self, locality: int) -> None:
        self.pending.discard(locality)
        self.active_locality = locality
        self._raise_int(locality, reg.TPM_INTF_LOCALITY_CHANGE_INT)

    def _abort_command(self, to: str = TIS_IDLE) -> None:
        """Drop whatever the FIFO holds and go to state *to*.

        A command already executing cannot be stopped here: it is marked
        cancelled and the FIFO reaches *to* when :meth:`complete` runs.
        """
        self._command = bytearray()
        self._response = b""
        self._read_pos = 0
        if self.state == TIS_EXECUTION:
            self._cancel_to = to
        else:
            self.state = to

    def _sts_write(self, value: int) -> None:
        if value & reg.TPM_STS_COMMAND_READY:
            if self.state == TIS_COMPLETION:
                self._abort_command(TIS_IDLE)   # response consumed or abandoned
            else:
                self._abort_command(TIS_READY)  # Idle/Ready/Reception, or cancel
                if self.state == TIS_READY:
                    self._raise_int(self.active_locality, reg.TPM_INTF_CMD_READY_INT)
            return
        if value & reg.TPM_STS_COMMAND_CANCEL and self.state == TIS_EXECUTION:
            self._abort_command(TIS_READY)
            return
        if value & reg.TPM_STS_GO:
            if self.state == TIS_RECEPTION and not self._expect():
                self.state = TIS_EXECUTION
                self._exec_command = bytes(self._command)
                self._exec_locality = self.active_locality
                self._command = bytearray()
                if self.on_go is not None:
                    self.on_go(self._exec_command, self._exec_locality)
            return
        if value & reg.TPM_STS_RESPONSE_RETRY and self.state == TIS_COMPLETION:
            self._read_pos = 0

    # -- FIFO -------------------------------------------------------------

    def _fifo_write(self, locality: int, byte: int) -> None:
        if locality != self.active_locality or self.state not in (TIS_READY, TIS_RECEPTION):
            return
        self.state = TIS_RECEPTION
        if not self._expect() or len(self._command) >= self.max_command_size:
            return  # overflow: dropped
        self._command.append(byte)

    def _fifo_read(self, locality: int) -> int:
        if locality != self.active_locality or self.state != TIS_COMPLETION:
            return 0xFF
        if self._read_pos >= len(self._response):
            return 0xFF
        byte = self._response[self._read_pos]
        self._read_pos += 1
        return byte

    def _raise_int(self, locality, bits: int) -> None:
        if locality is None:
            return
        enabled = self.int_enable[locality]
        bits &= enabled
        if not bits:
            return
        self.int_status[locality] |= bits
        if enabled & reg.TPM_GLOBAL_INT_ENABLE and self.on_interrupt is not None:
            self.on_interrupt(locality, self.int_status[locality])


def _is_fifo(register: int) -> bool:
    """An access starting in DATA_FIFO or XDATA_FIFO moves every byte through the FIFO."""
    return _REGISTER_AT.get(register, (None,))[0] in ("DATA_FIFO", "XDATA_FIFO")


def _merge(old: int, bytes_by_index: dict) -> int:
    for i, b in bytes_by_index.items():
        old = (old & ~(0xFF << (8 * i))) | (b << (8 * i))
    return old

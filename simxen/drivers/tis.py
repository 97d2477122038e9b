"""The vTPM manager's TIS driver: a TPM command through the FIFO registers at 0xFED40000.

The vTPM manager stub domain owns the physical TPM. It maps the TIS window
(``iomem=["fed40,5"]`` in its xl config; ``-EPERM`` for anybody else, dom0
included) and drives the chip's FIFO byte by byte, as mini-os's
``tpm_tis.c`` does (xen-project/mini-os)::

    tis = TisDriver(hv, mgr, locality=2)
    tis.open()                                   # map the window, probe DID/VID
    rsp = yield from tis.transmit(cmd, flow=req.flow)

One :meth:`TisDriver.transmit`:

1. **Request the locality** (free if it is already active): write
   ``REQUEST_USE`` to ``ACCESS`` and poll it every 5 ms until
   ``ACTIVE_LOCALITY``, up to timeout A (750 ms) -- else ``-EBUSY``.
2. **commandReady**: if STS does not show it, write it and poll up to
   timeout B (2 s).
3. **Write the command** in burst-count chunks: read the burst count from
   STS, write that many bytes to ``DATA_FIFO``, check the TPM still
   *Expects* more; the last byte alone, after which Expect must be clear. A
   TPM that stops expecting early (the command's ``paramSize`` is shorter
   than the bytes) or never stops (longer than its FIFO) is ``-EIO``.
4. **GO**, then wait for ``dataAvail | stsValid``: by **polling STS every
   5 ms** (mini-os's default, ``tpmirq=0``) or, when the profile switch
   ``tis.wait`` is ``"interrupt"`` and the chip's interrupt line was given,
   by sleeping until the TPM raises it. No answer within the command's
   duration (120 s, Linux's and mini-os's value for a command they cannot
   classify; switch ``tis.duration``) writes commandReady (cancel) and fails
   with ``-ETIME``. STS showing commandReady alone means the TPM cancelled:
   ``-ECANCELED``.
5. **Read** the 10-byte header, then the ``responseSize - 10`` remaining
   bytes, each in burst-count chunks (a burst count of 0 is waited for, up
   to timeout C); a size below 10 or beyond the driver's buffer is ``-EIO``.
6. **commandReady** again (the FIFO goes idle) and **keep the locality**
   unless ACCESS shows another locality's request pending, in which case
   relinquish it.

Every register access is a real MMIO access through the mapping (traced
``mmio.read``/``mmio.write`` and costed ``mmio.access``); waiting is
``dom.sleep`` on the 5 ms grid. The physical-TPM hop is traced as
``tis.go`` (after GO) and ``tis.complete`` (response read), in the manager's
domain and with the command's ``flow``.
"""

from __future__ import annotations

import errno

from simxen.drivers.tpmfront import DriverError
from simxen.protocols import tis as reg
from simxen.tpm import header
from simxen.tpm.constants import command_name

__all__ = ["TisDriver", "TisError", "TIS_FIRST_MFN", "TIS_NR_MFNS", "TIMEOUT_A", "TIMEOUT_B",
           "TIMEOUT_C", "TIMEOUT_D", "DEFAULT_DURATION", "POLL_INTERVAL"]

#: Machine frame of the window (0xFED40000 >> 12) and its five locality pages.
TIS_FIRST_MFN = reg.TIS_BASE >> 12
TIS_NR_MFNS = reg.TIS_NUM_LOCALITIES
#: mini-os tpm_tis defaults before the TPM reports its own (seconds).
TIMEOUT_A = 0.75
TIMEOUT_B = 2.0
TIMEOUT_C = 0.75
TIMEOUT_D = 0.75
#: Wait for an answer to a command whose duration class is unknown.
DEFAULT_DURATION = 120.0
#: ``TPM_TIMEOUT``: the sleep between two status reads.
POLL_INTERVAL = 0.005

#: What the ``tis.wait`` switch may say: poll the status register, or wait for the
#: chip's interrupt (when the platform gave the driver one)
WAITS = ("poll", "interrupt")
#: mini-os's response buffer (TCPA_MAX_BUFFER_LENGTH).
MAX_RESPONSE = 8192

_HEADER = header.HEADER_SIZE


class TisError(DriverError):
    """A transfer the TIS driver gives up on; :attr:`errno` is negative.

    ``-EBUSY`` the locality was not granted, ``-ETIME`` a timeout,
    ``-ECANCELED`` the TPM cancelled, ``-EIO`` the FIFO did not behave
    (Expect, burst count, a bad response size).
    """


class TisDriver:
    """mini-os ``tpm_tis`` in domain ``dom``, at TPM ``locality`` (0..4).

    :param irq: the chip's interrupt line (anything with ``event()`` returning a
        SimPy event that fires when the TPM raises its interrupt), used when the
        profile switch ``tis.wait`` is ``"interrupt"``; ``None`` means polling.
    """

    def __init__(self, hv, dom, *, locality=0, first_mfn=TIS_FIRST_MFN, irq=None):
        if not 0 <= locality < reg.TIS_NUM_LOCALITIES:
            raise ValueError(f"locality {locality} is not 0..4")
        self.hv = hv
        self.dom = dom
        self.locality = locality
        self.first_mfn = first_mfn
        self.irq = irq
        self.window = None
        self.did_vid = None
        self.rid = None
        # counters
        self.commands = 0          #: responses read
        self.status_reads = 0      #: STS reads while waiting for the answer
        self.locality_requests = 0 #: times REQUEST_USE was written
        self.releases = 0          #: times the locality was given up for another
        switch = hv.profile.switch
        self.poll_interval = switch("tis.poll_interval", POLL_INTERVAL)
        self.duration = switch("tis.duration", DEFAULT_DURATION)
        self.use_irq = irq is not None and switch("tis.wait", "poll") == "interrupt"
        self._irq_enabled = False

    def __repr__(self):
        return f"<TisDriver dom{self.dom.domid} locality {self.locality}>"

    # -- registers ---------------------------------------------------------------

    def _addr(self, register):
        return reg.tis_address(self.locality, register)

    def _read8(self, register):
        return self.window.read(self._addr(register), 1)[0]

    def _write8(self, register, value):
        self.window.write(self._addr(register), bytes([value]))

    def _status(self):
        """``(STS byte 0, burst count)`` in one 4-byte read."""
        value = int.from_bytes(self.window.read(self._addr(reg.TPM_STS), 4), "little")
        return value & 0xFF, (value >> 8) & 0xFFFF

    # -- open -----------------------------------------------------------------------

    def open(self):
        """Map the TIS window and read DID_VID and RID of our locality.

        Raises :class:`simxen.xen.errors.IomemError` (``-EPERM``) when this
        domain has no permission for the window -- dom0 once the manager has
        it. ``-ENODEV`` if nothing answers (ACCESS not valid).
        """
        self.window = self.hv.iomem.map(self.dom, self.first_mfn, TIS_NR_MFNS)
        if not self._read8(reg.TPM_ACCESS) & reg.TPM_ACCESS_VALID:
            raise TisError(-errno.ENODEV, f"no TPM answers at mfn {self.first_mfn:#x}")
        self.did_vid = int.from_bytes(self.window.read(self._addr(reg.TPM_DID_VID), 4), "little")
        self.rid = self._read8(reg.TPM_RID)
        self.hv.trace.emit("tis.open", self.dom.now, self.dom.domid, locality=self.locality,
                           did_vid=self.did_vid, rid=self.rid,
                           wait="interrupt" if self.use_irq else "poll")
        return self

    def close(self):
        """Relinquish the locality if we hold it and unmap the window."""
        if self.window is None:
            return
        if self._read8(reg.TPM_ACCESS) & reg.TPM_ACCESS_ACTIVE_LOCALITY:
            self._write8(reg.TPM_ACCESS, reg.TPM_ACCESS_ACTIVE_LOCALITY)
        self.window.unmap()
        self.window = None

    # -- waiting --------------------------------------------------------------------

    def _wait(self, ready, timeout, *, interruptible=False):
        """Poll ``ready()`` on the 5 ms grid (or sleep on the IRQ) for up to ``timeout``.

        A generator; returns True when ``ready()`` held, False on timeout.
        The first check is immediate.
        """
        dom = self.dom
        deadline = dom.now + timeout
        while True:
            if ready():
                return True
            remaining = deadline - dom.now
            if remaining <= 0:
                return False
            if interruptible and self.use_irq:
                env = self.hv.env
                fired = self.irq.event()
                yield env.any_of([fired, dom.sleep(remaining)])
                if fired.triggered:
                    dom.charge("evtchn.upcall")          # the physical IRQ's upcall
                    self._ack_interrupts()
            else:
                yield dom.sleep(min(self.poll_interval, remaining))

    def _enable_interrupts(self):
        """Write INT_ENABLE of our locality (the TPM takes it from the active locality only)."""
        enable = (reg.TPM_GLOBAL_INT_ENABLE | reg.TPM_INTF_DATA_AVAIL_INT
                  | reg.TPM_INTF_STS_VALID_INT | reg.TPM_INTF_LOCALITY_CHANGE_INT
                  | reg.TPM_INTF_CMD_READY_INT)
        self.window.write(self._addr(reg.TPM_INT_ENABLE), enable.to_bytes(4, "little"))
        self._irq_enabled = True

    def _ack_interrupts(self):
        status = self.window.read(self._addr(reg.TPM_INT_STATUS), 4)
        if any(status):
            self.window.write(self._addr(reg.TPM_INT_STATUS), status)   # write 1 to clear

    def request_locality_now(self):
        """True if our locality is active; else write REQUEST_USE (once) and look again."""
        if self._locality_active():
            return True
        self.locality_requests += 1
        self._write8(reg.TPM_ACCESS, reg.TPM_ACCESS_REQUEST_USE)
        return self._locality_active()

    def _locality_active(self):
        access = self._read8(reg.TPM_ACCESS)
        wanted = reg.TPM_ACCESS_VALID | reg.TPM_ACCESS_ACTIVE_LOCALITY
        return access & wanted == wanted

    def request_locality(self):
        """Get our locality, polling ACCESS every 5 ms up to timeout A. A generator."""
        if self.request_locality_now():
            return
        if not (yield from self._wait(self._locality_active, TIMEOUT_A)):
            raise TisError(-errno.EBUSY, f"locality {self.locality} not granted within "
                                         f"{TIMEOUT_A} s")

    # -- one command ---------------------------------------------------------------

    def transmit(self, command: bytes, *, flow=None, duration=None):
        """Send ``command`` to the TPM and return its response. A generator.

        ``duration`` bounds the wait after GO (default: switch ``tis.duration``,
        else 120 s).
        """
        if self.window is None:
            raise TisError(-errno.ENODEV, "the TIS window is not mapped (call open())")
        command = bytes(command)
        if len(command) < _HEADER:
            raise TisError(-errno.EINVAL, f"{len(command)}-byte command is shorter than a header")
        dom, trace = self.dom, self.hv.trace
        yield from self.request_locality()
        if self.use_irq and not self._irq_enabled:
            self._enable_interrupts()
        yield from self._ready_for_command()
        self._send(command)
        self._write8(reg.TPM_STS, reg.TPM_STS_GO)
        cc = header.code(command)
        name = command_name(cc)
        trace.emit("tis.go", dom.now, dom.domid, flow=flow, cc=cc, cc_name=name,
                   locality=self.locality, length=len(command))
        yield from self._wait_for_answer(duration if duration is not None else self.duration)
        response = yield from self._receive()
        self._write8(reg.TPM_STS, reg.TPM_STS_COMMAND_READY)
        if self._read8(reg.TPM_ACCESS) & reg.TPM_ACCESS_PENDING_REQUEST:
            self.releases += 1
            self._write8(reg.TPM_ACCESS, reg.TPM_ACCESS_ACTIVE_LOCALITY)
        self.commands += 1
        trace.emit("tis.complete", dom.now, dom.domid, flow=flow, cc=cc, cc_name=name,
                   rc=header.code(response), length=len(response))
        return response

    def _ready_for_command(self):
        if self._status()[0] & reg.TPM_STS_COMMAND_READY:
            return
        self._write8(reg.TPM_STS, reg.TPM_STS_COMMAND_READY)
        ok = yield from self._wait(lambda: self._status()[0] & reg.TPM_STS_COMMAND_READY,
                                   TIMEOUT_B)
        if not ok:
            raise TisError(-errno.ETIME, f"commandReady not shown within {TIMEOUT_B} s")

    def _send(self, command):
        """All but the last byte in burst-count chunks checking Expect, then the last."""
        fifo = self._addr(reg.TPM_DATA_FIFO)
        pos, last = 0, len(command) - 1
        while pos < last:
            sts, burst = self._status()
            if burst == 0:
                self._abort("burst count 0 while sending")
            chunk = command[pos:min(pos + burst, last)]
            self.window.write(fifo, chunk)
            pos += len(chunk)
            sts, _ = self._status()
            if not sts & reg.TPM_STS_VALID or not sts & reg.TPM_STS_EXPECT:
                self._abort(f"TPM stopped expecting after {pos} of {len(command)} bytes")
        self.window.write(fifo, command[last:])
        sts, _ = self._status()
        if not sts & reg.TPM_STS_VALID or sts & reg.TPM_STS_EXPECT:
            self._abort(f"TPM still expects bytes after all {len(command)}")

    def _abort(self, why):
        """Cancel the transfer (commandReady) and fail with ``-EIO``."""
        self._write8(reg.TPM_STS, reg.TPM_STS_COMMAND_READY)
        raise TisError(-errno.EIO, why)

    def _wait_for_answer(self, duration):
        self.status_reads = 0
        wanted = reg.TPM_STS_VALID | reg.TPM_STS_DATA_AVAIL

        def answered():
            self.status_reads += 1
            sts, _ = self._status()
            if sts & wanted == wanted:
                return True
            if sts & (reg.TPM_STS_COMMAND_READY | reg.TPM_STS_DATA_AVAIL
                      | reg.TPM_STS_EXPECT) == reg.TPM_STS_COMMAND_READY:
                raise TisError(-errno.ECANCELED, "the TPM cancelled the command")
            return False

        if not (yield from self._wait(answered, duration, interruptible=True)):
            self._write8(reg.TPM_STS, reg.TPM_STS_COMMAND_READY)
            raise TisError(-errno.ETIME, f"no answer within {duration} s")

    def _read_fifo(self, count):
        """Read ``count`` response bytes in burst chunks (waiting up to timeout C for one)."""
        fifo = self._addr(reg.TPM_DATA_FIFO)
        out = bytearray()
        while len(out) < count:
            burst = self._status()[1]
            if burst == 0:
                ok = yield from self._wait(lambda: self._status()[1] > 0, TIMEOUT_C)
                if not ok:
                    self._abort(f"no response bytes within {TIMEOUT_C} s")
                continue
            out += self.window.read(fifo, min(burst, count - len(out)))
        return bytes(out)

    def _receive(self):
        head = yield from self._read_fifo(_HEADER)
        size = header.size(head)
        if not _HEADER <= size <= MAX_RESPONSE:
            self._abort(f"response size {size} outside {_HEADER}..{MAX_RESPONSE}")
        rest = yield from self._read_fifo(size - _HEADER)
        if self._status()[0] & reg.TPM_STS_DATA_AVAIL:
            self._abort("the TPM has more bytes than the response size said")
        return head + rest

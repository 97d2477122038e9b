"""Part 3, chapter 29: ReadClock, ClockSet and ClockRateAdjust.

``time`` counts milliseconds since the last Startup; ``clock`` counts the
milliseconds the TPM has been powered since it was made or last cleared:
ClockSet may advance it, never take it back, and only TPM2_Clear sets it to
zero.  ClockRateAdjust takes the owner's or platform's request to run the
clock a little faster or slower (coarse, medium or fine steps); a simulated
TPM's clock is the simulation's, so the request is checked and remembered,
and changes nothing.
"""

from simxen.tpm.commands import command
from simxen.tpm.constants import TPM_CC, TPM_RC
from simxen.tpm.errors import TpmError
from simxen.tpm.limits import CLOCK_MAX
from simxen.tpm.marshal import u32, u64


@command(TPM_CC.ReadClock)
def read_clock(tpm, cmd):
    cmd.r.done()
    return b"", (u64(tpm.time) + u64(tpm.clock) + u32(tpm.reset_count)
                 + u32(tpm.restart_count) + b"\x01")


@command(TPM_CC.ClockSet, handles=("provision",), auth=1)
def clock_set(tpm, cmd):
    r = cmd.r
    new_time = r.u64()
    r.done()
    now = tpm.clock
    if new_time < now or new_time > CLOCK_MAX:
        raise TpmError(TPM_RC.VALUE, param=1)
    tpm.set_clock(new_time)
    tpm.nv_changed = True
    return b"", b""


#: TPM_CLOCK_ADJUST: COARSE_SLOWER (-3) ... NO_CHANGE (0) ... COARSE_FASTER (3)
CLOCK_ADJUST = range(-3, 4)


@command(TPM_CC.ClockRateAdjust, handles=("provision",), auth=1)
def clock_rate_adjust(tpm, cmd):
    r = cmd.r
    adjust = r.u8()
    adjust = adjust - 256 if adjust > 127 else adjust
    if adjust not in CLOCK_ADJUST:
        raise TpmError(TPM_RC.VALUE, param=1)
    r.done()
    tpm.clock_rate_adjust = adjust
    return b"", b""

"""How a Linux guest's xen-tpmfront waits for its vTPM's answer, era by era.

The Linux frontend has always waited for the shared page's state to become
IDLE or FINISH with a ``wait_for_tpm_stat`` loop, but *how* it waits changed
twice, and with it the floor of every guest TPM command's latency:

``linux-3.12`` -- interrupt (Linux 3.12 up to commit 570a36097f30)
    ``drivers/char/tpm/xen-tpmfront.c`` as merged in 3.12 (e.g. at
    01ad1fa75dd2): ``setup_ring`` binds the event channel to
    ``tpmif_interrupt`` and stores the IRQ in ``chip->vendor.irq``; the TPM
    core's ``wait_for_tpm_stat`` (``tpm-interface.c`` then) sees an IRQ and
    sleeps on ``vendor.read_queue``, which ``tpmif_interrupt`` wakes when the
    backend stores FINISH or IDLE. The floor is the event channel's delivery
    and the wake-up: microseconds.
``linux-4.4`` -- jiffy-rounded ``msleep(5)`` (570a36097f30 to v4.14)
    Commit 570a36097f30 ("tpm: drop 'irq' from struct tpm_vendor_specific",
    2016) replaced ``vendor.irq`` by the chip flag ``TPM_CHIP_FLAG_IRQ``,
    which xen-tpmfront never sets (its IRQ moved to ``priv->irq``): from then
    on the wait polls. It checks the state once, then loops
    ``msleep(TPM_TIMEOUT)`` with ``TPM_TIMEOUT = 5`` (ms). ``msleep`` sleeps
    ``msecs_to_jiffies(5) + 1`` jiffies, counted from the current tick: the
    wake-up is on the guest's tick grid, ``(ceil(5 * HZ / 1000) + 1)`` ticks
    after the tick the sleep began in -- between 8 and 12 ms at ``HZ = 250``,
    5 and 6 ms at ``HZ = 1000``, 10 and 20 ms at ``HZ = 100``. ``HZ`` is the
    guest option ``hz`` or the profile switch ``tpmfront.hz``. The first
    release that shipped 570a36097f30 is not verified here (it is after
    v4.4.0's merge window; the name stands for the 4.x polling era).
``linux-6`` -- ``usleep_range(4700, 5000)`` (v4.15 to today; the default)
    Commit 9f3fc7bcddcb (v4.15) gave the TPM drivers ``tpm_msleep``, which is
    ``usleep_range(delay_ms * 1000 - TPM_TIMEOUT_RANGE_US, delay_ms * 1000)``
    with ``TPM_TIMEOUT_RANGE_US = 300`` (``drivers/char/tpm/tpm.h``), and
    xen-tpmfront got its own copy of ``wait_for_tpm_stat`` that still polls
    unless ``TPM_CHIP_FLAG_IRQ`` is set, which it never is (torvalds/linux at
    b2d6e6de005e). Each sleep is an hrtimer that may fire anywhere in
    [4.7, 5.0] ms (profile op ``tpmfront.usleep_range``, drawn per sleep --
    an idle system tends to the upper end, a busy one fires earlier). The
    core's 1 ms ``TPM_TIMEOUT_POLL`` loop in ``tpm_try_transmit`` then finds
    the command complete at its first check and adds nothing.

A guest picks its era with the option ``kernel_era`` (scenario key
``kernel_era`` / ``guest_kernels`` of the vtpm-stack workload); otherwise
the profile switch ``tpmfront.kernel`` decides (``"linux-6"`` in the
default profile). The switch ``tpmfront.wait`` (``"era"`` in the default
profile) overrides every era when set to ``"interrupt"``, or to ``"poll"``
on a fixed grid of ``tpmfront.poll_interval`` seconds.
"""

from __future__ import annotations

import math

from simxen.errors import InputError

__all__ = ["ERAS", "DEFAULT_ERA", "DEFAULT_HZ", "poll_delay", "check_era", "describe", "polls",
           "profile_era"]

#: Era name -> (how it waits, the sources it follows).
ERAS = {
    "linux-3.12": ("interrupt", "torvalds/linux drivers/char/tpm/xen-tpmfront.c at 01ad1fa75dd2 "
                   "(setup_ring sets chip->vendor.irq; tpm-interface.c wait_for_tpm_stat sleeps "
                   "on vendor.read_queue, woken by tpmif_interrupt)"),
    "linux-4.4": ("jiffy msleep", "torvalds/linux commit 570a36097f30 (TPM_CHIP_FLAG_IRQ, never set "
                  "by xen-tpmfront); wait_for_tpm_stat loops msleep(TPM_TIMEOUT = 5 ms) = "
                  "msecs_to_jiffies(5) + 1 ticks, until 9f3fc7bcddcb (v4.15)"),
    "linux-6": ("usleep_range", "torvalds/linux at b2d6e6de005e: xen-tpmfront.c wait_for_tpm_stat "
                "polls with tpm_msleep(TPM_TIMEOUT); tpm.h tpm_msleep = usleep_range(4700, 5000) us "
                "(commit 9f3fc7bcddcb, v4.15)"),
}
#: The current stable kernels' behaviour.
DEFAULT_ERA = "linux-6"
#: Distribution kernels of the 4.x era mostly ran HZ=250 (used when no hz is given).
DEFAULT_HZ = 250


def check_era(value):
    """``None`` if *value* names an era, else what is wrong (for option checks)."""
    return None if value in ERAS else f"expected one of {sorted(ERAS)}, found {value!r}"


#: What the ``tpmfront.wait`` switch may say: each guest waits as its era does, or
#: every guest is woken by the event channel, or every guest polls a fixed grid
WAITS = ("era", "interrupt", "poll")


def profile_era(profile) -> str:
    """The era a guest without a ``kernel_era`` option runs under *profile*."""
    return profile.switch("tpmfront.kernel", DEFAULT_ERA)


def polls(profile, era=None) -> bool:
    """Whether a Linux guest (of *era*, else the profile's) polls the page under *profile*."""
    wait = profile.switch("tpmfront.wait", "era")
    if wait != "era":
        return wait == "poll"
    return ERAS[era or profile_era(profile)][0] != "interrupt"


def describe(era, hz=None) -> str:
    """One line: the era, how it waits and (for the jiffy era) its HZ."""
    how = ERAS[era][0]
    return f"{era} ({how}{f', HZ={hz}' if how == 'jiffy msleep' else ''})"


def poll_delay(era, dom, profile, *, hz=None):
    """How the era's frontend waits: ``None`` (on the event channel), or a function
    ``delay(now) -> seconds`` until its next look at the page.

    :param dom: the guest's :class:`~simxen.xen.domain.Domain` (its own random stream).
    :param hz: the guest's ``HZ`` (jiffy era only); default switch ``tpmfront.hz``.
    """
    if era not in ERAS:
        raise InputError(check_era(era), key="kernel_era")
    how = ERAS[era][0]
    if how == "interrupt":
        return None
    if how == "usleep_range":
        sampler = dom.sampler("tpmfront.usleep_range")
        return lambda now: sampler()
    hz = int(hz if hz is not None else profile.switch("tpmfront.hz", DEFAULT_HZ))
    if hz <= 0:
        raise InputError(f"expected a positive HZ, found {hz}", key="hz")
    tick = 1.0 / hz
    msleep = profile.switch("tpmfront.tpm_timeout", 0.005)
    ticks = math.ceil(round(msleep * hz, 9)) + 1          # msecs_to_jiffies(5) + 1

    def delay(now):
        # schedule_timeout(ticks) from the tick the sleep began in
        return (math.floor(now / tick + 1e-9) + ticks) * tick - now
    return delay

"""The three Linux eras of xen-tpmfront's wait, pinned: what one guest TPM command costs
the guest on top of the backend's answer (simxen.drivers.kernel_eras cites each source).

Each era runs 200 round trips against a backend that answers at once (plus its
``tpm.vtpm.default`` work, ~0.1 ms): the latency the guest sees is then its wait.
"""

import statistics

import pytest
from test_tpmfront import Rig

from simxen.domains.stack import HostSpec, build_host
from simxen.drivers import kernel_eras
from simxen.errors import InputError

N = 200


def latencies(era=None, hz=None, switches=None, think=0.0):
    rig = Rig(switches=switches)
    rig.responder()
    out = []

    def guest():
        front = rig.front(kernel=era, hz=hz)
        yield from front.connect()
        for i in range(N):
            if think:                               # start commands anywhere within a tick
                yield rig.guest.sleep((i * 0.00037) % think)
            t = rig.guest.now
            yield from front.transmit(b"x")
            out.append(rig.guest.now - t)
    rig.run(guest())
    return out


def test_linux_3_12_is_interrupt_driven_microseconds():
    lat = latencies("linux-3.12")
    assert max(lat) < 0.002                      # the backend's work + event channel, no sleep
    assert statistics.median(lat) < 0.0005


def test_linux_6_sleeps_a_drawn_usleep_range_of_4_7_to_5_ms():
    lat = latencies("linux-6")
    assert all(0.0047 <= x <= 0.005 + 1e-6 for x in lat)    # one sleep: the answer is there by then
    assert len({round(x, 7) for x in lat}) > N // 2          # drawn, not a fixed 5.000 ms
    assert statistics.mean(lat) == pytest.approx(0.00485, abs=0.00005)   # uniform on [4.7, 5.0]
    assert latencies() == lat                                # the default profile's era


@pytest.mark.parametrize("hz, low, high", [(250, 0.008, 0.012), (1000, 0.005, 0.006),
                                           (100, 0.010, 0.020)])
def test_linux_4_4_sleeps_msleep_5_rounded_to_whole_jiffies(hz, low, high):
    lat = latencies("linux-4.4", hz=hz, think=1.0 / hz)
    # msleep(5) = msecs_to_jiffies(5) + 1 ticks from the current tick
    assert all(low - 1e-9 <= x <= high + 1e-9 for x in lat), (min(lat), max(lat))
    assert max(lat) - min(lat) > (high - low) / 2            # where in its tick a command starts
    assert statistics.mean(lat) > 0.0049                      # never faster than linux-6
    # back to back, a guest wakes on a tick and starts its next command there: the full sleep
    locked = latencies("linux-4.4", hz=hz)
    assert statistics.median(locked) > high - 0.0005


def test_hz_from_the_profile_switch():
    lat = latencies("linux-4.4", switches={"tpmfront.hz": 1000})
    assert all(0.005 - 1e-9 <= x <= 0.006 + 1e-9 for x in lat)


def test_the_older_wait_switch_still_overrides_every_era():
    lat = latencies("linux-6", switches={"tpmfront.wait": "interrupt"})
    assert max(lat) < 0.002


def test_an_unknown_era_or_hz_is_an_input_error():
    with pytest.raises(InputError) as err:
        build_host(__import__("simxen.xen", fromlist=["Hypervisor"]).Hypervisor(seed=1),
                   HostSpec.standard(options={"guest1": {"kernel_era": "linux-2.6"}}))
    assert "guest1.kernel_era" in str(err.value) and "linux-6" in str(err.value)
    with pytest.raises(InputError) as err:
        build_host(__import__("simxen.xen", fromlist=["Hypervisor"]).Hypervisor(seed=1),
                   HostSpec.standard(options={"guest1": {"hz": 0}}))
    assert "guest1.hz" in str(err.value)
    assert kernel_eras.describe("linux-4.4", 250) == "linux-4.4 (jiffy msleep, HZ=250)"


def test_each_guest_of_one_host_waits_as_its_own_era():
    """Through the whole stack (strong persistence: a save and a manager round trip each)."""
    from simxen.xen import Hypervisor
    guests = ("guest1", "guest2", "guest3")
    eras = {"guest1": "linux-3.12", "guest2": "linux-4.4", "guest3": "linux-6"}
    hv = Hypervisor(seed=1)
    host = build_host(hv, HostSpec.standard(guests, options={
        g: {"kernel_era": e} for g, e in eras.items()}))
    hv.env.run(until=host.ready)
    lat = {}

    def extend(g):
        tpm = host.guest(g).tpm
        out = []
        for i in range(10):
            t = host.guest(g).dom.now
            yield from tpm.pcr_extend(16, b"%d" % i)
            out.append(host.guest(g).dom.now - t)
        lat[g] = statistics.median(out)

    for g in guests:
        proc = hv.env.process(extend(g))
        hv.env.run(until=proc)
    assert lat["guest1"] < 0.003                     # the vTPM's work and save, no sleep
    assert 0.0047 <= lat["guest3"] <= 0.0051         # one usleep_range
    assert 0.008 <= lat["guest2"] <= 0.0121          # HZ=250 jiffies

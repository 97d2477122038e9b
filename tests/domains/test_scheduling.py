"""The manager serves one request at a time: static priority starves, round-robin shares."""

from collections import Counter

import pytest
from domain_helpers import boot, run

from simxen.domains.stack import HostSpec

GUESTS = ("guest1", "guest2", "guest3")
LOAD_SECONDS = 0.5


def manager_share(policy):
    """Manager requests served per vTPM while three guests write NV as fast as they can.

    The manager uses the sealed store, whose 2 ms flush per SaveHashKey keeps it
    saturated (Xen's TPM 2.0 store writes nothing and would keep up with three guests).
    """
    spec = HostSpec.standard(GUESTS, options={"vtpmmgr": {"policy": policy, "storage": "sealed"}})
    hv, host = boot(spec, ops={"disk.flush": {"dist": "fixed", "value": 2e-3}},
                    switches={"tpmfront.wait": "interrupt"})
    for i, name in enumerate(GUESTS):
        run(hv, host.guest(name).tpm.nv_define(0x01500000 + i, 8))
    start = hv.env.now
    end = start + LOAD_SECONDS

    def hammer(name, index):
        tpm = host.guest(name).tpm
        while hv.env.now < end:
            yield from tpm.nv_write(0x01500000 + index, b"%08d" % tpm.commands)

    for i, name in enumerate(GUESTS):
        hv.env.process(hammer(name, i))
    hv.env.run(until=end)
    vtpms = {host.vtpm(f"vtpm-{g}").domid: f"vtpm-{g}" for g in GUESTS}
    served = Counter(vtpms[r.fields["domid"]] for r in hv.trace.select("vtpmmgr.request")
                     if r.t >= start and r.fields["domid"] in vtpms)
    return [served[f"vtpm-{g}"] for g in GUESTS]


def test_static_priority_starves_the_highest_domid():
    first, second, third = manager_share("priority")
    assert first > 50 and second > 50
    assert third <= 2, (first, second, third)        # Xen's tpmback_req_any: lowest domid wins


@pytest.mark.parametrize("policy", ["round-robin", "fifo"])
def test_round_robin_and_fifo_share_the_manager(policy):
    counts = manager_share(policy)
    assert min(counts) > 50
    assert max(counts) - min(counts) <= 0.1 * max(counts), counts

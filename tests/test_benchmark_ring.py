"""benchmarks/ring_roundtrip.py's "essential work only" reference claims to do the work
every ring trip of simxen does, and nothing else: these tests hold it to that claim,
so that a change to either side shows up here rather than in a misleading figure."""

import importlib.util
import sys
from collections import Counter
from pathlib import Path

import pytest

from simxen.domains.pingpong import run_pingpong
from simxen.xen import Hypervisor

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ring_roundtrip():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location("ring_roundtrip",
                                                      ROOT / "benchmarks" / "ring_roundtrip.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


#: the kinds of record a round trip makes (two of each: one per direction)
TRIP_KINDS = ("page.write", "page.read", "evtchn.send", "evtchn.deliver")


def simxen_kinds(n):
    """Records per kind of a ping-pong of ``n`` round trips between two domains."""
    hv = Hypervisor(seed=1)
    front, back = hv.domain_create("front"), hv.domain_create("back")
    proc = hv.env.process(run_pingpong(hv, front, back, requests=n))
    hv.env.run()
    assert proc.value.completed == n
    return Counter(record.kind for record in hv.trace.records())


def test_the_reference_records_what_a_simxen_ring_trip_records(ring_roundtrip):
    # a trip's records: the difference between 20 and 10 trips (setup and teardown cancel)
    more, fewer = simxen_kinds(20), simxen_kinds(10)
    per_trip = {kind: (more[kind] - fewer[kind]) / 10 for kind in more | fewer
                if more[kind] != fewer[kind]}
    rows = []
    ring_roundtrip.essential_roundtrips(10, rows)
    reference = Counter(row[2] for row in rows)
    assert per_trip == {kind: reference[kind] / 10 for kind in reference}
    assert set(per_trip) == set(TRIP_KINDS)


def test_the_reference_numbers_its_rows_in_time_order_of_emission(ring_roundtrip):
    rows = []
    ring_roundtrip.essential_roundtrips(5, rows)
    assert [row[1] for row in rows] == list(range(len(rows)))
    # a reader is never earlier than the write it reads, and a delivery never precedes its send
    writes = [row[0] for row in rows if row[2] == "page.write"]
    reads = [row[0] for row in rows if row[2] == "page.read"]
    assert all(r >= w for w, r in zip(writes, reads))
    sends = [row[0] for row in rows if row[2] == "evtchn.send"]
    delivered = [row[0] for row in rows if row[2] == "evtchn.deliver"]
    assert all(d > s for s, d in zip(sends, delivered))

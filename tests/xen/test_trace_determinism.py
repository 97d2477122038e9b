"""Same scenario and seed: the same trace bytes; another seed changes only timing."""

import json

from simxen.domains.pingpong import run_pingpong
from simxen.xen import Hypervisor, Streams, Trace


def pingpong_trace(seed, **kw):
    hv = Hypervisor(seed=seed)
    front, back = hv.domain_create("front"), hv.domain_create("back")
    proc = hv.env.process(run_pingpong(hv, front, back, requests=30, window=4, **kw))
    hv.env.run()
    assert proc.value.completed == 30
    return hv.trace.dumps_jsonl()


def test_same_seed_same_bytes():
    assert pingpong_trace(7) == pingpong_trace(7)


def test_other_seed_differs_only_where_randomness_enters():
    a = [json.loads(line) for line in pingpong_trace(7).splitlines()]
    b = [json.loads(line) for line in pingpong_trace(8).splitlines()]
    assert a != b

    def skeleton(records):
        # What happened, by whom, in which order of kinds -- minus times and
        # the random payload bytes: a different seed must not change it.
        return sorted((r["kind"], r["dom"], r.get("port"), r.get("path"), r.get("value"))
                      for r in records if not r["kind"].startswith("page."))

    assert skeleton(a) == skeleton(b)
    assert {r["t"] for r in a} != {r["t"] for r in b}


def test_export_format():
    trace = Trace()
    trace.emit("b.kind", 2.0, 1, data=b"\x01\xff", items=[b"\x00", 3])
    trace.emit("a.kind", 1.0, None, value=0.1)
    lines = trace.dumps_jsonl().splitlines()
    assert lines[0] == '{"dom":null,"kind":"a.kind","seq":1,"t":1.0,"value":0.1}'
    assert json.loads(lines[1])["data"] == "01ff" and json.loads(lines[1])["items"] == ["00", 3]


def test_disabling_kinds():
    trace = Trace(disabled=["page"])
    trace.emit("page.read", 0.0, 1)
    trace.emit("pagefault", 0.0, 1)
    trace.emit("evtchn.send", 0.0, 1)
    assert [r.kind for r in trace.records()] == ["pagefault", "evtchn.send"]
    trace.enable("page")
    trace.emit("page.write", 0.0, 1)
    assert trace.count("page") == 1


def test_streams_are_independent_and_stable():
    s1, s2 = Streams(5), Streams(5)
    assert s1.rng("dom1/x").integers(1 << 30) == s2.rng("dom1/x").integers(1 << 30)
    s2.rng("something/else").integers(10)               # another component drawing...
    assert s1.rng("dom1/y").random() == s2.rng("dom1/y").random()   # ...changes nothing here
    assert Streams(5).rng("a").random() != Streams(6).rng("a").random()
    rb1, rb2 = Streams(5).random_bytes("n"), Streams(5).random_bytes("n")
    assert [rb1(n) for n in (3, 5000, 7)] == [rb2(n) for n in (3, 5000, 7)]
    assert len(rb1(20)) == 20


def test_a_stream_is_its_seed_and_the_sha256_of_its_name():
    """The derivation the module doc states, spelled out: a change in how the key is
    computed must not change a single draw of any run."""
    import hashlib

    import numpy as np
    name = "xen/vtpm-guest12/evtchn.upcall"
    digest = hashlib.sha256(name.encode()).digest()
    key = tuple(int.from_bytes(digest[i:i + 4], "little") for i in range(0, 32, 4))
    expected = np.random.Generator(np.random.PCG64(np.random.SeedSequence(7, spawn_key=key)))
    assert Streams(7).rng(name).random(4).tolist() == expected.random(4).tolist()


def test_hot_records_carry_the_fields_emit_would_record():
    """Page accesses, sends and deliveries are appended as rows of values; an absent
    field (no what/flow, bytes of a large access) must stay absent in the record."""
    from simxen.xen import Hypervisor

    hv = Hypervisor(seed=3)
    a, b = hv.domain_create("a"), hv.domain_create("b")
    page = a.alloc_page()
    gref = hv.gnttab.grant_foreign_access(a, b.domid, page.gfn)
    mapping = hv.gnttab.map_grant_ref(b, a.domid, gref)
    b.page_write(mapping, 8, b"x" * 65)
    b.page_read(mapping, 8, 4, what="peek", flow=7)
    a.page_read(page, 9, 2)
    port = hv.evtchn.alloc_unbound(a, b.domid)
    bport = hv.evtchn.bind_interdomain(b, a.domid, port)       # marks bport pending
    hv.evtchn.send(a, port)
    hv.env.run(until=b.now + 1.0)     # past the delivery, whatever xl create cost
    assert b.evtchn_pending(bport)                                # delivers: coalesced

    def fields(kind):
        return [r.fields for r in hv.trace.select(kind)]

    assert fields("page.write") == [{"offset": 8, "length": 65, "granter": 1, "gref": gref}]
    assert sorted(fields("page.read"), key=lambda f: f["offset"]) == [
        {"offset": 8, "length": 4, "granter": 1, "gref": gref, "data": b"xxxx", "what": "peek",
         "flow": 7},
        {"offset": 9, "length": 2, "gfn": page.gfn, "data": b"xx"}]
    assert fields("evtchn.send") == [{"port": port, "remote_dom": 2, "remote_port": bport}]
    assert fields("evtchn.deliver") == [
        {"port": bport},                                            # the bind's own
        {"port": bport, "remote_dom": 1, "remote_port": port, "coalesced": True}]
    assert len(hv.trace.dumps_jsonl().splitlines()) == len(hv.trace)

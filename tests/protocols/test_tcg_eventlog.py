"""TCG crypto-agile event log: the shared sample, round trips, errors, replay."""

import hashlib
import pathlib
import struct

import pytest
import yaml
from hypothesis import given, settings, strategies as st

from simxen.protocols import tcg_eventlog as tl
from simxen.protocols.tcg_eventlog import EventLog, EventLogError

#: A TCG crypto-agile event log (SHA-1 and SHA-256 banks, 14 events of a UEFI
#: boot), the PCR values it replays to (computed independently), and what
#: tpm2-tools' ``tpm2_eventlog`` prints for it.
TRACES = pathlib.Path(__file__).resolve().parent / "data"
SAMPLE = TRACES / "eventlog-sample.bin"

needs_sample = pytest.mark.skipif(not SAMPLE.exists(), reason="event-log sample absent")


@needs_sample
def test_sample_replays_to_the_expected_pcrs():
    header, events = tl.parse(SAMPLE.read_bytes())
    assert header.algorithms == ((tl.TPM_ALG_SHA1, 20), (tl.TPM_ALG_SHA256, 32))
    assert len(events) == 14
    pcrs = tl.replay(events)
    expected = {}
    for line in (TRACES / "eventlog-sample.expected-pcrs.txt").read_text().splitlines():
        if line.startswith("expected sha256 PCR"):
            name, value = line.split(":")
            expected[int(name.rsplit("PCR", 1)[1])] = bytes.fromhex(value.strip())
    assert pcrs["sha256"] == expected


@needs_sample
def test_sample_replays_like_tpm2_eventlog_printed_it():
    printed = yaml.safe_load((TRACES / "eventlog-sample.tpm2_eventlog.yaml").read_text())
    pcrs = tl.replay(tl.parse(SAMPLE.read_bytes())[1])
    for bank, size in (("sha1", 20), ("sha256", 32)):
        assert {p: v.to_bytes(size, "big") for p, v in printed["pcrs"][bank].items()} == pcrs[bank]
    types = [e["EventType"] for e in printed["events"][1:]]
    assert [ev.type_name for ev in tl.parse(SAMPLE.read_bytes())[1]] == types


@needs_sample
def test_sample_rewrites_byte_for_byte():
    header, events = tl.parse(SAMPLE.read_bytes())
    log = EventLog([a for a, _ in header.algorithms])
    for ev in events:
        log.append(ev.pcr, ev.event_type, ev.event, ev.digests)
    assert log.to_bytes() == SAMPLE.read_bytes()


def test_header_bytes():
    data = EventLog(["sha1", "sha256"]).to_bytes()
    assert data[:8] == struct.pack("<II", 0, 3) and data[8:28] == bytes(20)
    assert struct.unpack_from("<I", data, 28)[0] == 37
    assert data[32:48] == b"Spec ID Event03\0"
    assert data[56:68] == bytes.fromhex("02000000" "04001400" "0b002000")
    assert len(data) == 32 + 37


def test_default_digests_hash_the_event_data():
    log = EventLog(["sha1", "sha256"])
    ev = log.append(4, tl.EV_POST_CODE, b"kernel")
    assert ev.digests == {tl.TPM_ALG_SHA1: hashlib.sha1(b"kernel").digest(),
                          tl.TPM_ALG_SHA256: hashlib.sha256(b"kernel").digest()}
    pcr4 = tl.replay(log.events)["sha256"][4]
    assert pcr4 == hashlib.sha256(bytes(32) + hashlib.sha256(b"kernel").digest()).digest()


def test_given_digests_must_cover_every_bank():
    log = EventLog(["sha1", "sha256"])
    with pytest.raises(EventLogError):
        log.append(4, tl.EV_IPL, b"x", {"sha1": bytes(20)})
    with pytest.raises(EventLogError):
        log.append(4, tl.EV_IPL, b"x", {"sha1": bytes(20), "sha256": bytes(31)})
    with pytest.raises(EventLogError):
        log.append(32, tl.EV_IPL, b"x")


def test_no_action_and_startup_locality():
    log = EventLog(["sha256"])
    log.events.append(tl.startup_locality_event(3, log.algorithms))
    log.append(0, tl.EV_SEPARATOR, bytes(4))
    sep = hashlib.sha256(bytes(4)).digest()
    _, events = tl.parse(log.to_bytes())
    assert tl.replay(events)["sha256"][0] == hashlib.sha256(bytes(31) + b"\3" + sep).digest()
    quirk = hashlib.sha256(hashlib.sha256(bytes(64)).digest() + sep).digest()
    assert tl.replay(events, tpm2_tools_54_quirk=True)["sha256"][0] == quirk


def test_resettable_pcrs_start_at_ff():
    log = EventLog(["sha1"])
    log.append(17, tl.EV_EVENT_TAG, b"drtm")
    assert tl.replay(log.events)["sha1"][17] == hashlib.sha1(b"\xff" * 20 + hashlib.sha1(b"drtm").digest()).digest()


def test_sha1_only_legacy_log():
    raw = b"".join(struct.pack("<II", pcr, tl.EV_POST_CODE) + hashlib.sha1(d).digest()
                   + struct.pack("<I", len(d)) + d for pcr, d in ((0, b"a"), (1, b"bb")))
    header, events = tl.parse(raw)
    assert header is None and [e.event for e in events] == [b"a", b"bb"]
    assert set(tl.replay(events)) == {"sha1"}


@pytest.mark.parametrize("mutate,offset", [
    (lambda b: b[:-1], None),                                    # truncated event data
    (lambda b: b[:32] + b"Spec ID Event02\0" + b[48:], 32),      # bad signature
    (lambda b: b[:8] + b"\1" + b[9:], 0),                        # header digest not zero
    (lambda b: b[:69 + 8] + b"\x09" + b[69 + 9:], 69 + 8),        # digest count 9
    (lambda b: b[:69 + 12] + b"\x05" + b[69 + 13:], 69 + 12),    # unknown hashAlg
    (lambda b: b[:69] + b"\x40" + b[70:], 69),                   # PCR 64
])
def test_errors_name_the_offset(mutate, offset):
    log = EventLog(["sha1", "sha256"])
    log.append(0, tl.EV_POST_CODE, b"abc")
    with pytest.raises(EventLogError) as exc:
        tl.parse(mutate(log.to_bytes()))
    assert exc.value.offset is not None
    if offset is not None:
        assert exc.value.offset == offset
    assert str(exc.value).startswith("offset 0x")


events_st = st.lists(st.tuples(st.integers(0, 31), st.sampled_from(sorted(tl.EVENT_TYPE_NAMES)),
                               st.binary(max_size=64)), max_size=12)
algs_st = st.lists(st.sampled_from(["sha1", "sha256", "sha384", "sha512"]), min_size=1, max_size=4,
                   unique=True)


@given(algs_st, events_st)
def test_write_parse_round_trip(algs, records):
    log = EventLog(algs)
    for pcr, etype, data in records:
        log.append(pcr, etype, data)
    header, events = tl.parse(log.to_bytes())
    assert header == log.header
    assert events == log.events
    assert tl.replay(events) == tl.replay(log.events)


@settings(max_examples=200)
@given(st.binary(max_size=200))
def test_garbage_raises_only_eventlogerror(data):
    try:
        tl.parse(data)
    except EventLogError:
        pass


@given(events_st.filter(bool), st.data())
def test_truncation_is_reported_or_lands_on_a_boundary(records, data):
    log = EventLog(["sha1", "sha256"])
    for pcr, etype, payload in records:
        log.append(pcr, etype, payload)
    raw = log.to_bytes()
    cut = data.draw(st.integers(1, len(raw) - 1))
    boundaries = {69}
    pos = 69
    for ev in log.events:
        pos += len(ev.to_bytes())
        boundaries.add(pos)
    if cut in boundaries:
        assert len(tl.parse(raw[:cut])[1]) < len(log.events)
    else:
        with pytest.raises(EventLogError):
            tl.parse(raw[:cut])


def test_append_refuses_digests_and_measured_together():
    log = EventLog(["sha1"])
    with pytest.raises(EventLogError):
        log.append(4, tl.EV_IPL, b"x", {"sha1": bytes(20)}, measured=b"x")

"""The TIS device driven through its registers the way a driver does."""

import struct

import pytest
from hypothesis import given, settings, strategies as st

from simxen.hw.tis import TIS_EXECUTION, TIS_IDLE, TIS_READY, TisDevice
from simxen.protocols import tis as reg


def echo_tpm(calls):
    """A fake TPM: answers ``tag 0x8001 | size | rc 0 | locality | command body reversed``."""
    def execute(command, locality):
        calls.append((command, locality))
        body = bytes([locality]) + command[10:][::-1]
        return struct.pack(">HII", 0x8001, 10 + len(body), 0) + body
    return execute


def command(body=b""):
    return struct.pack(">HII", 0x8001, 10 + len(body), 0x17B) + body


def rd(dev, loc, off, size=1):
    return dev.mmio_read(reg.tis_address(loc, off), size)


def wr(dev, loc, off, data):
    dev.mmio_write(reg.tis_address(loc, off), bytes(data))


def sts(dev, loc):
    value = int.from_bytes(rd(dev, loc, reg.TPM_STS, 4), "little")
    return value & 0xFF, (value >> 8) & 0xFFFF, value >> 24


def request_locality(dev, loc):
    wr(dev, loc, reg.TPM_ACCESS, [reg.TPM_ACCESS_REQUEST_USE])
    return rd(dev, loc, reg.TPM_ACCESS)[0] & reg.TPM_ACCESS_ACTIVE_LOCALITY != 0


def send(dev, loc, cmd):
    """mini-os tpm_tis_send: commandReady, burst-sized writes checking Expect, GO."""
    if not sts(dev, loc)[0] & reg.TPM_STS_COMMAND_READY:
        wr(dev, loc, reg.TPM_STS, [reg.TPM_STS_COMMAND_READY])
    assert sts(dev, loc)[0] & reg.TPM_STS_COMMAND_READY
    pos = 0
    while pos < len(cmd) - 1:
        burst = sts(dev, loc)[1]
        assert burst > 0
        chunk = cmd[pos:min(pos + burst, len(cmd) - 1)]
        wr(dev, loc, reg.TPM_DATA_FIFO, chunk)
        pos += len(chunk)
        assert sts(dev, loc)[0] & reg.TPM_STS_EXPECT
    wr(dev, loc, reg.TPM_DATA_FIFO, cmd[-1:])
    assert not sts(dev, loc)[0] & reg.TPM_STS_EXPECT
    wr(dev, loc, reg.TPM_STS, [reg.TPM_STS_GO])


def recv(dev, loc):
    """Read the 10-byte header, then the rest in burst-count chunks."""
    out = bytearray()
    while len(out) < 10:
        out += rd(dev, loc, reg.TPM_DATA_FIFO, min(sts(dev, loc)[1], 10 - len(out)))
    size = struct.unpack_from(">I", out, 2)[0]
    while len(out) < size:
        burst = sts(dev, loc)[1]
        out += rd(dev, loc, reg.TPM_DATA_FIFO, min(burst, size - len(out)))
    assert not sts(dev, loc)[0] & reg.TPM_STS_DATA_AVAIL
    wr(dev, loc, reg.TPM_STS, [reg.TPM_STS_COMMAND_READY])
    return bytes(out)


def test_whole_command_through_the_registers():
    calls, started = [], []
    dev = TisDevice(echo_tpm(calls), burst_count=7, on_go=lambda c, l: started.append((c, l)))
    assert request_locality(dev, 2)
    cmd = command(b"hello, tpm")
    send(dev, 2, cmd)
    assert started == [(cmd, 2)] and dev.command_started and dev.pending_command == cmd
    # while the TPM works, a 5 ms poller sees neither dataAvail nor commandReady
    for _ in range(3):
        bits, burst, _ = sts(dev, 2)
        assert bits & (reg.TPM_STS_DATA_AVAIL | reg.TPM_STS_COMMAND_READY) == 0 and burst == 0
    assert calls == []  # execute runs only when the simulation says so
    response = dev.complete()
    assert calls == [(cmd, 2)]
    assert sts(dev, 2)[0] & (reg.TPM_STS_VALID | reg.TPM_STS_DATA_AVAIL) == 0x90
    assert recv(dev, 2) == response
    assert response[10:] == b"\x02" + b"hello, tpm"[::-1]
    assert dev.state == TIS_IDLE


def test_sts_byte3_reports_tpm2_family():
    dev = TisDevice(echo_tpm([]))
    request_locality(dev, 0)
    assert sts(dev, 0)[2] << 24 & reg.TPM_STS_FAMILY_MASK == reg.TPM_STS_FAMILY_TPM_2_0


def test_non_active_locality_reads_ff_and_writes_are_ignored():
    calls = []
    dev = TisDevice(echo_tpm(calls))
    request_locality(dev, 0)
    assert rd(dev, 1, reg.TPM_STS, 4) == b"\xff" * 4
    wr(dev, 1, reg.TPM_STS, [reg.TPM_STS_COMMAND_READY])
    assert dev.state == TIS_IDLE
    wr(dev, 0, reg.TPM_STS, [reg.TPM_STS_COMMAND_READY])
    wr(dev, 1, reg.TPM_DATA_FIFO, command())
    assert dev.state == TIS_READY  # nothing received
    assert rd(dev, 1, reg.TPM_DATA_FIFO, 2) == b"\xff\xff"
    # identification registers are readable from any locality
    assert rd(dev, 3, reg.TPM_DID_VID, 4) == (0x00011014).to_bytes(4, "little")
    assert rd(dev, 3, reg.TPM_ACCESS)[0] == reg.TPM_ACCESS_VALID | reg.TPM_ACCESS_ESTABLISHMENT


def test_locality_request_pending_and_relinquish():
    dev = TisDevice(echo_tpm([]))
    assert request_locality(dev, 0)
    assert not request_locality(dev, 2)
    assert not request_locality(dev, 1)
    access0 = rd(dev, 0, reg.TPM_ACCESS)[0]
    assert access0 & reg.TPM_ACCESS_PENDING_REQUEST and access0 & reg.TPM_ACCESS_ACTIVE_LOCALITY
    assert rd(dev, 2, reg.TPM_ACCESS)[0] & reg.TPM_ACCESS_REQUEST_USE
    wr(dev, 0, reg.TPM_ACCESS, [reg.TPM_ACCESS_ACTIVE_LOCALITY])  # relinquish
    assert dev.active_locality == 2  # the highest pending locality wins
    wr(dev, 2, reg.TPM_ACCESS, [reg.TPM_ACCESS_ACTIVE_LOCALITY])
    assert dev.active_locality == 1
    wr(dev, 1, reg.TPM_ACCESS, [reg.TPM_ACCESS_ACTIVE_LOCALITY])
    assert dev.active_locality is None
    assert rd(dev, 0, reg.TPM_ACCESS)[0] & reg.TPM_ACCESS_PENDING_REQUEST == 0


def test_seize_marks_the_loser():
    dev = TisDevice(echo_tpm([]))
    request_locality(dev, 1)
    wr(dev, 3, reg.TPM_ACCESS, [reg.TPM_ACCESS_SEIZE])
    assert dev.active_locality == 3
    assert rd(dev, 1, reg.TPM_ACCESS)[0] & reg.TPM_ACCESS_BEEN_SEIZED
    wr(dev, 1, reg.TPM_ACCESS, [reg.TPM_ACCESS_BEEN_SEIZED])
    assert not rd(dev, 1, reg.TPM_ACCESS)[0] & reg.TPM_ACCESS_BEEN_SEIZED
    wr(dev, 0, reg.TPM_ACCESS, [reg.TPM_ACCESS_SEIZE])  # a lower locality cannot seize
    assert dev.active_locality == 3


def test_cancel_during_execution_shows_command_ready_alone():
    calls = []
    dev = TisDevice(echo_tpm(calls))
    request_locality(dev, 0)
    send(dev, 0, command(b"x"))
    wr(dev, 0, reg.TPM_STS, [reg.TPM_STS_COMMAND_READY])
    assert dev.state == TIS_EXECUTION and dev.cancel_requested
    assert dev.complete() is None and len(calls) == 1
    assert sts(dev, 0)[0] & ~(reg.TPM_STS_VALID | reg.TPM_STS_SELF_TEST_DONE) == reg.TPM_STS_COMMAND_READY
    send(dev, 0, command(b"again"))
    assert dev.complete() is not None


def test_go_before_the_whole_command_is_ignored():
    dev = TisDevice(echo_tpm([]))
    request_locality(dev, 0)
    wr(dev, 0, reg.TPM_STS, [reg.TPM_STS_COMMAND_READY])
    wr(dev, 0, reg.TPM_DATA_FIFO, command(b"abc")[:8])
    wr(dev, 0, reg.TPM_STS, [reg.TPM_STS_GO])
    assert not dev.command_started
    assert sts(dev, 0)[0] & reg.TPM_STS_EXPECT


def test_bytes_beyond_param_size_are_dropped():
    calls = []
    dev = TisDevice(echo_tpm(calls))
    request_locality(dev, 0)
    wr(dev, 0, reg.TPM_STS, [reg.TPM_STS_COMMAND_READY])
    wr(dev, 0, reg.TPM_DATA_FIFO, command(b"ab") + b"junk")
    wr(dev, 0, reg.TPM_STS, [reg.TPM_STS_GO])
    dev.complete()
    assert calls[0][0] == command(b"ab")


def test_oversize_command_keeps_expect_set():
    dev = TisDevice(echo_tpm([]), max_command_size=32)
    request_locality(dev, 0)
    wr(dev, 0, reg.TPM_STS, [reg.TPM_STS_COMMAND_READY])
    wr(dev, 0, reg.TPM_DATA_FIFO, command(b"z" * 40))
    bits, burst, _ = sts(dev, 0)
    assert bits & reg.TPM_STS_EXPECT and burst == 0
    wr(dev, 0, reg.TPM_STS, [reg.TPM_STS_GO])
    assert not dev.command_started


def test_response_retry_rewinds():
    dev = TisDevice(echo_tpm([]))
    request_locality(dev, 0)
    send(dev, 0, command(b"q"))
    dev.complete()
    first = rd(dev, 0, reg.TPM_DATA_FIFO, 4)
    wr(dev, 0, reg.TPM_STS, [reg.TPM_STS_RESPONSE_RETRY])
    assert rd(dev, 0, reg.TPM_DATA_FIFO, 4) == first


def test_relinquish_while_executing_discards_the_response():
    dev = TisDevice(echo_tpm([]))
    request_locality(dev, 0)
    send(dev, 0, command())
    wr(dev, 0, reg.TPM_ACCESS, [reg.TPM_ACCESS_ACTIVE_LOCALITY])
    assert dev.complete() is None and dev.state == TIS_IDLE


def test_data_avail_interrupt():
    raised = []
    dev = TisDevice(echo_tpm([]), on_interrupt=lambda loc, st: raised.append((loc, st)))
    request_locality(dev, 0)
    wr(dev, 0, reg.TPM_INT_ENABLE, (reg.TPM_GLOBAL_INT_ENABLE | reg.TPM_INTF_DATA_AVAIL_INT).to_bytes(4, "little"))
    send(dev, 0, command())
    dev.complete()
    assert raised == [(0, reg.TPM_INTF_DATA_AVAIL_INT)]
    wr(dev, 0, reg.TPM_INT_STATUS, reg.TPM_INTF_DATA_AVAIL_INT.to_bytes(4, "little"))
    assert rd(dev, 0, reg.TPM_INT_STATUS, 4) == b"\0\0\0\0"


def test_holes_read_ff_and_page_crossing_is_refused():
    dev = TisDevice(echo_tpm([]))
    assert rd(dev, 0, 0x40, 4) == b"\xff" * 4
    with pytest.raises(ValueError):
        dev.mmio_read(0xFFE, 4)
    with pytest.raises(ValueError):
        dev.mmio_write(0x5000, b"\0")


@settings(max_examples=40, deadline=None)
@given(body=st.binary(max_size=300), burst=st.integers(1, 80), loc=st.integers(0, 4))
def test_any_command_round_trips(body, burst, loc):
    calls = []
    dev = TisDevice(echo_tpm(calls), burst_count=burst)
    assert request_locality(dev, loc)
    cmd = command(body)
    send(dev, loc, cmd)
    expected = dev.complete()
    assert calls == [(cmd, loc)]
    assert recv(dev, loc) == expected


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 0x4FFF), st.binary(min_size=1, max_size=4)), max_size=40))
def test_random_register_traffic_never_raises(ops):
    dev = TisDevice(echo_tpm([]))
    for off, data in ops:
        if off % 0x1000 + len(data) > 0x1000:
            continue
        dev.mmio_write(off, data)
        assert len(dev.mmio_read(off, len(data))) == len(data)
        if dev.command_started:
            dev.complete()


def test_burst_count_bytes_read_alone_like_mini_os():
    dev = TisDevice(echo_tpm([]), burst_count=0x1234)
    request_locality(dev, 2)
    wr(dev, 2, reg.TPM_STS, [reg.TPM_STS_COMMAND_READY])
    assert rd(dev, 2, reg.TPM_STS_BURST_COUNT, 2) == bytes([0x00, 0x10])  # min(burst, 4096) = 0x1000
    assert rd(dev, 2, reg.TPM_STS_BURST_COUNT, 1) == b"\x00"
    assert rd(dev, 2, reg.TPM_STS)[0] & reg.TPM_STS_COMMAND_READY

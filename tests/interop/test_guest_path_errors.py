"""The guest path answers like a TPM stack: malformed commands get a TPM error and the
connection stays open; a vTPM destroyed under a waiting guest fails its command at once."""

import struct
import time

import pytest

from simxen.server.loopback import free_port_pair
from simxen.server.mssim import MssimServer
from simxen.server.resource_manager import ResourceManager
from simxen.server.sim_backend import PathError
from simxen.tpm import client
from simxen.tpm.constants import TPM_RC
from simxen.tpm.engine import error_response

from simxen.domains.guest import AK_TEMPLATE
from simxen.tpm.constants import TPM_RH

from raw_clients import MssimClient
from test_serve_backend import boot


COMMAND_SIZE = error_response(TPM_RC.COMMAND_SIZE)
GETRAND = client.get_random_command(8)

MALFORMED = {
    "empty": b"",
    "shorter than a header": b"\x80\x01\x00",
    "truncated": GETRAND[:-1],                                     # commandSize 12, 11 bytes
    "commandSize 0": b"\x80\x01\x00\x00\x00\x00" + GETRAND[6:],
    "oversize (5,000 bytes)": struct.pack(">HII", 0x8001, 5000, 0x17B) + bytes(4990),
    "too big for the page (4,090 bytes)": struct.pack(">HII", 0x8001, 4090, 0x17B) + bytes(4080),
}


@pytest.fixture(scope="module")
def served():
    hv, host, guest, path = boot()
    port = free_port_pair()
    server = MssimServer(ResourceManager(path), "127.0.0.1", port).start()
    yield path, port
    server.stop()


@pytest.mark.parametrize("what", sorted(MALFORMED))
def test_a_malformed_command_gets_tpm_rc_command_size_and_the_connection_stays(served, what):
    path, port = served
    c = MssimClient(port)
    try:
        assert c.execute(MALFORMED[what]) == COMMAND_SIZE
        assert len(client.parse_get_random(c.execute(GETRAND))) == 8     # same connection
    finally:
        c.close()


def test_bytes_beyond_command_size_are_not_sent_as_linux_does(served):
    path, port = served
    c = MssimClient(port)
    try:
        assert len(client.parse_get_random(c.execute(GETRAND + b"trailing"))) == 8
    finally:
        c.close()


def test_over_64_kib_on_the_mssim_port_is_read_past_and_answered(served):
    path, port = served
    c = MssimClient(port)
    try:
        assert c.execute(bytes(70000)) == COMMAND_SIZE
        assert len(client.parse_get_random(c.execute(GETRAND))) == 8
    finally:
        c.close()


def test_a_vtpm_destroyed_under_a_waiting_guest_fails_the_command_promptly():
    hv, host, guest, path = boot()
    env = hv.env

    def destroy_soon():
        yield env.timeout(1e-4)                  # the command is in the vTPM by then
        host.destroy("vtpm-guest1")

    env.process(destroy_soon())
    started, wall = env.now, time.monotonic()
    with pytest.raises(PathError) as exc:
        path.execute(client.create_primary_command(TPM_RH.OWNER, AK_TEMPLATE))
    assert "destroyed" in str(exc.value) and exc.value.err == -19            # -ENODEV
    assert env.now - started < 0.1                    # one 5 ms poll, not Linux's 120 s
    assert time.monotonic() - wall < 10

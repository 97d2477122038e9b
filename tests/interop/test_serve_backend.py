"""``simxen serve``'s backend in-process: commands through the real vTPM stack, no tool needed.

:class:`~simxen.server.sim_backend.SimulatedPath` over a host built by
:func:`simxen.domains.stack.build_host` (the seed's vtpmmgr, vtpm-guest1,
guest1), alone, behind the resource manager, and behind the mssim server
spoken to with a raw socket.
"""

import hashlib
import socket
import struct
import threading
from pathlib import Path

import pytest
import simpy

from simxen.analysis import hops
from simxen.domains.guest import AK_TEMPLATE
from simxen.domains.stack import HostSpec, build_host
from simxen.scenario import scenario_file
from simxen.scenario.runner import load_profile
from simxen.server.loopback import ConnectionClosed, free_port_pair
from simxen.server.mssim import MssimServer
from simxen.server.resource_manager import ResourceManager
from simxen.server.sim_backend import PathError, SimulatedPath
from simxen.tpm import client
from simxen.tpm.constants import TPM_ALG, TPM_CC, TPM_RH
from simxen.xen import Hypervisor

from raw_clients import exchange


SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "vtpm-stack.toml"


def boot(seed=1, options=None, on_exchange=None):
    """The seed's host with the vtpm-stack scenario's profile, booted."""
    hv = Hypervisor(profile=load_profile(scenario_file.load(SCENARIO)), seed=seed)
    host = build_host(hv, HostSpec.standard(guests=["guest1"], options=options or {}))
    hv.env.run(until=host.ready)
    guest = host.guest("guest1")
    return hv, host, guest, SimulatedPath.for_guest(guest, on_exchange=on_exchange)


def extend(pcr, data):
    return client.pcr_extend_command(pcr, {TPM_ALG.SHA256: hashlib.sha256(data).digest()})


def pcr16(path):
    _, values = client.parse_pcr_read(path.execute(client.pcr_read_command({TPM_ALG.SHA256: [16]})))
    return values[TPM_ALG.SHA256][16]


def test_a_command_crosses_the_path_and_the_vtpm_answers_it():
    hv, host, guest, path = boot()
    client.check(path.execute(extend(16, b"kernel")))
    want = hashlib.sha256(bytes(32) + hashlib.sha256(b"kernel").digest()).digest()
    assert pcr16(path) == want
    vtpm = host.vtpm("vtpm-guest1")
    execs = [r for r in hv.trace.select("tpm.exec") if r.dom == vtpm.domid
             and str(r.fields.get("flow", "")).startswith("guest1/")]
    assert [r.fields["cc_name"] for r in execs] == ["TPM2_PCR_Extend", "TPM2_PCR_Read"]
    assert path.commands == 2 and path.failures == 0


def test_simulated_time_moves_only_while_a_command_is_in_flight():
    hv, host, guest, path = boot()
    t0 = hv.env.now
    path.execute(client.get_random_command(8))
    t1 = hv.env.now
    assert t1 > t0
    assert hv.env.now == t1                        # nothing runs between commands
    path.execute(client.get_random_command(8))
    assert hv.env.now > t1


def test_each_exchange_is_reported_with_its_flow_and_hops():
    seen = []
    hv, host, guest, path = boot(options={"vtpm-guest1": {"save_on": "success"}},
                                 on_exchange=seen.append)
    path.execute(extend(16, b"x"))
    (ex,) = seen
    assert ex.error is None and ex.command[6:10] == struct.pack(">I", TPM_CC.PCR_Extend)
    assert client.parse_response(ex.response).rc == 0
    (c,) = hops.command_hops(hv.trace.records(), flows=[ex.flow])
    assert c.dom == guest.domid and c.cc == TPM_CC.PCR_Extend
    assert c.total == pytest.approx(ex.latency, abs=1e-9)
    assert c.manager_requests == 1                  # saved after every successful command


def test_response_codes_come_back_unchanged():
    hv, host, guest, path = boot()
    rsp = path.execute(extend(99, b"no such pcr"))
    assert rsp == struct.pack(">HII", 0x8001, 10, 0x184)      # TPM_RC_VALUE, handle 1
    short = path.execute(b"\x80\x01\x00\x00\x00\x08")          # shorter than a header
    assert len(short) == 10 and struct.unpack(">I", short[6:10])[0] != 0


def test_a_broken_path_raises_path_error_instead_of_making_up_a_response():
    seen = []
    hv, host, guest, path = boot(on_exchange=seen.append)
    host.destroy("vtpm-guest1")
    with pytest.raises(PathError) as exc:
        path.execute(client.get_random_command(8))
    assert isinstance(exc.value, ConnectionError)
    assert path.failures == 1 and seen[-1].error is not None and seen[-1].response == b""
    assert "TpmFrontError" in str(exc.value)


def test_threads_are_serialised_and_every_command_gets_its_own_flow():
    seen = []
    hv, host, guest, path = boot(on_exchange=seen.append)
    manager = ResourceManager(path)
    errors = []

    def worker():
        c = manager.open_client()
        try:
            for _ in range(5):
                client.check(c.execute(client.get_random_command(4)))
        except Exception as exc:                  # noqa: BLE001
            errors.append(exc)
        finally:
            c.close()
    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == [] and path.commands == 20
    assert len({ex.flow for ex in seen}) == 20


def test_the_resource_manager_flushes_what_a_client_left_loaded():
    hv, host, guest, path = boot()
    manager = ResourceManager(path)
    c = manager.open_client()
    rsp = c.execute(client.create_primary_command(TPM_RH.OWNER, AK_TEMPLATE))
    handle, _, _ = client.parse_create_primary(rsp)
    assert handle >> 24 == 0x80
    c.close()
    rsp = path.execute(client.get_capability_command(1, 0x80000000, 16))
    assert struct.pack(">I", handle) not in rsp[10:]


def test_same_seed_same_bytes():
    def session(seed):
        hv, host, guest, path = boot(seed)
        rsps = [path.execute(client.get_random_command(16)), path.execute(extend(16, b"d"))]
        return rsps, hv.trace.dumps_jsonl()
    assert session(3) == session(3)
    assert session(3)[0][0] != session(4)[0][0]


def test_mssim_on_loopback_reaches_the_guest_and_a_broken_path_drops_the_connection():
    hv, host, guest, path = boot()
    port = free_port_pair()
    server = MssimServer(ResourceManager(path), "127.0.0.1", port).start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            rsp = exchange(s, client.get_random_command(8))
            assert client.parse_get_random(rsp) and path.commands == 1
            host.destroy("vtpm-guest1")
            with pytest.raises(ConnectionClosed):
                exchange(s, client.get_random_command(8))
    finally:
        server.stop()


def bare_path(transmit_body):
    """A SimulatedPath over a bare SimPy environment (no Xen): what execute does alone."""
    env = simpy.Environment()
    flows = iter(range(1, 100))
    return env, SimulatedPath(env, lambda c, loc, f: transmit_body(env, c, loc),
                              lambda: f"t/{next(flows)}")


def test_execute_runs_the_simulation_only_as_far_as_the_answer():
    def body(env, command, locality):
        yield env.timeout(0.25)
        return command[::-1] + bytes([locality])
    env, path = bare_path(body)
    assert path.execute(b"abc", 3) == b"cba\x03" and env.now == 0.25
    assert path.execute(b"de") == b"ed\x00" and env.now == 0.5


def test_a_command_that_can_never_be_answered_is_a_path_error():
    def body(env, command, locality):
        yield env.event()                          # nothing will ever trigger it
    env, path = bare_path(body)
    with pytest.raises(PathError, match="ran out of events"):
        path.execute(b"x")


def test_a_failing_model_process_is_a_path_error_and_the_path_still_works():
    def body(env, command, locality):
        if command == b"crash":
            def bug():
                yield env.timeout(0.1)
                raise KeyError("model bug")
            env.process(bug())
        yield env.timeout(1)
        return b"ok"
    env, path = bare_path(body)
    with pytest.raises(PathError, match="simulation stopped: KeyError"):
        path.execute(b"crash")
    assert path.execute(b"fine") == b"ok"
    assert (path.commands, path.failures) == (1, 1)

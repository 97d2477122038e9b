"""The mssim and swtpm servers and the resource manager, driven by a small
raw-socket client (the same framing tpm2-tss's TCTIs use)."""

import socket
import struct
import subprocess
import sys

import pytest

from simxen.server.loopback import free_port_pair, recv_exact
from simxen.server.mssim import MssimServer
from simxen.server.resource_manager import ResourceManager, describe
from simxen.server.swtpm import SwtpmServer
from simxen.tpm import client
from simxen.tpm.constants import TPM_ALG, TPM_RH

from raw_clients import MssimClient, bare_exchange
from tpm_helpers import ecc_storage_template, make_engine


@pytest.fixture
def mssim():
    tpm = make_engine()
    log = []
    manager = ResourceManager(tpm, log=lambda c, cmd, rsp, loc: log.append(describe(cmd, rsp)))
    port = free_port_pair()
    server = MssimServer(manager, "127.0.0.1", port, platform=tpm).start()
    yield tpm, port, log
    server.stop()


def wait_for(pred):
    import time
    for _ in range(200):
        if pred():
            return True
        time.sleep(0.01)
    return False


def test_mssim_round_trip_and_power_on_does_not_reset(mssim):
    tpm, port, log = mssim
    c = MssimClient(port, power_on=True)
    client.check(c.execute(client.pcr_extend_command(3, {TPM_ALG.SHA256: b"\x01" * 32})))
    c.close()
    c = MssimClient(port, power_on=True)                       # a new tool sends POWER_ON again
    _, v = client.parse_pcr_read(c.execute(client.pcr_read_command({TPM_ALG.SHA256: [3]})))
    assert v[TPM_ALG.SHA256][3] != bytes(32)
    c.close()
    assert "TPM2_PCR_Extend -> TPM_RC_SUCCESS" in log


def test_resource_manager_flushes_on_disconnect(mssim):
    tpm, port, log = mssim
    c = MssimClient(port, power_on=True)
    for _ in range(3):
        client.parse_create_primary(c.execute(client.create_primary_command(
            TPM_RH.OWNER, ecc_storage_template())))
    sh, _ = client.parse_start_auth_session(c.execute(client.start_auth_session_command(b"n" * 16)))
    assert len(tpm.objects) == 3 and sh in tpm.sessions     # room enough: nothing swapped
    assert listed_handles(c, 0x80000000) == [0x80000000, 0x80000001, 0x80000002]
    assert listed_handles(c, 0x02000000) == [sh]
    other = MssimClient(port, power_on=True)
    assert listed_handles(other, 0x80000000) == [] and listed_handles(other, 0x02000000) == []
    other.close()
    c.close()
    assert wait_for(lambda: not tpm.objects and not tpm.sessions)


def listed_handles(c, first):
    """GetCapability(TPM_CAP_HANDLES) from ``first``, as client ``c`` sees it."""
    rsp = c.execute(client.get_capability_command(1, first, 64))
    client.check(rsp)
    count = struct.unpack_from(">I", rsp, 15)[0]
    return list(struct.unpack_from(f">{count}I", rsp, 19))


def test_saved_sessions_survive_disconnect(mssim):
    tpm, port, _ = mssim
    c = MssimClient(port, power_on=True)
    sh, _ = client.parse_start_auth_session(c.execute(client.start_auth_session_command(b"n" * 16)))
    client.check(c.execute(client.build_command(0x162, (sh,))))       # ContextSave
    c.close()
    import time
    time.sleep(0.2)
    assert sh in tpm.sessions and tpm.sessions[sh].saved_sequence is not None


def test_more_clients_than_slots_each_keep_their_own_key():
    """Twelve clients with a primary key each on a TPM with eight object slots: the
    manager swaps the least recently used out and back in; nobody sees another's."""
    from simxen.tpm.limits import MAX_TRANSIENT_OBJECTS
    tpm = make_engine()
    manager = ResourceManager(tpm)
    clients = [manager.open_client() for _ in range(MAX_TRANSIENT_OBJECTS + 4)]
    names = []
    from simxen.tpm.constants import TPM_ECC
    from simxen.tpm.public import Public
    for c in clients:
        template = Public(TPM_ALG.ECC, TPM_ALG.SHA256, 0x00030072,
                          symmetric=(TPM_ALG.AES, 128, TPM_ALG.CFB), curve=TPM_ECC.NIST_P256,
                          unique=(b"client %d" % c.ident, b""))     # a key of its own
        handle, public, name = client.parse_create_primary(c.execute(
            client.create_primary_command(TPM_RH.OWNER, template)))
        assert handle == 0x80000000                      # every client's first handle
        names.append(name)
    assert len(tpm.objects) <= MAX_TRANSIENT_OBJECTS and manager.swaps > 0
    for c, name in zip(reversed(clients), reversed(names)):
        rsp = c.execute(client.read_public_command(0x80000000))
        client.check(rsp)
        assert name in rsp                                # its own key, loaded back
        assert client.response_code(c.execute(client.read_public_command(0x80000001))) \
            == 0x910                                      # REFERENCE_H0: not its handle
    for c in clients:
        c.close()
    assert not tpm.objects


def test_more_clients_than_slots_each_keep_their_own_hash_sequence():
    """Sequence objects are swapped out and back like keys (ContextSave of a
    sequence carries its hash in progress): twelve clients hashing at once on
    eight slots each get their own digest."""
    import hashlib
    from simxen.tpm.constants import TPM_CC
    from simxen.tpm.limits import MAX_TRANSIENT_OBJECTS
    from simxen.tpm.marshal import tpm2b, u16, u32
    tpm = make_engine()
    manager = ResourceManager(tpm)
    clients = [manager.open_client() for _ in range(MAX_TRANSIENT_OBJECTS + 4)]
    pw = [client.password_auth()]
    for c in clients:
        rsp = client.parse_response(c.execute(client.build_command(
            TPM_CC.HashSequenceStart, params=tpm2b(b"") + u16(TPM_ALG.SHA256))), 1)
        assert rsp.handles == [0x80000000]
    for round_ in range(2):
        for c in clients:
            client.check(c.execute(client.build_command(
                TPM_CC.SequenceUpdate, (0x80000000,), tpm2b(b"client %d round %d " % (
                    c.ident, round_)), pw)))
    assert len(tpm.objects) <= MAX_TRANSIENT_OBJECTS and manager.swaps > 0
    for c in clients:
        r = client.parse_response(c.execute(client.build_command(
            TPM_CC.SequenceComplete, (0x80000000,), tpm2b(b"") + u32(TPM_RH.NULL), pw))).params
        assert r.tpm2b() == hashlib.sha256(b"client %d round 0 client %d round 1 " % (
            c.ident, c.ident)).digest()
        c.close()
    assert not tpm.objects


def test_mssim_locality_reaches_engine(mssim):
    tpm, port, _ = mssim
    c = MssimClient(port, power_on=True)
    zero = {TPM_ALG.SHA256: bytes(32)}
    assert client.response_code(c.execute(client.pcr_extend_command(17, zero))) == 0x907
    assert client.response_code(c.execute(client.pcr_extend_command(17, zero), 2)) == 0
    c.close()


def swtpm_data(port, command):
    """One command on swtpm's data port (a connection of its own, as the TCTI does)."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        return bare_exchange(s, command)


def test_swtpm_protocol():
    tpm = make_engine()
    manager = ResourceManager(tpm)
    port = free_port_pair()
    server = SwtpmServer(manager, "127.0.0.1", port, platform=tpm).start()
    try:
        def ctrl(payload, reply_len):
            with socket.create_connection(("127.0.0.1", port + 1)) as s:
                s.sendall(payload)
                return recv_exact(s, reply_len)

        def data(command):
            return swtpm_data(port, command)

        assert ctrl(struct.pack(">IB", 5, 0), 4) == b"\0\0\0\0"          # SET_LOCALITY 0
        # as swtpm answers (ctrlchannel.c): locality 5 is TPM_BAD_LOCALITY; an unknown
        # command TPM_BAD_ORDINAL, and the connection serves on (it was closed unanswered);
        # the unknown command's payload is dropped with it, not read as the next command
        # (CMD_GET_INFO's flags 2 were a CMD_INIT that reset the TPM)
        assert ctrl(struct.pack(">IB", 5, 5), 4) == struct.pack(">I", 61)
        with socket.create_connection(("127.0.0.1", port + 1)) as s:
            s.sendall(struct.pack(">IQII", 0x12, 2, 0, 0))          # CMD_GET_INFO, flags 2
            assert recv_exact(s, 4) == struct.pack(">I", 10)
            s.sendall(struct.pack(">I", 1))                          # GET_CAPABILITY
            assert recv_exact(s, 8) == struct.pack(">Q", 0x2CFF)
        assert tpm.started
        assert len(ctrl(struct.pack(">I", 1), 8)) == 8                     # GET_CAPABILITY
        client.parse_create_primary(data(client.create_primary_command(
            TPM_RH.OWNER, ecc_storage_template())))
        listed = data(client.get_capability_command(1, 0x80000000, 8))
        assert struct.unpack_from(">I", listed, 15)[0] == 1        # the tool run's one object
        assert ctrl(struct.pack(">IB", 5, 2), 4) == b"\0\0\0\0"          # next tool run
        listed = data(client.get_capability_command(1, 0x80000000, 8))
        assert struct.unpack_from(">I", listed, 15)[0] == 0
        assert wait_for(lambda: not tpm.objects)
        zero = {TPM_ALG.SHA256: bytes(32)}
        assert client.response_code(data(client.pcr_extend_command(17, zero))) == 0
        # DRTM sequence on the control channel
        assert ctrl(struct.pack(">I", 6), 4) == b"\0\0\0\0"
        assert ctrl(struct.pack(">II", 7, 3) + b"mle", 4) == b"\0\0\0\0"
        assert ctrl(struct.pack(">I", 8), 4) == b"\0\0\0\0"
        assert tpm.pcrs.banks[TPM_ALG.SHA256][18] == bytes(32)
        # the mssim-style prefix is accepted on the data port too
        cmd = client.get_random_command(4)
        rsp = data(struct.pack(">IBI", 8, 0, len(cmd)) + cmd)
        assert len(client.parse_get_random(rsp)) == 4
    finally:
        server.stop()


def run_cli(*args, timeout=30):
    return subprocess.run([sys.executable, "-m", "simxen.cli", "tpm", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_cli_bad_state_file_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "state.bin"
    bad.write_bytes(b"garbage that is not a state blob")
    proc = run_cli("serve", "--port", str(free_port_pair()), "--state", str(bad))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and "Traceback" not in proc.stderr


def test_cli_serves_and_persists_state_on_sigterm(tmp_path):
    import signal
    import time
    state = tmp_path / "tpm.state"
    port = free_port_pair()
    proc = subprocess.Popen([sys.executable, "-m", "simxen.cli", "tpm", "serve", "--port",
                             str(port), "--state", str(state), "--seed", "cli"],
                            stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(100):
            try:
                c = MssimClient(port, power_on=True)
                break
            except OSError:
                time.sleep(0.05)
        client.check(c.execute(client.startup_command()))
        client.check(c.execute(client.pcr_extend_command(2, {TPM_ALG.SHA256: bytes(32)})))
        c.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 128 + signal.SIGTERM, err     # stopped by SIGTERM: 143
    assert "TPM2_Startup -> TPM_RC_SUCCESS" in err
    assert "TPM2_PCR_Extend -> TPM_RC_SUCCESS" in err
    from simxen.tpm import TpmEngine
    restored = TpmEngine.from_state(state.read_bytes())
    assert restored.reset_count == 1


def test_any_backend_gets_a_resource_manager():
    class Backend:
        """Not an engine: anything with execute(command, locality)."""
        def __init__(self):
            self.tpm = make_engine()
            self.seen = []

        def execute(self, command, locality=0):
            self.seen.append(locality)
            return self.tpm.execute(command, locality)

    backend = Backend()
    port = free_port_pair()
    server = MssimServer(backend, "127.0.0.1", port).start()
    try:
        c = MssimClient(port, power_on=True)
        client.parse_create_primary(c.execute(client.create_primary_command(
            TPM_RH.OWNER, ecc_storage_template()), 3))
        c.close()
        assert wait_for(lambda: not backend.tpm.objects)
        assert backend.seen[0] == 3
    finally:
        server.stop()


def test_swtpm_server_takes_any_backend_too():
    """Like mssim's: a bare backend is wrapped in a ResourceManager (it once
    crashed asking the backend itself for ``open_client``)."""
    tpm = make_engine()
    port = free_port_pair()
    server = SwtpmServer(tpm, "127.0.0.1", port).start()
    try:
        rsp = swtpm_data(port, client.get_random_command(4))
        assert len(client.parse_get_random(rsp)) == 4
    finally:
        server.stop()


def test_free_port_pair_stays_out_of_the_ports_clients_are_given():
    """A port the kernel may hand to a client's outgoing connection (its ephemeral
    range) can be taken between choosing it and the server binding it; the pair
    comes from below that range, and both ports bind."""
    import socket
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low = int(f.read().split()[0])
    # what a client connecting anywhere is given: inside the range the pair avoids
    with socket.socket() as client:
        client.bind(("127.0.0.1", 0))
        assert client.getsockname()[1] >= low
    for _ in range(20):
        port = free_port_pair()
        assert 1024 <= port and port + 1 < low
        with socket.socket() as a, socket.socket() as b:
            a.bind(("127.0.0.1", port))
            b.bind(("127.0.0.1", port + 1))


def free_pair_in_a_new_process(*between):
    """``free_port_pair(between=...)`` called by another Python process: (exit status,
    its port or error line)."""
    code = ("import sys\nfrom simxen.server.loopback import free_port_pair\n"
            "try:\n    print(free_port_pair(between=tuple(map(int, sys.argv[1:])) or None))\n"
            "except OSError as e:\n    sys.exit(str(e))\n")
    r = subprocess.run([sys.executable, "-c", code, *map(str, between)], capture_output=True,
                       text=True, timeout=60)
    return r.returncode, (r.stdout or r.stderr).strip()


def test_a_pair_handed_out_is_handed_to_no_other_caller_in_any_process():
    """Between "both ports are free" and the server binding them -- often a new process,
    a second later -- another caller (a thread, another pytest-xdist worker) must not be
    handed the same pair: it is reserved for the process it was handed to, though both
    ports are still free to bind, and the reservation ends with that process."""
    port = free_port_pair()
    assert port % 2 == 0
    with socket.socket() as a, socket.socket() as b:     # nothing has bound them yet
        a.bind(("127.0.0.1", port))
        b.bind(("127.0.0.1", port + 1))
    with pytest.raises(OSError, match=f"no free port pair on 127.0.0.1 between {port} and"):
        free_port_pair(between=(port, port))
    status, out = free_pair_in_a_new_process(port, port)
    assert status == 1 and out.startswith("no free port pair"), out
    # the other way round: what a process was handed is free again once it has exited
    status, out = free_pair_in_a_new_process()
    assert status == 0, out
    assert free_port_pair(between=(int(out), int(out))) == int(out)


class _SplitSocket:
    """A socket whose peer sent a command in two pieces (tpm2-tss's mssim TCTI:
    the 9-byte header, then the command); records what the reader did."""

    def __init__(self, *pieces):
        self.pieces = list(pieces)
        self.calls = []

    def setsockopt(self, level, option, value):
        self.calls.append(("setsockopt", level, option, value))

    def recv(self, n):
        self.calls.append(("recv",))
        return self.pieces.pop(0) if self.pieces else b""


@pytest.mark.skipif(not hasattr(socket, "TCP_QUICKACK"), reason="Linux's TCP_QUICKACK")
def test_reader_acknowledges_what_came_before_it_waits_for_more():
    """Before each recv, a quick ACK: the client's Nagle holds the second piece
    until the first is acknowledged, and a delayed ACK would hold that 40 ms."""
    from simxen.server.loopback import BufferedReader
    quickack = ("setsockopt", socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
    sock = _SplitSocket(b"\0\0\0\x08\0\0\0\0\x0c", b"\x80\x01\0\0\0\x0c\0\0\x01\x7b\0\x08")
    reader = BufferedReader(sock)
    assert reader.read(4) == b"\0\0\0\x08" and reader.read(5) == b"\0\0\0\0\x0c"
    assert reader.read(12)[6:10] == b"\0\0\x01\x7b"
    assert sock.calls == [quickack, ("recv",), quickack, ("recv",)]

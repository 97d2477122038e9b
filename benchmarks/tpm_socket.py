"""Round trips per second over loopback: ``simxen tpm serve`` vs swtpm.

    python benchmarks/tpm_socket.py [--seconds 3]

Starts ``simxen tpm serve --protocol swtpm --quiet`` and, when Debian's
``swtpm`` is installed, ``swtpm socket --tpm2`` on free loopback port pairs;
drives both with the same raw client (one persistent data connection,
swtpm's framing: raw command out, 10-byte header then body in) sending
PCR_Extend and GetRandom(16), taking turns in short slices so that other load
on the machine hits both alike; prints the median rates and simxen/swtpm.
Also measures simxen over the mssim framing (three sends per response, for
tshark, so it is slower).  Target: simxen >= swtpm (swtpm did
about 19,000 PCR_Extend/s over loopback on this class of machine).
"""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time

from arguments import duration
from simxen.protocols import mssim as mssim_protocol
from simxen.server import reference_swtpm
from simxen.server.loopback import free_port_pair, recv_exact
from simxen.server.reference_swtpm import stop
from simxen.tpm import client, header
from simxen.tpm.constants import TPM_ALG


def connect(port, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            s = socket.create_connection(("127.0.0.1", port))
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return s
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class RawClient:
    """swtpm framing (``mssim=False``) or mssim framing over one connection."""

    def __init__(self, port, mssim=False):
        self.mssim = mssim
        self.sock = connect(port)
        if mssim:
            self.platform = connect(port + 1)
            for signal_code in (mssim_protocol.SIGNAL_POWER_ON, mssim_protocol.SIGNAL_NV_ON):
                self.platform.sendall(mssim_protocol.pack_u32(signal_code))
                recv_exact(self.platform, len(mssim_protocol.ACK))

    def execute(self, command):
        if self.mssim:
            self.sock.sendall(mssim_protocol.send_command_header(0, len(command)) + command)
            size = mssim_protocol.unpack_u32(recv_exact(self.sock, mssim_protocol.CODE_SIZE))
            rsp = recv_exact(self.sock, size)
            recv_exact(self.sock, len(mssim_protocol.ACK))
            return rsp
        self.sock.sendall(command)
        head = recv_exact(self.sock, header.HEADER_SIZE)
        return head + recv_exact(self.sock, header.size(head) - header.HEADER_SIZE)

    def close(self):
        self.sock.close()
        if self.mssim:
            self.platform.close()


def rate(execute, command, seconds):
    rsp = execute(command)
    if rsp[6:10] != b"\0\0\0\0":
        raise SystemExit(f"command failed: {rsp.hex()}")
    n = 0
    start = time.perf_counter()
    while True:
        for _ in range(100):
            execute(command)
        n += 100
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n / elapsed


COMMANDS = {"PCR_Extend": client.pcr_extend_command(16, {TPM_ALG.SHA256: bytes(32)}),
            "GetRandom(16)": client.get_random_command(16)}


def interleaved(clients, seconds, rounds=6):
    """Median rate per (target, command), measuring the targets in turn in
    short slices, so that load from other processes hits them alike."""
    samples = {(who, name): [] for who in clients for name in COMMANDS}
    for _ in range(rounds):
        for who, c in clients.items():
            for name, command in COMMANDS.items():
                samples[(who, name)].append(rate(c.execute, command, seconds / rounds))
    return {key: sorted(v)[len(v) // 2] for key, v in samples.items()}


def start_simxen(protocol):
    port = free_port_pair()
    proc = subprocess.Popen([sys.executable, "-m", "simxen.cli", "tpm", "serve", "--quiet",
                             "--protocol", protocol, "--port", str(port), "--seed", "bench"],
                            stderr=subprocess.DEVNULL, start_new_session=True)
    c = RawClient(port, mssim=(protocol == "mssim"))
    c.execute(client.startup_command())
    return proc, c


def start_swtpm(state):
    proc, port = reference_swtpm.start(state)
    return proc, RawClient(port)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=duration, default=3.0,
                    help="time per target and command (split into slices)")
    args = ap.parse_args(argv)
    procs, clients = [], {}
    swtpm = reference_swtpm.available()
    with tempfile.TemporaryDirectory() as state:
        try:
            for protocol in ("swtpm", "mssim"):
                proc, c = start_simxen(protocol)
                procs.append(proc)
                clients[f"simxen ({protocol} framing)"] = c
            if swtpm:
                proc, c = start_swtpm(state)
                procs.append(proc)
                clients["swtpm 0.7.1 (libtpms)"] = c
            else:
                print("swtpm not installed: no comparison (apt-get install swtpm)")
            results = interleaved(clients, args.seconds)
        finally:
            for c in clients.values():
                c.close()
            for proc in procs:
                stop(proc)
    for who in clients:
        print(f"{who:30s} " + "  ".join(f"{name} {results[(who, name)]:9,.0f}/s"
                                        for name in COMMANDS))
    if swtpm:
        for name in COMMANDS:
            ratio = results[("simxen (swtpm framing)", name)] / results[
                ("swtpm 0.7.1 (libtpms)", name)]
            print(f"ratio simxen/swtpm {name}: {ratio:.2f} "
                  f"({'at least equal to' if ratio >= 1 else 'below'} target 1.00)")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())

"""tshark's TPM 2.0 dissector decodes what ``simxen tpm serve`` sends.

The dissector does no reassembly: each mssim response part (size, body,
trailer) must be its own TCP segment, and the server port must be below
the client's ephemeral port for it to tell requests from responses.
"""

import signal
import subprocess
import time

import pytest

from simxen.server.loopback import free_port_pair

from tpm_serve_helpers import SimxenTpmServer, require_tool, run_tool

pytestmark = pytest.mark.interop


def test_tshark_decodes_mssim_traffic(tmp_path):
    require_tool("tpm2_startup")
    tshark = require_tool("tshark")
    port = free_port_pair()       # below the ephemeral range, as the dissector needs
    srv = SimxenTpmServer("mssim", port=port)
    pcap = tmp_path / "cap.pcap"
    cap = subprocess.Popen([tshark, "-i", "lo", "-f", f"tcp port {port} or tcp port {port + 1}",
                            "-w", str(pcap)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True)
    try:
        deadline = time.monotonic() + 20
        line = ""
        while "Capturing on" not in line and time.monotonic() < deadline:
            line = cap.stderr.readline()
            if not line and cap.poll() is not None:
                pytest.skip("tshark cannot capture on lo here")
        time.sleep(1.0)        # "Capturing on" comes a little before the capture does
        run_tool(srv.tcti, tmp_path, "tpm2_startup", "-c")
        run_tool(srv.tcti, tmp_path, "tpm2_getrandom", "8")
        time.sleep(0.5)
    finally:
        cap.send_signal(signal.SIGTERM)
        cap.wait(timeout=20)
        srv.stop()
    out = subprocess.run([tshark, "-r", str(pcap), "-Y", "tpm", "-d", f"tcp.port=={port},tpm",
                          "-d", f"tcp.port=={port + 1},tpm"], capture_output=True, text=True,
                         timeout=60).stdout
    assert "Command TPM2_CC_Startup" in out
    assert "Command TPM2_CC_GetRandom" in out
    assert "Response Code TPM2 Success" in out
    assert "Platform Command TPM_POWER_ON" in out

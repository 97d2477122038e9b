"""``--host``: the TPM servers listen where ``getaddrinfo`` says, IPv4 or IPv6.

``simxen tpm serve`` and ``simxen serve`` bind ports P and P+1 on the first
address of ``--host`` where both bind (:func:`simxen.server.loopback.bind_pair`):
``::1`` and ``[::1]`` on an IPv6 socket, ``localhost`` on whichever of its
addresses comes first, ``::`` on every address. tpm2-tss's mssim and swtpm TCTIs
take ``host=::1``, so tpm2-tools prove it end to end; a small client speaking
each protocol checks every form of the option in this process. The IPv6 tests
skip, saying why, on a machine without an IPv6 loopback.
"""

import errno
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from simxen.server import loopback
from simxen.server.loopback import bind_pair, bound_socket, free_port_pair, listen_addresses
from simxen.server.mssim import MssimServer
from simxen.server.swtpm import SwtpmServer
from simxen.tpm import TpmEngine, client

from raw_clients import bare_exchange, exchange
from tpm_serve_helpers import SimxenTpmServer, require_tool, run_tool

ROOT = Path(__file__).resolve().parents[2]
interop = pytest.mark.interop


def _no_ipv6_loopback():
    """Why this machine cannot bind ``::1``, or ``None`` if it can."""
    if not socket.has_ipv6:
        return "Python was built without IPv6"
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError as exc:
        return f"no IPv6 loopback here (bind to ::1: {exc.strerror or exc})"
    return None


@pytest.fixture
def ipv6():
    why = _no_ipv6_loopback()
    if why:
        pytest.skip(why)


def get_random(protocol, address, port):
    """TPM2_GetRandom(8) over ``protocol``'s data port at ``address``: its response."""
    command = client.get_random_command(8)
    with socket.create_connection((address, port), timeout=10) as s:
        if protocol == "mssim":
            return exchange(s, command)
        return bare_exchange(s, command)        # swtpm: the bare command and response


SERVERS = {"mssim": MssimServer, "swtpm": SwtpmServer}


@pytest.mark.parametrize("protocol", sorted(SERVERS))
@pytest.mark.parametrize("host, family, reach", [
    ("127.0.0.1", socket.AF_INET, ["127.0.0.1"]),
    ("0.0.0.0", socket.AF_INET, ["127.0.0.1"]),
    ("::1", socket.AF_INET6, ["::1"]),
    ("[::1]", socket.AF_INET6, ["::1"]),
    ("::", socket.AF_INET6, ["::1"]),
    ("localhost", None, None),
])
def test_a_server_listens_on_the_address_host_resolves_to(protocol, host, family, reach):
    why = _no_ipv6_loopback() if family == socket.AF_INET6 else None
    if why:
        pytest.skip(why)
    engine = TpmEngine(seed=b"listen", powered=True)
    client.check(engine.execute(client.startup_command()))
    port = free_port_pair(host)
    server = SERVERS[protocol](engine, host, port).start()
    try:
        bound = server.pair.address
        if host == "localhost":             # whichever of its addresses getaddrinfo gave first
            assert bound == listen_addresses("localhost", port)[0][1][0]
            reach = [bound]
        else:
            assert server.pair.data.socket.family == server.pair.control.socket.family == family
        for address in reach:
            client.check(get_random(protocol, address, port))
    finally:
        server.stop()


def test_listen_addresses_takes_brackets_and_names(ipv6):
    assert listen_addresses("[::1]", 2321) == listen_addresses("::1", 2321)
    assert [f for f, _ in listen_addresses("::1", 2321)] == [socket.AF_INET6]
    assert listen_addresses("127.0.0.1", 2321) == [(socket.AF_INET, ("127.0.0.1", 2321))]
    with pytest.raises(socket.gaierror):
        listen_addresses("nosuchhost.invalid", 2321)


def test_a_pair_is_bound_on_one_address_or_not_at_all(ipv6):
    """P bound on ::1 and P+1 taken there: the first is closed again, not left bound."""
    port = free_port_pair("::1")
    with socket.socket(socket.AF_INET6) as taken:
        taken.bind(("::1", port + 1))
        taken.listen(1)
        with pytest.raises(OSError):
            bind_pair("::1", port, bound_socket)
        bound_socket(socket.AF_INET6, ("::1", port)).close()     # P was released


@interop
def test_tpm2_tools_reach_a_guest_through_simxen_serve_over_ipv6(ipv6, tmp_path):
    """The whole simulated path behind an IPv6 listener, driven by tpm2-tools."""
    require_tool("tpm2_getrandom")
    from test_serve import start
    srv = start("--host", "::1", port=free_port_pair("::1"))
    try:
        assert f"listening on [::1]:{srv.port} and {srv.port + 1}" in srv.wait_for("listening")
        tcti = f"mssim:host=::1,port={srv.port}"
        out = run_tool(tcti, tmp_path, "tpm2_getrandom", "--hex", "8").stdout
        assert len(bytes.fromhex(out.decode())) == 8
        assert srv.wait_for("TPM2_GetRandom -> TPM_RC_SUCCESS") is not None
    finally:
        assert srv.stop() == 143, srv.log


def _resolving_to(monkeypatch, *addresses):
    """Make every name resolve to ``addresses`` (IPv4 or IPv6 literals), in this order:
    a name with two addresses, whatever this machine's /etc/hosts says of localhost."""
    def resolve(host, port):
        return [(socket.AF_INET6, (a, port, 0, 0)) if ":" in a else (socket.AF_INET, (a, port))
                for a in addresses]
    monkeypatch.setattr(loopback, "listen_addresses", resolve)


def test_a_names_address_this_machine_lacks_is_passed_over(monkeypatch):
    _resolving_to(monkeypatch, "192.0.2.1", "127.0.0.1")      # TEST-NET-1 is nobody's
    port = free_port_pair()
    data, control = bind_pair("twoaddresses", port, bound_socket)
    with data, control:
        assert data.getsockname() == ("127.0.0.1", port)
        assert control.getsockname() == ("127.0.0.1", port + 1)


def test_a_port_in_use_on_a_names_first_address_is_not_passed_over(monkeypatch, ipv6):
    """The first address has P+1 taken: that is the error, not a listener on the second --
    a tool resolving the name would try the first and reach the other server."""
    port = free_port_pair()
    _resolving_to(monkeypatch, "127.0.0.1", "::1")
    with bound_socket(socket.AF_INET, ("127.0.0.1", port + 1)) as taken:
        taken.listen(1)
        with pytest.raises(OSError) as err:
            bind_pair("twoaddresses", port, bound_socket)
    assert err.value.errno == errno.EADDRINUSE
    bound_socket(socket.AF_INET, ("127.0.0.1", port)).close()       # P was released again


def tpm_cli(*argv):
    return subprocess.run([sys.executable, "-m", "simxen.cli", "tpm", "serve", *map(str, argv)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


@pytest.mark.parametrize("host, why", [
    ("nosuchhost.invalid", "cannot listen on nosuchhost.invalid:"),
    ("192.0.2.1", "Cannot assign requested address"),           # TEST-NET-1: not ours
    ("fe80::1", "cannot listen on [fe80::1]:"),                 # link-local without %interface
    ("[::1", "cannot listen on [::1:"),
    # names IDNA cannot encode: was an internal error (UnicodeError), exit 3
    ("bad..host", "not a host name (an empty label"),
    (".example", "not a host name (an empty label"),
    ("a" * 64 + ".example", "longer than 63 characters"),
])
def test_a_host_that_cannot_be_bound_is_one_line_naming_host(host, why):
    proc = tpm_cli("--host", host, "--port", free_port_pair())
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("simxen tpm: --host: ") and why in lines[0], lines[0]


def test_tpm_serve_checks_host_and_port_before_it_writes_a_state(tmp_path):
    """Was: a fresh TPM's --state file was written, then the --host refused."""
    state = tmp_path / "tpm.state"
    proc = tpm_cli("--host", "nosuchhost.invalid", "--port", free_port_pair(), "--state", state)
    assert proc.returncode == 2 and "--host" in proc.stderr, proc.stderr
    port = free_port_pair()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port + 1))
        taken.listen(1)
        proc = tpm_cli("--port", port, "--state", state)
    assert proc.returncode == 2 and "--port" in proc.stderr, proc.stderr
    assert not state.exists()


@interop
@pytest.mark.parametrize("protocol", ["mssim", "swtpm"])
def test_tpm2_tools_reach_simxen_tpm_serve_over_ipv6(ipv6, tmp_path, protocol):
    """tpm2-tss's TCTIs connect to host=::1: tpm2_startup, tpm2_getrandom, tpm2_pcrread."""
    require_tool("tpm2_startup")
    server = SimxenTpmServer(protocol=protocol, host="::1")
    try:
        assert server.tcti == f"{protocol}:host=::1,port={server.port}"
        run_tool(server.tcti, tmp_path, "tpm2_startup", "-c")
        out = run_tool(server.tcti, tmp_path, "tpm2_getrandom", "--hex", "16").stdout
        assert len(bytes.fromhex(out.decode())) == 16
        run_tool(server.tcti, tmp_path, "tpm2_pcrread", "sha256:0")
    finally:
        assert server.stop() == 143, server.log
    assert "on [::1]:" in server.log, server.log

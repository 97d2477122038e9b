"""Helpers for the interoperability tests: start ``simxen tpm serve`` on a
free loopback port pair and give the TCTI string that points tpm2-tools at
it.  (A module of its own, imported by name, so that it cannot be confused
with another directory's ``conftest``.)

Tests that use these fixtures skip with a reason when the tool they drive is
absent, unless ``SIMXEN_REQUIRE_TOOLS=1`` (then they fail).
"""

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from simxen.server.loopback import free_port_pair, wait_listening  # noqa: F401 (re-exported)


def load_script(filename):
    """The module ``scripts/FILENAME`` (a script's name has hyphens, so it is
    loaded from its path rather than imported)."""
    path = Path(__file__).resolve().parents[2] / "scripts" / filename
    spec = importlib.util.spec_from_file_location(path.stem.replace("-", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def require_tool(name, package=None):
    """The path of ``name``; skip (or fail under SIMXEN_REQUIRE_TOOLS=1) if absent."""
    path = shutil.which(name) or (f"/usr/bin/{name}" if os.path.exists(f"/usr/bin/{name}")
                                  else None)
    if path is None:
        missing(name, package)
    return path


def missing(what, package):
    """Skip the test because ``what`` (from Debian package ``package``, if named) is absent, or
    fail it when ``SIMXEN_REQUIRE_TOOLS=1`` (CI, where ``make test`` installs it)."""
    if os.environ.get("SIMXEN_REQUIRE_TOOLS") == "1":
        pytest.fail(f"{what} is required (SIMXEN_REQUIRE_TOOLS=1) but not installed")
    pytest.skip(f"{what} not installed (Debian package {package})" if package else
                f"{what} not installed (scripts/setup-system.sh installs its Debian package)")


def require_openssl_provider(name, package):
    """The ``openssl`` command, after checking that provider ``name`` is in
    OpenSSL's module folder (``openssl version -m``); skip (or fail) if not.
    (Loading it is no test: the tpm2 provider's init fails without a TPM.)"""
    openssl = require_tool("openssl", "openssl")
    out = subprocess.run([openssl, "version", "-m"], capture_output=True, text=True,
                         timeout=60).stdout
    folder = out.partition('"')[2].rpartition('"')[0]
    if not os.path.exists(os.path.join(folder, f"{name}.so")):
        missing(f"the OpenSSL provider {name!r}", package)
    return openssl


class SimxenTpmServer:
    """``python -m simxen.cli tpm serve`` as a subprocess."""

    def __init__(self, protocol="mssim", state=None, seed="interop", port=None,
                 host="127.0.0.1"):
        self.protocol = protocol
        self.port = port or free_port_pair(host)
        args = [sys.executable, "-m", "simxen.cli", "tpm", "serve", "--port", str(self.port),
                "--protocol", protocol, "--seed", seed, "--host", host]
        if state is not None:
            args += ["--state", str(state)]
        self.log = ""
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
        if not wait_listening(self.port, host=host):
            self.stop()
            raise RuntimeError(f"simxen tpm serve did not start: {self.log}")
        self.tcti = f"{protocol}:host={host},port={self.port}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        self.log = err or ""
        return self.proc.returncode


def run_tool(tcti, cwd, *argv, check=True, timeout=120):
    """Run one tpm2-tools command against ``tcti``; the CompletedProcess."""
    env = dict(os.environ, TPM2TOOLS_TCTI=tcti)
    proc = subprocess.run(list(argv), cwd=cwd, env=env, capture_output=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({proc.returncode}):\n"
                             f"{proc.stderr.decode(errors='replace')}")
    return proc

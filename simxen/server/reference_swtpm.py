"""Debian's swtpm (libtpms) on loopback: the reference TPM simxen is compared with.

Three tools put simxen beside it -- ``scripts/differential-swtpm.py`` (the
same command bytes to both engines), ``scripts/tpm2-tools-side-by-side.py``
(the same tpm2-tools sequences) and ``benchmarks/tpm_socket.py`` (round trips
per second) -- and all start it the same way, from here: ``swtpm socket
--tpm2`` with its data port P and control port P+1 on 127.0.0.1, its state
in a directory of the caller's, and ``not-need-init,startup-clear`` so that
it takes commands at once, started as simxen's own servers are.

    proc, port = start(state_dir)
    ...                                   # swtpm framing on port, control on port + 1
    stop(proc)

The process gets a session of its own, so :func:`stop` ends it (and anything
it started) with one signal to its process group.
"""

import os
import shutil
import signal
import subprocess

from simxen.server.loopback import free_port_pair, wait_listening

__all__ = ["EXECUTABLE", "available", "argv", "start", "stop"]

#: The program Debian's ``swtpm`` package installs.
EXECUTABLE = "swtpm"


def available(executable=EXECUTABLE):
    """Whether ``executable`` is on ``PATH`` (``scripts/setup-system.sh`` installs it)."""
    return shutil.which(executable) is not None


def argv(port, state_dir, executable=EXECUTABLE):
    """The command line of a TPM 2.0 swtpm serving ``port`` (data) and ``port + 1``
    (control) on 127.0.0.1, keeping its state in ``state_dir``."""
    return [executable, "socket", "--tpm2",
            "--server", f"type=tcp,port={port},bindaddr=127.0.0.1",
            "--ctrl", f"type=tcp,port={port + 1},bindaddr=127.0.0.1",
            "--tpmstate", f"dir={state_dir}", "--flags", "not-need-init,startup-clear"]


def start(state_dir, executable=EXECUTABLE, timeout=30.0):
    """``(process, port)`` of a swtpm listening on a free port pair, started and
    ready for commands; ``RuntimeError`` (with the end of its standard error)
    when it exits or does not listen within ``timeout`` seconds."""
    port = free_port_pair()
    proc = subprocess.Popen(argv(port, state_dir, executable), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    if not wait_listening(port, timeout=timeout, process=proc):
        stop(proc)
        with proc.stderr:
            raise RuntimeError(f"swtpm did not start: {proc.stderr.read()[-500:]}")
    return proc, port


def stop(proc, timeout=10.0):
    """End ``proc`` (a process :func:`start`, or any ``start_new_session`` Popen, made):
    SIGTERM to its process group, SIGKILL if it is still there after ``timeout`` s."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:        # it ended between the poll and the signal
            proc.wait()

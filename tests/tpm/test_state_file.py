"""``simxen tpm serve --state FILE``: checked before serving, saved atomically after every
change, so a SIGKILL loses nothing answered; a damaged file is named in one line."""

import os
import signal
import struct
import subprocess
import sys
import time

import pytest

from simxen.errors import InputError
from simxen.server.loopback import free_port_pair
from simxen.server.state_file import PersistingEngine, StateFile
from simxen.tpm import TpmEngine, client
from simxen.tpm.constants import TPM_ALG, TPM_RH

from raw_clients import MssimClient
from tpm_helpers import ecc_storage_template, make_engine

NV = 0x01500020


def nv_define_command(index, size=8):
    public = struct.pack(">IHIHH", index, TPM_ALG.SHA256, 0x00060006, 0, size)
    return client.build_command(0x12A, (TPM_RH.OWNER,),
                                struct.pack(">H", 0) + struct.pack(">H", len(public)) + public,
                                [client.password_auth(b"")])


def nv_read_public_command(index):
    return client.build_command(0x169, (index,))


def serve(state, port, *extra):
    return subprocess.Popen([sys.executable, "-m", "simxen.cli", "tpm", "serve", "--port",
                             str(port), "--state", str(state), "--quiet", *extra],
                            stderr=subprocess.PIPE, text=True)


def connect(port, proc):
    for _ in range(200):
        try:
            return MssimClient(port, power_on=True)
        except OSError:
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.05)
    raise AssertionError("server did not come up")


def run_serve(*args, timeout=20):
    return subprocess.run([sys.executable, "-m", "simxen.cli", "tpm", "serve", "--port",
                           str(free_port_pair()), *args], capture_output=True, text=True,
                          timeout=timeout)


def one_line_exit_2(proc, *words):
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def test_an_unwritable_location_is_refused_before_serving(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    one_line_exit_2(run_serve("--state", str(blocker / "tpm.state")), "--state", "does not exist")
    one_line_exit_2(run_serve("--state", str(tmp_path)), "--state", "is a folder")


@pytest.mark.parametrize("damage, words", [
    (lambda b: b[:len(b) // 2], ("truncated or corrupted",)),
    (lambda b: b[:40] + bytes([b[40] ^ 1]) + b[41:], ("truncated or corrupted", "checksum")),
    (lambda b: b"", ("empty",)),
    (lambda b: b[:5], ("truncated or corrupted",)),         # cut inside the magic
])
def test_a_damaged_state_file_is_named_as_such(tmp_path, damage, words):
    path = tmp_path / "tpm.state"
    path.write_bytes(damage(make_engine().save_state()))
    one_line_exit_2(run_serve("--state", str(path)), str(path), *words)


def test_another_programs_file_as_the_state_is_not_called_damaged_nor_to_be_removed(tmp_path):
    # was "TPM state file is truncated or corrupted (...); remove it to start a fresh TPM"
    # of a scenario given by mistake: advice to delete the user's file
    path = tmp_path / "boot-attest.toml"
    path.write_text('[scenario]\nname = "boot-attest"\n')
    proc = run_serve("--state", str(path))
    one_line_exit_2(proc, str(path), "--state: is not a TPM state file (it does not begin as "
                    "one); give --state a new file, or one simxen tpm serve saved")
    assert "remove" not in proc.stderr
    assert path.read_text() == '[scenario]\nname = "boot-attest"\n'


def test_only_commands_that_change_persistent_state_save(tmp_path):
    state = StateFile(str(tmp_path / "tpm.state"))
    backend = PersistingEngine(make_engine(), state)
    client.check(backend.execute(client.get_random_command(8)))
    client.check(backend.execute(client.pcr_extend_command(16, {TPM_ALG.SHA256: bytes(32)})))
    assert state.saves == 0
    client.check(backend.execute(nv_define_command(NV)))
    assert state.saves == 1
    restored = TpmEngine.from_state((tmp_path / "tpm.state").read_bytes())
    assert NV in restored.nv_indices
    assert os.listdir(tmp_path) == ["tpm.state"]            # no temporary file left behind


def test_a_failed_save_answers_nv_unavailable(tmp_path):
    state = StateFile(str(tmp_path / "gone" / "tpm.state"))
    errors = []
    backend = PersistingEngine(make_engine(), state, on_save_error=errors.append)
    rsp = backend.execute(nv_define_command(NV))
    assert client.response_code(rsp) == 0x923 and len(errors) == 1
    with pytest.raises(InputError):
        state.check_writable()


def test_sigkill_loses_nothing_that_was_answered(tmp_path):
    path = tmp_path / "tpm.state"
    port = free_port_pair()
    proc = serve(path, port, "--seed", "sigkill")
    try:
        c = connect(port, proc)
        client.check(c.execute(client.startup_command()))
        ek = c.execute(client.create_primary_command(TPM_RH.ENDORSEMENT, ecc_storage_template()))
        client.check(c.execute(nv_define_command(NV)))
    finally:
        proc.send_signal(signal.SIGKILL)                    # no chance to save on exit
        proc.wait(timeout=20)
    assert proc.returncode == -signal.SIGKILL
    port = free_port_pair()
    proc = serve(path, port)
    try:
        c = connect(port, proc)
        client.check(c.execute(client.startup_command()))
        client.check(c.execute(nv_read_public_command(NV)))         # the index survived
        again = c.execute(client.create_primary_command(TPM_RH.ENDORSEMENT,
                                                        ecc_storage_template()))
        assert again[14:] == ek[14:] and len(again) == len(ek)     # same seeds, same key
        c.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    assert proc.returncode == 128 + signal.SIGTERM          # stopped by SIGTERM: 143

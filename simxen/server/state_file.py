"""The TPM state file of ``simxen tpm serve --state FILE``: checked, loaded, saved atomically.

A TPM writes its NV memory before it answers the command that changed it,
so what a tool has seen answered survives a power cut. The server does the
same with its state file::

    state = StateFile("tpm.state")
    state.check_writable()             # before serving: an InputError naming the file
    engine = state.load(seed=None)     # the file's TPM, or a fresh one
    backend = PersistingEngine(engine, state)   # saves after every command that changed NV

:meth:`StateFile.save` replaces the file atomically: the blob goes to a
temporary file in the same folder, which is flushed to the disk
(``fsync``), renamed over ``FILE`` (``rename`` is atomic within one
filesystem: a reader sees the old file or the new one, never a mixture),
and then the folder itself is flushed so the rename survives a crash too.
A ``SIGKILL`` or power cut therefore loses at most the command in flight --
never one whose response was sent.

A state file that does not open (empty, cut short, changed by something
else, another program's file) is named as such in one line.
"""

from __future__ import annotations

import os
import tempfile

from simxen.errors import InputError
from simxen.tpm import StateError, TpmEngine
from simxen.tpm.state import MAGIC
from simxen.tpm.constants import TPM_RC
from simxen.tpm.engine import error_response

__all__ = ["StateFile", "PersistingEngine"]


class StateFile:
    """``FILE`` of ``--state FILE`` (see the module doc)."""

    def __init__(self, path: str):
        self.path = path
        self.folder = os.path.dirname(os.path.abspath(path))
        self.saves = 0

    def _error(self, message):
        return InputError(message, path=self.path, key="--state")

    def check_writable(self) -> None:
        """Raise :class:`InputError` unless a save can succeed: the folder exists,
        a file can be created in it, and ``FILE`` is not a folder."""
        if os.path.isdir(self.path):
            raise self._error("is a folder, expected a file for the TPM state")
        if not os.path.isdir(self.folder):
            raise self._error(f"folder {self.folder} does not exist")
        try:                                    # os.access says yes to root on read-only mounts
            fd, probe = tempfile.mkstemp(prefix=".simxen-probe-", dir=self.folder)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise self._error(f"cannot write in folder {self.folder}: {exc.strerror}") from None

    def load(self, seed=None) -> TpmEngine:
        """The engine saved in ``FILE``; a fresh one (from ``seed``) when there is no file."""
        if not os.path.exists(self.path):
            return TpmEngine(seed=seed.encode() if seed is not None else None, powered=True)
        try:
            with open(self.path, "rb") as f:
                blob = f.read()
        except OSError as exc:
            raise self._error(f"cannot read TPM state: {exc.strerror}") from None
        if not blob:
            raise self._error("TPM state file is empty (truncated to 0 bytes); remove it to "
                              "start a fresh TPM")
        if not blob.startswith(MAGIC[:len(blob)]):
            # another program's file (a scenario, a trace...): never "remove it"
            raise self._error("is not a TPM state file (it does not begin as one); give "
                              "--state a new file, or one simxen tpm serve saved")
        try:
            return TpmEngine.from_state(blob)
        except StateError as exc:
            raise self._error(f"TPM state file is truncated or corrupted ({len(blob)} bytes: "
                              f"{exc}); remove it to start a fresh TPM") from None

    def save(self, engine) -> None:
        """Write ``engine``'s state atomically (see the module doc); InputError on failure."""
        blob = engine.save_state()
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(prefix=".tpm-state-", dir=self.folder)
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            tmp = None
            dir_fd = os.open(self.folder, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise self._error(f"cannot write TPM state: {exc.strerror}") from None
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
        self.saves += 1


class PersistingEngine:
    """``execute(command, locality)`` on ``engine``, saving ``state`` after every
    command that changed the TPM's persistent state, before the response goes out.

    If the save fails, the command's response is replaced by
    ``TPM_RC_NV_UNAVAILABLE`` (what a TPM answers when its NV cannot be
    written) and ``on_save_error(InputError)`` is called; the engine's memory
    has moved on, so every later change tries to save again.
    """

    def __init__(self, engine, state: StateFile, on_save_error=None):
        self.engine = engine
        self.state = state
        self.on_save_error = on_save_error

    def execute(self, command: bytes, locality: int = 0) -> bytes:
        engine = self.engine
        response = engine.execute(command, locality)
        if engine.last_command_changed_nv:
            try:
                self.state.save(engine)
            except InputError as exc:
                if self.on_save_error is not None:
                    self.on_save_error(exc)
                return error_response(TPM_RC.NV_UNAVAILABLE)
        return response

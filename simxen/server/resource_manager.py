"""A resource manager in front of any TPM backend, like tpm2-abrmd.

tpm2-tools expect one: each tool leaves its primary key or loaded object in
TPM memory, and after a few tools a TPM with few slots answers
TPM_RC_OBJECT_MEMORY.  :class:`ResourceManager` watches the commands and
responses of each client *through the TPM protocol only* — it works over a
bare engine as over a simulated guest's whole tpmfront/tpmback path — and,
when the client goes away, flushes what it left loaded:

* a handle enters the client's set when a response creates it
  (CreatePrimary, Load, LoadExternal, CreateLoaded, ContextLoad,
  StartAuthSession, HMAC_Start, HashSequenceStart);
* it leaves the set on a successful FlushContext of it, when a session is
  used with continueSession clear, when a sequence completes
  (SequenceComplete, EventSequenceComplete), and when a session context is
  saved (a saved session belongs to whoever holds its context file);
* on :meth:`Client.close` every remaining handle gets a TPM2_FlushContext.

Handles are not virtualised: clients see the TPM's own handles, so clients
that run at the same time share the TPM's slots.  Commands of all clients
are serialised by one lock, as on a real TPM.

A ``log`` callback ``log(client, command, response, locality)`` sees every
exchange (the CLI prints name and response code; ``simxen serve`` adds
per-hop latencies).
"""

import itertools
import struct
import threading

from simxen.tpm.client import flush_context_command
from simxen.tpm.commands import COMMANDS
from simxen.tpm.constants import TPM_CC, TPM_HT, command_name, rc_name

_CREATES_HANDLE = {TPM_CC.CreatePrimary, TPM_CC.Load, TPM_CC.LoadExternal,
                   TPM_CC.CreateLoaded, TPM_CC.ContextLoad, TPM_CC.StartAuthSession,
                   TPM_CC.HMAC_Start, TPM_CC.HashSequenceStart}
_FLUSHABLE = {TPM_HT.TRANSIENT, TPM_HT.HMAC_SESSION, TPM_HT.POLICY_SESSION}
#: authorizationSize 9 followed by TPM_RS_PW: one password session, nothing to track
_RS_PW_ONLY = struct.pack(">I", 9) + struct.pack(">I", 0x40000009)


def handle_count(cc):
    """Number of handles in the handle area of command ``cc`` (Part 3)."""
    entry = COMMANDS.get(cc)
    return len(entry[1]) if entry is not None else 0


def describe(command, response):
    """``'TPM2_PCR_Extend -> TPM_RC_SUCCESS'`` for a log line."""
    cc = struct.unpack_from(">I", command, 6)[0] if len(command) >= 10 else None
    rc = struct.unpack_from(">I", response, 6)[0] if len(response) >= 10 else None
    name = command_name(cc) if cc is not None else "(short command)"
    return f"{name} -> {rc_name(rc) if rc is not None else '(short response)'}"


class Client:
    """One client of the resource manager (one tool run)."""

    def __init__(self, manager, ident):
        self.manager = manager
        self.ident = ident
        self.handles = set()
        self.closed = False

    def execute(self, command, locality=0):
        return self.manager.execute(self, command, locality)

    def close(self):
        """Flush every object and session this client left loaded."""
        if not self.closed:
            self.closed = True
            self.manager.release(self)


class ResourceManager:
    """Wraps ``backend`` (anything with ``execute(command, locality)``)."""

    def __init__(self, backend, log=None):
        self.backend = backend
        self.log = log
        self.lock = threading.RLock()
        self._ids = itertools.count(1)

    def open_client(self):
        return Client(self, next(self._ids))

    def execute(self, client, command, locality=0):
        with self.lock:
            response = self.backend.execute(command, locality)
            self._track(client, command, response)
        if self.log is not None:
            self.log(client, command, response, locality)
        return response

    def release(self, client):
        with self.lock:
            for handle in sorted(client.handles):
                command = flush_context_command(handle)
                response = self.backend.execute(command, 0)
                if self.log is not None:
                    self.log(client, command, response, 0)
            client.handles.clear()

    def _track(self, client, command, response):
        if len(command) < 10 or len(response) < 10:
            return
        tag, _, cc = struct.unpack_from(">HII", command, 0)
        if struct.unpack_from(">I", response, 6)[0] != 0:
            return
        n = handle_count(cc)
        if cc in _CREATES_HANDLE and len(response) >= 14:
            handle = struct.unpack_from(">I", response, 10)[0]
            if handle >> 24 in _FLUSHABLE:
                client.handles.add(handle)
        elif cc == TPM_CC.FlushContext and len(command) >= 14:
            client.handles.discard(struct.unpack_from(">I", command, 10)[0])
        elif cc == TPM_CC.SequenceComplete and len(command) >= 14:
            client.handles.discard(struct.unpack_from(">I", command, 10)[0])
        elif cc == TPM_CC.EventSequenceComplete and len(command) >= 18:
            client.handles.discard(struct.unpack_from(">I", command, 14)[0])
        elif cc == TPM_CC.ContextSave and len(command) >= 14:
            handle = struct.unpack_from(">I", command, 10)[0]
            if handle >> 24 in (TPM_HT.HMAC_SESSION, TPM_HT.POLICY_SESSION):
                client.handles.discard(handle)
        if tag == 0x8002 and command[10 + 4 * n:18 + 4 * n] != _RS_PW_ONLY:
            for handle, attrs in _sessions_of(command, n):
                if not attrs & 1:
                    client.handles.discard(handle)


def _sessions_of(command, n_handles):
    """``(sessionHandle, attributes)`` of each entry of the auth area."""
    pos = 10 + 4 * n_handles
    try:
        size = struct.unpack_from(">I", command, pos)[0]
        pos += 4
        end = pos + size
        out = []
        while pos < end:
            handle = struct.unpack_from(">I", command, pos)[0]
            nonce = struct.unpack_from(">H", command, pos + 4)[0]
            pos += 6 + nonce
            attrs = command[pos]
            hmac_size = struct.unpack_from(">H", command, pos + 1)[0]
            pos += 3 + hmac_size
            out.append((handle, attrs))
        return out
    except (struct.error, IndexError):
        return []


def as_manager(backend_or_manager, log=None):
    """A :class:`ResourceManager` for ``backend_or_manager``: itself if it
    already is one (anything with ``open_client``), else a new manager
    wrapping the backend."""
    if hasattr(backend_or_manager, "open_client"):
        return backend_or_manager
    return ResourceManager(backend_or_manager, log=log)

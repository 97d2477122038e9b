"""A resource manager in front of any TPM backend, like tpm2-abrmd.

tpm2-tools expect one. Each tool leaves its primary key or loaded object in
TPM memory, and a TPM has few slots (:data:`simxen.tpm.limits.MAX_TRANSIENT_OBJECTS`);
several tools at once would also see, use and flush each other's objects.
:class:`ResourceManager` gives every client (one tool run: one mssim
connection) a TPM of its own, *through the TPM protocol only* -- it works
over a bare engine as over a simulated guest's whole tpmfront/tpmback path
-- the way tpm2-abrmd does (``src/resource-manager.c``):

* **Virtual transient handles.** A client never sees a TPM handle of a
  transient object: a response that creates one (CreatePrimary, Load,
  LoadExternal, CreateLoaded, ContextLoad, HMAC_Start, HashSequenceStart)
  gets the lowest free handle ``0x80000000 + n`` of *that client's* map, and
  the handles of each command (its handle area, and FlushContext's
  parameter) are translated back. A handle the client does not hold is
  answered as the TPM answers an unloaded one (``TPM_RC_REFERENCE_H0`` +
  its index), so clients cannot reach each other's objects.
* **Swapping.** When the TPM answers ``TPM_RC_OBJECT_MEMORY`` or
  ``TPM_RC_SESSION_MEMORY`` -- to a client's command or to a context the
  manager loads -- the least recently used object (saved with
  TPM2_ContextSave, then flushed) or session (saved) that the command does
  not need is swapped out, and the command is sent again (a refused command
  changed nothing in the TPM). Before a command, the swapped-out objects and
  sessions it names are loaded again (TPM2_ContextLoad). So eight tools each
  with a primary key, a key and a session fit a TPM with eight slots, and
  one tool alone costs no swap at all. (tpm2-abrmd swaps everything out after
  every command; swapping on demand gives clients the same view with fewer
  commands -- each of which, through ``simxen serve``, crosses the whole
  simulated stack.)
* **Sessions** keep their TPM handles (a session's handle survives
  ContextSave/ContextLoad) but belong to the client that started or loaded
  them; a session of another client is ``TPM_RC_REFERENCE_H0`` + index in a
  handle area and ``TPM_RC_REFERENCE_S0`` + index in an authorization area.
  A session the client itself saves (its context now in the tool's file)
  stops being the client's, and stays in the TPM for whoever loads it next.
* **GetCapability(TPM_CAP_HANDLES)** lists the client's own transient
  handles (virtual) and sessions only.
* When the client goes away (:meth:`Client.close`), its loaded objects and
  its sessions are flushed and its saved contexts forgotten.

Commands of all clients are serialised by one lock (a TPM runs one command
at a time). A ``log`` callback ``log(client, command, response, locality)``
sees every exchange of a client, as the client sent and received it (the
CLI prints name and response code; ``simxen serve`` adds per-hop
latencies); the manager's own ContextSave/Load/Flush are not logged there
(``simxen serve --hops`` still shows them: they cross the simulated path).

The swtpm protocol has no connections per client (a connection per
command), so over it all commands belong to one client at a time.
"""

import itertools
import struct
import threading
from collections import OrderedDict

from simxen.tpm import header
from simxen.tpm.client import flush_context_command
from simxen.tpm.commands import COMMANDS
from simxen.tpm.constants import (TPM_CAP, TPM_CC, TPM_HT, TPM_RC, TPM_RH, TPM_ST, command_name,
                                  rc_format1, rc_name)
from simxen.tpm.engine import error_response

_CREATES_HANDLE = {TPM_CC.CreatePrimary, TPM_CC.Load, TPM_CC.LoadExternal,
                   TPM_CC.CreateLoaded, TPM_CC.ContextLoad, TPM_CC.StartAuthSession,
                   TPM_CC.HMAC_Start, TPM_CC.HashSequenceStart}
_SESSION_TYPES = (TPM_HT.HMAC_SESSION, TPM_HT.POLICY_SESSION)
_TRANSIENT = TPM_HT.TRANSIENT
_TPM_RS_PW = TPM_RH.PW
_TPM_CAP_HANDLES = TPM_CAP.HANDLES
_U32 = struct.Struct(">I")
_SUCCESS = header.pack(TPM_ST.NO_SESSIONS, TPM_RC.SUCCESS)
#: FlushContext of a handle that is not there: TPM_RC_HANDLE on parameter 1
_HANDLE_P1 = rc_format1(TPM_RC.HANDLE, param=1)


def handle_count(cc):
    """Number of handles in the handle area of command ``cc`` (Part 3)."""
    entry = COMMANDS.get(cc)
    return len(entry[1]) if entry is not None else 0


def describe(command, response):
    """``'TPM2_PCR_Extend -> TPM_RC_SUCCESS'`` for a log line."""
    cc = header.code(command)
    rc = header.code(response)
    name = command_name(cc) if cc is not None else "(short command)"
    return f"{name} -> {rc_name(rc) if rc is not None else '(short response)'}"


_rc = header.code


class _Object:
    """One of a client's transient objects: loaded at ``handle``, or saved as ``context``."""

    __slots__ = ("handle", "context")

    def __init__(self, handle):
        self.handle = handle            # the TPM's handle while loaded, else None
        self.context = None             # TPMS_CONTEXT bytes while swapped out


class Client:
    """One client of the resource manager (one tool run)."""

    def __init__(self, manager, ident):
        self.manager = manager
        self.ident = ident
        self.objects = {}               # virtual handle -> _Object
        self.sessions = {}              # session handle -> saved TPMS_CONTEXT, or None if loaded
        self.closed = False

    @property
    def handles(self):
        """The virtual transient handles and the session handles this client holds."""
        return set(self.objects) | set(self.sessions)

    def execute(self, command, locality=0):
        return self.manager.execute(self, command, locality)

    def close(self):
        """Flush every object and session this client left loaded."""
        if not self.closed:
            self.closed = True
            self.manager.release(self)

    def new_virtual(self):
        """The lowest virtual transient handle this client does not use."""
        handle = 0x80000000
        while handle in self.objects:
            handle += 1
        return handle


class ResourceManager:
    """Wraps ``backend`` (anything with ``execute(command, locality)``); see the module doc."""

    def __init__(self, backend, log=None):
        self.backend = backend
        self.log = log
        self.lock = threading.RLock()
        self._ids = itertools.count(1)
        self.swaps = 0                  #: ContextSave/ContextLoad the manager sent itself
        # what is loaded in the TPM on clients' behalf, least recently used first:
        # ("o", client ident, virtual handle) or ("s", session handle) -> (client, id)
        self._lru = OrderedDict()

    def open_client(self):
        return Client(self, next(self._ids))

    def execute(self, client, command, locality=0):
        command = bytes(command)
        with self.lock:
            response = self._execute(client, command, locality)
        if self.log is not None:
            self.log(client, command, response, locality)
        return response

    def release(self, client):
        with self.lock:
            for virtual, obj in client.objects.items():
                if obj.handle is not None:
                    self._tpm(flush_context_command(obj.handle))
                self._lru.pop(("o", client.ident, virtual), None)
            for handle in sorted(client.sessions):
                self._tpm(flush_context_command(handle))
                self._lru.pop(("s", handle), None)
            client.objects.clear()
            client.sessions.clear()

    # -- one command -----------------------------------------------------------

    def _tpm(self, command, locality=0):
        return self.backend.execute(command, locality)

    def _execute(self, client, command, locality):
        if len(command) < header.HEADER_SIZE:
            return self._tpm(command, locality)          # the TPM's own size error
        tag, _, cc = header.unpack(command)
        if cc == TPM_CC.FlushContext:
            return self._flush(client, command, locality)
        if cc == TPM_CC.GetCapability:
            mine = self._get_capability(client, command)
            if mine is not None:
                return mine
        pinned = set()
        translated, refusal = self._translate(client, command, tag, cc, pinned)
        if refusal is not None:
            return error_response(refusal)
        response = self._send(translated, pinned, locality)
        if _rc(response) == 0:
            response = self._after(client, command, translated, response, tag, cc)
        return response

    def _send(self, command, pinned, locality=0):
        """Send ``command``; on OBJECT_MEMORY/SESSION_MEMORY swap out the least
        recently used entry not in ``pinned`` and send it again."""
        while True:
            response = self._tpm(command, locality)
            rc = _rc(response)
            if rc not in (TPM_RC.OBJECT_MEMORY, TPM_RC.SESSION_MEMORY) \
                    or not self._evict("o" if rc == TPM_RC.OBJECT_MEMORY else "s", pinned):
                return response

    def _translate(self, client, command, tag, cc, pinned):
        """``(command with TPM handles, None)`` or ``(None, rc)`` for a handle the
        client does not hold; loads what the command names (and pins it)."""
        n = handle_count(cc)
        out = None
        for i in range(n):
            pos = 10 + 4 * i
            if pos + 4 > len(command):
                break                                   # the TPM will say INSUFFICIENT
            handle = _U32.unpack_from(command, pos)[0]
            ht = handle >> 24
            if ht == _TRANSIENT:
                obj = client.objects.get(handle)
                physical = self._load_object(client, handle, obj, pinned) \
                    if obj is not None else None
                if physical is None:
                    return None, TPM_RC.REFERENCE_H0 + i
                if out is None:
                    out = bytearray(command)
                _U32.pack_into(out, pos, physical)
            elif ht in _SESSION_TYPES:
                if handle not in client.sessions or \
                        not self._load_session(client, handle, pinned):
                    return None, TPM_RC.REFERENCE_H0 + i
        if tag == TPM_ST.SESSIONS:
            for j, (handle, _) in enumerate(_sessions_of(command, n)):
                if handle == _TPM_RS_PW:
                    continue
                if handle not in client.sessions or \
                        not self._load_session(client, handle, pinned):
                    return None, TPM_RC.REFERENCE_S0 + j
        return (bytes(out) if out is not None else command), None

    def _after(self, client, command, translated, response, tag, cc):
        """Book-keeping of a successful command; the response with virtual handles."""
        n = handle_count(cc)
        lru = self._lru
        if cc in _CREATES_HANDLE and len(response) >= 14:
            handle = _U32.unpack_from(response, 10)[0]
            if handle >> 24 == _TRANSIENT:
                virtual = client.new_virtual()
                client.objects[virtual] = _Object(handle)
                lru[("o", client.ident, virtual)] = (client, virtual)
                response = response[:10] + _U32.pack(virtual) + response[14:]
            elif handle >> 24 in _SESSION_TYPES:
                client.sessions[handle] = None          # loaded, this client's
                lru[("s", handle)] = (client, handle)
        elif cc in (TPM_CC.SequenceComplete, TPM_CC.EventSequenceComplete):
            # the sequence object is gone from the TPM
            at = 10 if cc == TPM_CC.SequenceComplete else 14
            if len(command) >= at + 4:
                virtual = _U32.unpack_from(command, at)[0]
                client.objects.pop(virtual, None)
                lru.pop(("o", client.ident, virtual), None)
        elif cc == TPM_CC.ContextSave and len(command) >= 14:
            handle = _U32.unpack_from(command, 10)[0]
            if handle >> 24 in _SESSION_TYPES:
                client.sessions.pop(handle, None)       # its context is the client's now
                lru.pop(("s", handle), None)
        if tag == TPM_ST.SESSIONS:
            for handle, attrs in _sessions_of(translated, n):
                if handle != _TPM_RS_PW and not attrs & 1:   # continueSession clear
                    client.sessions.pop(handle, None)
                    lru.pop(("s", handle), None)
        return response

    def _flush(self, client, command, locality):
        """FlushContext of a virtual object (loaded or not) or of the client's session."""
        if len(command) != 14:
            return self._tpm(command, locality)
        handle = _U32.unpack_from(command, 10)[0]
        ht = handle >> 24
        if ht == _TRANSIENT:
            obj = client.objects.pop(handle, None)
            if obj is None:
                return error_response(_HANDLE_P1)
            self._lru.pop(("o", client.ident, handle), None)
            if obj.handle is None:
                return _SUCCESS                        # only a saved context: forget it
            return self._tpm(flush_context_command(obj.handle), locality)
        if ht in _SESSION_TYPES:
            if handle not in client.sessions:
                return error_response(_HANDLE_P1)
            del client.sessions[handle]
            self._lru.pop(("s", handle), None)
        return self._tpm(command, locality)

    def _get_capability(self, client, command):
        """GetCapability(HANDLES) of transient objects or sessions, for this client only."""
        if len(command) != 22:
            return None
        cap, prop, count = struct.unpack_from(">III", command, 10)
        if cap != _TPM_CAP_HANDLES or prop >> 24 not in (_TRANSIENT,) + _SESSION_TYPES:
            return None
        if prop >> 24 == _TRANSIENT:
            mine = sorted(h for h in client.objects if h >= prop)
        else:
            ht = prop >> 24
            mine = sorted(h for h in client.sessions if h >> 24 == ht and h >= prop)
        listed = mine[:count]
        body = (bytes((1 if len(mine) > len(listed) else 0,)) + _U32.pack(_TPM_CAP_HANDLES)
                + _U32.pack(len(listed)) + b"".join(_U32.pack(h) for h in listed))
        return header.pack(TPM_ST.NO_SESSIONS, TPM_RC.SUCCESS, body)

    # -- swapping ---------------------------------------------------------------

    def _load_object(self, client, virtual, obj, pinned):
        """The TPM handle of ``obj``, loading its context if it is swapped out; pinned."""
        key = ("o", client.ident, virtual)
        if obj.handle is None:
            rsp = self._send(_context_load_command(obj.context), pinned)
            self.swaps += 1
            if _rc(rsp) != 0 or len(rsp) < 14:
                return None
            obj.handle, obj.context = _U32.unpack_from(rsp, 10)[0], None
        self._lru[key] = (client, virtual)
        self._lru.move_to_end(key)
        pinned.add(key)
        return obj.handle

    def _load_session(self, client, handle, pinned):
        """Make the client's session ``handle`` loaded (pinned); False if it cannot be."""
        key = ("s", handle)
        context = client.sessions[handle]
        if context is not None:
            rsp = self._send(_context_load_command(context), pinned)
            self.swaps += 1
            if _rc(rsp) != 0:
                del client.sessions[handle]             # no longer loadable
                return False
            client.sessions[handle] = None
            self._lru[key] = (client, handle)
        elif key in self._lru:
            self._lru.move_to_end(key)
        pinned.add(key)
        return True

    def _evict(self, kind, pinned):
        """Swap out the least recently used loaded object (``kind`` "o") or session
        ("s") not in ``pinned``; False when there is none."""
        for key, (client, ident) in list(self._lru.items()):
            if key[0] != kind or key in pinned:
                continue
            del self._lru[key]
            if kind == "o":
                obj = client.objects[ident]
                rsp = self._tpm(_context_save_command(obj.handle))
                self.swaps += 1
                if _rc(rsp) != 0:                       # (the TPM may refuse)
                    continue
                self._tpm(flush_context_command(obj.handle))
                obj.handle, obj.context = None, rsp[10:]
            else:
                rsp = self._tpm(_context_save_command(ident))
                self.swaps += 1
                if _rc(rsp) != 0:
                    client.sessions.pop(ident, None)    # the TPM no longer has it
                    continue
                client.sessions[ident] = rsp[10:]
            return True
        return False


def _context_save_command(handle):
    return header.pack(TPM_ST.NO_SESSIONS, TPM_CC.ContextSave, _U32.pack(handle))


def _context_load_command(context):
    return header.pack(TPM_ST.NO_SESSIONS, TPM_CC.ContextLoad, context)


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

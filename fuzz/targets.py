"""The fuzz targets: one byte string in, invariants checked, counters kept.

A target is a class with ``name``, ``seeds()`` (well-formed inputs to start
mutating from), ``one(data)`` (run one input; raise :class:`Finding` when an
invariant breaks; any other exception escaping is a crash) and ``counts`` (a
dict of what it did, printed at the end of a run and recorded in
``docs/fuzzing.rst``). Targets are deterministic: the same input does the
same thing, so a saved finding reproduces with ``python -m fuzz.run TARGET
--replay FILE``.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import os
import struct
import tempfile

__all__ = ["Finding", "TARGETS", "target"]


class Finding(AssertionError):
    """An invariant of the target does not hold for this input."""


class _Bytes:
    """Consume an input byte string field by field (zeros once it runs out)."""

    __slots__ = ("data", "pos")

    def __init__(self, data):
        self.data = data
        self.pos = 0

    def __bool__(self):
        return self.pos < len(self.data)

    def take(self, n):
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u8(self):
        b = self.take(1)
        return b[0] if b else 0

    def u16(self):
        return int.from_bytes(self.take(2).ljust(2, b"\0"), "big")


class _DetRandom:
    """``random_bytes(n)``: SHAKE-256 of a seed and a counter (reproducible runs)."""

    def __init__(self, seed):
        self.seed = seed
        self.counter = 0

    def __call__(self, n):
        self.counter += 1
        return hashlib.shake_256(self.seed + self.counter.to_bytes(8, "big")).digest(n)


def loaded_or_refused(counts, error, load, *args):
    """What ``load(*args)`` reads from a file a user hands over, counted as ``loaded``;
    or ``None``, counted as ``refused``, when it raises ``error`` -- whose message must be
    one line (the user's whole error), else a :class:`Finding`."""
    try:
        value = load(*args)
    except error as exc:
        counts["refused"] += 1
        if "\n" in str(exc).strip():
            raise Finding(f"multi-line error: {str(exc)[:200]!r}")
        return None
    counts["loaded"] += 1
    return value


def well_formed_response(rsp, where="response"):
    """The response code of a TPM 2.0 response; :class:`Finding` unless it is well formed:
    at least 10 bytes, ``responseSize`` equal to its length, tag ST_NO_SESSIONS or
    ST_SESSIONS, and a failure is exactly the 10-byte ST_NO_SESSIONS header."""
    if not isinstance(rsp, (bytes, bytearray)) or len(rsp) < 10:
        raise Finding(f"{where}: {len(rsp) if rsp is not None else None}-byte response")
    tag, size, rc = struct.unpack_from(">HII", rsp, 0)
    if size != len(rsp) or tag not in (0x8001, 0x8002):
        raise Finding(f"{where}: header tag {tag:#x} size {size} for {len(rsp)} bytes")
    if rc and (len(rsp) != 10 or tag != 0x8001):
        raise Finding(f"{where}: failure rc {rc:#x} with a {len(rsp)}-byte body")
    return rc


# --------------------------------------------------------------------------- engine

class EngineTarget:
    """Commands through :meth:`simxen.tpm.TpmEngine.execute` (see the package doc).

    Each input runs on a copy of one baseline engine -- started, with an ECC
    storage primary at ``0x80000000``, an HMAC session at ``0x02000000`` and
    an NV index at ``0x01500000`` -- so there is something to use, flush and
    break (a fresh copy every :attr:`RESET_EVERY` inputs; ``--replay`` runs an
    input on a fresh copy). The input is read as up to 16 commands, each chosen by one byte:
    raw bytes, a header with a real command code and a random body, or one of
    the well-formed commands with a few bytes changed, cut or extended.
    """

    name = "engine"
    MAX_COMMANDS = 16
    #: inputs that run on one copy of the baseline before a fresh copy (a copy costs
    #: about as much as 40 commands; sharing also lets one input build on another's state)
    RESET_EVERY = 16

    def __init__(self):
        from simxen.tpm import TpmEngine, client
        from simxen.tpm.commands import COMMANDS
        from simxen.tpm.constants import TPM_ALG, TPM_ECC, TPM_RC, TPM_RH, TPM_SE
        from simxen.tpm.public import Public

        self.client = client
        self.codes = sorted(COMMANDS)
        self.auth_fail = TPM_RC.AUTH_FAIL
        self.failure = TPM_RC.FAILURE
        engine = TpmEngine(seed=b"simxen fuzz", random_bytes=_DetRandom(b"fuzz"),
                           clock=lambda: 1000.0, powered=True)
        srk = Public(TPM_ALG.ECC, TPM_ALG.SHA256, 0x00030072,
                     symmetric=(TPM_ALG.AES, 128, TPM_ALG.CFB), curve=TPM_ECC.NIST_P256,
                     unique=(b"", b""))
        signing = Public(TPM_ALG.ECC, TPM_ALG.SHA256, 0x00040072,
                         scheme=(TPM_ALG.ECDSA, TPM_ALG.SHA256), curve=TPM_ECC.NIST_P256,
                         unique=(b"", b""))
        nv_public = (struct.pack(">IHI", 0x01500000, TPM_ALG.SHA256, 0x00060006)
                     + struct.pack(">H", 0) + struct.pack(">H", 32))
        nv_define = client.build_command(
            0x12A, (TPM_RH.OWNER,), struct.pack(">H", 0) + struct.pack(">H", len(nv_public))
            + nv_public, [client.password_auth(b"")])
        setup = [client.startup_command(),
                 client.create_primary_command(TPM_RH.OWNER, srk),
                 client.start_auth_session_command(b"\x11" * 32, TPM_SE.HMAC),
                 nv_define]
        for cmd in setup:
            client.check(engine.execute(cmd))
        self.baseline = engine
        self.tpm = None
        #: well-formed commands the inputs start from (and mutate)
        self.templates = setup + [
            client.pcr_extend_command(16, {TPM_ALG.SHA256: bytes(32)}),
            client.pcr_read_command({TPM_ALG.SHA256: [0, 1, 16]}),
            client.get_capability_command(1, 0x80000000, 16),
            client.get_capability_command(6, 0x100, 64),
            client.get_random_command(16),
            client.read_public_command(0x80000000),
            client.create_command(0x80000000, signing),
            client.flush_context_command(0x80000000),
            client.flush_context_command(0x02000000),
            client.pcr_event_command(16, b"event"),
            client.pcr_reset_command(16),
            client.shutdown_command(),
            client.build_command(0x162, params=struct.pack(">I", 0x80000000)),   # ContextSave
            client.build_command(0x14E, (0x01500000,)),                          # NV_ReadPublic
        ]
        self.counts = {"inputs": 0, "commands": 0, "refused": 0, "refused_state_checked": 0,
                       "refused_da_counted": 0, "succeeded": 0}

    def seeds(self):
        out = []
        for i in range(len(self.templates)):
            out.append(bytes([2 + 4 * 0, i, 0]))               # template i unchanged
        # and one input of MAX_COMMANDS templates in a row, so mutants run many commands each
        chain = b"".join(bytes([2, i % len(self.templates), 0]) for i in range(self.MAX_COMMANDS))
        return out + [b"\x00\x0a" + self.templates[4], b"\x01\x00\x10\x08" + bytes(8), chain]

    def commands(self, data):
        """The ``(command, locality)`` list an input stands for."""
        r = _Bytes(data)
        out = []
        while r and len(out) < self.MAX_COMMANDS:
            op = r.u8()
            kind, loc = op & 3, (op >> 2) & 7
            locality = loc if loc <= 4 else 0
            if kind == 0:                                   # raw bytes
                cmd = r.take(r.u8())
            elif kind == 1:                                 # a real code, a random body
                cc = self.codes[r.u16() % len(self.codes)]
                body = r.take(r.u8())
                tag = 0x8002 if op & 0x80 else 0x8001
                cmd = struct.pack(">HII", tag, 10 + len(body), cc) + body
            else:                                           # a template, changed
                cmd = bytearray(self.templates[r.u8() % len(self.templates)])
                for _ in range(r.u8() % 4 if kind == 2 else 0):
                    pos = r.u16() % len(cmd)
                    cmd[pos] = r.u8()
                if kind == 3:
                    cut = r.u8()
                    cmd = cmd[:max(0, len(cmd) - cut)] if cut < 128 else cmd + r.take(cut - 127)
                cmd = bytes(cmd)
            out.append((cmd, locality))
        return out

    @staticmethod
    def snapshot(tpm):
        """What a refused command must not change: the persistent blob, the
        loaded handles, the PCRs, the started flag."""
        return (tpm.save_state(), tuple(sorted(tpm.objects)), tuple(sorted(tpm.sessions)),
                {alg: tuple(v) for alg, v in tpm.pcrs.banks.items()}, tpm.started)

    def one(self, data):
        self.counts["inputs"] += 1
        if self.tpm is None or self.counts["inputs"] % self.RESET_EVERY == 0:
            self.tpm = copy.deepcopy(self.baseline)
        tpm = self.tpm
        counts = self.counts
        for cmd, locality in self.commands(data):
            before = self.snapshot(tpm)
            before_da = tpm.da_failed_tries
            rsp = tpm.execute(cmd, locality)
            counts["commands"] += 1
            rc = well_formed_response(rsp, f"command {cmd[:16].hex()}")
            if rc == self.failure and tpm.last_internal_error is not None:
                raise Finding(f"internal error behind TPM_RC_FAILURE for {cmd.hex()}: "
                              f"{tpm.last_internal_error!r}")
            if not rc:
                counts["succeeded"] += 1
                continue
            counts["refused"] += 1
            if rc & 0xBF == self.auth_fail and tpm.da_failed_tries != before_da:
                counts["refused_da_counted"] += 1           # dictionary-attack counting
                continue
            after = self.snapshot(tpm)
            if after != before:
                what = [n for n, a, b in zip(("persistent state", "objects", "sessions", "PCRs",
                                              "started"), before, after) if a != b]
                raise Finding(f"refused command (rc {rc:#x}) changed {', '.join(what)}: "
                              f"{cmd.hex()} at locality {locality}")
            counts["refused_state_checked"] += 1


# --------------------------------------------------------------------------- framing

class _FakeSocket:
    """A socket that delivers ``data`` in chunks of at most ``chunk`` bytes, then EOF."""

    def __init__(self, data, chunk):
        self.data = data
        self.pos = 0
        self.chunk = max(1, chunk)
        self.sent = []

    def recv(self, n):
        out = self.data[self.pos:self.pos + min(n, self.chunk)]
        self.pos += len(out)
        return out

    def sendall(self, data):
        self.sent.append(bytes(data))

    def setsockopt(self, *args):
        pass


class _RecordingBackend:
    """An engine behind the resource manager that checks every response it gives."""

    def __init__(self, engine, counts):
        self.engine = engine
        self.counts = counts

    def execute(self, command, locality=0):
        rsp = self.engine.execute(command, locality)
        self.counts["commands"] += 1
        well_formed_response(rsp, f"framed command {bytes(command[:16]).hex()}")
        return rsp


class FramingTarget:
    """Bytes on the mssim command port or the swtpm data port (first input byte picks
    which, and how the stream is cut into ``recv`` chunks).

    The servers' connection handlers run on an in-memory socket, so one input
    is one connection, synchronously. Invariants: the handler ends without an
    exception, every response the TPM gives is well formed, every response
    the server frames carries its own length, and once the connection ends
    the client's loaded handles have been flushed.
    """

    name = "framing"

    def __init__(self):
        from simxen.server.loopback import ConnectionClosed
        from simxen.server.mssim import MssimServer
        from simxen.server.resource_manager import ResourceManager
        from simxen.server.swtpm import SwtpmServer
        from simxen.tpm import TpmEngine, client

        self.client = client
        self.ConnectionClosed = ConnectionClosed
        self.counts = {"inputs": 0, "connections_mssim": 0, "connections_swtpm": 0,
                       "commands": 0}
        engine = TpmEngine(seed=b"simxen fuzz", random_bytes=_DetRandom(b"framing"),
                           clock=lambda: 1000.0, powered=True)
        client.check(engine.execute(client.startup_command()))
        self.engine = engine
        self.manager = ResourceManager(_RecordingBackend(engine, self.counts))
        self.mssim = MssimServer(self.manager, platform=engine, listen=False)
        self.swtpm = SwtpmServer(self.manager, platform=engine, listen=False)

    def seeds(self):
        getrand = self.client.get_random_command(8)
        send = struct.pack(">IBI", 8, 0, len(getrand)) + getrand
        return [b"\x00" + send + struct.pack(">I", 20),
                b"\x01" + getrand,
                b"\x00" + struct.pack(">IBI", 8, 0, 0) + struct.pack(">I", 15) + bytes(4),
                b"\x01" + struct.pack(">HI", 0x8001, 5000) + bytes(20)]

    def one(self, data):
        self.counts["inputs"] += 1
        if not data:
            return
        mode, body = data[0], data[1:]
        sock = _FakeSocket(body, 1 + (mode >> 1) * 7)
        if mode & 1 == 0:
            self.counts["connections_mssim"] += 1
            try:
                self.mssim.serve_commands(sock)
            except self.ConnectionClosed:       # a frame cut by EOF: how the loop ends
                pass
            self._check_mssim(sock.sent)
        else:
            self.counts["connections_swtpm"] += 1
            try:
                self.swtpm.serve_data(sock)
            except self.ConnectionClosed:
                pass
            self.swtpm.new_client()
            for rsp in sock.sent:
                well_formed_response(rsp, "swtpm response")
        if self.engine.objects or any(s.saved_sequence is None
                                      for s in self.engine.sessions.values()):
            raise Finding(f"handles left loaded after the client ended: "
                          f"{sorted(self.engine.objects)} {sorted(self.engine.sessions)}")

    @staticmethod
    def _check_mssim(sent):
        """The mssim replies: ``size | response | 0`` triples and 12-byte handshake answers."""
        i = 0
        while i < len(sent):
            part = sent[i]
            if len(part) == 12:                              # REMOTE_HANDSHAKE answer
                i += 1
                continue
            if len(part) != 4 or i + 2 >= len(sent):
                raise Finding(f"mssim reply part of {len(part)} bytes where a size was due")
            (size,) = struct.unpack(">I", part)
            rsp = sent[i + 1]
            if size != len(rsp) or sent[i + 2] != b"\0\0\0\0":
                raise Finding(f"mssim framed a {len(rsp)}-byte response with size {size}")
            well_formed_response(rsp, "mssim response")
            i += 3


# --------------------------------------------------------------------------- tpmif

class TpmifTarget:
    """A hostile guest's shared page, read by a vTPM's tpmback (see the package doc).

    One guest's Linux tpmfront connects to a backend whose server runs a TPM
    engine. Each input is one malicious page state: the header (``length``,
    ``state``, ``locality``, ``pad``, ``nr_extra_pages``), the extra-page
    grant references and the payload are stored with plain writes, as a
    hostile kernel would, the event channel is (or is not) notified, and the
    simulation runs 50 ms. Then the guest starts over as an honest kernel
    (state IDLE) and sends TPM2_GetRandom through its driver. Invariants: no
    simulated process fails; whatever the backend wrote back fits the pages
    and is a well-formed TPM response; the honest command is answered.
    """

    name = "tpmif"

    def __init__(self):
        from simxen.drivers.tpmback import TpmBack
        from simxen.drivers.tpmfront import TpmFront
        from simxen.drivers.xenbus import add_device
        from simxen.protocols import tpmif
        from simxen.tpm import TpmEngine, client
        from simxen.xen import Hypervisor

        self.tpmif, self.client = tpmif, client
        self.counts = {"inputs": 0, "states": 0, "notified": 0, "answered": 0, "rejected": 0,
                       "honest_commands_answered": 0}
        hv = self.hv = Hypervisor(seed=1)
        self.env = hv.env
        vtpm = hv.domain_create("vtpm")
        guest = hv.domain_create("guest1")
        add_device(hv, hv.dom0, guest.domid, vtpm.domid, "vtpm",
                   back_extra={"uuid": "00000000-0000-4000-8000-000000000001"})
        self.back = TpmBack(hv, vtpm)
        self.back.start()
        engine = TpmEngine(seed=b"simxen fuzz", random_bytes=_DetRandom(b"tpmif"),
                           clock=lambda: 1000.0, powered=True)
        client.check(engine.execute(client.startup_command()))

        def server():
            while True:
                req = yield from self.back.next_request()
                vtpm.charge("tpm.vtpm.default")
                self.back.respond(req, engine.execute(req.command, req.locality))

        self.env.process(server())
        self.front = TpmFront(hv, guest)
        self._run(self.front.connect())
        self.guest = guest
        self.getrand = client.get_random_command(8)

    def _run(self, gen):
        proc = self.env.process(gen)
        self.env.run(until=proc)
        return proc.value

    def seeds(self):
        cmd = self.getrand
        head = struct.pack("<IBBBB", len(cmd), 1, 0, 0, 0)
        return [b"\x01" + head + cmd,
                b"\x01" + struct.pack("<IBBBB", 5000, 1, 0, 0, 0) + cmd,
                b"\x01" + struct.pack("<IBBBB", len(cmd), 1, 0, 0, 2) + bytes(8) + cmd,
                b"\x01" + struct.pack("<IBBBB", len(cmd), 3, 0, 0, 0) + cmd,
                b"\x01" + struct.pack("<IBBBB", 0, 1, 9, 0, 0)]

    def one(self, data):
        tpmif = self.tpmif
        self.counts["inputs"] += 1
        if not data:
            return
        flags, rest = data[0], data[1:1 + tpmif.XEN_PAGE_SIZE]
        page = self.front.page.data
        page[:len(rest)] = rest                 # plain stores into the guest's own page
        self.counts["states"] += 1
        if flags & 1:
            self.counts["notified"] += 1
            self.hv.evtchn.send(self.guest, self.front.port)
        back = self.back
        rejected, responses = back.rejected, back.responses
        self.env.run(until=self.env.now + 0.05)
        length, state, _, _, nr_extra = struct.unpack_from("<IBBBB", page, 0)
        if back.rejected != rejected:
            self.counts["rejected"] += 1
        if back.rejected + back.responses != rejected + responses:
            self.counts["answered"] += 1
            if state != tpmif.TPMIF_STATE_FINISH:
                raise Finding(f"backend answered but left state {state}")
            capacity = tpmif.payload_capacity(nr_extra)
            if length > capacity:
                raise Finding(f"backend answered {length} bytes into a {capacity}-byte page set")
            if nr_extra == 0:
                at = tpmif.data_offset(0)
                well_formed_response(bytes(page[at:at + length]), "tpmback response")
        # the guest reboots its driver's view: an honest command must get through
        page[:tpmif.TPMIF_HEADER_SIZE] = bytes(tpmif.TPMIF_HEADER_SIZE)
        rsp = self._run(self.front.transmit(self.getrand))
        if well_formed_response(rsp, "honest GetRandom") != 0:
            raise Finding(f"honest command refused after a hostile page: {rsp.hex()}")
        self.counts["honest_commands_answered"] += 1


# --------------------------------------------------------------------------- xenstore

class XenStoreTarget:
    """XenStore operations by dom1 and dom2 (and a few by dom0) on a small set of paths.

    Invariants: every refusal is a :class:`~simxen.xen.errors.XenStoreError`;
    the dom0-only node ``/vm/secret`` (permissions ``n0``) keeps its value
    and no unprivileged read of it succeeds; every child a directory lists
    exists.
    """

    name = "xenstore"
    _NAMES = ("a", "b", "device", "vtpm", "0", "state", "@releaseDomain", "..", "x" * 70, "")
    _OPS = ("read", "write", "mkdir", "rm", "directory", "set_perms", "get_perms", "exists",
            "watch", "unwatch", "transaction_start", "transaction_end")

    def __init__(self):
        from simxen.xen import Hypervisor
        from simxen.xen.errors import XenStoreError

        self.Hypervisor = Hypervisor
        self.XenStoreError = XenStoreError
        self.counts = {"inputs": 0, "operations": 0, "refused": 0}

    def seeds(self):
        return [bytes([1, 1, 0x12, 3]), bytes([2, 2, 0x21, 1, 5, 0x30]), bytes([1, 10, 0, 11, 1])]

    def _path(self, r, domid):
        n = r.u8()
        parts = [self._NAMES[(n >> s) % len(self._NAMES)] for s in (0, 3, 5) if (n >> s) & 1 or s == 0]
        base = ("/vm", f"/local/domain/{domid}", "/local/domain/0", "")[n >> 6]
        return base + "/" + "/".join(parts) if base else "/".join(parts)

    def one(self, data):
        self.counts["inputs"] += 1
        hv = self.Hypervisor(seed=1)
        xs = hv.xs
        dom0 = hv.dom0
        doms = [dom0, hv.domain_create("d1"), hv.domain_create("d2")]
        xs.write(dom0, "/vm/secret", "s")
        xs.set_perms(dom0, "/vm/secret", ["n0"])
        txs = {}
        r = _Bytes(data)
        steps = 0
        while r and steps < 32:
            steps += 1
            op = self._OPS[r.u8() % len(self._OPS)]
            who = r.u8()
            caller = doms[1 + who % 2] if who < 0xF0 else dom0
            path = self._path(r, caller.domid)
            tx = txs.get(caller.domid) if who & 0x40 else None
            self.counts["operations"] += 1
            try:
                if op == "read":
                    value = xs.read(caller, path, tx)
                    if path == "/vm/secret" and caller is not dom0:
                        raise Finding(f"dom{caller.domid} read /vm/secret: {value!r}")
                elif op == "write":
                    xs.write(caller, path, r.take(r.u8() % 8).decode("latin-1"), tx)
                elif op == "mkdir":
                    xs.mkdir(caller, path, tx)
                elif op == "rm":
                    xs.rm(caller, path, tx)
                elif op == "directory":
                    xs.directory(caller, path, tx)
                elif op == "set_perms":
                    letters = "nrwbx"
                    perms = [f"{letters[r.u8() % 5]}{r.u8() % 4}" for _ in range(1 + r.u8() % 3)]
                    xs.set_perms(caller, path, perms, tx)
                elif op == "get_perms":
                    xs.get_perms(caller, path, tx)
                elif op == "exists":
                    xs.exists(caller, path, tx)
                elif op == "watch":
                    xs.watch(caller, path, "t")
                elif op == "unwatch":
                    xs.unwatch(caller, path, "t")
                elif op == "transaction_start":
                    txs[caller.domid] = xs.transaction_start(caller)
                else:
                    t = txs.pop(caller.domid, None)
                    xs.transaction_end(caller, t if t is not None else r.u8(), bool(who & 1))
            except self.XenStoreError:
                self.counts["refused"] += 1
        if xs.read(dom0, "/vm/secret") != "s":
            raise Finding("an unprivileged domain changed /vm/secret")
        self._check_tree(xs, dom0, "/")

    def _check_tree(self, xs, dom0, path):
        for child in xs.directory(dom0, path):
            sub = (path.rstrip("/") + "/" + child)
            if not xs.exists(dom0, sub):
                raise Finding(f"{path} lists {child!r}, which does not exist")
            self._check_tree(xs, dom0, sub)


# --------------------------------------------------------------------------- manager

class ManagerTarget:
    """Manager messages from a hostile guest or a hostile vTPM, through the whole stack.

    One host (a vtpmmgr, vTPMs ``vtpm-guest1`` -- the first, so the admin -- and
    ``vtpm-guest2``, and their guests) is booted once. Each input is up to four
    messages, each sent by one of four parties: guest2 or guest1 through their
    vTPM (which forwards ``VTPM_TAG_REQ``/``REQ2`` and ``TPM2_CC_DeepQuote`` to the
    manager, and runs the rest on its engine), or vtpm-guest2 or vtpm-guest1 on
    their own tpmfront straight to the manager. A message is raw bytes, or a
    well-formed one (SAVEHASHKEY, LOADHASHKEY, GET_BOOT_HASH, GET_QUOTE, the TPM 1.2
    passthroughs, a management request, a deep quote, a TPM 2.0 command) with
    bytes changed, cut or appended; its ``commandSize``/``paramSize`` is set to its
    length (the guest's Linux refuses the rest before it is sent; raw bytes a vTPM
    sends keep theirs, as the manager trusts the tpmif length). Invariants: no
    simulated process fails and every message is answered; every answer has at
    least a 10-byte header whose size is its length (a TPM 2.0 answer to a
    guest is well formed; a manager's error to a vTPM carries the request's
    tag + 3, whatever it was); the party that is not the admin's changes no
    physical-TPM PCR; no party changes the manager's record of the other
    vTPM; no physical-TPM handle is left loaded (beyond the deep-quote key);
    and afterwards both guests get a ``TPM2_GetRandom`` answered and both vTPMs a ``LOADHASHKEY``.
    """

    name = "manager"
    MAX_MESSAGES = 4
    PARTIES = ("guest2", "guest1", "vtpm-guest2", "vtpm-guest1")

    def __init__(self):
        import uuid as uuidlib

        from simxen.domains.stack import HostSpec, build_host
        from simxen.protocols import vtpmmgr as mgr
        from simxen.tpm import client
        from simxen.xen import Hypervisor

        self.mgr, self.client = mgr, client
        self.counts = {"inputs": 0, "messages": 0, "to_manager": 0, "answered_ok": 0,
                       "honest_checks": 0}
        hv = self.hv = Hypervisor(seed=1)
        host = self.host = build_host(hv, HostSpec.standard(["guest1", "guest2"]))
        hv.env.run(until=host.ready)
        self.guests = {g: host.guest(g) for g in ("guest1", "guest2")}
        self.vtpms = {v: host.vtpm(v) for v in ("vtpm-guest1", "vtpm-guest2")}
        self.uuids = {}
        for (domid, _), info in host.vtpmmgr.back.frontends.items():
            for name, vtpm in self.vtpms.items():
                if vtpm.domid == domid:
                    self.uuids[name] = uuidlib.UUID(info.uuid).bytes
        storage = host.vtpmmgr.storage
        admin = [n for n, u in self.uuids.items() if storage.is_admin(u)]
        if admin != ["vtpm-guest1"]:
            raise RuntimeError(f"expected vtpm-guest1 as the only admin vTPM, not {admin}")
        sel = [(0x000B, list(range(10)))]
        self.templates = [
            mgr.save_hash_key_request(bytes(range(64))),
            mgr.load_hash_key_request(),
            mgr.get_boot_hash_request(),
            mgr.get_quote_request(b"n" * 32, sel, mgr.VTPM_QUOTE_FLAGS_ALL),
            struct.pack(">HIII", mgr.VTPM_TAG_REQ, 14, mgr.TPM_ORD_GetRandom, 16),
            struct.pack(">HIII", mgr.TPM_TAG_RQU_COMMAND, 14, mgr.TPM_ORD_PcrRead, 16),
            struct.pack(">HIII", mgr.TPM_TAG_RQU_COMMAND, 46, mgr.TPM_ORD_Extend, 23) + bytes(32),
            mgr.pack_header(mgr.VTPM_TAG_REQ2, mgr.MANAGEMENT_ORDINALS["VTPM_ORD_GROUP_LIST"]),
            mgr.deep_quote_command(b"d" * 32, range(10), mgr.VTPM_QUOTE_FLAGS_HASH_UUID),
            client.get_random_command(8),
        ]

    def seeds(self):
        out = [bytes([p | 4, i, 0]) for i in range(len(self.templates)) for p in (0, 3)]
        return out + [bytes([2, 12]) + self.templates[1] + bytes([1, 2])]

    def messages(self, data):
        """The ``(party, message, locality)`` list an input stands for."""
        r = _Bytes(data)
        out = []
        while r and len(out) < self.MAX_MESSAGES:
            op = r.u8()
            party, kind, locality = self.PARTIES[op & 3], (op >> 2) & 3, (op >> 4) & 7
            if kind == 0:                                   # raw bytes
                msg = bytearray(r.take(r.u8()))
            else:                                           # a template, changed
                msg = bytearray(self.templates[r.u8() % len(self.templates)])
                for _ in range(r.u8() % 4 if kind != 3 else 0):
                    msg[r.u16() % len(msg)] = r.u8()
                if kind == 3:
                    cut = r.u8()
                    msg = msg[:max(0, len(msg) - cut)] if cut < 128 else msg + r.take(cut - 127)
            if party.startswith("guest"):
                # what Linux sends at all: a whole header, commandSize its length
                msg = msg.ljust(10, b"\0")
                msg[2:6] = len(msg).to_bytes(4, "big")
            elif len(msg) >= 6 and kind != 0:
                msg[2:6] = len(msg).to_bytes(4, "big")
            out.append((party, bytes(msg), locality if locality <= 4 else 0))
        return out

    def _run(self, gen):
        proc = self.hv.env.process(gen)
        self.hv.env.run(until=proc)
        return proc.value

    def _send(self, party, msg, locality=0):
        if party.startswith("guest"):
            return self._run(self.guests[party].tpm.transmit(msg, locality=locality))
        return self._run(self.vtpms[party].front.transmit(msg, locality=locality))

    def _state(self):
        ptpm = self.host.ptpm_engine
        storage = self.host.vtpmmgr.storage
        return ({alg: tuple(v) for alg, v in ptpm.pcrs.banks.items()}, sorted(ptpm.objects),
                {n: storage.get(u) for n, u in self.uuids.items()})

    def one(self, data):
        counts = self.counts
        counts["inputs"] += 1
        mgr = self.mgr
        for party, msg, locality in self.messages(data):
            pcrs, objects, records = self._state()
            had_aik = self.host.vtpmmgr.aik is not None
            rsp = self._send(party, msg, locality)
            counts["messages"] += 1
            if not isinstance(rsp, (bytes, bytearray)) or len(rsp) < 10 \
                    or int.from_bytes(rsp[2:6], "big") != len(rsp):
                raise Finding(f"{party} got {bytes(rsp or b'').hex()} for {msg.hex()}")
            if party.startswith("guest") and rsp[:2] in (b"\x80\x01", b"\x80\x02"):
                rc = well_formed_response(rsp, f"{party} {msg[:16].hex()}")
            else:
                counts["to_manager"] += 1
                rc = mgr.response_code(rsp)
            counts["answered_ok"] += rc == 0
            after_pcrs, after_objects, after_records = self._state()
            where = f"{party} sent {msg.hex()} at locality {locality} (rc {rc:#x})"
            if "guest2" in party and after_pcrs != pcrs:
                raise Finding(f"a party without admin changed physical PCRs: {where}")
            mine = party if party.startswith("vtpm") else "vtpm-" + party
            for name in records:
                if name != mine and after_records[name] != records[name]:
                    raise Finding(f"the manager's record of {name} changed: {where}")
            if len(after_objects) > len(objects) + (not had_aik):
                raise Finding(f"physical-TPM handles left loaded {after_objects}: {where}")
        # the stack still serves the honest parties
        getrand = self.client.get_random_command(8)
        for party in ("guest1", "guest2"):
            rsp = self._send(party, getrand)
            if well_formed_response(rsp, f"honest GetRandom of {party}") != 0:
                raise Finding(f"honest GetRandom of {party} refused: {rsp.hex()}")
        for party in ("vtpm-guest1", "vtpm-guest2"):
            rsp = self._send(party, mgr.load_hash_key_request())
            if mgr.response_code(rsp) != 0:
                raise Finding(f"honest LOADHASHKEY of {party} refused: {rsp.hex()}")
        counts["honest_checks"] += 1


# --------------------------------------------------------------------------- parsers

class EventLogTarget:
    """:func:`simxen.protocols.tcg_eventlog.parse` and ``replay`` on arbitrary bytes:
    only :class:`EventLogError`; a log that parses replays."""

    name = "eventlog"

    def __init__(self):
        from simxen.protocols import tcg_eventlog
        self.log = tcg_eventlog
        self.counts = {"inputs": 0, "parsed": 0, "events": 0, "refused": 0}

    def seeds(self):
        log = self.log.EventLog(["sha1", "sha256"])
        log.append(0, 8, b"S-CRTM")
        log.append(4, 0x0D, b"kernel")
        return [log.to_bytes()]

    def one(self, data):
        self.counts["inputs"] += 1
        try:
            _, events = self.log.parse(data)
        except self.log.EventLogError:
            self.counts["refused"] += 1
            return
        self.counts["parsed"] += 1
        self.counts["events"] += len(events)
        try:
            self.log.replay(events)
        except self.log.EventLogError:
            pass


class ImaTarget:
    """:func:`simxen.protocols.ima.parse_list` on arbitrary text and
    :func:`~simxen.protocols.ima.parse_binary` on the same bytes: only
    :class:`ImaListError`; what parses formats back to a list that parses equal
    (the binary form: to the same bytes)."""

    name = "ima"

    def __init__(self):
        from simxen.protocols import ima
        self.ima = ima
        self.counts = {"inputs": 0, "parsed": 0, "entries": 0, "refused": 0,
                       "binary_parsed": 0, "binary_refused": 0}

    def seeds(self):
        ima = self.ima
        entries = [ima.measure("/usr/bin/bash", bytes(range(32))),
                   ima.violation("/tmp/x"), ima.measure("/a b/c", bytes(20), "sha1")]
        return [ima.format_list(entries).encode(), ima.format_binary(entries)]

    def one(self, data):
        self.counts["inputs"] += 1
        self.binary(data)
        text = data.decode("utf-8", "replace")
        verify = not (data[:1] == b"!")
        try:
            entries = self.ima.parse_list(text, verify=verify)
        except self.ima.ImaListError:
            self.counts["refused"] += 1
            return
        self.counts["parsed"] += 1
        self.counts["entries"] += len(entries)
        again = self.ima.parse_list(self.ima.format_list(entries), verify=verify)
        if again != entries:
            raise Finding("format_list(parse_list(x)) does not parse back to the same entries")

    def binary(self, data):
        try:
            entries = self.ima.parse_binary(data, verify=False)
        except self.ima.ImaListError:
            self.counts["binary_refused"] += 1
            return
        self.counts["binary_parsed"] += 1
        if self.ima.format_binary(entries) != data:
            raise Finding("format_binary(parse_binary(x)) is not x")


class ScenarioTarget:
    """:func:`simxen.scenario.scenario_file.load` on arbitrary bytes: only
    :class:`~simxen.errors.InputError` (one line, naming the file)."""

    name = "scenario"

    def __init__(self):
        from simxen.errors import InputError
        from simxen.scenario import scenario_file
        self.InputError = InputError
        self.load = scenario_file.load
        self.folder = tempfile.mkdtemp(prefix="simxen-fuzz-")
        self.path = os.path.join(self.folder, "fuzz.toml")
        self.counts = {"inputs": 0, "loaded": 0, "refused": 0}

    def seeds(self):
        here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "scenarios")
        out = []
        if os.path.isdir(here):
            for name in sorted(os.listdir(here)):
                if name.endswith(".toml"):
                    with open(os.path.join(here, name), "rb") as f:
                        out.append(f.read())
        return out or [b'[scenario]\nname = "x"\n']

    def one(self, data):
        self.counts["inputs"] += 1
        with open(self.path, "wb") as f:
            f.write(data)
        loaded_or_refused(self.counts, self.InputError, self.load, self.path)


class StateTarget:
    """``simxen tpm serve --state FILE`` on a state file from anywhere.

    The file's checksum is a plain SHA-256, so anyone can write one that passes
    it: an input is a state blob's body (the magic, version and checksum put
    around it; the first byte picks version 1 or 2, or -- odd -- takes the input
    as the whole file). :meth:`StateFile.load <simxen.server.state_file.StateFile.load>`
    either refuses it with a one-line :class:`~simxen.errors.InputError` or gives
    a TPM; that TPM then takes ``TPM2_Startup`` (CLEAR or STATE), reads of its
    persistent objects, NV indices, PCRs and audit list, a primary key, a PCR
    extend and an audited command. Invariants: every response well formed, no
    ``TPM_RC_FAILURE`` hiding an internal error, and its state saves and loads
    back to the same blob.
    """

    name = "state"

    def __init__(self):
        from simxen.errors import InputError
        from simxen.server.state_file import StateFile
        from simxen.tpm import TpmEngine, client
        from simxen.tpm.constants import TPM_ALG, TPM_ECC, TPM_RH, TPM_SU
        from simxen.tpm.public import Public
        from simxen.tpm.state import MAGIC

        self.InputError, self.TpmEngine, self.client = InputError, TpmEngine, client
        self.magic = MAGIC
        self.folder = tempfile.mkdtemp(prefix="simxen-fuzz-")
        self.file = StateFile(os.path.join(self.folder, "tpm.state"))
        self.counts = {"inputs": 0, "loaded": 0, "refused": 0, "commands": 0}
        srk = Public(TPM_ALG.ECC, TPM_ALG.SHA256, 0x00030072,
                     symmetric=(TPM_ALG.AES, 128, TPM_ALG.CFB), curve=TPM_ECC.NIST_P256,
                     unique=(b"", b""))
        self.srk = srk
        # a TPM with something in each part of the state: an NV index, a persistent
        # key, an orderly Shutdown(STATE) -- and (version 2) an audit list and PCR policy
        seeds = []
        for extended in (False, True):
            engine = TpmEngine(seed=b"simxen fuzz", random_bytes=_DetRandom(b"state"),
                               clock=lambda: 1000.0, powered=True)
            client.check(engine.execute(client.startup_command()))
            handle, _, _ = client.parse_create_primary(
                engine.execute(client.create_primary_command(TPM_RH.OWNER, srk)))
            client.check(engine.execute(client.build_command(
                0x120, (TPM_RH.OWNER, handle), struct.pack(">I", 0x81000001),
                [client.password_auth(b"")])))                         # EvictControl
            client.check(engine.execute(client.nv_define_space_command(0x01500000, 8, 0x00060006)))
            client.check(engine.execute(client.nv_write_command(0x01500000, b"12345678")))
            if extended:
                engine.command_audit.commands.add(0x17B)                # GetRandom
                engine.pcr_policies[20] = (TPM_ALG.SHA256, bytes(32))   # AUTH_GROUP[0]
            client.check(engine.execute(client.shutdown_command(TPM_SU.STATE)))
            seeds.append(engine.save_state())
        self.blobs = seeds
        self.commands = [
            client.get_capability_command(1, 0x81000000, 16),
            client.get_capability_command(1, 0x01000000, 16),
            client.get_capability_command(4, 0, 64),                       # AUDIT_COMMANDS
            client.get_capability_command(9, 0x40000001, 16),              # AUTH_POLICIES
            client.get_capability_command(6, 0x200, 64),                   # variable properties
            client.pcr_read_command({TPM_ALG.SHA256: [0, 16], TPM_ALG.SHA1: [16]}),
            client.get_random_command(16),
            client.create_primary_command(TPM_RH.OWNER, srk),
            client.pcr_extend_command(16, {TPM_ALG.SHA256: bytes(32)}),
        ]

    def seeds(self):
        return [bytes([2 * v]) + blob[10:-32] for v, blob in enumerate(self.blobs)] + \
            [b"\x01" + self.blobs[0], b"\x03" + self.blobs[1]]

    def _execute(self, tpm, cmd):
        rsp = tpm.execute(cmd)
        self.counts["commands"] += 1
        rc = well_formed_response(rsp, f"command {cmd[:16].hex()}")
        if rc == 0x101 and tpm.last_internal_error is not None:
            raise Finding(f"internal error behind TPM_RC_FAILURE for {cmd.hex()}: "
                          f"{tpm.last_internal_error!r}")
        return rsp

    def one(self, data):
        self.counts["inputs"] += 1
        if not data:
            return
        if data[0] & 1:
            blob = data[1:]
        else:
            head = self.magic + (1 + (data[0] >> 1 & 1)).to_bytes(2, "big") + data[1:]
            blob = head + hashlib.sha256(head).digest()
        with open(self.file.path, "wb") as f:
            f.write(blob)
        tpm = loaded_or_refused(self.counts, self.InputError, self.file.load)
        if tpm is None:
            return
        client = self.client
        self._execute(tpm, client.startup_command(data[0] >> 2 & 1))
        for cmd in self.commands:
            self._execute(tpm, cmd)
        for handle in sorted(tpm.persistent)[:8]:
            self._execute(tpm, client.read_public_command(handle))
        for index in sorted(tpm.nv_indices)[:8]:
            self._execute(tpm, client.build_command(0x169, (index,)))  # NV_ReadPublic
            self._execute(tpm, client.nv_read_command(index, 8))
        saved = tpm.save_state()
        again = self.TpmEngine.from_state(saved, clock=lambda: 0.0).save_state()   # clock still
        if again != saved:
            raise Finding("a loaded state does not save and load back to the same blob")



class TraceTarget:
    """``simxen trace --from FILE`` on a trace file from anywhere: every export
    (text, Perfetto, SVG and Mermaid sequence diagrams, pcap) either writes its file
    or refuses the trace with exit 2 -- never an internal error (exit 3).

    An input is either a trace file's bytes (its first byte odd) or, more often
    useful, edits of a real trace (the records around a guest's first TPM command
    in a short vtpm-stack run): up to four times, a line, one of its fields, and
    that field taken away or given one of a palette of JSON values; then which
    export reads the result."""

    name = "trace"

    #: values a field may be given: every JSON type, and the edges the schema draws
    VALUES = (None, True, False, 0, -1, 1, 2**31, 2**64, -2**63, 0.5, -0.0, 1e308,
              float("nan"), float("inf"), "", "x", "00", "0g", "zz", "guest1", "\u0000",
              "\ud800", [], [1], ["a"], {}, {"a": 1}, "tpm.exec", "page.write")
    FORMATS = (("text", ".txt"), ("perfetto", ".json"), ("sequence", ".svg"),
               ("sequence", ".mmd"), ("pcap", ".pcap"))

    def __init__(self):
        from simxen.cli import main
        self.main = main
        self.folder = tempfile.mkdtemp(prefix="simxen-fuzz-")
        self.path = os.path.join(self.folder, "fuzz.jsonl")
        self.lines = self._real_lines()
        self.counts = {"inputs": 0, "edits": 0, "exported": 0, "refused": 0}

    @staticmethod
    def _real_lines():
        """The JSON lines of a short vtpm-stack run: every domain's creation, then the
        records of the first guest TPM command's journey."""
        from simxen.scenario import runner, scenario_file
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        sc = scenario_file.load(os.path.join(here, "scenarios", "vtpm-stack.toml"),
                                ["stack.iterations=1", "stack.dom0_probes_tpm=false"])
        records = runner.run(sc, trace_level="full").trace.dumps_jsonl().splitlines()
        submit = next(i for i, line in enumerate(records)
                      if '"tpm.front.submit"' in line and '"dom_name":"guest1"' in line)
        end = next(i for i in range(submit, len(records))
                   if '"tpm.front.complete"' in records[i] and '"dom_name":"guest1"' in records[i])
        created = [line for line in records[:submit] if '"domain.create"' in line]
        return created + records[submit:end + 1]

    def seeds(self):
        text = ("\n".join(self.lines) + "\n").encode()
        return [b"\x01" + text, bytes([0, 0, 7, 3, 5, 1, 2, 9, 0]), bytes([2, 40, 1, 0, 3])]

    def _edited(self, data):
        b = _Bytes(data[1:])
        lines = list(self.lines)
        for _ in range(1 + b.u8() % 4):
            i = b.u16() % len(lines)
            record = json.loads(lines[i])
            keys = sorted(record)
            key = keys[b.u8() % len(keys)]
            choice = b.u8()
            if choice % 8 == 0:
                del record[key]
            else:
                record[key] = self.VALUES[choice % len(self.VALUES)]
            lines[i] = json.dumps(record)
            self.counts["edits"] += 1
        fmt = self.FORMATS[b.u8() % len(self.FORMATS)]
        return ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass"), fmt

    def one(self, data):
        self.counts["inputs"] += 1
        if data[:1] and data[0] & 1:
            text, fmt = data[1:], self.FORMATS[len(data) % len(self.FORMATS)]
        else:
            text, fmt = self._edited(data)
        with open(self.path, "wb") as f:
            f.write(text)
        out = os.path.join(self.folder, "out" + fmt[1])
        with contextlib.redirect_stderr(io.StringIO()) as captured:
            code = self.main(["trace", "--from", self.path, "--format", fmt[0], "-o", out])
        if code == 2:
            self.counts["refused"] += 1
        elif code in (0, 1):
            self.counts["exported"] += 1
        else:
            raise Finding(f"simxen trace --format {fmt[0]} ({fmt[1]}) exit {code}: "
                          f"{captured.getvalue().strip()[:300]}")


TARGETS = {cls.name: cls for cls in (EngineTarget, FramingTarget, TpmifTarget, ManagerTarget,
                                     XenStoreTarget, EventLogTarget, ImaTarget, ScenarioTarget,
                                     StateTarget, TraceTarget)}


def target(name):
    """A fresh instance of target ``name``."""
    try:
        return TARGETS[name]()
    except KeyError:
        raise SystemExit(f"unknown fuzz target {name!r} (expected one of "
                         f"{', '.join(sorted(TARGETS))})") from None

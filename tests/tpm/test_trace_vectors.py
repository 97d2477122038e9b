"""Replay of real tpm2-tools 5.4 traffic recorded against libtpms.

The recorded commands carry HMACs that ESYS computed.  Our engine is made to
hand out the nonceTPM libtpms handed out (and the same session handles), so
every recorded command must be *accepted unchanged* — which it only is if our
cpHash, Names and session HMAC are byte-exact.  Our response HMACs are
checked with the same rule ESYS applies (``iesys_check_rp_hmacs``), and the
deterministic responses (PCR_Extend, NV_ReadPublic, PolicyGetDigest) must be
byte-identical to libtpms's.
"""

import hashlib
import hmac
import json
import os
import struct

import pytest

from simxen.tpm import TpmEngine, client
from simxen.tpm.marshal import Reader

from tpm_helpers import DetRandom, FixedClock

VECTORS = os.path.join(os.path.dirname(__file__), "data",
                       "tpm2tools54-libtpms092-vectors.jsonl")


def load_steps():
    steps = {}
    current = None
    with open(VECTORS) as f:
        for line in f:
            rec = json.loads(line)
            if "step" in rec:
                current = steps.setdefault(rec["step"], [])
            elif "dir" in rec:
                current.append((rec["dir"], rec["name"], bytes.fromhex(rec["raw"])))
    return steps


STEPS = load_steps()


def step(prefix):
    return [v for k, v in STEPS.items() if k.startswith(prefix)][0]


def pairs(records):
    it = iter(records)
    for d, name, raw in it:
        assert d == "cmd"
        yield name, raw, next(it)[2]


class ReplayRandom(DetRandom):
    """Deterministic bytes, except that queued values are handed out first."""

    def __init__(self):
        super().__init__(b"replay")
        self.queue = []

    def __call__(self, n):
        if self.queue and len(self.queue[0]) == n:
            return self.queue.pop(0)
        return super().__call__(n)


@pytest.fixture
def engine():
    rnd = ReplayRandom()
    tpm = TpmEngine(seed=b"replay", random_bytes=rnd, clock=FixedClock(), powered=True)
    client.check(tpm.execute(client.startup_command()))
    return tpm, rnd


def auth_of_command(raw, n_handles):
    """(sessionHandle, nonceCaller, attrs, hmac) of the first session."""
    r = Reader(raw, 10 + 4 * n_handles + 4)
    return r.u32(), r.tpm2b(), r.u8(), r.tpm2b()


def check_response_hmac(cmd, rsp, n_cmd_handles, n_rsp_handles, key=b""):
    """ESYS's check: HMAC(key, rpHash || nonceTPM || nonceCaller || attrs)."""
    cc = struct.unpack_from(">I", cmd, 6)[0]
    _, nonce_caller, _, _ = auth_of_command(cmd, n_cmd_handles)
    pos = 10 + 4 * n_rsp_handles
    psize = struct.unpack_from(">I", rsp, pos)[0]
    params = rsp[pos + 4:pos + 4 + psize]
    r = Reader(rsp, pos + 4 + psize)
    nonce_tpm, attrs, mac = r.tpm2b(), r.u8(), r.tpm2b()
    rp = hashlib.sha256(b"\0\0\0\0" + struct.pack(">I", cc) + params).digest()
    assert mac == hmac.digest(key, rp + nonce_tpm + nonce_caller + bytes((attrs,)), "sha256")


def replay(tpm, rnd, records, handles):
    """Run a recorded tool invocation; ``handles`` maps command name to
    (command handles, response handles) for the ones with HMAC sessions."""
    ran = []
    for name, cmd, recorded in pairs(records):
        if name == "StartAuthSession":
            rnd.queue.append(recorded[-32:])           # libtpms's nonceTPM
            assert tpm.execute(cmd) == recorded
        elif name in handles:
            rsp = tpm.execute(cmd)
            assert client.response_code(rsp) == 0, (name, rsp.hex())
            check_response_hmac(cmd, rsp, *handles[name])
        else:
            rsp = tpm.execute(cmd)
            assert client.response_code(rsp) == client.response_code(recorded), name
        ran.append(name)
    return ran


def test_pcr_extend_response_is_byte_identical(engine):
    tpm, _ = engine
    (name, cmd, recorded), = pairs(step("tpm2_pcrextend 0:"))
    assert tpm.execute(cmd) == recorded
    (_, cap, _), (_, read, recorded_read) = pairs(step("tpm2_pcrread sha1:0+sha256:0"))
    ours = client.parse_pcr_read(tpm.execute(read))[1]
    theirs = client.parse_pcr_read(recorded_read)[1]
    assert ours == theirs


def test_createprimary_hmac_session_accepted(engine):
    tpm, rnd = engine
    ran = replay(tpm, rnd, step("tpm2_createprimary -C o -g sha256 -G ecc256"),
                 {"CreatePrimary": (1, 1)})
    assert ran == ["GetCapability", "StartAuthSession", "CreatePrimary", "ContextSave",
                   "FlushContext"]


def test_createek_ecc_sessions_accepted(engine):
    tpm, rnd = engine
    replay(tpm, rnd, step("tpm2_createek -c ekecc.ctx -G ecc"), {"CreatePrimary": (1, 1)})


def test_nv_define_write_with_nv_name_in_cphash(engine):
    tpm, rnd = engine
    replay(tpm, rnd, step("tpm2_nvdefine"), {"NV_DefineSpace": (1, 0)})
    records = step("tpm2_nvwrite")
    for name, cmd, recorded in pairs(records):
        if name == "NV_ReadPublic":           # same Name as libtpms computed
            assert tpm.execute(cmd) == recorded
    replay(tpm, rnd, records, {"NV_Write": (2, 0)})


def test_policy_pcr_digest_is_byte_identical(engine):
    tpm, rnd = engine
    (_, extend, _), = pairs(step("tpm2_pcrextend 0:"))
    client.check(tpm.execute(extend))
    client.parse_start_auth_session(tpm.execute(client.start_auth_session_command(
        b"\x01" * 32, 3)))                      # trial session 0x03000000, as recorded
    for name, cmd, recorded in pairs(step("tpm2_policypcr -S trial.ctx")):
        if name in ("PCR_Read", "PolicyPCR", "PolicyGetDigest"):
            rsp = tpm.execute(cmd)
            if name == "PCR_Read":
                assert client.parse_pcr_read(rsp)[1] == client.parse_pcr_read(recorded)[1]
            else:
                assert rsp == recorded, name

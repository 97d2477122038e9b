"""Hash, HMAC and event sequences, and the one-shot Hash/HMAC commands."""

import hashlib

from simxen.tpm import client
from simxen.tpm.client import parse_response, response_code
from simxen.tpm.constants import TPM_ALG, TPM_CC, TPM_RC, TPM_RH, TPM_ST
from simxen.tpm.marshal import tpm2b, u16, u32
from simxen.tpm.public import Public

from tpm_helpers import ecc_storage_template

PW = [client.password_auth(b"seq")]


def start(tpm, alg):
    rsp = parse_response(tpm.execute(client.build_command(
        TPM_CC.HashSequenceStart, params=tpm2b(b"seq") + u16(alg))), 1)
    return rsp.handles[0]


def update(tpm, handle, data):
    client.check(tpm.execute(client.build_command(TPM_CC.SequenceUpdate, (handle,),
                                                  tpm2b(data), PW)))


def test_hash_sequence_matches_hashlib_and_is_flushed(tpm):
    h = start(tpm, TPM_ALG.SHA256)
    data = bytes(range(256)) * 10
    for i in range(0, len(data), 1000):
        update(tpm, h, data[i:i + 1000])
    r = parse_response(tpm.execute(client.build_command(
        TPM_CC.SequenceComplete, (h,), tpm2b(b"tail") + u32(TPM_RH.OWNER), PW))).params
    assert r.tpm2b() == hashlib.sha256(data + b"tail").digest()
    assert r.u16() == TPM_ST.HASHCHECK and r.u32() == TPM_RH.OWNER and len(r.tpm2b()) == 32
    assert h not in tpm.objects


def test_sequence_starting_like_an_attestation_gets_null_ticket(tpm):
    h = start(tpm, TPM_ALG.SHA256)
    update(tpm, h, b"\xffTC")
    r = parse_response(tpm.execute(client.build_command(
        TPM_CC.SequenceComplete, (h,), tpm2b(b"G quote") + u32(TPM_RH.OWNER), PW))).params
    r.tpm2b()
    assert (r.u16(), r.u32(), r.tpm2b()) == (TPM_ST.HASHCHECK, TPM_RH.NULL, b"")


def test_event_sequence_extends_every_bank(tpm):
    h = start(tpm, TPM_ALG.NULL)
    for _ in range(3):
        update(tpm, h, b"kernel " * 100)
    rsp = tpm.execute(client.build_command(TPM_CC.EventSequenceComplete, (12, h), tpm2b(b"!"),
                                           [client.password_auth(), PW[0]]))
    digests = client.parse_pcr_event(rsp)
    data = b"kernel " * 300 + b"!"
    assert digests[TPM_ALG.SHA1] == hashlib.sha1(data).digest()
    _, v = client.parse_pcr_read(tpm.execute(client.pcr_read_command({TPM_ALG.SHA256: [12]})))
    assert v[TPM_ALG.SHA256][12] == hashlib.sha256(bytes(32) + hashlib.sha256(data).digest()).digest()


def test_hmac_sequence_equals_one_shot_hmac(tpm):
    srk, _, _ = client.parse_create_primary(tpm.execute(
        client.create_primary_command(TPM_RH.OWNER, ecc_storage_template())))
    tmpl = Public(TPM_ALG.KEYEDHASH, TPM_ALG.SHA256, 0x00040072,
                  scheme=(TPM_ALG.HMAC, TPM_ALG.SHA256), unique=b"")
    priv, pub = client.parse_create(tpm.execute(client.create_command(srk, tmpl)))
    key, _ = client.parse_load(tpm.execute(client.load_command(srk, priv, pub)))
    one = parse_response(tpm.execute(client.build_command(
        TPM_CC.HMAC, (key,), tpm2b(b"abcdef") + u16(TPM_ALG.NULL),
        [client.password_auth()]))).params.tpm2b()
    seq = parse_response(tpm.execute(client.build_command(
        TPM_CC.HMAC_Start, (key,), tpm2b(b"seq") + u16(TPM_ALG.SHA256),
        [client.password_auth()])), 1).handles[0]
    update(tpm, seq, b"abc")
    r = parse_response(tpm.execute(client.build_command(
        TPM_CC.SequenceComplete, (seq,), tpm2b(b"def") + u32(TPM_RH.NULL), PW))).params
    assert r.tpm2b() == one and len(one) == 32


def test_sequences_are_not_keys(tpm):
    h = start(tpm, TPM_ALG.SHA256)
    assert response_code(tpm.execute(client.read_public_command(h))) == TPM_RC.TYPE | 0x100
    assert response_code(tpm.execute(client.build_command(
        TPM_CC.SequenceUpdate, (h,), tpm2b(b"x"), [client.password_auth(b"wrong")]))) == 0x9A2

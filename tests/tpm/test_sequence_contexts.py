"""ContextSave/ContextLoad of hash, HMAC and event sequence objects (Part 3,
28.2-28.3), and the resumable hash state they rest on.

OpenSSL's tpm2 provider copies a digest in progress by saving its sequence
and loading the context (a TLS 1.3 handshake, ``openssl cms -sign``); the
engine used to refuse the save with TPM_RC_TYPE.
"""

import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simxen.tpm import client, hash_state
from simxen.tpm.client import parse_response, response_code
from simxen.tpm.constants import TPM_ALG, TPM_CC, TPM_RH, TPM_ST
from simxen.tpm.hash_state import ResumableHash
from simxen.tpm.marshal import Reader, tpm2b, u16, u32, u64
from simxen.tpm.public import Public

from tpm_helpers import ecc_storage_template, sealed_template

PW = [client.password_auth(b"seq")]
HASH_NAMES = {TPM_ALG.SHA1: "sha1", TPM_ALG.SHA256: "sha256", TPM_ALG.SHA384: "sha384",
              TPM_ALG.SHA512: "sha512"}


def start(tpm, alg):
    return parse_response(tpm.execute(client.build_command(
        TPM_CC.HashSequenceStart, params=tpm2b(b"seq") + u16(alg))), 1).handles[0]


def update(tpm, handle, data):
    client.check(tpm.execute(client.build_command(TPM_CC.SequenceUpdate, (handle,),
                                                  tpm2b(data), PW)))


def save(tpm, handle):
    """The TPMS_CONTEXT bytes and its savedHandle and hierarchy."""
    r = parse_response(tpm.execute(client.build_command(TPM_CC.ContextSave, (handle,)))).params
    blob = r.data[r.pos:r.end]
    r.u64()
    return blob, r.u32(), r.u32()


def load(tpm, blob):
    return parse_response(tpm.execute(client.build_command(TPM_CC.ContextLoad, params=blob)),
                          1).handles[0]


def complete(tpm, handle, data=b"", hierarchy=TPM_RH.OWNER):
    r = parse_response(tpm.execute(client.build_command(
        TPM_CC.SequenceComplete, (handle,), tpm2b(data) + u32(hierarchy), PW))).params
    digest = r.tpm2b()
    return digest, (r.u16(), r.u32(), r.tpm2b())


@pytest.mark.parametrize("alg", list(HASH_NAMES))
def test_a_saved_hash_sequence_resumes_in_every_copy(tpm, alg):
    name = HASH_NAMES[alg]
    h = start(tpm, alg)
    update(tpm, h, b"a" * 1000)
    update(tpm, h, b"b" * 77)
    blob, saved, hierarchy = save(tpm, h)
    assert (saved, hierarchy) == (0x80000001, TPM_RH.NULL)
    update(tpm, h, b"original goes on")
    copy1, copy2 = load(tpm, blob), load(tpm, blob)        # an object context loads again
    update(tpm, copy1, b"copy one" * 50)
    prefix = b"a" * 1000 + b"b" * 77
    assert complete(tpm, h)[0] == hashlib.new(name, prefix + b"original goes on").digest()
    assert complete(tpm, copy2, b"end")[0] == hashlib.new(name, prefix + b"end").digest()
    digest, ticket = complete(tpm, copy1)
    assert digest == hashlib.new(name, prefix + b"copy one" * 50).digest()
    assert ticket[:2] == (TPM_ST.HASHCHECK, TPM_RH.OWNER) and ticket[2]     # a real ticket
    # a copy of a copy
    h = start(tpm, alg)
    update(tpm, h, b"x" * 5)
    again = load(tpm, save(tpm, load(tpm, save(tpm, h)[0]))[0])
    assert complete(tpm, again, b"y")[0] == hashlib.new(name, b"xxxxxy").digest()


def test_a_resumed_sequence_still_knows_it_began_like_an_attestation(tpm):
    h = start(tpm, TPM_ALG.SHA256)
    update(tpm, h, b"\xffTC")
    resumed = load(tpm, save(tpm, h)[0])
    digest, ticket = complete(tpm, resumed, b"G quote")
    assert digest == hashlib.sha256(b"\xffTCG quote").digest()
    assert ticket == (TPM_ST.HASHCHECK, TPM_RH.NULL, b"")


def test_a_saved_hmac_sequence_resumes(tpm):
    srk, _, _ = client.parse_create_primary(tpm.execute(
        client.create_primary_command(TPM_RH.OWNER, ecc_storage_template())))
    for alg in (TPM_ALG.SHA256, TPM_ALG.SHA512):
        tmpl = Public(TPM_ALG.KEYEDHASH, TPM_ALG.SHA256, 0x00040072, scheme=(TPM_ALG.HMAC, alg),
                      unique=b"")
        priv, pub = client.parse_create(tpm.execute(client.create_command(srk, tmpl)))
        key, _ = client.parse_load(tpm.execute(client.load_command(srk, priv, pub)))
        key_bytes = tpm.objects[key].sensitive
        seq = parse_response(tpm.execute(client.build_command(
            TPM_CC.HMAC_Start, (key,), tpm2b(b"seq") + u16(TPM_ALG.NULL),
            [client.password_auth()])), 1).handles[0]
        update(tpm, seq, b"abc" * 100)
        resumed = load(tpm, save(tpm, seq)[0])
        digest, ticket = complete(tpm, resumed, b"def")
        assert digest == hmac.digest(key_bytes, b"abc" * 100 + b"def", HASH_NAMES[alg])
        assert ticket == (TPM_ST.HASHCHECK, TPM_RH.NULL, b"")          # an HMAC: no ticket
        assert complete(tpm, seq)[0] == hmac.digest(key_bytes, b"abc" * 100, HASH_NAMES[alg])


def test_an_hmac_key_longer_than_a_block_is_hashed_first():
    from simxen.tpm.hash_sequence import HashSequence
    key = bytes(range(200))
    seq = HashSequence(b"", TPM_ALG.SHA256, key=key)
    seq.update(b"data")
    again = HashSequence.deserialize(Reader(seq.serialize()))
    assert again.digests()[TPM_ALG.SHA256] == hmac.digest(key, b"data", "sha256")


def test_a_saved_event_sequence_extends_every_bank(tpm):
    h = start(tpm, TPM_ALG.NULL)
    update(tpm, h, b"kernel " * 100)
    resumed = load(tpm, save(tpm, h)[0])
    client.check(tpm.execute(client.build_command(TPM_CC.FlushContext, params=u32(h))))
    rsp = tpm.execute(client.build_command(TPM_CC.EventSequenceComplete, (12, resumed),
                                           tpm2b(b"!"), [client.password_auth(), PW[0]]))
    digests = client.parse_pcr_event(rsp)
    data = b"kernel " * 100 + b"!"
    assert digests == {alg: hashlib.new(n, data).digest() for alg, n in HASH_NAMES.items()}


def test_a_sequence_context_keeps_its_auth_and_integrity(tpm):
    h = start(tpm, TPM_ALG.SHA256)
    blob, _, _ = save(tpm, h)
    resumed = load(tpm, blob)
    wrong = tpm.execute(client.build_command(TPM_CC.SequenceUpdate, (resumed,), tpm2b(b"x"),
                                             [client.password_auth(b"wrong")]))
    assert response_code(wrong) == 0x9A2
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    assert response_code(tpm.execute(client.build_command(TPM_CC.ContextLoad,
                                                          params=tampered))) == 0x1DF
    # the savedHandle is bound into the integrity: an object's handle does not open it
    as_object = blob[:8] + u32(0x80000000) + blob[12:]
    assert response_code(tpm.execute(client.build_command(TPM_CC.ContextLoad,
                                                          params=as_object))) == 0x1DF


def test_a_sequence_context_dies_at_tpm_reset(tpm):
    h = start(tpm, TPM_ALG.SHA256)
    blob, _, _ = save(tpm, h)
    client.check(tpm.execute(client.shutdown_command()))
    tpm.power_off()
    tpm.power_on()
    client.check(tpm.execute(client.startup_command()))
    assert response_code(tpm.execute(client.build_command(TPM_CC.ContextLoad,
                                                          params=blob))) == 0x1DF


def test_an_stclear_object_context_says_so(tpm):
    srk, _, _ = client.parse_create_primary(tpm.execute(
        client.create_primary_command(TPM_RH.OWNER, ecc_storage_template())))
    priv, pub = client.parse_create(tpm.execute(client.create_command(
        srk, sealed_template(attrs=0x00000016), data=b"sealed")))  # fixedTPM|stClear|fixedParent
    obj, _ = client.parse_load(tpm.execute(client.load_command(srk, priv, pub)))
    assert save(tpm, obj)[1] == 0x80000002
    assert save(tpm, srk)[1] == 0x80000000


# -- the hash state itself --------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(alg=st.sampled_from(list(HASH_NAMES)), data=st.binary(max_size=700),
       cuts=st.lists(st.integers(0, 700), max_size=4), fold=st.sampled_from([1, 64, 16 << 20]))
def test_resumable_hash_equals_hashlib_however_it_is_cut(alg, data, cuts, fold):
    """Exported and restored at any points (and folded early), the digest is
    hashlib's."""
    old = hash_state.FOLD_BYTES
    hash_state.FOLD_BYTES = fold
    try:
        h = ResumableHash(alg)
        pos = 0
        for cut in sorted(c for c in cuts if c <= len(data)):
            h.update(data[pos:cut])
            pos = cut
            assert h.digest() == hashlib.new(HASH_NAMES[alg], data[:cut]).digest()
            h = ResumableHash.restore(alg, Reader(h.export()))
        h.update(data[pos:])
        assert h.digest() == hashlib.new(HASH_NAMES[alg], data).digest()
    finally:
        hash_state.FOLD_BYTES = old


def test_a_state_with_a_partial_block_count_is_refused():
    good = ResumableHash(TPM_ALG.SHA256)
    good.update(b"z" * 70)
    raw = good.export()
    assert raw[:8] == u64(64)
    with pytest.raises(ValueError):
        ResumableHash.restore(TPM_ALG.SHA256, Reader(u64(63) + raw[8:]))
    long_tail = raw[:8 + 32] + tpm2b(b"z" * 64)
    with pytest.raises(ValueError):
        ResumableHash.restore(TPM_ALG.SHA256, Reader(long_tail))

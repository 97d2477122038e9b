"""Marshal/unmarshal round trips of every structure, and parsers that
reject truncated or oversized input with the TPM's response codes."""

import pytest
from hypothesis import given, settings, strategies as st

from simxen.tpm.attest import Attest
from simxen.tpm.constants import TPM_ALG, TPM_ECC, TPM_RC, TPM_ST, command_name, rc_name
from simxen.tpm.errors import TpmError
from simxen.tpm.marshal import Reader, tpm2b
from simxen.tpm.nv_index import NvIndex
from simxen.tpm.pcr_selection import from_bytes, marshal_pcr_selection, pcr_indices, select_bytes
from simxen.tpm.public import Public
from simxen.tpm.signature import Signature
from simxen.tpm.tpm_object import TpmObject

hashes = st.sampled_from([TPM_ALG.SHA1, TPM_ALG.SHA256, TPM_ALG.SHA384, TPM_ALG.SHA512])
blob = lambda n: st.binary(max_size=n)
selection = st.lists(st.tuples(hashes, st.binary(min_size=0, max_size=4)), max_size=4)
sym = st.one_of(st.just((TPM_ALG.NULL, 0, 0)),
                st.tuples(st.just(TPM_ALG.AES), st.sampled_from([128, 256]),
                          st.sampled_from([TPM_ALG.CFB, TPM_ALG.NULL])))


@st.composite
def publics(draw):
    t = draw(st.sampled_from([TPM_ALG.RSA, TPM_ALG.ECC, TPM_ALG.KEYEDHASH, TPM_ALG.SYMCIPHER]))
    p = Public(t, draw(hashes), draw(st.integers(0, 2 ** 32 - 1)), draw(blob(64)))
    if t == TPM_ALG.RSA:
        p.symmetric = draw(sym)
        s = draw(st.sampled_from([TPM_ALG.NULL, TPM_ALG.RSASSA, TPM_ALG.RSAPSS, TPM_ALG.OAEP,
                                  TPM_ALG.RSAES]))
        p.scheme = (s, TPM_ALG.NULL if s in (TPM_ALG.NULL, TPM_ALG.RSAES) else draw(hashes))
        p.key_bits = draw(st.sampled_from([1024, 2048]))
        p.exponent = draw(st.integers(0, 2 ** 32 - 1))
        p.unique = draw(blob(512))
    elif t == TPM_ALG.ECC:
        p.symmetric = draw(sym)
        s = draw(st.sampled_from([TPM_ALG.NULL, TPM_ALG.ECDSA, TPM_ALG.ECDH]))
        p.scheme = (s, TPM_ALG.NULL if s == TPM_ALG.NULL else draw(hashes))
        p.curve = draw(st.sampled_from([TPM_ECC.NIST_P256, TPM_ECC.NIST_P384]))
        k = draw(st.sampled_from([TPM_ALG.NULL, TPM_ALG.KDF1_SP800_108]))
        p.kdf = (k, TPM_ALG.NULL if k == TPM_ALG.NULL else draw(hashes))
        p.unique = (draw(blob(66)), draw(blob(66)))
    elif t == TPM_ALG.KEYEDHASH:
        s = draw(st.sampled_from([TPM_ALG.NULL, TPM_ALG.HMAC]))
        p.scheme = (s, TPM_ALG.NULL if s == TPM_ALG.NULL else draw(hashes))
        p.unique = draw(blob(64))
    else:
        p.symmetric = (TPM_ALG.AES, draw(st.sampled_from([128, 256])), TPM_ALG.CFB)
        p.unique = draw(blob(64))
    return p


@settings(max_examples=300, deadline=None)
@given(publics())
def test_public_round_trip(pub):
    data = pub.marshal()
    again = Public.from_bytes(data)
    assert again.marshal() == data
    assert again.name == pub.name
    assert again.name[:2] == pub.name_alg.to_bytes(2, "big")


@settings(max_examples=200, deadline=None)
@given(publics(), st.data())
def test_public_truncated_is_insufficient(pub, data):
    raw = pub.marshal()
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(TpmError) as exc:
        Public.from_bytes(raw[:cut])
    assert exc.value.rc in (TPM_RC.INSUFFICIENT, TPM_RC.SIZE)


@given(selection)
def test_pcr_selection_round_trip(sel):
    assert from_bytes(marshal_pcr_selection(sel)) == sel


@given(st.sets(st.integers(0, 23)))
def test_select_bytes_and_indices(indices):
    assert pcr_indices(select_bytes(indices)) == sorted(indices)


@given(st.binary(max_size=4))
def test_pcr_indices_are_the_bits_set(select):
    """Bit b of byte k selects PCR 8k + b (Part 2, 10.6.2), every byte value."""
    assert pcr_indices(select) == [i for i in range(8 * len(select))
                                   if select[i // 8] >> (i % 8) & 1]


def test_selection_reference_bytes():
    assert marshal_pcr_selection([(TPM_ALG.SHA256, select_bytes([0, 1]))]).hex() == (
        "00000001000b03030000")


def test_selection_too_long_is_value():
    with pytest.raises(TpmError) as exc:
        from_bytes(bytes.fromhex("00000001000b05ffffffffff"))
    assert exc.value.rc == TPM_RC.VALUE


signatures = st.one_of(
    st.builds(lambda h, r, s: Signature(TPM_ALG.ECDSA, h, r=r, s=s), hashes, blob(66), blob(66)),
    st.builds(lambda a, h, s: Signature(a, h, sig=s),
              st.sampled_from([TPM_ALG.RSASSA, TPM_ALG.RSAPSS]), hashes, blob(512)),
    st.builds(lambda d: Signature(TPM_ALG.HMAC, TPM_ALG.SHA256, digest=d),
              st.binary(min_size=32, max_size=32)),
    st.just(Signature(TPM_ALG.NULL)))


@given(signatures)
def test_signature_round_trip(sig):
    assert Signature.from_bytes(sig.marshal()) == sig


u64s, u32s = st.integers(0, 2 ** 64 - 1), st.integers(0, 2 ** 32 - 1)
attested = st.one_of(
    st.tuples(st.just(TPM_ST.ATTEST_QUOTE),
              st.builds(lambda s, d: {"pcr_select": s, "pcr_digest": d}, selection, blob(64))),
    st.tuples(st.just(TPM_ST.ATTEST_CERTIFY),
              st.builds(lambda n, q: {"name": n, "qualified_name": q}, blob(66), blob(66))),
    st.tuples(st.just(TPM_ST.ATTEST_CREATION),
              st.builds(lambda n, c: {"object_name": n, "creation_hash": c}, blob(66), blob(64))),
    st.tuples(st.just(TPM_ST.ATTEST_NV),
              st.builds(lambda n, o, c: {"index_name": n, "offset": o, "nv_contents": c},
                        blob(66), st.integers(0, 65535), blob(128))),
    st.tuples(st.just(TPM_ST.ATTEST_TIME),
              st.builds(lambda t, c, f: {"time": t, "clock_info": c, "firmware_version": f},
                        u64s, st.tuples(u64s, u32s, u32s, st.integers(0, 1)), u64s)))


@settings(max_examples=200)
@given(attested, blob(66), blob(64), u64s, u32s, u32s, st.integers(0, 1), u64s)
def test_attest_round_trip(kind, signer, extra, clock, reset, restart, safe, fw):
    t, a = kind
    att = Attest(t, signer, extra, clock, reset, restart, safe, fw, a)
    assert Attest.from_bytes(att.marshal()) == att


def test_attest_reference_quote_parses():
    raw = bytes.fromhex(
        "ff54434780180022000baf64ff52efa0b71fa1ab48e5f48650ceffc1cf269d9a9ab2c0732ff55e39cd12"
        "0004abcdef0100000000000011ed000000010000000001201910230016363600000001000b030700000020"
        "fd4f4f038ff448cae063470b973dcb487f62784843115711ad22eeb80edc917c")
    att = Attest.from_bytes(raw)
    assert att.type == TPM_ST.ATTEST_QUOTE and att.extra_data == bytes.fromhex("abcdef01")
    assert att.clock == 4589 and att.firmware_version == 0x2019102300163636
    assert att.marshal() == raw


@given(st.integers(0x01000000, 0x01FFFFFF), hashes, u32s, blob(64), st.integers(0, 2048),
       blob(64))
def test_nv_public_round_trip(index, alg, attrs, policy, size, auth):
    nv = NvIndex(index, alg, attrs, policy, size, auth)
    again = NvIndex.deserialize(nv.serialize())
    assert again.marshal_public() == nv.marshal_public() and again.name == nv.name
    r = Reader(nv.marshal_public())
    assert NvIndex.parse_public(r) == (index, alg, attrs, policy, size)


@settings(max_examples=100, deadline=None)
@given(publics(), blob(64), blob(64), st.one_of(st.none(), blob(128)),
       st.sampled_from([0x40000001, 0x4000000B, 0x40000007]), blob(34))
def test_object_serialisation_round_trip(pub, auth, seed, secret, hierarchy, qn):
    obj = TpmObject(pub, auth, seed, secret, hierarchy, qn)
    again = TpmObject.deserialize(obj.serialize())
    assert again.serialize() == obj.serialize()


def test_tpm2b_limits():
    with pytest.raises(TpmError) as exc:
        Reader(tpm2b(b"x" * 70)).tpm2b(64)
    assert exc.value.rc == TPM_RC.SIZE


def test_names():
    assert command_name(0x182) == "TPM2_PCR_Extend"
    assert command_name(0x999) == "TPM2_CC_0x999"
    assert rc_name(0x98E) == "TPM_RC_AUTH_FAIL (session 1)"
    assert rc_name(0x1C4) == "TPM_RC_VALUE (parameter 1)"
    assert rc_name(0x910) == "TPM_RC_REFERENCE_H0"
    assert rc_name(0x143) == "TPM_RC_COMMAND_CODE"

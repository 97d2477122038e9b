"""Keys: deterministic primaries, Create/Load, quotes verified with
``cryptography``, signatures, restricted-key rules, contexts, persistence."""

import hashlib

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils

from simxen.tpm import client, keys
from simxen.tpm.attest import Attest
from simxen.tpm.client import parse_response, response_code
from simxen.tpm.commands.attestation import FIRMWARE_VERSION
from simxen.tpm.kdf import kdfa
from simxen.tpm.constants import TPM_ALG, TPM_CC, TPM_RC, TPM_RH, TPM_ST, TPM_SU
from simxen.tpm.marshal import tpm2b, u16, u32
from simxen.tpm.signature import Signature

from tpm_helpers import (ecc_ak_template, ecc_storage_template, make_engine, rsa_ak_template,
                         rsa_storage_template, sealed_template)


def primary(tpm, template, hierarchy=TPM_RH.OWNER, **kw):
    return client.parse_create_primary(tpm.execute(
        client.create_primary_command(hierarchy, template, **kw)))


def create_and_load(tpm, parent, template, **kw):
    priv, pub = client.parse_create(tpm.execute(client.create_command(parent, template, **kw)))
    handle, name = client.parse_load(tpm.execute(client.load_command(parent, priv, pub)))
    return handle, pub, name, priv


def test_primary_is_deterministic_per_seed():
    a, b, c = make_engine(b"s1"), make_engine(b"s1"), make_engine(b"s2")
    ka = primary(a, ecc_storage_template())[1].unique
    assert ka == primary(b, ecc_storage_template())[1].unique
    assert ka != primary(c, ecc_storage_template())[1].unique
    # a different template (unique field) gives a different key
    t = ecc_storage_template()
    t.unique = (b"\x01" * 32, b"")
    assert primary(a, t)[1].unique != ka


def test_name_is_namealg_and_hash_of_public(tpm):
    handle, pub, name = primary(tpm, ecc_storage_template())
    assert name == b"\x00\x0b" + hashlib.sha256(pub.marshal()).digest()
    rp, rname, qn = client.parse_read_public(tpm.execute(client.read_public_command(handle)))
    assert rname == name
    assert qn == b"\x00\x0b" + hashlib.sha256(u32(TPM_RH.OWNER) + name).digest()


def test_rsa_primary_is_cached_and_deterministic():
    a, b = make_engine(b"rsa"), make_engine(b"rsa")
    _, pa, _ = primary(a, rsa_storage_template())
    _, pb, _ = primary(b, rsa_storage_template())
    assert pa.unique == pb.unique and len(pa.unique) == 256


def quote(tpm, ak, scheme, data=b"\xab\xcd\xef\x01"):
    return client.parse_quote(tpm.execute(client.quote_command(
        ak, data, {TPM_ALG.SHA256: [0, 1, 2]}, scheme)))


@pytest.mark.parametrize("make_template,scheme", [
    (ecc_ak_template, (TPM_ALG.ECDSA, TPM_ALG.SHA256)),
    (rsa_ak_template, (TPM_ALG.RSASSA, TPM_ALG.SHA256)),
    (lambda: rsa_ak_template(TPM_ALG.RSAPSS), (TPM_ALG.RSAPSS, TPM_ALG.SHA256)),
])
def test_quote_verifies_with_cryptography(tpm, make_template, scheme):
    client.check(tpm.execute(client.pcr_extend_command(1, {TPM_ALG.SHA256: b"\x07" * 32})))
    ek, _, ek_name = primary(tpm, ecc_storage_template(), TPM_RH.ENDORSEMENT)
    ak, ak_pub, ak_name, _ = create_and_load(tpm, ek, make_template())
    raw, att, sig = quote(tpm, ak, scheme)
    assert att.magic == 0xFF544347 and att.type == TPM_ST.ATTEST_QUOTE
    assert att.extra_data == b"\xab\xcd\xef\x01"
    _, values = client.parse_pcr_read(tpm.execute(client.pcr_read_command(
        {TPM_ALG.SHA256: [0, 1, 2]})))
    pcrs = b"".join(values[TPM_ALG.SHA256][i] for i in (0, 1, 2))
    assert att.attested["pcr_digest"] == hashlib.sha256(pcrs).digest()
    # qualifiedSigner = QN(AK) = H(QN(EK) || Name(AK)), QN(EK) = H(RH_ENDORSEMENT || Name(EK))
    qn_ek = b"\x00\x0b" + hashlib.sha256(u32(TPM_RH.ENDORSEMENT) + ek_name).digest()
    assert att.qualified_signer == b"\x00\x0b" + hashlib.sha256(qn_ek + ak_name).digest()
    digest = hashlib.sha256(raw).digest()
    if ak_pub.type == TPM_ALG.ECC:
        pub = keys.ecc_public_key(ak_pub.curve, *ak_pub.unique)
        der = utils.encode_dss_signature(int.from_bytes(sig.r, "big"), int.from_bytes(sig.s, "big"))
        pub.verify(der, raw, ec.ECDSA(hashes.SHA256()))
    else:
        pub = keys.rsa_public_key(ak_pub.unique, ak_pub.exponent)
        pad = (padding.PKCS1v15() if scheme[0] == TPM_ALG.RSASSA else
               padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32))
        pub.verify(sig.sig, digest, pad, utils.Prehashed(hashes.SHA256()))


def test_quote_is_deterministic_for_ecc():
    outs = []
    for _ in range(2):
        tpm = make_engine()
        ek, _, _ = primary(tpm, ecc_storage_template(), TPM_RH.ENDORSEMENT)
        ak, *_ = create_and_load(tpm, ek, ecc_ak_template())
        outs.append(tpm.execute(client.quote_command(ak, b"n", {TPM_ALG.SHA256: [0]},
                                                     (TPM_ALG.ECDSA, TPM_ALG.SHA256))))
    assert outs[0] == outs[1]


def _obfuscated(tpm, qualified_signer):
    """(firmwareVersion, resetCount, restartCount) as the reference's FillInAttestInfo
    obfuscates them: KDFa with the context hash (the largest implemented: SHA-512) of
    shProof, "OBFUSCATE", qualifiedSigner, 128 bits, read as two little-endian UINT64s."""
    o = kdfa("sha512", tpm.sh_proof, b"OBFUSCATE", qualified_signer, b"", 128)   # context hash
    low, high = int.from_bytes(o[:8], "little"), int.from_bytes(o[8:], "little")
    return ((FIRMWARE_VERSION + low) & (2**64 - 1), (tpm.reset_count + (high >> 32)) & 0xFFFFFFFF,
            (tpm.restart_count + high) & 0xFFFFFFFF)


def test_owner_key_quote_obfuscates_counters(tpm):
    srk, _, _ = primary(tpm, ecc_storage_template())
    ak, *_ = create_and_load(tpm, srk, ecc_ak_template())
    _, att, _ = quote(tpm, ak, (TPM_ALG.ECDSA, TPM_ALG.SHA256))
    _, _, qualified = client.parse_read_public(tpm.execute(client.read_public_command(ak)))
    assert att.qualified_signer == qualified
    # keyed by the qualifiedSigner (simxen keyed it by the Name)
    assert (att.firmware_version, att.reset_count, att.restart_count) == _obfuscated(tpm, qualified)


def test_certify_with_no_signing_key_names_tpm_rh_null_and_obfuscates(tpm):
    srk, _, _ = primary(tpm, ecc_storage_template())
    cmd = client.build_command(TPM_CC.Certify, (srk, TPM_RH.NULL),
                               tpm2b(b"nonce") + u16(TPM_ALG.NULL),
                               [client.password_auth(), client.password_auth()])
    r = parse_response(tpm.execute(cmd)).params
    att = Attest.from_bytes(r.tpm2b())
    assert r.u16() == TPM_ALG.NULL and not r.remaining()     # an unsigned attestation
    # qualifiedSigner is TPM_RH_NULL's name, the handle (libtpms: 4 bytes longer than empty)
    assert att.qualified_signer == u32(TPM_RH.NULL)
    assert (att.firmware_version, att.reset_count, att.restart_count) == \
        _obfuscated(tpm, u32(TPM_RH.NULL))


def test_quote_scheme_mismatch_is_scheme(tpm):
    ek, _, _ = primary(tpm, ecc_storage_template(), TPM_RH.ENDORSEMENT)
    ak, *_ = create_and_load(tpm, ek, ecc_ak_template())
    rsp = tpm.execute(client.quote_command(ak, b"", {TPM_ALG.SHA256: [0]},
                                           (TPM_ALG.RSASSA, TPM_ALG.SHA256)))
    assert response_code(rsp) == TPM_RC.SCHEME | 0x240


def test_storage_key_cannot_quote(tpm):
    srk, _, _ = primary(tpm, ecc_storage_template())
    rsp = tpm.execute(client.quote_command(srk, b"", {TPM_ALG.SHA256: [0]},
                                           (TPM_ALG.ECDSA, TPM_ALG.SHA256)))
    assert response_code(rsp) == TPM_RC.KEY | 0x100


def hash_command(data, hierarchy=TPM_RH.OWNER):
    return client.build_command(TPM_CC.Hash, params=tpm2b(data) + u16(TPM_ALG.SHA256)
                                + u32(hierarchy))


def sign_command(key, digest, ticket, scheme=(TPM_ALG.ECDSA, TPM_ALG.SHA256), password=b""):
    return client.build_command(TPM_CC.Sign, (key,), tpm2b(digest) + u16(scheme[0])
                                + u16(scheme[1]) + ticket, [client.password_auth(password)])


def test_restricted_key_signs_only_with_a_valid_ticket(tpm):
    srk, _, _ = primary(tpm, ecc_storage_template())
    ak, *_ = create_and_load(tpm, srk, ecc_ak_template())
    r = parse_response(tpm.execute(hash_command(b"ordinary data"))).params
    digest = r.tpm2b()
    ticket = r.data[r.pos:r.end]
    assert response_code(tpm.execute(sign_command(ak, digest, ticket))) == 0
    null_ticket = u16(TPM_ST.HASHCHECK) + u32(TPM_RH.NULL) + tpm2b(b"")
    assert response_code(tpm.execute(sign_command(ak, digest, null_ticket))) == 0x3E0
    # data that starts like a TPMS_ATTEST gets only the NULL ticket
    r = parse_response(tpm.execute(hash_command(b"\xffTCG fake quote"))).params
    fake_digest = r.tpm2b()
    fake_ticket = r.data[r.pos:r.end]
    assert fake_ticket == null_ticket
    assert response_code(tpm.execute(sign_command(ak, fake_digest, fake_ticket))) == 0x3E0


def test_unrestricted_key_signs_and_verifies(tpm):
    srk, _, _ = primary(tpm, ecc_storage_template())
    key, pub, _, _ = create_and_load(tpm, srk, ecc_ak_template(0x00040072), user_auth=b"pw")
    digest = hashlib.sha256(b"msg").digest()
    null_ticket = u16(TPM_ST.HASHCHECK) + u32(TPM_RH.NULL) + tpm2b(b"")
    assert response_code(tpm.execute(sign_command(key, digest, null_ticket))) == 0x98E
    raw = tpm.execute(sign_command(key, digest, null_ticket, password=b"pw"))
    sig = Signature.parse(parse_response(raw).params)
    verify = client.build_command(TPM_CC.VerifySignature, (key,), tpm2b(digest) + sig.marshal())
    assert response_code(tpm.execute(verify)) == 0
    bad = client.build_command(TPM_CC.VerifySignature, (key,),
                               tpm2b(hashlib.sha256(b"other").digest()) + sig.marshal())
    assert response_code(tpm.execute(bad)) == TPM_RC.SIGNATURE | 0x240


def test_tampered_private_is_integrity(tpm):
    srk, _, _ = primary(tpm, ecc_storage_template())
    priv, pub = client.parse_create(tpm.execute(client.create_command(srk, ecc_ak_template())))
    bad = priv[:-1] + bytes([priv[-1] ^ 1])
    assert response_code(tpm.execute(client.load_command(srk, bad, pub))) == TPM_RC.INTEGRITY | 0x140


def test_seal_and_unseal_with_password(tpm):
    srk, _, _ = primary(tpm, ecc_storage_template())
    h, pub, _, _ = create_and_load(tpm, srk, sealed_template(attrs=0x00000052),
                                   data=b"top secret", user_auth=b"pw")
    unseal = client.build_command(TPM_CC.Unseal, (h,), b"", [client.password_auth(b"pw")])
    assert client.parse_response(tpm.execute(unseal)).params.tpm2b() == b"top secret"
    assert pub.unique != b""


def test_object_memory_limit(tpm):
    handles = [primary(tpm, ecc_storage_template())[0] for _ in range(8)]
    assert len(set(handles)) == 8
    rsp = tpm.execute(client.create_primary_command(TPM_RH.OWNER, ecc_storage_template()))
    assert response_code(rsp) == TPM_RC.OBJECT_MEMORY
    client.check(tpm.execute(client.flush_context_command(handles[3])))
    assert primary(tpm, ecc_storage_template())[0] == handles[3]


def test_context_save_load_object_and_session(tpm):
    srk, _, name = primary(tpm, ecc_storage_template())
    ctx = client.parse_response(tpm.execute(client.build_command(
        TPM_CC.ContextSave, (srk,)))).params
    blob = ctx.data[ctx.pos:ctx.end]
    client.check(tpm.execute(client.flush_context_command(srk)))
    for _ in range(2):      # object contexts load many times
        rsp = client.parse_response(tpm.execute(client.build_command(TPM_CC.ContextLoad,
                                                                     params=blob)), 1)
        assert client.parse_read_public(tpm.execute(client.read_public_command(
            rsp.handles[0])))[1] == name
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    assert response_code(tpm.execute(client.build_command(TPM_CC.ContextLoad,
                                                          params=tampered))) == 0x1DF
    sh, _ = client.parse_start_auth_session(tpm.execute(
        client.start_auth_session_command(b"n" * 32)))
    sblob = client.parse_response(tpm.execute(client.build_command(
        TPM_CC.ContextSave, (sh,)))).params
    sblob = sblob.data[sblob.pos:sblob.end]
    assert client.parse_response(tpm.execute(client.build_command(
        TPM_CC.ContextLoad, params=sblob)), 1).handles == [sh]
    # a session context loads only once
    assert response_code(tpm.execute(client.build_command(TPM_CC.ContextLoad,
                                                          params=sblob))) == 0x18B | 0x40


def test_an_object_context_dies_at_tpm_reset_and_lives_through_resume(tpm):
    """Part 1's context integrity binds a value that changes at each TPM
    Reset: a context saved before one does not load after it (the reference's
    totalResetCount), while a TPM Resume keeps it."""
    srk, _, name = primary(tpm, ecc_storage_template())
    ctx = client.parse_response(tpm.execute(client.build_command(
        TPM_CC.ContextSave, (srk,)))).params
    blob = ctx.data[ctx.pos:ctx.end]
    load = lambda: tpm.execute(client.build_command(TPM_CC.ContextLoad, params=blob))  # noqa: E731
    client.check(tpm.execute(client.shutdown_command(TPM_SU.STATE)))
    tpm.power_on()
    client.check(tpm.execute(client.startup_command(TPM_SU.STATE)))         # TPM Resume
    handle = client.parse_response(load(), 1).handles[0]
    assert client.parse_read_public(tpm.execute(client.read_public_command(handle)))[1] == name
    client.check(tpm.execute(client.shutdown_command()))
    tpm.power_on()
    client.check(tpm.execute(client.startup_command()))                      # TPM Reset
    assert response_code(load()) == TPM_RC.INTEGRITY | 0x140


def test_evict_control_persists_and_removes(tpm):
    srk, _, name = primary(tpm, ecc_storage_template())
    evict = lambda h: tpm.execute(client.build_command(
        TPM_CC.EvictControl, (TPM_RH.OWNER, h), u32(0x81000001), [client.password_auth()]))
    client.check(evict(srk))
    assert response_code(evict(srk)) == TPM_RC.NV_DEFINED
    assert client.parse_read_public(tpm.execute(client.read_public_command(0x81000001)))[1] == name
    client.check(evict(0x81000001))
    assert response_code(tpm.execute(client.read_public_command(0x81000001))) == 0x18B


@pytest.mark.parametrize("ek_template", [ecc_storage_template, rsa_storage_template])
def test_make_and_activate_credential(tpm, ek_template):
    ek, ek_pub, _ = primary(tpm, ek_template(), TPM_RH.ENDORSEMENT)
    ak, _, ak_name, _ = create_and_load(tpm, ek, ecc_ak_template())
    r = parse_response(tpm.execute(client.build_command(
        TPM_CC.MakeCredential, (ek,), tpm2b(b"secret credential") + tpm2b(ak_name)))).params
    blob, secret = r.tpm2b(), r.tpm2b()
    activate = lambda b: tpm.execute(client.build_command(
        TPM_CC.ActivateCredential, (ak, ek), tpm2b(b) + tpm2b(secret),
        [client.password_auth(), client.password_auth()]))
    assert parse_response(activate(blob)).params.tpm2b() == b"secret credential"
    # bound to the AK's Name: another object cannot activate it
    other, *_ = create_and_load(tpm, ek, ecc_ak_template())
    wrong = tpm.execute(client.build_command(
        TPM_CC.ActivateCredential, (other, ek), tpm2b(blob) + tpm2b(secret),
        [client.password_auth(), client.password_auth()]))
    assert response_code(wrong) == TPM_RC.INTEGRITY | 0x140
    assert response_code(activate(blob[:-1] + bytes([blob[-1] ^ 1]))) == TPM_RC.INTEGRITY | 0x140


def rsa_decrypt_key(tpm):
    srk, _, _ = primary(tpm, ecc_storage_template())
    tmpl = rsa_ak_template(TPM_ALG.NULL, attrs=0x00020072)      # decrypt, not restricted
    tmpl.scheme = (TPM_ALG.NULL, TPM_ALG.NULL)
    h, pub, _, _ = create_and_load(tpm, srk, tmpl)
    return h, pub


@pytest.mark.parametrize("scheme", [(TPM_ALG.OAEP, TPM_ALG.SHA256), (TPM_ALG.RSAES, 0),
                                    (TPM_ALG.NULL, 0)])
def test_rsa_encrypt_decrypt(tpm, scheme):
    h, pub = rsa_decrypt_key(tpm)
    s = u16(scheme[0]) + (u16(scheme[1]) if scheme[0] == TPM_ALG.OAEP else b"")
    label = tpm2b(b"label") if scheme[0] == TPM_ALG.OAEP else tpm2b(b"")
    ct = parse_response(tpm.execute(client.build_command(
        TPM_CC.RSA_Encrypt, (h,), tpm2b(b"hello") + s + label))).params.tpm2b()
    assert len(ct) == 256
    pt = parse_response(tpm.execute(client.build_command(
        TPM_CC.RSA_Decrypt, (h,), tpm2b(ct) + s + label, [client.password_auth()]))).params.tpm2b()
    assert pt.lstrip(b"\0") == b"hello"
    if scheme[0] == TPM_ALG.OAEP:       # an independent decryption of our OAEP encoding
        key = tpm.objects[h].private_key()
        assert key.decrypt(ct, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()),
                                            algorithm=hashes.SHA256(),
                                            label=b"label\0")) == b"hello"


def test_restricted_key_refuses_rsa_decrypt(tpm):
    srk, _, _ = primary(tpm, rsa_storage_template())
    cmd = client.build_command(TPM_CC.RSA_Decrypt, (srk,), tpm2b(bytes(256))
                               + u16(TPM_ALG.RSAES) + tpm2b(b""), [client.password_auth()])
    assert response_code(tpm.execute(cmd)) == TPM_RC.ATTRIBUTES | 0x100


def test_change_eps_gives_a_new_ek(tpm):
    from tpm_helpers import ecc_storage_template as tmpl
    _, ek1, _ = primary(tpm, tmpl(), TPM_RH.ENDORSEMENT)
    client.check(tpm.execute(client.build_command(TPM_CC.ChangeEPS, (TPM_RH.PLATFORM,), b"",
                                                  [client.password_auth()])))
    assert not tpm.objects                      # the old EK went with its seed
    _, ek2, _ = primary(tpm, tmpl(), TPM_RH.ENDORSEMENT)
    _, srk_a, _ = primary(tpm, tmpl())
    assert ek2.unique != ek1.unique
    owner = make_engine()
    assert srk_a.unique == primary(owner, tmpl())[1].unique     # SPS untouched


def test_ecdh_keygen_and_zgen_agree(tpm):
    from cryptography.hazmat.primitives.asymmetric import ec as _ec
    from simxen.tpm.public import Public
    srk, _, _ = primary(tpm, ecc_storage_template())
    tmpl = Public(TPM_ALG.ECC, TPM_ALG.SHA256, 0x00020072, scheme=(TPM_ALG.ECDH, TPM_ALG.SHA256),
                  curve=3, unique=(b"", b""))
    h, pub, _, _ = create_and_load(tpm, srk, tmpl)
    r = parse_response(tpm.execute(client.build_command(TPM_CC.ECDH_KeyGen, (h,)))).params
    z_blob, e_blob = r.tpm2b(), r.tpm2b()
    rsp = tpm.execute(client.build_command(TPM_CC.ECDH_ZGen, (h,), tpm2b(e_blob),
                                           [client.password_auth()]))
    assert parse_response(rsp).params.tpm2b() == z_blob
    # x of Z is what an ordinary ECDH gives
    from simxen.tpm.marshal import Reader
    er, zr = Reader(e_blob), Reader(z_blob)
    ex, ey, zx = er.tpm2b(), er.tpm2b(), zr.tpm2b()
    key = tpm.objects[h].private_key()
    assert key.exchange(_ec.ECDH(), keys.ecc_public_key(3, ex, ey)) == zx
    off_curve = tpm2b(tpm2b(ex) + tpm2b(bytes(31) + b"\x01"))
    assert response_code(tpm.execute(client.build_command(
        TPM_CC.ECDH_ZGen, (h,), off_curve, [client.password_auth()]))) == TPM_RC.ECC_POINT | 0x140

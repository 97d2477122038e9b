# Command audit and an audit session: tpm2_setcommandauditstatus puts
# GetRandom on the audit list, tpm2_getcommandauditdigest and
# tpm2_getsessionauditdigest sign the digests; the signatures verify with
# openssl and the digests equal H(H(0..0 || cpHash || rpHash)) computed here.
cat > attest_parts.py <<'PY'
def attested(path, kind):
    """The attested part of a TPMS_ATTEST (tpm2_print has no audit types)."""
    b = open(path, "rb").read()
    assert b[:4] == b"\xffTCG" and int.from_bytes(b[4:6], "big") == kind
    pos = 6
    for _ in range(2):                      # qualifiedSigner, extraData
        pos += 2 + int.from_bytes(b[pos:pos + 2], "big")
    return b[pos + 17 + 8:]                 # after clockInfo and firmwareVersion
PY
tpm2_createprimary -Q -C o -g sha256 -G ecc -c primary.ctx
tpm2_create -Q -C primary.ctx -G ecc -u key.pub -r key.prv -a "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign"
tpm2_load -Q -C primary.ctx -u key.pub -r key.prv -c key.ctx
tpm2_readpublic -Q -c key.ctx -f pem -o key.pem
# command audit: a new digest hash (alone), then the list
tpm2_setcommandauditstatus -g sha256
tpm2_setcommandauditstatus TPM2_CC_GetRandom
# a signed digest resets it: the next one covers only what follows
tpm2_getcommandauditdigest -Q -c key.ctx -g sha256 -m first.att -s first.sig -f plain
tpm2_getrandom -o r1.bin 16
tpm2_getcommandauditdigest -Q -c key.ctx -g sha256 -m cmd.att -s cmd.sig -f plain
openssl dgst -sha256 -verify key.pem -signature cmd.sig cmd.att
# the digest covers exactly the one GetRandom
python3 - <<'PY'
import hashlib
from attest_parts import attested
H = lambda b: hashlib.sha256(b).digest()
rand = open("r1.bin", "rb").read()
cc_rand = (0x17B).to_bytes(4, "big")
cp = H(cc_rand + (16).to_bytes(2, "big"))
rp = H(bytes(4) + cc_rand + (16).to_bytes(2, "big") + rand)
d = H(bytes(32) + cp + rp)
a = attested("cmd.att", 0x8015)          # auditCounter u64, digestAlg, auditDigest
assert int.from_bytes(a[8:10], "big") == 0x000B
assert a[12:12 + int.from_bytes(a[10:12], "big")] == d, (a.hex(), d.hex())
PY
# an audit session over two commands
tpm2_startauthsession -S audit.ctx --audit-session
tpm2_getrandom -S audit.ctx -o r2.bin 8
tpm2_getrandom -S audit.ctx -o r3.bin 8
tpm2_getsessionauditdigest -Q -c key.ctx -g sha256 -m s.att -s s.sig -f plain -S audit.ctx
openssl dgst -sha256 -verify key.pem -signature s.sig s.att
python3 - <<'PY'
import hashlib
from attest_parts import attested
H = lambda b: hashlib.sha256(b).digest()
d = bytes(32)
for f in ("r2.bin", "r3.bin"):
    r = open(f, "rb").read()
    cp = H((0x17B).to_bytes(4, "big") + (8).to_bytes(2, "big"))
    rp = H(bytes(4) + (0x17B).to_bytes(4, "big") + (8).to_bytes(2, "big") + r)
    d = H(d + cp + rp)
a = attested("s.att", 0x8016)            # exclusiveSession u8, sessionDigest
# (not exclusive: tpm2_getrandom asks GetCapability outside the session first)
assert a[0] in (0, 1) and a[3:3 + int.from_bytes(a[1:3], "big")] == d, (a.hex(), d.hex())
PY
tpm2_flushcontext audit.ctx

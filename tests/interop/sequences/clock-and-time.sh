# Time: tpm2_readclock, tpm2_setclock (forward only), tpm2_clockrateadjust,
# and tpm2_gettime, whose signed TPMS_TIME_ATTEST_INFO verifies with openssl
# and carries the clock just set.
tpm2_readclock > clock1.yaml
c1=$(awk '/clock:/ {print $2; exit}' clock1.yaml)
target=$((c1 + 3600000))
tpm2_setclock $target
tpm2_readclock > clock2.yaml
c2=$(awk '/clock:/ {print $2; exit}' clock2.yaml)
[ "$c2" -ge "$target" ]
expect_rc 0x1c4 tpm2_setclock $c1                  # never backwards (TPM_RC_VALUE, parameter 1)
tpm2_clockrateadjust ss
tpm2_clockrateadjust fff
tpm2_createprimary -Q -C e -c primary.ctx
tpm2_create -Q -G rsa -u rsa.pub -r rsa.priv -C primary.ctx
tpm2_load -Q -C primary.ctx -u rsa.pub -r rsa.priv -c rsa.ctx
tpm2_readpublic -Q -c rsa.ctx -f pem -o rsa.pem
tpm2_gettime -c rsa.ctx -o attest.sig --attestation attest.data -f plain -q 01020304
openssl dgst -sha256 -verify rsa.pem -signature attest.sig attest.data
python3 - "$target" <<'PY'
import sys
b = open("attest.data", "rb").read()
assert b[:4] == b"\xffTCG" and b[4:6] == b"\x80\x19"        # TPM_ST_ATTEST_TIME
signer = 2 + int.from_bytes(b[6:8], "big")
assert b[6 + signer:6 + signer + 6] == b"\x00\x04\x01\x02\x03\x04"   # extraData
pos = 6
for _ in range(2):
    pos += 2 + int.from_bytes(b[pos:pos + 2], "big")
clock = int.from_bytes(b[pos + 25 + 8:pos + 25 + 16], "big")  # attested.clockInfo.clock
assert clock >= int(sys.argv[1]), (clock, sys.argv[1])
PY

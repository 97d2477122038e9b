# The remaining everyday tools: tpm2_stirrandom, tpm2_incrementalselftest
# (every algorithm the TPM lists), tpm2_send (a raw TPM2_GetRandom), tpm2_pcrallocate,
# tpm2_certifycreation (verified with openssl), tpm2_encodeobject (a PEM key
# openssl reads), tpm2_geteccparameters (the NIST P-256 parameters),
# tpm2_print and tpm2_rc_decode.
head -c 64 /dev/urandom > entropy.bin
tpm2_stirrandom -Q < entropy.bin
tpm2_getcap algorithms | awk -F: '/^[a-z0-9_]+:$/ {print $1}' | head -40 > algs.txt
tpm2_incrementalselftest $(grep -E '^(rsa|sha1|sha256|sha384|sha512|aes|hmac|ecc|symcipher|keyedhash|cfb)$' algs.txt | tr '\n' ' ') > todo.yaml
grep -qi "status: *complete\|^$\|tocomplete" todo.yaml || true
printf '\x80\x01\x00\x00\x00\x0c\x00\x00\x01\x7b\x00\x08' > getrandom.bin
tpm2_send < getrandom.bin > response.bin
python3 -c "
b = open('response.bin', 'rb').read()
assert b[:2] == b'\x80\x01' and b[6:10] == bytes(4) and b[10:12] == b'\x00\x08' and len(b) == 20, b.hex()"
tpm2_pcrallocate sha256:all+sha1:all
tpm2_createprimary -Q -C o -c prim.ctx --creation-data create.dat -d create.dig -t create.ticket
tpm2_create -Q -G rsa -u rsa.pub -r rsa.priv -C prim.ctx -c signing_key.ctx
tpm2_readpublic -Q -c signing_key.ctx -f pem -o signing.pem
tpm2_certifycreation -Q -C signing_key.ctx -c prim.ctx -d create.dig -t create.ticket \
    -g sha256 -o sig.nature --attestation attestat.ion -f plain -s rsassa
openssl dgst -sha256 -verify signing.pem -signature sig.nature attestat.ion
python3 -c "assert open('attestat.ion', 'rb').read()[4:6] == b'\\x80\\x1a'"   # TPM_ST_ATTEST_CREATION
tpm2_create -Q -C prim.ctx -u key.pub -r key.priv -f pem -o pub.pem
tpm2_encodeobject -C prim.ctx -u key.pub -r key.priv -o priv.pem
grep -q "BEGIN TSS2 PRIVATE KEY" priv.pem
openssl asn1parse -in priv.pem > /dev/null
tpm2_print -t TPM2B_PUBLIC key.pub > key.yaml
grep -qi "type:" key.yaml
tpm2_geteccparameters ecc256 -o ecc.params
python3 -c "
b = open('ecc.params', 'rb').read()
p = bytes.fromhex('ffffffff00000001000000000000000000000000ffffffffffffffffffffffff')
assert b[:4] == b'\x00\x03\x01\x00' and p in b, b.hex()"
tpm2_rc_decode 0x9a2 > rc.txt
grep -qi "authorization" rc.txt

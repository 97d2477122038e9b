# Compound and indirect policies: tpm2_policyor (either branch unseals),
# tpm2_policyauthorize (a signed PCR policy), tpm2_policycphash and
# tpm2_policynamehash (approved exact commands), tpm2_policylocality,
# tpm2_policyrestart, tpm2_getpolicydigest and tpm2_createpolicy, whose
# digests are recomputed here from Part 3's formulas.
tpm2_createprimary -Q -C o -c prim.ctx
echo "secret" > secret.dat
# PolicyOR over PolicyPCR and PolicyPassword
tpm2_startauthsession -S s.ctx
tpm2_policypcr -Q -S s.ctx -L policy.pcr -l sha256:0,1,2,3
tpm2_flushcontext s.ctx
tpm2_startauthsession -S s.ctx
tpm2_policypassword -Q -S s.ctx -L policy.pass
tpm2_flushcontext s.ctx
tpm2_startauthsession -S s.ctx
tpm2_policyor -Q -S s.ctx -L policy.or sha256:policy.pass,policy.pcr
tpm2_flushcontext s.ctx
python3 - <<'PY'
import hashlib
H = lambda b: hashlib.sha256(b).digest()
pw = open("policy.pass", "rb").read()
assert pw == H(bytes(32) + (0x16B).to_bytes(4, "big"))           # PolicyAuthValue's CC
pcr = open("policy.pcr", "rb").read()
want = H(bytes(32) + (0x171).to_bytes(4, "big") + pw + pcr)
assert open("policy.or", "rb").read() == want
PY
tpm2_create -Q -C prim.ctx -u or.pub -r or.priv -L policy.or -i secret.dat
tpm2_load -Q -C prim.ctx -u or.pub -r or.priv -c or.ctx
for branch in pass pcr; do
    tpm2_startauthsession -S s.ctx --policy-session
    if [ $branch = pass ]; then tpm2_policypassword -Q -S s.ctx; \
    else tpm2_policypcr -Q -S s.ctx -l sha256:0,1,2,3; fi
    tpm2_policyor -Q -S s.ctx sha256:policy.pass,policy.pcr
    tpm2_getpolicydigest -S s.ctx -o now.digest
    cmp now.digest policy.or
    tpm2_unseal -c or.ctx -p session:s.ctx -o out.$branch
    cmp out.$branch secret.dat
done
# PolicyRestart empties a session's digest
tpm2_startauthsession -S s.ctx --policy-session
tpm2_policypassword -Q -S s.ctx
tpm2_policyrestart -S s.ctx
tpm2_getpolicydigest -S s.ctx -o restarted.digest
cmp restarted.digest <(head -c 32 /dev/zero)
tpm2_flushcontext s.ctx
# tpm2_createpolicy builds the same PCR policy in one step
tpm2_createpolicy -Q --policy-pcr -l sha256:0,1,2,3 -L created.policy
cmp created.policy policy.pcr
# PolicyAuthorize: the object's policy names a signer; a signed PCR policy opens it
openssl genrsa -out signer.pem 2048 2>/dev/null
openssl rsa -in signer.pem -out signer.pub.pem -pubout 2>/dev/null
tpm2_loadexternal -Q -G rsa -C o -u signer.pub.pem -c signer.ctx -n signer.name
tpm2_startauthsession -S s.ctx
tpm2_policyauthorize -Q -S s.ctx -L authorized.policy -n signer.name
tpm2_flushcontext s.ctx
openssl dgst -sha256 -sign signer.pem -out pcr.signature policy.pcr
tpm2_create -Q -g sha256 -u auth.pub -r auth.priv -C prim.ctx -L authorized.policy -i secret.dat
tpm2_load -Q -C prim.ctx -u auth.pub -r auth.priv -c auth.ctx
tpm2_verifysignature -Q -c signer.ctx -g sha256 -m policy.pcr -s pcr.signature \
    -t verification.tkt -f rsassa
tpm2_startauthsession --policy-session -S s.ctx
tpm2_policypcr -Q -S s.ctx -l sha256:0,1,2,3
tpm2_policyauthorize -Q -S s.ctx -i policy.pcr -n signer.name -t verification.tkt
tpm2_unseal -p session:s.ctx -c auth.ctx -o out.auth
cmp out.auth secret.dat
# after PCR 3 changes the approved policy no longer holds: TPM_RC_VALUE
tpm2_pcrextend 3:sha256=$(printf '%064d' 1)
tpm2_startauthsession --policy-session -S s.ctx
tpm2_policypcr -Q -S s.ctx -l sha256:0,1,2,3
expect_rc 0x1c4 tpm2_policyauthorize -Q -S s.ctx -i policy.pcr -n signer.name -t verification.tkt
tpm2_flushcontext s.ctx
# PolicyCpHash: only this NV_SetBits (bits = 1) is approved
tpm2_startauthsession -S s.ctx -g sha256
tpm2_policyauthorize -Q -S s.ctx -L nv.authorized -n signer.name
tpm2_flushcontext s.ctx
tpm2_nvdefine -Q 1 -a "policywrite|authwrite|ownerread|nt=bits" -L nv.authorized
tpm2_nvsetbits -Q 1 -i 1 --cphash cp.hash
tpm2_startauthsession -S s.ctx -g sha256
tpm2_policycphash -Q -S s.ctx -L policy.cphash --cphash cp.hash
tpm2_flushcontext s.ctx
openssl dgst -sha256 -sign signer.pem -out cphash.sig policy.cphash
tpm2_verifysignature -Q -c signer.ctx -g sha256 -m policy.cphash -s cphash.sig \
    -t cphash.tkt -f rsassa
tpm2_startauthsession -S s.ctx --policy-session -g sha256
tpm2_policycphash -Q -S s.ctx --cphash cp.hash
tpm2_policyauthorize -Q -S s.ctx -i policy.cphash -n signer.name -t cphash.tkt
tpm2_nvsetbits -Q 1 -i 1 -P session:s.ctx
tpm2_nvread -Q 1 -s 8 -o bits.bin -C o
cmp bits.bin <(printf '\0\0\0\0\0\0\0\1')
# ... and setting another bit with the same approval is refused (TPM_RC_POLICY_FAIL)
tpm2_startauthsession -S s.ctx --policy-session -g sha256
tpm2_policycphash -Q -S s.ctx --cphash cp.hash
tpm2_policyauthorize -Q -S s.ctx -i policy.cphash -n signer.name -t cphash.tkt
expect_rc 0x99d tpm2_nvsetbits -Q 1 -i 2 -P session:s.ctx
tpm2_flushcontext s.ctx
# PolicyLocality(3): the digest is H(0 || CC || 0x08); at locality 0 unseal is refused
tpm2_startauthsession -S s.ctx
tpm2_policylocality -Q -S s.ctx -L policy.loc three
tpm2_flushcontext s.ctx
python3 -c "
import hashlib
want = hashlib.sha256(bytes(32) + (0x16F).to_bytes(4, 'big') + b'\x08').digest()
assert open('policy.loc', 'rb').read() == want"
tpm2_create -Q -C prim.ctx -u loc.pub -r loc.priv -L policy.loc -i secret.dat
tpm2_load -Q -C prim.ctx -u loc.pub -r loc.priv -c loc.ctx
tpm2_startauthsession --policy-session -S s.ctx
tpm2_policylocality -Q -S s.ctx three
expect_rc 0x907 tpm2_unseal -p session:s.ctx -c loc.ctx
tpm2_flushcontext s.ctx

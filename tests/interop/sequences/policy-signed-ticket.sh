# tpm2_policysigned with an openssl key, then tpm2_policyticket with the
# ticket it gave: both unseal a secret sealed to the signed policy; a
# signature over the wrong expiration is refused (TPM_RC_SIGNATURE).
openssl genrsa -out private.pem 2048 2>/dev/null
openssl rsa -in private.pem -outform PEM -pubout -out public.pem 2>/dev/null
tpm2_loadexternal -Q -C o -G rsa -u public.pem -c signing_key.ctx -n signing_key.name
echo "00 00 00 00" | xxd -r -p | openssl dgst -sha256 -sign private.pem -out signature.dat
tpm2_startauthsession -S session.ctx
tpm2_policysigned -S session.ctx -g sha256 -s signature.dat -f rsassa -c signing_key.ctx -L policy.signed
tpm2_flushcontext session.ctx
tpm2_createprimary -Q -C o -c prim.ctx
echo "plaintext" > secret.dat
tpm2_create -Q -u key.pub -r key.priv -C prim.ctx -i secret.dat -L policy.signed
tpm2_load -Q -C prim.ctx -u key.pub -r key.priv -c key.ctx
tpm2_startauthsession -S session.ctx --policy-session
tpm2_policysigned -S session.ctx -g sha256 -s signature.dat -f rsassa -c signing_key.ctx
tpm2_unseal -p session:session.ctx -c key.ctx -o out1.dat
cmp out1.dat secret.dat
# a ticket: a negative expiration asks for one; without nonceTPM it is an
# absolute TPM time (-500: valid until the TPM has run 500 s)
EXPIRYTIME="FFFFFE0C"
echo $EXPIRYTIME | xxd -r -p | openssl dgst -sha256 -sign private.pem -out signature2.dat
tpm2_startauthsession -S session.ctx --policy-session
tpm2_policysigned -S session.ctx -g sha256 -s signature2.dat -f rsassa -c signing_key.ctx \
    --ticket tic.ket --timeout time.out -t -500
tpm2_flushcontext session.ctx
tpm2_startauthsession -S session.ctx --policy-session
tpm2_policyticket -S session.ctx -n signing_key.name --ticket tic.ket --timeout time.out
tpm2_unseal -p session:session.ctx -c key.ctx -o out2.dat
cmp out2.dat secret.dat
# a ticket whose timeout was changed is refused: TPM_RC_TICKET (parameter 5)
python3 -c "import sys; b=bytearray(open('time.out','rb').read()); b[-1]^=1; open('bad.out','wb').write(b)"
tpm2_startauthsession -S session.ctx --policy-session
expect_rc 0x5e0 tpm2_policyticket -S session.ctx -n signing_key.name --ticket tic.ket --timeout bad.out
tpm2_flushcontext session.ctx
# the signature does not cover this expiration: TPM_RC_SIGNATURE (parameter 5)
tpm2_startauthsession -S session.ctx --policy-session
expect_rc 0x5db tpm2_policysigned -S session.ctx -g sha256 -s signature2.dat -f rsassa \
    -c signing_key.ctx -t -501
tpm2_flushcontext session.ctx

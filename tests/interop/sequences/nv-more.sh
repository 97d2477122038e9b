# NV beyond read and write: tpm2_nvwritelock (also --global), tpm2_nvreadlock (the locks last until
# the next TPM Reset, which tools cannot cause),
# tpm2_nvcertify (the signed contents verify with openssl), PIN pass indices
# (the PIN works pinLimit times), and TPMA_NV_POLICY_DELETE indices removed
# by tpm2_nvundefine with a policy session (TPM2_NV_UndefineSpaceSpecial).
tpm2_nvdefine -Q 0x1500030 -C o -s 8 -a "ownerread|ownerwrite|writedefine"
printf 'abcdefgh' > a.bin; printf 'ABCDEFGH' > b.bin; printf '12345678' > c.bin
tpm2_nvwrite -Q 0x1500030 -C o -i a.bin
tpm2_nvwritelock -Q -C o 0x1500030
tpm2_nvwritelock -Q -C o 0x1500030                  # locking again succeeds
expect_rc 0x148 tpm2_nvwrite -Q 0x1500030 -C o -i b.bin
tpm2_nvdefine -Q 0x1500031 -C o -s 8 -a "ownerread|ownerwrite|read_stclear"
tpm2_nvwrite -Q 0x1500031 -C o -i c.bin
tpm2_nvreadlock -Q -C o 0x1500031
expect_rc 0x148 tpm2_nvread -Q 0x1500031 -C o -s 8
tpm2_nvdefine -Q 0x1500032 -C o -s 8 -a "ownerread|ownerwrite|globallock"
tpm2_nvwritelock -Q -C o --global
expect_rc 0x148 tpm2_nvwrite -Q 0x1500032 -C o -i c.bin
# NV_Certify
tpm2_nvdefine -Q -s 32 -a "authread|authwrite" 1
head -c 32 /dev/urandom > data.bin
tpm2_nvwrite -Q 1 -i data.bin
tpm2_createprimary -Q -C o -c primary.ctx
tpm2_create -Q -G rsa -u rsa.pub -r rsa.priv -C primary.ctx -c signing_key.ctx
tpm2_readpublic -Q -c signing_key.ctx -f pem -o sslpub.pem
tpm2_nvcertify -Q -C signing_key.ctx -g sha256 -f plain -s rsassa -o signature.bin \
    --attestation attestation.bin --size 32 1
openssl dgst -sha256 -verify sslpub.pem -signature signature.bin attestation.bin
tail -c 32 attestation.bin | cmp - data.bin
# a PIN pass index: pinLimit 2 uses of the PIN, then TPM_RC_AUTH_UNAVAILABLE
tpm2_nvdefine -Q 0x1500040 -C o -s 8 -p 1234 -a "ownerread|ownerwrite|authread|nt=pinpass"
printf '\0\0\0\0\0\0\0\2' > pin.params
tpm2_nvwrite -Q 0x1500040 -C o -i pin.params
tpm2_nvread -Q 0x1500040 -P 1234 -s 8 -o use1.bin
tpm2_nvread -Q 0x1500040 -P 1234 -s 8 -o use2.bin
cmp use2.bin <(printf '\0\0\0\2\0\0\0\2')
expect_rc 0x12f tpm2_nvread -Q 0x1500040 -P 1234 -s 8
# a policy-delete index: only the platform and the index's policy remove it
tpm2_startauthsession -S s.ctx
tpm2_policycommandcode -Q -S s.ctx -L del.policy TPM2_CC_NV_UndefineSpaceSpecial
tpm2_flushcontext s.ctx
# (tpm2-tools has no keyword for TPMA_NV_POLICY_DELETE: ppwrite|policy_delete|ppread|platformcreate)
tpm2_nvdefine -Q 0x1500050 -C p -s 8 -L del.policy -a 0x40010401
tpm2_startauthsession -S s.ctx --policy-session
tpm2_policycommandcode -Q -S s.ctx TPM2_CC_NV_UndefineSpaceSpecial
tpm2_nvundefine -Q 0x1500050 -C p --with-policydelete -S s.ctx
expect_rc 0x18b tpm2_nvreadpublic 0x1500050

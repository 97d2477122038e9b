# tpm2_duplicate a key to a new parent (outer wrapper, then also an inner AES
# wrapper), tpm2_import it under that parent, load it and sign with it; the
# signature verifies with the key's public part (openssl).
tpm2_createprimary -Q -C o -g sha256 -G rsa -c primary.ctx
tpm2_create -Q -C primary.ctx -g sha256 -G rsa -r np.prv -u np.pub \
    -a "restricted|sensitivedataorigin|decrypt|userwithauth"
tpm2_startauthsession -S s.dat
tpm2_policycommandcode -Q -S s.dat -L dpolicy.dat TPM2_CC_Duplicate
tpm2_flushcontext s.dat
tpm2_create -Q -C primary.ctx -g sha256 -G ecc -r key.prv -u key.pub -L dpolicy.dat \
    -a "sensitivedataorigin|userwithauth|sign"
tpm2_load -Q -C primary.ctx -r key.prv -u key.pub -c key.ctx
tpm2_load -Q -C primary.ctx -r np.prv -u np.pub -c np.ctx
# a password cannot authorise the DUP role: TPM_RC_AUTH_TYPE
expect_rc 0x124 tpm2_duplicate -C np.ctx -c key.ctx -G null -r dup.prv -s dup.seed
for inner in null aes; do
    tpm2_startauthsession --policy-session -S s.dat
    tpm2_policycommandcode -Q -S s.dat TPM2_CC_Duplicate
    if [ $inner = aes ]; then kopt="-o inner.key"; else kopt=""; fi
    # the policy session ends with the command (continueSession is clear)
    tpm2_duplicate -C np.ctx -c key.ctx -G $inner -p session:s.dat -r dup.prv -s dup.seed $kopt
    if [ $inner = aes ]; then iopt="-k inner.key"; else iopt=""; fi
    tpm2_import -Q -C np.ctx -G ecc -u key.pub -i dup.prv -s dup.seed -r imp.prv $iopt
    tpm2_load -Q -C np.ctx -u key.pub -r imp.prv -c imp.ctx
    echo "duplicated data" > msg
    tpm2_sign -Q -c imp.ctx -g sha256 -f plain -o sig.der msg
    tpm2_readpublic -Q -c imp.ctx -f pem -o key.pem
    openssl dgst -sha256 -verify key.pem -signature sig.der msg
done
# a tampered duplicate is refused (TPM_RC_INTEGRITY, parameter 3)
python3 -c "import sys; b=bytearray(open('dup.prv','rb').read()); b[-1]^=1; open('bad.prv','wb').write(b)"
expect_rc 0x3df tpm2_import -Q -C np.ctx -G ecc -u key.pub -i bad.prv -s dup.seed -r x.prv -k inner.key

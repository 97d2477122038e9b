# Two-phase ECC: tpm2_geteccparameters, tpm2_ecephemeral + tpm2_zgen2phase
# (Z1 is the static ECDH secret, which tpm2_ecdhzgen gives too), and tpm2_commit + tpm2_sign
# with an ECDAA key (the commit counter is used once).
tpm2_createprimary -Q -C o -c prim.ctx
tpm2_create -Q -C prim.ctx -c key.ctx -u key.pub -r key.priv -G ecc256:ecdh
tpm2_ecephemeral -u ecc.q -t ecc.ctr ecc256
tpm2_ecdhkeygen -u ecdh.pub -o ecdh.priv -c key.ctx
tpm2_zgen2phase -c key.ctx --static-public ecdh.pub --ephemeral-public ecc.q \
    -t $(python3 -c "print(int.from_bytes(open('ecc.ctr','rb').read()[-2:],'big'))") \
    --output-Z1 z1.bin --output-Z2 z2.bin
tpm2_ecdhzgen -c key.ctx -u ecdh.pub -o zgen.bin
cmp z1.bin zgen.bin                                   # Z1 = [dsA]QsB, the static ECDH secret
[ "$(stat -c %s z2.bin)" -ge 64 ]
# the ephemeral key is used once: TPM_RC_VALUE (parameter 4, the counter)
expect_rc 0x4c4 tpm2_zgen2phase -c key.ctx --static-public ecdh.pub --ephemeral-public ecc.q \
    -t $(python3 -c "print(int.from_bytes(open('ecc.ctr','rb').read()[-2:],'big'))") \
    --output-Z1 z1b.bin --output-Z2 z2b.bin
tpm2_create -Q -C prim.ctx -c daa.ctx -u daa.pub -r daa.priv -G ecc256:ecdaa
tpm2_commit -c daa.ctx -t count.er --eccpoint-K K.bin --eccpoint-L L.bin -u E.bin
idx=$(python3 -c "print(int.from_bytes(open('count.er','rb').read()[-2:],'big'))")
echo "anonymous" > msg
tpm2_sign -Q -c daa.ctx -g sha256 -s ecdaa --commit-index=$idx -o daa.sig msg
expect_rc '(0x84)' tpm2_sign -Q -c daa.ctx -g sha256 -s ecdaa --commit-index=$idx -o daa2.sig msg

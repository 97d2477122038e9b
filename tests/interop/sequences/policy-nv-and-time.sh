# Policies over NV and time: tpm2_policyauthorizenv (the approved policy
# lives in an NV index), tpm2_policynv, tpm2_policynvwritten and
# tpm2_policycountertimer each unseal a secret, and refuse when their
# condition does not hold.
nv=0x01500001
tpm2_nvdefine -Q -C o -p nvpass $nv -a "authread|authwrite" -s 34
tpm2_startauthsession -S session.ctx
tpm2_policypassword -S session.ctx -L policy.pass
tpm2_flushcontext session.ctx
echo "000b" | xxd -p -r | cat - policy.pass | tpm2_nvwrite -Q -C $nv -P nvpass $nv -i-
tpm2_startauthsession -S session.ctx
tpm2_policyauthorizenv -S session.ctx -C $nv -P nvpass -L policy.authnv $nv
tpm2_flushcontext session.ctx
tpm2_createprimary -Q -C o -c prim.ctx
echo "secretdata" > secret.dat
tpm2_create -Q -C prim.ctx -u key.pub -r key.priv -a "fixedtpm|fixedparent|adminwithpolicy" \
    -L policy.authnv -i secret.dat
tpm2_load -Q -C prim.ctx -u key.pub -r key.priv -c key.ctx
tpm2_startauthsession -S session.ctx --policy-session
tpm2_policypassword -S session.ctx
tpm2_policyauthorizenv -S session.ctx -C $nv -P nvpass $nv
tpm2_unseal -c key.ctx -p session:session.ctx -o out.dat
cmp out.dat secret.dat
# without the approved policy first: TPM_RC_VALUE (no parameter number)
tpm2_startauthsession -S session.ctx --policy-session
expect_rc '(0x84)' tpm2_policyauthorizenv -S session.ctx -C $nv -P nvpass $nv
tpm2_flushcontext session.ctx
# PolicyNV: the sealed object opens while NV byte 0 equals 0x81
nv2=0x01500002
tpm2_nvdefine -Q -C o $nv2 -s 1 -a "ownerread|ownerwrite|authread|authwrite"
echo -n -e '\x81' > nv.val
tpm2_nvwrite -Q -C o $nv2 -i nv.val
tpm2_startauthsession -S session.ctx
tpm2_policynv -S session.ctx -i nv.val -C o $nv2 eq -L policy.nv
tpm2_flushcontext session.ctx
tpm2_create -Q -C prim.ctx -u nvkey.pub -r nvkey.priv -L policy.nv -i secret.dat
tpm2_load -Q -C prim.ctx -u nvkey.pub -r nvkey.priv -c nvkey.ctx
tpm2_startauthsession -S session.ctx --policy-session
tpm2_policynv -S session.ctx -i nv.val -C o $nv2 eq
tpm2_unseal -c nvkey.ctx -p session:session.ctx -o out2.dat
cmp out2.dat secret.dat
echo -n -e '\x7f' > nv.other
tpm2_nvwrite -Q -C o $nv2 -i nv.other
tpm2_startauthsession -S session.ctx --policy-session
expect_rc 0x126 tpm2_policynv -S session.ctx -i nv.val -C o $nv2 eq
tpm2_flushcontext session.ctx
# PolicyNvWritten: the policy of an index that may be written once
tpm2_startauthsession -S session.ctx
tpm2_policycommandcode -Q -S session.ctx TPM2_CC_NV_Write
tpm2_policynvwritten -S session.ctx -L policy.written c
tpm2_flushcontext session.ctx
nv3=0x01500003
tpm2_nvdefine -Q -C o $nv3 -s 4 -L policy.written -a "policywrite|authread"
echo -n "once" > once.dat
tpm2_startauthsession -S session.ctx --policy-session
tpm2_policycommandcode -Q -S session.ctx TPM2_CC_NV_Write
tpm2_policynvwritten -S session.ctx c
tpm2_nvwrite -Q $nv3 -P session:session.ctx -i once.dat
tpm2_flushcontext session.ctx
tpm2_nvread -Q $nv3 -s 4 -o once.back
cmp once.back once.dat
tpm2_startauthsession -S session.ctx --policy-session
tpm2_policycommandcode -Q -S session.ctx TPM2_CC_NV_Write
tpm2_policynvwritten -S session.ctx c
expect_rc 0x99d tpm2_nvwrite -Q $nv3 -P session:session.ctx -i once.dat
tpm2_flushcontext session.ctx
# PolicyCounterTimer: only while the TPM has run less than ten minutes
tpm2_startauthsession -S session.ctx
tpm2_policycountertimer -S session.ctx -L policy.time --ult 600000
tpm2_flushcontext session.ctx
tpm2_create -Q -C prim.ctx -u tkey.pub -r tkey.priv -L policy.time -i secret.dat \
    -a "fixedtpm|fixedparent"
tpm2_load -Q -C prim.ctx -u tkey.pub -r tkey.priv -c tkey.ctx
tpm2_startauthsession -S session.ctx --policy-session
tpm2_policycountertimer -S session.ctx --ult 600000
tpm2_unseal -c tkey.ctx -p session:session.ctx -o out3.dat
cmp out3.dat secret.dat
tpm2_startauthsession -S session.ctx --policy-session
expect_rc 0x126 tpm2_policycountertimer -S session.ctx --ugt 0xffffffffffff
tpm2_flushcontext session.ctx

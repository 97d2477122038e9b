# Policies that restrict what an authorization may do: tpm2_policynamehash
# and tpm2_policyduplicationselect allow duplication only to one new parent;
# tpm2_policytemplate (through tpm2_setprimarypolicy) allows creating only
# primaries of one template.
tpm2_createprimary -Q -C n -g sha256 -G rsa -c dst_n.ctx
tpm2_createprimary -Q -C o -g sha256 -G rsa -c src_o.ctx
tpm2_readpublic -Q -c dst_n.ctx -n dst_n.name
tpm2_startauthsession -S s.ctx
tpm2_policyduplicationselect -Q -S s.ctx -N dst_n.name -L policydupselect.dat
tpm2_flushcontext s.ctx
tpm2_create -Q -C src_o.ctx -g sha256 -G rsa -r dupkey.priv -u dupkey.pub \
    -L policydupselect.dat -a "sensitivedataorigin|sign|decrypt"
tpm2_load -Q -C src_o.ctx -r dupkey.priv -u dupkey.pub -c dupkey.ctx
tpm2_readpublic -Q -c dupkey.ctx -n dupkey.name
tpm2_startauthsession -S s.ctx --policy-session
tpm2_policyduplicationselect -Q -S s.ctx -N dst_n.name -n dupkey.name
tpm2_duplicate -Q -C dst_n.ctx -c dupkey.ctx -G null -p session:s.ctx -r new.priv -s seed.dat
# to another parent: refused (TPM_RC_POLICY_FAIL)
tpm2_createprimary -Q -C n -g sha256 -G ecc -c other.ctx
tpm2_startauthsession -S s.ctx --policy-session
tpm2_policyduplicationselect -Q -S s.ctx -N dst_n.name -n dupkey.name
expect_rc 0x99d tpm2_duplicate -Q -C other.ctx -c dupkey.ctx -G null -p session:s.ctx \
    -r x.priv -s x.dat
tpm2_flushcontext s.ctx
# PolicyNameHash over (key, new parent) does the same through PolicyCommandCode
tpm2_startauthsession -S s.ctx
tpm2_policycommandcode -Q -S s.ctx -L cc.policy TPM2_CC_Duplicate
tpm2_flushcontext s.ctx
cat dupkey.name dst_n.name | openssl dgst -sha256 -binary > name.hash
tpm2_startauthsession -S s.ctx
tpm2_policynamehash -Q -S s.ctx -n name.hash
tpm2_policycommandcode -Q -S s.ctx -L nh.policy TPM2_CC_Duplicate
tpm2_flushcontext s.ctx
tpm2_create -Q -C src_o.ctx -g sha256 -G rsa -r k2.priv -u k2.pub -L nh.policy \
    -a "sensitivedataorigin|sign|decrypt"
tpm2_load -Q -C src_o.ctx -r k2.priv -u k2.pub -c k2.ctx
tpm2_readpublic -Q -c k2.ctx -n k2.name
cat k2.name dst_n.name | openssl dgst -sha256 -binary > name2.hash
tpm2_startauthsession -S s.ctx
tpm2_policynamehash -Q -S s.ctx -n name2.hash
tpm2_policycommandcode -Q -S s.ctx -L nh2.policy TPM2_CC_Duplicate
tpm2_flushcontext s.ctx
tpm2_create -Q -C src_o.ctx -g sha256 -G rsa -r k3.priv -u k3.pub -L nh2.policy \
    -a "sensitivedataorigin|sign|decrypt"
tpm2_load -Q -C src_o.ctx -r k3.priv -u k3.pub -c k3.ctx
tpm2_readpublic -Q -c k3.ctx -n k3.name
cat k3.name dst_n.name | openssl dgst -sha256 -binary > name3.hash
# (k3's policy names k2's hash: the names differ, so PolicyNameHash fails at use)
tpm2_startauthsession -S s.ctx --policy-session
tpm2_policynamehash -Q -S s.ctx -n name2.hash
tpm2_policycommandcode -Q -S s.ctx TPM2_CC_Duplicate
expect_rc 0x99d tpm2_duplicate -Q -C dst_n.ctx -c k3.ctx -G null -p session:s.ctx -r y.priv -s y.dat
tpm2_flushcontext s.ctx
# PolicyTemplate through the owner hierarchy's policy
tpm2_createprimary -Q -C o -c prim.ctx --template-data template.data
openssl dgst -sha256 -binary -out template.hash template.data
tpm2_startauthsession -S s.ctx -g sha256
tpm2_policytemplate -Q -S s.ctx -L policy.template --template-hash template.hash
tpm2_flushcontext s.ctx
tpm2_setprimarypolicy -C o -g sha256 -L policy.template
tpm2_startauthsession -S s.ctx -g sha256 --policy-session
tpm2_policytemplate -Q -S s.ctx --template-hash template.hash
tpm2_createprimary -Q -C o -c prim2.ctx -P session:s.ctx
tpm2_flushcontext s.ctx
# another template: refused (TPM_RC_POLICY_FAIL)
tpm2_startauthsession -S s.ctx -g sha256 --policy-session
tpm2_policytemplate -Q -S s.ctx --template-hash template.hash
expect_rc 0x99d tpm2_createprimary -Q -C o -G ecc -c prim3.ctx -P session:s.ctx
tpm2_flushcontext s.ctx

# Hierarchy management: tpm2_changeeps and tpm2_changepps give new primary
# seeds (the same template then makes a different key), tpm2_hierarchycontrol
# disables the endorsement hierarchy (TPM_RC_HIERARCHY), tpm2_clearcontrol
# disables TPM2_Clear (TPM_RC_DISABLED) until it is enabled again,
# tpm2_setprimarypolicy sets the owner hierarchy's policy (visible in the
# hierarchy's authorization), tpm2_changeauth and tpm2_clear undo it all.
tpm2_createprimary -Q -C e -G ecc -c ek1.ctx
tpm2_readpublic -Q -c ek1.ctx -o ek1.pub
tpm2_createprimary -Q -C e -G ecc -c ek1b.ctx
tpm2_readpublic -Q -c ek1b.ctx -o ek1b.pub
cmp ek1.pub ek1b.pub                          # same seed, same template: same key
tpm2_changeeps
tpm2_createprimary -Q -C e -G ecc -c ek2.ctx
tpm2_readpublic -Q -c ek2.ctx -o ek2.pub
! cmp -s ek1.pub ek2.pub                      # a new endorsement primary seed
tpm2_createprimary -Q -C p -G ecc -c pp1.ctx
tpm2_readpublic -Q -c pp1.ctx -o pp1.pub
tpm2_changepps
tpm2_createprimary -Q -C p -G ecc -c pp2.ctx
tpm2_readpublic -Q -c pp2.ctx -o pp2.pub
! cmp -s pp1.pub pp2.pub
# the platform disables the endorsement hierarchy
tpm2_hierarchycontrol -C p ehEnable clear
tpm2_getcap properties-variable > props.yaml          # (grep -q on a pipe would cut the tool off)
grep -A4 "TPM2_PT_STARTUP_CLEAR" props.yaml | grep -q "ehEnable: *0"
expect_rc 0x185 tpm2_createprimary -Q -C e -G ecc -c ek3.ctx
tpm2_hierarchycontrol -C p ehEnable set
tpm2_createprimary -Q -C e -G ecc -c ek3.ctx
# TPM2_Clear can be disabled, and is refused while it is
tpm2_clearcontrol -C l s
tpm2_getcap properties-variable > props2.yaml
grep -q "disableClear: *1" props2.yaml
expect_rc 0x120 tpm2_clear -c l
tpm2_clearcontrol -C p c
# an owner password, the owner policy; clear forgets both
tpm2_changeauth -c o ownerpass
tpm2_startauthsession -S s.ctx
tpm2_policycommandcode -Q -S s.ctx -L owner.policy TPM2_CC_NV_DefineSpace
tpm2_flushcontext s.ctx
tpm2_setprimarypolicy -C o -P ownerpass -g sha256 -L owner.policy
tpm2_startauthsession -S s.ctx --policy-session
tpm2_policycommandcode -Q -S s.ctx TPM2_CC_NV_DefineSpace
tpm2_nvdefine -Q -C o -P session:s.ctx 0x1500020 -s 8 -a "ownerread|ownerwrite"
tpm2_flushcontext s.ctx
expect_rc 0x9a2 tpm2_nvdefine -Q -C o -P wrong 0x1500021 -s 8
tpm2_clear -c l
tpm2_nvdefine -Q -C o 0x1500021 -s 8
expect_rc 0x18b tpm2_nvreadpublic 0x1500020

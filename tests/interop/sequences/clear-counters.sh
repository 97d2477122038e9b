# TPM2_Clear starts the new owner's time line: Clock, resetCount and
# restartCount all go back to zero (Part 3, TPM2_Clear; the reference
# implementation's Clear.c), while Time (since power-on) runs on.
tpm2_readclock > before.yaml
c1=$(awk '/clock:/ {print $2; exit}' before.yaml)
tpm2_setclock $((c1 + 3600000))
tpm2_readclock > set.yaml
c2=$(awk '/clock:/ {print $2; exit}' set.yaml)
[ "$c2" -ge 3600000 ]
tpm2_clear
tpm2_readclock > after.yaml
c3=$(awk '/clock:/ {print $2; exit}' after.yaml)
[ "$c3" -lt 3600000 ]
grep -q "reset_count: 0$" after.yaml
grep -q "restart_count: 0$" after.yaml
tpm2_createprimary -Q -C o -c primary.ctx          # the new owner's hierarchy works

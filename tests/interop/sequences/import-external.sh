# tpm2_import of keys made outside the TPM (openssl): the tool wraps them for
# the parent itself; the imported keys sign and decrypt as the originals.
tpm2_createprimary -Q -C o -g sha256 -G rsa -c primary.ctx
openssl genrsa -out rsa.pem 2048 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out ecc.pem
echo "message" > msg
for k in rsa ecc; do
    tpm2_import -Q -C primary.ctx -G $k -i $k.pem -u $k.pub -r $k.prv
    tpm2_load -Q -C primary.ctx -u $k.pub -r $k.prv -c $k.ctx
    tpm2_sign -Q -c $k.ctx -g sha256 -f plain -o $k.sig msg
    openssl dgst -sha256 -verify <(openssl pkey -in $k.pem -pubout) -signature $k.sig msg
done
# an imported AES key decrypts what openssl encrypted (CFB, zero IV)
head -c 16 /dev/urandom > aes.key
tpm2_import -Q -C primary.ctx -G aes -i aes.key -u aes.pub -r aes.prv
tpm2_load -Q -C primary.ctx -u aes.pub -r aes.prv -c aes.ctx
head -c 100 /dev/urandom > plain.bin
openssl enc -aes-128-cfb -K $(xxd -p aes.key) -iv 00000000000000000000000000000000 \
    -in plain.bin -out cipher.bin
tpm2_encryptdecrypt -Q -c aes.ctx -d -G cfb -o back.bin cipher.bin
cmp back.bin plain.bin

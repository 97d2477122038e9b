"""Part 3, chapter 15: EncryptDecrypt and EncryptDecrypt2.

Both run a SYMCIPHER key over up to 1,024 bytes in one of the block-cipher
modes of :mod:`simxen.tpm.symmetric`; they differ only in the order of their
parameters (EncryptDecrypt2 puts ``inData`` first, so that it can be the
encrypted parameter of a session).  The checks, in the reference
implementation's order:

* the key is a SYMCIPHER key (``TPM_RC_KEY``), unrestricted, with ``decrypt``
  for decryption and ``sign`` for encryption (``TPM_RC_ATTRIBUTES``);
* a key that names a mode allows only that mode or NULL in the command; a key
  whose mode is NULL needs a mode in the command (``TPM_RC_MODE``);
* ECB takes an empty IV, every other mode one block (``TPM_RC_SIZE``), and CBC
  and ECB a whole number of blocks of data (``TPM_RC_SIZE``).
"""

from simxen.tpm import symmetric
from simxen.tpm.commands import command
from simxen.tpm.constants import TPM_ALG, TPM_CC, TPM_RC, TPMA_OBJECT
from simxen.tpm.errors import TpmError
from simxen.tpm.marshal import tpm2b

MAX_BUFFER = 1024


def _mode(r):
    """A TPMI_ALG_CIPHER_MODE+, checked as it is read (``TPM_RC_MODE``)."""
    mode = r.u16()
    if mode not in symmetric.MODES and mode != TPM_ALG.NULL:
        raise TpmError(TPM_RC.MODE, param=r.param)
    return mode


def _crypt(tpm, cmd, data, decrypt, mode, iv, p_mode, p_iv, p_data):
    key = tpm.get_object(cmd.handles[0])
    pub = key.public
    if pub.type != TPM_ALG.SYMCIPHER:
        raise TpmError(TPM_RC.KEY, handle=1)
    a = pub.attributes
    allowed = a & (TPMA_OBJECT.decrypt if decrypt else TPMA_OBJECT.sign)
    if a & TPMA_OBJECT.restricted or not allowed:
        raise TpmError(TPM_RC.ATTRIBUTES, handle=1)
    alg, bits, key_mode = pub.symmetric
    if key_mode != TPM_ALG.NULL:
        if mode != TPM_ALG.NULL and mode != key_mode:
            raise TpmError(TPM_RC.MODE, param=p_mode)
        mode = key_mode
    elif mode == TPM_ALG.NULL:
        raise TpmError(TPM_RC.MODE, param=p_mode)
    if len(iv) != (0 if mode == TPM_ALG.ECB else symmetric.BLOCK_SIZE):
        raise TpmError(TPM_RC.SIZE, param=p_iv)
    if mode in (TPM_ALG.CBC, TPM_ALG.ECB) and len(data) % symmetric.BLOCK_SIZE:
        raise TpmError(TPM_RC.SIZE, param=p_data)
    if key.sensitive is None:
        raise TpmError(TPM_RC.KEY, handle=1)
    out, iv_out = symmetric.crypt(alg, key.sensitive, mode, iv, data, not decrypt)
    return b"", tpm2b(out) + tpm2b(iv_out)


@command(TPM_CC.EncryptDecrypt, handles=("object",), auth=1, encrypt=True)
def encrypt_decrypt(tpm, cmd):
    r = cmd.r
    decrypt = r.at(1).yes_no()
    mode = _mode(r.at(2))
    iv = r.at(3).tpm2b(16)
    data = r.at(4).tpm2b(MAX_BUFFER)
    r.done()
    return _crypt(tpm, cmd, data, decrypt, mode, iv, 2, 3, 4)


@command(TPM_CC.EncryptDecrypt2, handles=("object",), auth=1, decrypt=True, encrypt=True)
def encrypt_decrypt2(tpm, cmd):
    r = cmd.r
    data = r.at(1).tpm2b(MAX_BUFFER)
    decrypt = r.at(2).yes_no()
    mode = _mode(r.at(3))
    iv = r.at(4).tpm2b(16)
    r.done()
    return _crypt(tpm, cmd, data, decrypt, mode, iv, 3, 4, 1)

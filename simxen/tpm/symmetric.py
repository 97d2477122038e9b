"""Symmetric block ciphers and their modes, with the TPM's IV semantics.

TPM2_EncryptDecrypt returns, besides the output, an ``ivOut`` that lets a
caller continue a long message in the next command.  What ``ivOut`` holds
depends on the mode (Part 1, "Symmetric Encryption"; the reference
implementation's ``CryptSymmetricEncrypt``/``CryptSymmetricDecrypt``):

=====  ==========================================================
mode   ivOut
=====  ==========================================================
CFB    the feedback register: the last ciphertext block; after a
       partial block, its ciphertext bytes followed by the rest of
       that block's key stream (as libtpms returns it)
CBC    the last ciphertext block
CTR    the counter after the last (possibly partial) block,
       incremented once per block as one big-endian number
OFB    the last key-stream block
ECB    nothing (ECB takes an empty IV)
=====  ==========================================================

:func:`crypt` does any of them with AES or Camellia (128 or 256 bits), using ``cryptography`` for the block operation.
"""

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from simxen.tpm.constants import TPM_ALG

try:                                    # cryptography >= 43 keeps Camellia here
    from cryptography.hazmat.decrepit.ciphers.algorithms import Camellia as _Camellia
except ImportError:                     # pragma: no cover - older cryptography
    _Camellia = algorithms.Camellia

BLOCK_SIZE = 16

#: algorithm -> (cryptography class, key sizes in bits a TPM accepts); the
#: PC Client platform profile asks for AES-128 and AES-256
CIPHERS = {
    TPM_ALG.AES: (algorithms.AES, (128, 256)),
    TPM_ALG.CAMELLIA: (_Camellia, (128, 256)),
}

#: the modes TPM2_EncryptDecrypt accepts
MODES = (TPM_ALG.CTR, TPM_ALG.OFB, TPM_ALG.CBC, TPM_ALG.CFB, TPM_ALG.ECB)


def _ecb(alg, key, encrypt):
    c = Cipher(CIPHERS[alg][0](key), modes.ECB())
    return c.encryptor() if encrypt else c.decryptor()


def _increment(block):
    return ((int.from_bytes(block, "big") + 1) % (1 << 128)).to_bytes(16, "big")


def crypt(alg, key, mode, iv, data, encrypt):
    """``(output, ivOut)`` of ``data`` under ``key`` in ``mode``.

    The caller has checked sizes: ``iv`` is one block (empty for ECB), and
    ``data`` a whole number of blocks for CBC and ECB.
    """
    n = len(data)
    if mode == TPM_ALG.ECB:
        return _ecb(alg, key, encrypt).update(data), b""
    if mode == TPM_ALG.CBC:
        c = Cipher(CIPHERS[alg][0](key), modes.CBC(iv))
        ctx = c.encryptor() if encrypt else c.decryptor()
        out = ctx.update(data) + ctx.finalize()
        last = (out if encrypt else data)[n - BLOCK_SIZE:] if n else iv
        return out, last
    # the stream modes: build the key stream block by block from the IV
    enc = _ecb(alg, key, True)
    out = bytearray()
    reg = iv
    for pos in range(0, n, BLOCK_SIZE):
        chunk = data[pos:pos + BLOCK_SIZE]
        stream = enc.update(reg)
        piece = bytes(a ^ b for a, b in zip(chunk, stream))
        out += piece
        if mode == TPM_ALG.CFB:
            cipher_text = piece if encrypt else chunk
            reg = cipher_text + stream[len(chunk):]
        elif mode == TPM_ALG.OFB:
            reg = stream
        else:                           # CTR
            reg = _increment(reg)
    return bytes(out), reg

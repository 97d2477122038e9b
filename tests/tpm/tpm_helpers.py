"""Helpers for the TPM engine tests: deterministic randomness and clock, a
started engine, and the templates tpm2-tools sends."""

import hashlib

from simxen.tpm import TpmEngine, client
from simxen.tpm.constants import TPM_ALG, TPM_ECC
from simxen.tpm.public import Public


class DetRandom:
    """A deterministic ``random_bytes(n)``: SHAKE-256 over a seed and counter."""

    def __init__(self, seed=b"tests"):
        self.seed = seed
        self.counter = 0

    def __call__(self, n):
        self.counter += 1
        return hashlib.shake_256(self.seed + self.counter.to_bytes(8, "big")).digest(n)


class FixedClock:
    def __init__(self):
        self.ms = 1000.0

    def __call__(self):
        return self.ms


def make_engine(seed=b"engine-seed", random_seed=b"tests"):
    tpm = TpmEngine(seed=seed, random_bytes=DetRandom(random_seed), clock=FixedClock(),
                    powered=True)
    client.check(tpm.execute(client.startup_command()))
    return tpm


def ecc_storage_template():
    """tpm2_createprimary -G ecc256 (SRK-like)."""
    return Public(TPM_ALG.ECC, TPM_ALG.SHA256, 0x00030072,
                  symmetric=(TPM_ALG.AES, 128, TPM_ALG.CFB), curve=TPM_ECC.NIST_P256,
                  unique=(b"", b""))


def rsa_storage_template():
    return Public(TPM_ALG.RSA, TPM_ALG.SHA256, 0x00030072,
                  symmetric=(TPM_ALG.AES, 128, TPM_ALG.CFB), key_bits=2048, unique=b"")


def ecc_ak_template(attrs=0x00050072):
    """tpm2_createak -G ecc -s ecdsa: restricted signing key."""
    return Public(TPM_ALG.ECC, TPM_ALG.SHA256, attrs, scheme=(TPM_ALG.ECDSA, TPM_ALG.SHA256),
                  curve=TPM_ECC.NIST_P256, unique=(b"", b""))


def rsa_ak_template(scheme=TPM_ALG.RSASSA, attrs=0x00050072):
    return Public(TPM_ALG.RSA, TPM_ALG.SHA256, attrs, scheme=(scheme, TPM_ALG.SHA256),
                  key_bits=2048, unique=b"")


def sealed_template(policy=b"", attrs=0x00000012):
    return Public(TPM_ALG.KEYEDHASH, TPM_ALG.SHA256, attrs, policy,
                  scheme=(TPM_ALG.NULL, TPM_ALG.NULL), unique=b"")

"""Part 3, chapter 10: self test.  The engine's algorithms are those of
``cryptography`` and ``hashlib`` and are always tested, so SelfTest and
IncrementalSelfTest succeed at once and GetTestResult reports success."""

from simxen.tpm.algorithms import IMPLEMENTED_ALGS
from simxen.tpm.commands import command
from simxen.tpm.constants import TPM_ALG, TPM_CC, TPM_RC
from simxen.tpm.errors import TpmError
from simxen.tpm.marshal import tpm2b, u32


@command(TPM_CC.SelfTest)
def self_test(tpm, cmd):
    cmd.r.yes_no()
    cmd.r.done()
    return b"", b""


@command(TPM_CC.IncrementalSelfTest)
def incremental_self_test(tpm, cmd):
    r = cmd.r
    count = r.u32()
    if count > 64:
        raise TpmError(TPM_RC.SIZE, param=1)
    algs = [r.u16() for _ in range(count)]
    r.done()
    known = {alg for alg, _ in IMPLEMENTED_ALGS}
    if any(alg not in known or alg == TPM_ALG.NULL for alg in algs):   # CryptIncrementalSelfTest
        raise TpmError(TPM_RC.VALUE, param=1)
    return b"", u32(0)


@command(TPM_CC.GetTestResult)
def get_test_result(tpm, cmd):
    cmd.r.done()
    return b"", tpm2b(b"") + u32(TPM_RC.SUCCESS)

"""Part 3, chapter 21: SetCommandCodeAuditStatus.

Edits the command audit list, or changes the audit digest's hash (which
resets the digest and must come alone, with both lists empty).  Command
codes the TPM does not implement are ignored in either list, and
TPM2_SetCommandCodeAuditStatus itself cannot be taken off it.  See
:mod:`simxen.tpm.audit` for how the digest is kept.
"""

from simxen.tpm.algorithms import HASHES
from simxen.tpm.audit import ALWAYS_AUDITED
from simxen.tpm.commands import COMMANDS, command
from simxen.tpm.constants import TPM_ALG, TPM_CC, TPM_RC
from simxen.tpm.errors import TpmError

#: TPML_CC's count: at most MAX_CAP_CC, the command codes that fit in a
#: capability's 1016 data bytes (MAX_CAP_DATA / 4)
MAX_CC_LIST = 254


def _cc_list(r, param):
    count = r.at(param).u32()
    if count > MAX_CC_LIST:
        raise TpmError(TPM_RC.SIZE, param=param)
    return [r.u32() for _ in range(count)]


@command(TPM_CC.SetCommandCodeAuditStatus, handles=("provision",), auth=1)
def set_command_code_audit_status(tpm, cmd):
    r = cmd.r
    alg = r.at(1).u16()
    if alg != TPM_ALG.NULL and alg not in HASHES:
        raise TpmError(TPM_RC.HASH, param=1)
    set_list = _cc_list(r, 2)
    clear_list = _cc_list(r, 3)
    r.done()
    ca = tpm.command_audit
    if alg != TPM_ALG.NULL and alg != ca.alg:
        if set_list or clear_list:
            raise TpmError(TPM_RC.VALUE, param=1)
        ca.alg = alg
        ca.digest = b""
        ca.alg_changed = True
    else:
        ca.commands.update(cc for cc in set_list if cc in COMMANDS)
        ca.commands.difference_update(cc for cc in clear_list if cc != ALWAYS_AUDITED)
    tpm.nv_changed = True
    return b"", b""

"""Part 3, chapter 26: PP_Commands and SetAlgorithmSet.

A simxen TPM is a platform without physical presence: PP_Commands (which
needs the platform's authorization *and* asserted presence) is refused with
``TPM_RC_PP``, and the list of commands that would need presence is
PP_Commands alone.  SetAlgorithmSet accepts the platform's choice of an
algorithm set; the only set this TPM has is 0 (everything it implements).
"""

from simxen.tpm.commands import command
from simxen.tpm.commands.command_audit import MAX_CC_LIST
from simxen.tpm.constants import TPM_CC, TPM_RC
from simxen.tpm.errors import TpmError


@command(TPM_CC.PP_Commands, handles=("platform",), auth=1)
def pp_commands(tpm, cmd):
    r = cmd.r
    for param in (1, 2):                         # setList, clearList
        count = r.at(param).u32()
        if count > MAX_CC_LIST:
            raise TpmError(TPM_RC.SIZE, param=param)
        for _ in range(count):
            r.u32()
    r.done()
    raise TpmError(TPM_RC.PP, session=1)


@command(TPM_CC.SetAlgorithmSet, handles=("platform",), auth=1)
def set_algorithm_set(tpm, cmd):
    r = cmd.r
    r.u32()                                      # algorithmSet
    r.done()
    return b"", b""

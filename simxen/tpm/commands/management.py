"""Part 3, chapter 26: PP_Commands and SetAlgorithmSet.

A simxen TPM is a platform without physical presence: PP_Commands (which
needs the platform's authorization *and* asserted presence) is refused with
``TPM_RC_PP``, and the list of commands that would need presence is
PP_Commands alone.  SetAlgorithmSet accepts the platform's choice of an
algorithm set; the only set this TPM has is 0 (everything it implements).
"""

from simxen.tpm.commands import command
from simxen.tpm.constants import TPM_CC, TPM_RC
from simxen.tpm.errors import TpmError


@command(TPM_CC.PP_Commands, handles=("platform",), auth=1)
def pp_commands(tpm, cmd):
    # Not reached: the engine refuses the platform's authorization of this
    # command for want of physical presence (TPM_RC_PP, session 1) before it
    # checks the authValue or reads a parameter, as the reference does.
    raise TpmError(TPM_RC.PP, session=1)


@command(TPM_CC.SetAlgorithmSet, handles=("platform",), auth=1)
def set_algorithm_set(tpm, cmd):
    r = cmd.r
    r.u32()                                      # algorithmSet
    r.done()
    return b"", b""

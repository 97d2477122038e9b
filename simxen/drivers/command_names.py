"""Names for the command codes a tpmif ring carries.

A tpmif page carries either a TPM 2.0 command (a guest's, or a vTPM's
pass-through to the physical TPM) or a request in the vTPM manager's own
protocol (``VTPM_ORD_SAVEHASHKEY`` and friends, TPM 1.2 numbering). The two
numberings do not overlap: TPM 2.0 command codes start at ``0x11f``
(TPM 2.0 Part 2, table 12, ``TPM_CC``), the manager's ordinals are below
``0x100`` or carry ``TPM_VENDOR_COMMAND`` (Xen's ``stubdom/vtpmmgr/vtpm_manager.h``).
So a driver, which does not know which protocol it carries, can name a code
by looking it up in both. Trace records carry the code twice: ``cc`` (the
number) and ``cc_name`` (this name).
"""

from simxen.protocols.vtpmmgr import ORDINAL_NAMES, TPM2_CC_DeepQuote
from simxen.tpm.constants import COMMAND_NAMES, TPM_CC

__all__ = ["cc_name", "TPM2_CC_DeepQuote"]

# the vTPM's deep quote (protocols.vtpmmgr) is the TPM 2.0 quote's code with the vendor bit
assert TPM2_CC_DeepQuote == 0x20000000 | TPM_CC.Quote

_NAMES = {**ORDINAL_NAMES, **COMMAND_NAMES, TPM2_CC_DeepQuote: "TPM2_CC_DeepQuote"}


def cc_name(cc):
    """``0x182 -> 'TPM2_PCR_Extend'``, ``1 -> 'VTPM_ORD_SAVEHASHKEY'``;
    ``None`` (a packet shorter than a header) stays ``None``; an unknown code
    reads ``'CC_0x...'``."""
    if cc is None:
        return None
    name = _NAMES.get(cc)
    return name if name is not None else f"CC_{cc:#x}"

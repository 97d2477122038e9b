"""Platform Configuration Registers with the PC Client profile's rules.

Four banks (SHA-1, SHA-256, SHA-384, SHA-512) of 24 PCRs.  Which locality may
reset or extend a PCR, and its value after Startup(CLEAR), follow the PC Client
platform TPM profile (the reference implementation's ``s_initAttributes``):

======  =============  ===============  ================  ===================
PCR     saved by        reset from       extend from       after Startup(CLEAR)
        Shutdown(STATE) localities       localities
======  =============  ===============  ================  ===================
0-15    yes             none             0-4               zeros
16      no              0-3              0-4               zeros
17-18   no              4                2-4               all ones
19      no              4                2-3               all ones
20      no              2, 4             1-3               all ones
21-22   no              2, 4             2                 all ones
23      no              0-3              0-4               zeros
======  =============  ===============  ================  ===================

Extending is ``PCR := H(PCR || digest)``; every change increments
``update_counter`` (returned by PCR_Read, watched by PolicyPCR).
"""

from simxen.tpm.algorithms import HASHES
from simxen.tpm.constants import TPM_ALG

PCR_COUNT = 24

#: PCRs that share one authValue and one authPolicy (the PC Client profile's
#: single authorization group, PCR 20-22); the others always take the empty
#: authValue and have no policy
AUTH_GROUP = (20, 21, 22)
#: (stateSave, reset locality mask, extend locality mask) per PCR.
PCR_ATTRIBUTES = ([(True, 0x00, 0x1F)] * 16 + [(False, 0x0F, 0x1F)]
                  + [(False, 0x10, 0x1C)] * 2 + [(False, 0x10, 0x0C)]
                  + [(False, 0x14, 0x0E)] + [(False, 0x14, 0x04)] * 2
                  + [(False, 0x0F, 0x1F)])
#: Banks allocated, in the order GetCapability(TPM_CAP_PCRS) reports them.
BANKS = (TPM_ALG.SHA1, TPM_ALG.SHA256, TPM_ALG.SHA384, TPM_ALG.SHA512)


def reset_value(index, size):
    """Value of PCR ``index`` after a reset: all ones for the DRTM PCRs."""
    return b"\xff" * size if PCR_ATTRIBUTES[index][1] & 0x10 else bytes(size)


class PcrBanks:
    """The PCR values of every allocated bank and the update counter."""

    __slots__ = ("algs", "banks", "update_counter")

    def __init__(self, algs=BANKS):
        self.algs = tuple(a for a in BANKS if a in algs)
        self.banks = {}
        self.update_counter = 0
        self.reset_all()

    def reset_all(self, startup_locality=0):
        """Startup(CLEAR): every PCR to its reset value."""
        self.banks = {alg: [reset_value(i, HASHES[alg].size) for i in range(PCR_COUNT)]
                      for alg in self.algs}
        if startup_locality == 3:
            for values in self.banks.values():
                values[0] = values[0][:-1] + b"\x03"
        self.update_counter = 0

    def can_extend(self, index, locality):
        return bool(PCR_ATTRIBUTES[index][2] >> locality & 1)

    def can_reset(self, index, locality):
        """Whether TPM2_PCR_Reset may reset ``index`` from ``locality``.
        Locality 4 resets the DRTM PCRs only through _TPM_Hash_Start/End,
        never with the command (the engine implements DRTM)."""
        return locality != 4 and bool(PCR_ATTRIBUTES[index][1] >> locality & 1)

    def extend(self, index, digests):
        """PCR ``index`` of each allocated bank extended with its digest from
        ``digests`` (``(alg, digest)`` pairs; an unallocated bank's is
        ignored), then one update of ``update_counter``: PCR_Extend,
        PCR_Event and EventSequenceComplete."""
        banks = self.banks
        for alg, digest in digests:
            values = banks.get(alg)
            if values is not None:
                values[index] = HASHES[alg].new(values[index] + digest).digest()
        self.update_counter += 1

    def reset(self, index):
        for alg, values in self.banks.items():
            values[index] = bytes(HASHES[alg].size)
        self.update_counter += 1

    def read(self, alg, index):
        return self.banks[alg][index]

    def saved(self):
        """The part Shutdown(STATE) preserves: PCRs 0-15 of every bank."""
        return {alg: values[:16] for alg, values in self.banks.items()}

    def restore(self, saved, counter):
        """Startup(STATE): PCRs 0-15 from ``saved``, the rest reset."""
        self.reset_all()
        for alg, values in saved.items():
            if alg in self.banks:
                self.banks[alg][:16] = list(values)
        self.update_counter = counter

    def drtm(self, data_digests):
        """_TPM_Hash_End: PCRs 17-22 to zero, then extend PCR 17 with the
        hash of the DRTM data (``{alg: digest}``)."""
        for alg, values in self.banks.items():
            size = HASHES[alg].size
            for i in range(17, 23):
                values[i] = bytes(size)
            values[17] = HASHES[alg].new(values[17] + data_digests[alg]).digest()
        self.update_counter += 1

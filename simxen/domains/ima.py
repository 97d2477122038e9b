"""IMA inside a guest kernel: measure every executed file into PCR 10.

Linux's Integrity Measurement Architecture, with the policy
``measure func=BPRM_CHECK`` (the ``ima_policy=tcb`` rule for exec), does
this on each ``execve``:

1. hash the file with ``ima_hash`` (SHA-256 here);
2. if this inode was already measured with the same content, do nothing
   (IMA keeps a measured flag per inode, cleared when the file changes);
3. otherwise build an ``ima-ng`` entry (:mod:`simxen.protocols.ima`),
   append it to the runtime list, and extend PCR 10 -- each bank with the
   template data hashed by that bank's algorithm -- in one
   ``TPM2_PCR_Extend``.

At start-up, before anything runs, IMA reads PCRs 0-9 and records
``boot_aggregate``, which ties the list to what the boot loader measured
(pv-grub's PCRs 4 and 5). :class:`GuestIma` does all three through any
``transmit(command) -> response`` generator -- in a guest kernel, its
xen-tpmfront's :meth:`~simxen.drivers.tpmfront.TpmFront.transmit`::

    ima = GuestIma(front.transmit)
    yield from ima.start()
    yield from ima.exec_file("/usr/sbin/sshd", sshd_bytes)
    text = ima.ascii_list()      # /sys/kernel/security/ima/ascii_runtime_measurements
    data = ima.binary_list()     # /sys/kernel/security/ima/binary_runtime_measurements
"""

from __future__ import annotations

import hashlib

from simxen.protocols import ima as ima_list
from simxen.tpm import client
from simxen.tpm.constants import TPM_ALG

__all__ = ["GuestIma", "ImaError", "BANK_ALGS"]

#: PCR bank name -> TPM_ALG id, for the banks the guest's vTPM has.
BANK_ALGS = {"sha1": TPM_ALG.SHA1, "sha256": TPM_ALG.SHA256}


class ImaError(Exception):
    """The TPM refused an IMA extend or read (IMA then logs and carries on in
    Linux; here the caller decides)."""


class GuestIma:
    """IMA state of one guest kernel.

    :param transmit: generator function ``transmit(command) -> response``.
    :param ima_hash: algorithm of file digests and of ``boot_aggregate``'s bank.
    :param banks: PCR banks extended (each gets its own template digest).
    """

    def __init__(self, transmit, *, ima_hash: str = "sha256", banks=("sha1", "sha256"),
                 trace=None, dom=None):
        self.transmit = transmit
        self.ima_hash = ima_hash
        self.banks = tuple(banks)
        self.entries: list[ima_list.ImaEntry] = []
        self._measured: dict[str, bytes] = {}     # path -> digest (the inode's flag)
        self.trace = trace
        self.dom = dom
        self.extends = 0
        self._listed = (0, "")      # (entries, text) of the last ascii_list()

    def _extend(self, entry):
        digests = {BANK_ALGS[b]: ima_list.bank_digest(entry, b) for b in self.banks}
        rsp = yield from self.transmit(client.pcr_extend_command(entry.pcr, digests))
        rc = client.response_code(rsp)
        if rc:
            raise ImaError(f"TPM2_PCR_Extend of PCR {entry.pcr} for {entry.path} failed "
                           f"with {rc:#x}")
        self.extends += 1
        self.entries.append(entry)
        if self.trace is not None and self.dom is not None:
            self.trace.emit("ima.measure", self.dom.now, self.dom.domid, path=entry.path,
                            digest=entry.file_digest, template_hash=entry.template_hash)

    def start(self):
        """Generator: read PCRs 0-9 and record ``boot_aggregate`` (ima_init)."""
        bank = self.ima_hash if self.ima_hash in self.banks else "sha256"
        rsp = yield from self.transmit(client.pcr_read_command({BANK_ALGS[bank]: list(range(10))}))
        try:
            _, values = client.parse_pcr_read(rsp)
        except client.ResponseError as exc:
            raise ImaError(f"TPM2_PCR_Read for boot_aggregate failed: {exc}") from None
        pcrs = {bank: values.get(BANK_ALGS[bank], {})}
        yield from self._extend(ima_list.boot_aggregate_entry(pcrs, bank))

    def exec_file(self, path: str, content: bytes):
        """Generator: ``execve(path)`` of a file holding ``content``.

        Returns the new :class:`~simxen.protocols.ima.ImaEntry`, or ``None``
        when the same content was measured before (no new entry, no extend).
        """
        digest = hashlib.new(self.ima_hash, content).digest()
        if self._measured.get(path) == digest:
            return None
        entry = ima_list.measure(path.replace(" ", "_"), digest, self.ima_hash)
        yield from self._extend(entry)
        self._measured[path] = digest
        return entry

    def ascii_list(self) -> str:
        """The runtime measurement list as Linux prints it.

        Entries are only ever appended, so the text is formatted again only when
        the list has grown (an agent sends it every attestation round)."""
        count, text = self._listed
        if count != len(self.entries):
            text = ima_list.format_list(self.entries)
            self._listed = (len(self.entries), text)
        return text

    def binary_list(self) -> bytes:
        """The same list as ``binary_runtime_measurements`` holds it
        (:func:`simxen.protocols.ima.format_binary`), for tools such as
        ``evmctl ima_measurement``. Made on request: nothing in the simulated
        guest reads it."""
        return ima_list.format_binary(self.entries)

"""simxen.tpm — a TPM 2.0 engine as a pure library: bytes in, bytes out.

It imports nothing from the rest of simxen, knows nothing of SimPy or Xen,
and is the same engine whether it plays a vTPM inside a stub domain or the
physical TPM behind the vTPM manager's TIS window::

    from simxen.tpm import TpmEngine, client
    tpm = TpmEngine(seed=b"dom3", random_bytes=stream, powered=True)
    rsp = tpm.execute(client.startup_command(), locality=0)

Modules: :mod:`~simxen.tpm.constants` (TCG names), :mod:`~simxen.tpm.header`
(the 10-byte command/response header: tag, size, code), :mod:`~simxen.tpm.marshal`
and the structures (:mod:`~simxen.tpm.public`, :mod:`~simxen.tpm.attest`,
:mod:`~simxen.tpm.signature`, :mod:`~simxen.tpm.pcr_selection`),
:mod:`~simxen.tpm.client` (command builders for simulated software),
:mod:`~simxen.tpm.state` (the persistent state blob) and
:mod:`~simxen.tpm.commands` (Part 3, one module per chapter).
"""

from simxen.tpm.engine import TpmEngine
from simxen.tpm.errors import StateError, TpmError

__all__ = ["TpmEngine", "StateError", "TpmError"]

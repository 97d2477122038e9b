"""simxen — a discrete-event simulator of Xen's split-driver virtual TPM.

Layers (a lower layer never imports a higher one):

0. :mod:`simxen.tpm` (TPM 2.0 engine) and :mod:`simxen.protocols` (byte layouts)
1. :mod:`simxen.xen` — the hypervisor in simulated time
2. :mod:`simxen.drivers` — xenbus, tpmfront/tpmback, TIS
3. :mod:`simxen.domains` — what runs inside each domain
4. :mod:`simxen.scenario` — scenario files, runner, reports
5. :mod:`simxen.cli`, :mod:`simxen.server`
"""

__version__ = "0.1.0"

"""simxen.hw — the machine's hardware as pure, synchronous device models.

Layer 1, beside :mod:`simxen.xen`. A device here knows registers and bytes,
never simulated time (no SimPy) and never what a TPM command means: the
simulation layer above decides when an operation completes.

* :mod:`simxen.hw.tis` — the TPM's TIS/FIFO interface at ``0xFED40000``.
"""

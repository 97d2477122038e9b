"""Errors raised by hypercall-shaped operations.

Each carries Xen's own code in ``.code``: a ``GNTST_*`` status (negative
``int16``) for grant-table operations, a negative errno for event channels,
I/O memory and XenStore. Code that models a guest catches them the way a
guest checks a hypercall's return value::

    try:
        mapping = hv.gnttab.map_grant_ref(back, front.domid, gref)
    except GrantError as err:
        if err.code == GNTST_general_error: ...
"""

from simxen.protocols.grant_table import GNTST_NAMES
from simxen.xen import errno as _errno


class XenError(Exception):
    """A hypercall failed. ``code`` is what Xen would have returned."""

    def __init__(self, code, message):
        self.code = code
        self.message = message
        super().__init__(code, message)     # SimPy re-raises with type(exc)(*exc.args)

    def __str__(self):
        return f"{self.code_name()} ({self.code}): {self.message}"

    def code_name(self):
        """The symbolic name of :attr:`code` (``EINVAL``, ``GNTST_bad_gntref``)."""
        return _errno.name_of(self.code)


class GrantError(XenError):
    """A grant-table operation failed with a ``GNTST_*`` status."""

    def code_name(self):
        return GNTST_NAMES.get(self.code, f"GNTST_{self.code}")


class EvtchnError(XenError):
    """An event-channel operation failed (negative errno)."""


class IomemError(XenError):
    """An I/O-memory permission or MMIO mapping failed (negative errno)."""


class XenStoreError(XenError):
    """A XenStore request failed; ``name`` is the errno name on the wire."""

    @property
    def name(self):
        return self.code_name()


class PageFault(XenError):
    """A domain wrote through a read-only mapping (``-EFAULT``)."""

"""Xen's errno values (``xen/include/public/errno.h``).

Event-channel and XenStore operations fail with a *negative* errno, exactly
as the hypercall returns it; xenstored puts the errno *name* on the wire.
These are Xen's numbers, which match Linux's on x86 for the ones used here.
"""

EPERM = 1
ENOENT = 2
ESRCH = 3
EIO = 5
ENXIO = 6
E2BIG = 7
EAGAIN = 11
ENOMEM = 12
EACCES = 13
EFAULT = 14
EBUSY = 16
EEXIST = 17
EINVAL = 22
ENOSPC = 28
EROFS = 30
ENOSYS = 38
ENOTEMPTY = 39
EISCONN = 106

#: errno value -> name, for messages and for XenStore's wire format.
NAMES = {value: name for name, value in list(globals().items())
         if name.startswith("E") and isinstance(value, int)}


def name_of(code):
    """The errno name of ``code`` (negative or positive), e.g. ``-2 -> "ENOENT"``."""
    return NAMES.get(abs(code), f"E{abs(code)}")

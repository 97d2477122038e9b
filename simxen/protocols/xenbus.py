"""Xenbus: device states and the XenStore paths of split drivers.

States (``xen/include/public/io/xenbus.h``), written as decimal strings to
each side's ``state`` node. The usual walk::

    frontend  Initialising -------------> Initialised ------------> Connected
    backend   Initialising -> InitWait ---------------> Connected

then, to close, one side goes Closing, the other Closing/Closed, and both
end Closed (a backend that supports reconnection returns to InitWait).

Paths (libxl's layout)::

    /local/domain/<fe>/device/<type>/<devid>             frontend directory
    /local/domain/<be>/backend/<type>/<fe>/<devid>       backend directory
"""

from enum import IntEnum


class XenbusState(IntEnum):
    """``enum xenbus_state``."""

    Unknown = 0
    Initialising = 1
    InitWait = 2
    Initialised = 3
    Connected = 4
    Closing = 5
    Closed = 6
    Reconfiguring = 7
    Reconfigured = 8

    @classmethod
    def parse(cls, text):
        """The state in a ``state`` node's value; ``Unknown`` if unreadable."""
        try:
            return cls(int(text))
        except (TypeError, ValueError):
            return cls.Unknown

    @classmethod
    def number(cls, text):
        """The other end's ``state`` as the drivers read it (mini-os
        ``xenbus_read_integer``, Linux ``xenbus_read_driver_state``): a member;
        ``Unknown`` for text that is no number, or a negative one; and a number
        this enum does not name (9, 99, ...) as a plain ``int``, which no
        handshake waits for -- mini-os tpmback's ``frontend_changed`` and Linux's
        ``backend_changed`` switches ignore it in their ``default`` case."""
        try:
            value = int(text)
        except (TypeError, ValueError):
            return cls.Unknown
        if value < 0:
            return cls.Unknown
        try:
            return cls(value)
        except ValueError:
            return value


def domain_path(domid):
    """``/local/domain/<domid>``."""
    return f"/local/domain/{domid}"


def frontend_path(fe, devtype, devid=0):
    """The frontend directory of device ``devtype``/``devid`` of domain ``fe``."""
    return f"/local/domain/{fe}/device/{devtype}/{devid}"


def backend_path(be, devtype, fe, devid=0):
    """The backend directory, in domain ``be``, for ``fe``'s device ``devtype``/``devid``."""
    return f"/local/domain/{be}/backend/{devtype}/{fe}/{devid}"

"""simxen.xen -- the Xen hypervisor in simulated time.

Start with :class:`~simxen.xen.hypervisor.Hypervisor`; the API is described
in ``docs/xen-api.rst``.
"""

from simxen.xen.domain import PAGE_SIZE, Domain, Page, WatchEvent
from simxen.xen.errors import (
    EvtchnError,
    GrantError,
    IomemError,
    PageFault,
    XenError,
    XenStoreError,
)
from simxen.xen.grant_table import GrantCopyPtr, Mapping
from simxen.xen.hypervisor import Hypervisor
from simxen.xen.profile import Profile
from simxen.xen.streams import Streams
from simxen.xen.trace import Record, Trace

__all__ = [
    "PAGE_SIZE", "Domain", "Page", "WatchEvent", "EvtchnError", "GrantError", "IomemError",
    "PageFault", "XenError", "XenStoreError", "GrantCopyPtr", "Mapping", "Hypervisor",
    "Profile", "Streams", "Record", "Trace",
]

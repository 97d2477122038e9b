"""Event-channel constants from Xen's public ``event_channel.h`` and ``xen.h``."""

# EVTCHNOP_* commands (HYPERVISOR_event_channel_op).
EVTCHNOP_bind_interdomain = 0
EVTCHNOP_close = 3
EVTCHNOP_send = 4
EVTCHNOP_status = 5
EVTCHNOP_alloc_unbound = 6
EVTCHNOP_unmask = 9

# Port states as EVTCHNOP_status reports them.
EVTCHNSTAT_closed = 0
EVTCHNSTAT_unbound = 1
EVTCHNSTAT_interdomain = 2
EVTCHNSTAT_pirq = 3
EVTCHNSTAT_virq = 4
EVTCHNSTAT_ipi = 5

STATE_NAMES = {0: "closed", 1: "unbound", 2: "interdomain", 3: "pirq", 4: "virq", 5: "ipi"}

#: ports per domain with the 2-level ABI on a 64-bit guest (64 x 64 bits; Xen's
#: event_2l.c sets ``d->max_evtchns`` to it).
EVTCHN_2L_NR_CHANNELS = 4096
#: ports per domain with the FIFO ABI (EVTCHN_FIFO_NR_CHANNELS in Xen's public/event_channel.h).
EVTCHN_FIFO_NR_CHANNELS = 1 << 17
#: the two ABIs by the names reports use
EVTCHN_ABI_2L, EVTCHN_ABI_FIFO = "2-level", "fifo"

# Special domain ids (xen.h).
DOMID_FIRST_RESERVED = 0x7FF0
DOMID_SELF = 0x7FF0
DOMID_IO = 0x7FF1
DOMID_XEN = 0x7FF2
DOMID_COW = 0x7FF3
DOMID_INVALID = 0x7FF4
DOMID_ANY = 0x7FF5
DOMID_IDLE = 0x7FFF

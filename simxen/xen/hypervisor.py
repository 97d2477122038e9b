"""The hypervisor: the one object that holds a simulated Xen host.

::

    hv = Hypervisor(seed=7)                 # dom0 exists already
    guest = hv.domain_create("guest")
    hv.env.process(some_generator(hv, guest))
    hv.env.run()
    hv.trace.to_jsonl(open("trace.jsonl", "w"))

It owns the SimPy environment, the timing profile, the random streams, the
trace, and the four families of operations: ``hv.gnttab``, ``hv.evtchn``,
``hv.xs`` and ``hv.iomem``.
"""

import itertools

import simpy

from simxen.protocols.event_channel import DOMID_FIRST_RESERVED
from simxen.xen import errno
from simxen.xen.domain import Domain
from simxen.xen.errors import XenError
from simxen.xen.event_channel import EventChannels
from simxen.xen.grant_table import GrantTable, GrantTables
from simxen.xen.iomem import Iomem
from simxen.xen.profile import Profile
from simxen.xen.streams import Streams
from simxen.xen.trace import Trace
from simxen.xen.xenstore import Children, Node, XenStore

#: first machine frame handed out for domain RAM (frames below are "firmware").
FIRST_RAM_MFN = 0x1000

#: the most vCPUs an x86-64 PV domain may have (every domain here is PV: the
#: stub domains, pv-grub and the guests it boots). Xen's ``MAX_VIRT_CPUS`` in
#: ``xen/arch/x86/include/asm/config.h``: one 128 KiB GDT/LDT window per vCPU
#: (``GDT_LDT_VCPU_VA_SHIFT`` = 17) in the 1 GiB per-domain slot, 8,192 of
#: them. ``XEN_DOMCTL_createdomain`` refuses more with ``-EINVAL``
#: (``arch_sanitise_domain_config`` in ``xen/arch/x86/domain.c``: "Requested
#: vCPUs (%u) exceeds max (%u)"), and fewer than one with ``-EINVAL`` too
#: (``sanitise_domain_config`` in ``xen/common/domain.c``). An HVM guest's limit
#: is lower, ``HVM_MAX_VCPUS`` = 128 (``xen/include/public/hvm/hvm_info_table.h``),
#: but no domain here is HVM.
MAX_VIRT_CPUS = 8192


def vcpus_problem(vcpus):
    """Why Xen would refuse a PV domain of ``vcpus`` vCPUs, or ``None``.

    The scenario and ``xl`` config checks ask it too, so that ``simxen validate``
    refuses what the hypervisor would.
    """
    if isinstance(vcpus, bool) or not isinstance(vcpus, int):
        return f"vcpus must be an integer, not {vcpus!r}"
    if not 1 <= vcpus <= MAX_VIRT_CPUS:
        return (f"requested vCPUs ({vcpus}) outside 1..{MAX_VIRT_CPUS}, the most Xen "
                "allows an x86-64 PV domain (MAX_VIRT_CPUS)")
    return None


class Hypervisor:
    """A simulated Xen host.

    ``profile`` is a :class:`Profile` or a name/path for
    :meth:`Profile.load`; ``seed`` seeds :class:`Streams` (unless
    ``streams`` is given); ``trace`` defaults to a fresh :class:`Trace`.
    ``scheduler`` shares physical CPUs among the domains
    (:class:`simxen.xen.scheduler.Credit2`); ``None``, the default, gives
    every domain a physical CPU of its own.
    """

    def __init__(self, env=None, *, profile="default", seed=0, trace=None, streams=None,
                 scheduler=None):
        self.env = env if env is not None else simpy.Environment()
        self.profile = profile if isinstance(profile, Profile) else Profile.load(profile)
        self.streams = streams if streams is not None else Streams(seed)
        self.trace = trace if trace is not None else Trace()
        #: the CPU scheduler, or ``None``: every domain has a physical CPU of its own
        self.scheduler = scheduler
        if scheduler is not None:
            scheduler.attach(self)
        #: domid -> Domain, live and dying (zombie) domains.
        self.domains = {}
        #: name -> the live Domain of that name (live names are unique, as xl keeps them)
        self._live_by_name = {}
        #: the domid last handed out: the search for the next starts after it
        self._rover = 0
        self._mfns = itertools.count(FIRST_RAM_MFN)
        self._seq = itertools.count()
        self._dead_queued = []       # (domain, when destroyed): destroyed with deliveries queued
        self.gnttab = GrantTables(self)
        self.evtchn = EventChannels(self)
        self.xs = XenStore(self)
        self.iomem = Iomem(self)
        for path in ("/local", "/local/domain"):
            self.xs.nodes[path] = Node("", ((0, "r"),))
        nodes = self.xs.nodes
        nodes["/"] = nodes["/"].replace(0.0, children=Children(["local"]))
        nodes["/local"] = nodes["/local"].replace(0.0, children=Children(["domain"]))
        self.dom0 = self._create(0, "Domain-0", privileged=True, vcpus=1)

    def next_seq(self):
        """The next number of the run's one sequence (orders simultaneous deliveries)."""
        return next(self._seq)

    def low_water(self):
        """The earliest time a trace record emitted from now on can carry.

        Records are stamped at or after ``env.now`` (with a domain's
        :attr:`~Domain.now`, or its cursor just after a charge moved it to at
        least ``env.now``), except the deliveries a domain records when it
        looks at its inbox: they carry the time the notification or
        watch event arrived (:meth:`Domain.earliest_queued`). Everything
        recorded up to this time is final, so the trace may write it out
        (:meth:`simxen.xen.trace.Trace.stream_to`). A destroyed domain no
        longer looks once the instant it was destroyed has passed (the
        toolstack halts its kernel's processes then), so what is left in its
        inbox no longer holds the mark back. Every call site was audited by
        running every shipped scenario; the trace still checks.
        """
        now = mark = self.env.now
        for dom in self.domains.values():
            if dom.alive:
                t = dom.earliest_queued()
                if t is not None and t < mark:
                    mark = t
        if self._dead_queued:
            self._dead_queued = [(dom, at) for dom, at in self._dead_queued if at >= now]
            for dom, _ in self._dead_queued:
                t = dom.earliest_queued()
                if t is not None and t < mark:
                    mark = t
        return mark

    def alloc_mfn(self):
        """A fresh machine frame number."""
        return next(self._mfns)

    def live_domain(self, domid, error, op):
        """The live domain ``domid``, or ``error(-ESRCH)`` naming the operation ``op``."""
        dom = self.domains.get(domid)
        if dom is None or not dom.alive:
            raise error(-errno.ESRCH, f"{op}: no live domain {domid!r}")
        return dom

    # -- domains -----------------------------------------------------------

    def domain_named(self, name):
        """The live domain called ``name``, or ``None`` (a lookup, not a walk over
        every domain: a host of 10,000 guests asks this for each one it creates)."""
        return self._live_by_name.get(name)

    def domain_create(self, name, *, privileged=False, pages=0, iomem=(), vcpus=1):
        """Build a domain (as the toolstack in dom0 does) and return it.

        ``pages`` zeroed pages are allocated; ``iomem`` is a list of
        ``(first_mfn, nr_mfns)`` ranges the domain alone may map; ``vcpus``
        is from 1 to :data:`MAX_VIRT_CPUS`, as Xen allows a PV domain.
        """
        if not isinstance(name, str) or not name:
            raise XenError(-errno.EINVAL, f"domain name must be a non-empty string, not {name!r}")
        problem = vcpus_problem(vcpus)
        if problem:
            raise XenError(-errno.EINVAL, f"XEN_DOMCTL_createdomain: {problem}")
        if name in self._live_by_name:
            raise XenError(-errno.EEXIST, f"a domain called {name!r} exists")
        domid = self._free_domid()
        self.dom0.charge("domain.create")
        dom = self._create(domid, name, privileged=privileged, vcpus=vcpus)
        for _ in range(pages):
            dom.alloc_page()
        for first_mfn, nr_mfns in iomem:
            self.iomem.grant(dom.domid, first_mfn, nr_mfns, True)
        self.xs.fire_special(self.dom0, "@introduceDomain")
        return dom

    def _free_domid(self):
        """The domid ``XEN_DOMCTL_createdomain`` gives a new domain: the first one
        after the last it gave that no domain holds, live or dying, wrapping from
        ``DOMID_FIRST_RESERVED`` (0x7FF0) back to 1 (the ``rover`` search of
        ``do_domctl`` in ``xen/common/domctl.c``). Until the ids wrap, domains get
        1, 2, 3 ... in order of creation; after, a destroyed domain's id is given
        again. With every id from 1 to 0x7FEF held: ``-ENOMEM``, as Xen fails."""
        rover, domains = self._rover, self.domains
        for domid in itertools.chain(range(rover + 1, DOMID_FIRST_RESERVED), range(1, rover)):
            if domid not in domains:
                self._rover = domid
                return domid
        raise XenError(-errno.ENOMEM, "XEN_DOMCTL_createdomain: no free domain id: all of 1 "
                       f"to {DOMID_FIRST_RESERVED - 1} are held by live or dying domains")

    def _create(self, domid, name, *, privileged, vcpus):
        dom = Domain(self, domid, name, privileged=privileged, vcpus=vcpus)
        self.trace.name_domain(domid, name)
        dom.cursor = self.dom0.now if domid else self.env.now
        if self.scheduler is not None:
            self.scheduler.add_domain(dom)
        dom.grant_table = GrantTable()
        dom.maptrack = {}
        dom.next_map_handle = 0      #: the handle the next grant map returns
        self.domains[domid] = dom
        self._live_by_name[name] = dom
        creator = self.dom0 if domid else dom
        home = f"/local/domain/{domid}"
        self.xs.write(creator, home, "")
        self.xs.set_perms(creator, home, [f"n{domid}"])
        self.xs.write(creator, f"{home}/name", name)
        self.xs.write(creator, f"{home}/domid", str(domid))
        self.trace.emit("domain.create", creator.now, creator.domid, domid=domid, name=name,
                        privileged=bool(privileged), vcpus=vcpus)
        return dom

    def domain_destroy(self, domid):
        """Destroy a domain and release what it holds (see ``docs/xen-api.rst``)."""
        dom = self.domains.get(domid)
        if dom is None or not dom.alive:
            raise XenError(-errno.ESRCH, f"domain_destroy: no live domain {domid!r}")
        if dom is self.dom0:
            raise XenError(-errno.EINVAL, "dom0 cannot be destroyed")
        self.dom0.charge("hypercall")
        self.gnttab.release_domain(dom)
        self.evtchn.close_all(dom)
        self.xs.release_domain(dom)
        self.iomem.release_domain(dom)
        dom.alive = False
        dom.dying = True
        if dom.earliest_queued() is not None:   # its processes may look once more, now
            self._dead_queued.append((dom, self.env.now))
        del self._live_by_name[dom.name]
        self.trace.emit("domain.destroy", self.dom0.now, 0, domid=domid, name=dom.name)
        self.xs.rm(self.dom0, f"/local/domain/{domid}")
        self.xs.fire_special(self.dom0, "@releaseDomain")
        self.reap(dom)

    def reap(self, dom):
        """Forget a dying domain once nobody maps its pages any more."""
        if dom.dying and not self.gnttab.still_mapped(dom):
            dom.dying = False
            del self.domains[dom.domid]
            self.trace.emit("domain.reaped", self.dom0.now, None, domid=dom.domid)

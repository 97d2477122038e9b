"""A small hand-built two-level vTPM path for the hops tests, out of the real drivers.

guest (Linux tpmfront) -> ``vtpm`` (tpmback + TPM engine; for a PCR_Extend it
also asks ``mgr`` over its own mini-os tpmfront, reusing or not the guest's
flow id) -> ``mgr`` (tpmback; marks a physical-TPM span ``tis.go`` ->
``tis.complete`` around a sleep). Not the project's vTPM stack (that is
``simxen.domains``): just enough causality to check that the analysis
untangles it.
"""

from simxen.drivers.command_names import cc_name
from simxen.drivers.tpmback import TpmBack
from simxen.drivers.tpmfront import TpmFront
from simxen.drivers.xenbus import add_device
from simxen.tpm import TpmEngine, client
from simxen.tpm.constants import TPM_CC
from simxen.xen import Hypervisor

PTPM_BUSY = 0.004


def uuid_of(n):
    return f"00000000-0000-4000-8000-{n:012x}"


class StackRig:
    def __init__(self, seed=1, *, flow_mode="own", switches=None, guests=1):
        self.hv = hv = Hypervisor(seed=seed)
        if switches:
            hv.profile = hv.profile.with_overrides({"switches": switches})
        self.env = hv.env
        self.flow_mode = flow_mode
        self.mgr = hv.domain_create("vtpmmgr")
        self.vtpm = hv.domain_create("vtpm")
        self.guests = [hv.domain_create(f"guest{i + 1}") for i in range(guests)]
        add_device(hv, hv.dom0, self.vtpm.domid, self.mgr.domid, "vtpm",
                   back_extra={"uuid": uuid_of(self.vtpm.domid)})
        for g in self.guests:
            add_device(hv, hv.dom0, g.domid, self.vtpm.domid, "vtpm",
                       back_extra={"uuid": uuid_of(g.domid)})
        self.engine = TpmEngine(seed=b"rig", powered=True)
        self.mgr_back = TpmBack(hv, self.mgr, name="vtpmmgr").start()
        self.vtpm_back = TpmBack(hv, self.vtpm, name="vtpm").start()
        self.to_mgr = TpmFront(hv, self.vtpm, flavour="minios")
        self.env.process(self._manager())
        self.env.process(self._vtpm())

    @property
    def guest(self):
        return self.guests[0]

    def _manager(self):
        mgr = self.mgr
        while True:
            req = yield from self.mgr_back.next_request()
            mgr.charge("tpm.vtpm.default")
            # the records the TIS driver makes (their fields as the trace schema has them)
            call = {"flow": req.flow, "cc": req.cc, "cc_name": cc_name(req.cc)}
            self.hv.trace.emit("tis.go", mgr.now, mgr.domid, **call, locality=req.locality,
                               length=len(req.command))
            yield mgr.sleep(PTPM_BUSY)
            answer = b"\x80\x01\x00\x00\x00\x0a\x00\x00\x00\x00"
            self.hv.trace.emit("tis.complete", mgr.now, mgr.domid, **call, rc=0,
                               length=len(answer))
            self.mgr_back.respond(req, answer)

    def _vtpm(self):
        vtpm = self.vtpm
        yield from self.to_mgr.connect()
        seq = 0
        while True:
            req = yield from self.vtpm_back.next_request()
            rsp = self.engine.execute(req.command, req.locality)
            vtpm.charge("tpm.vtpm.default")
            if req.cc == TPM_CC.PCR_Extend:
                seq += 1
                flow = req.flow if self.flow_mode == "same" else f"vtpm-save/{seq}"
                yield from self.to_mgr.transmit(b"\x80\x01\x00\x00\x00\x0a\x00\x00\x00\x01",
                                                flow=flow)
            self.vtpm_back.respond(req, rsp)

    def run_commands(self, commands, guest=None):
        """Connect ``guest``'s tpmfront and send ``commands``; return the responses."""
        guest = guest or self.guest
        out = []

        def kernel():
            front = TpmFront(self.hv, guest)
            yield from front.connect()
            for cmd in commands:
                out.append((yield from front.transmit(cmd)))
        proc = self.env.process(kernel())
        self.env.run(until=proc)
        return out


def extend_command(pcr=16, data=b"x"):
    import hashlib
    from simxen.tpm.constants import TPM_ALG
    return client.pcr_extend_command(pcr, {TPM_ALG.SHA256: hashlib.sha256(data).digest()})

"""vTPM state survives vtpm restarts; with the sealed manager store also vtpmmgr restarts and
host reboots, and rollbacks and changed hosts are refused. With Xen's TPM 2.0 manager store (the
default) a manager restart or a host reboot loses every vTPM."""

from domain_helpers import boot, make_profile, run

from simxen.domains.host_boot import boot_with
from simxen.domains.stack import HostSpec, build_host
from simxen.protocols.vtpm_disk import pick_slot
from simxen.tpm.client import ResponseError
from simxen.tpm.constants import TPM_CC
from simxen.xen import Hypervisor

NV = 0x01500000
IMAGE = "/var/vtpm-guest1.img"
MGR_IMAGE = "/var/vtpmmgr-stubdom.img"
#: simxen's sealed manager store (the default is Xen's, which keeps nothing on disk).
SEALED = {"vtpmmgr": {"storage": "sealed"}}


def sealed(**kw):
    return HostSpec.standard(options=dict(SEALED), **kw)


def provision(host):
    """Generator: an NV index with data and an attestation key; returns the AK's public bytes."""
    tpm = host.guest("guest1").tpm
    yield from tpm.nv_define(NV, 16)
    yield from tpm.nv_write(NV, b"first version!!!")
    _, public = yield from tpm.create_ak()
    return public.marshal()


def read_back(host):
    tpm = host.guest("guest1").tpm
    data = yield from tpm.nv_read(NV, 16)
    _, public = yield from tpm.create_ak()
    return data, public.marshal()


def test_nv_data_and_keys_survive_a_vtpm_restart():
    hv, host = boot()
    ak = run(hv, provision(host))
    old = host.vtpm("vtpm-guest1")
    new = run(hv, host.restart_vtpm("vtpm-guest1"))
    assert new is not old and new.dom.domid != old.dom.domid
    assert new.restore_status == "restored"
    assert run(hv, read_back(host)) == (b"first version!!!", ak)


def test_nv_data_and_keys_survive_a_vtpmmgr_restart_with_the_sealed_store():
    hv, host = boot(sealed())
    ak = run(hv, provision(host))
    mgr = run(hv, host.restart_vtpmmgr())
    assert mgr.storage.is_open and not mgr.storage.provisioned
    assert mgr.storage.vtpm_count == 1
    vtpm = run(hv, host.restart_vtpm("vtpm-guest1"))     # reconnect to the new manager
    assert vtpm.restore_status == "restored"
    assert run(hv, read_back(host)) == (b"first version!!!", ak)


def test_every_save_uses_the_other_slot_and_a_fresh_key():
    hv, host = boot()
    vtpm = host.vtpm("vtpm-guest1")
    slots, blobs = [], []

    def writes():
        tpm = host.guest("guest1").tpm
        yield from tpm.nv_define(NV, 16)
        for i in range(3):
            yield from tpm.nv_write(NV, b"%016d" % i)
            slots.append(vtpm.slot)
            blobs.append(host.vtpmmgr.storage.get(_uuid(host, vtpm)))

    run(hv, writes())
    assert slots[0] != slots[1] != slots[2] and slots[0] == slots[2]
    assert len({b[32:] for b in blobs}) == 3                  # a new key each time
    image = host.toolstack.images[IMAGE].snapshot()
    assert pick_slot(image, blobs[-1][:32]) == slots[-1]


def _uuid(host, vtpm):
    import uuid
    info = next(iter(host.vtpmmgr.back.frontends.values()))
    assert info.domid == vtpm.domid
    return uuid.UUID(info.uuid).bytes


def test_a_rolled_back_vtpm_disk_is_rejected():
    hv, host = boot()
    run(hv, provision(host))
    old_disk = host.toolstack.images[IMAGE].snapshot()

    def newer():
        yield from host.guest("guest1").tpm.nv_write(NV, b"second version!!")

    run(hv, newer())
    host.toolstack.images[IMAGE].restore(old_disk)           # copy the old image back
    vtpm = run(hv, host.restart_vtpm("vtpm-guest1"))
    assert vtpm.restore_status == "rollback"
    (record,) = [r for r in hv.trace.select("vtpm.restore") if r.dom == vtpm.domid]
    assert record.fields["status"] == "rollback"

    def old_state_not_loaded():
        try:
            yield from host.guest("guest1").tpm.nv_read(NV, 16)
        except ResponseError as err:
            return err.rc
        return None

    assert run(hv, old_state_not_loaded()) is not None       # neither version: a fresh vTPM


def test_halt_on_rollback_serves_failures_instead_of_a_fresh_tpm():
    spec = HostSpec.standard(options={"vtpm-guest1": {"restore_failure": "halt"}})
    hv, host = boot(spec)
    run(hv, provision(host))
    old_disk = host.toolstack.images[IMAGE].snapshot()
    run(hv, _write(host, b"second version!!"))
    host.toolstack.images[IMAGE].restore(old_disk)
    vtpm = run(hv, host.restart_vtpm("vtpm-guest1"))
    assert vtpm.restore_status == "rollback" and vtpm.engine is None
    try:
        run(hv, host.guest("guest1").tpm.get_random(8))
    except ResponseError as err:
        assert err.rc == 0x101                               # TPM_RC_FAILURE
    else:
        raise AssertionError("a halted vTPM answered")


def _write(host, data):
    yield from host.guest("guest1").tpm.nv_write(NV, data)


def _reboot(host, boot_measurements, seed=2, options=SEALED):
    hv = Hypervisor(seed=seed, profile=make_profile())
    spec = HostSpec.standard(previous=host.state(), boot=boot_measurements, options=dict(options))
    new = build_host(hv, spec)
    hv.env.run(until=new.ready)
    return hv, new


def test_a_host_reboot_with_the_same_measurements_unseals():
    hv, host = boot(sealed())
    ak = run(hv, provision(host))
    hv2, host2 = _reboot(host, host.spec.boot)
    assert host2.vtpmmgr.storage.is_open
    assert host2.vtpm("vtpm-guest1").restore_status == "restored"
    assert run(hv2, read_back(host2)) == (b"first version!!!", ak)


def test_a_changed_host_measurement_makes_the_manager_refuse_to_unseal():
    hv, host = boot(sealed())
    run(hv, provision(host))
    image_before = host.toolstack.images["/var/vtpmmgr-stubdom.img"].snapshot()
    hv2, host2 = _reboot(host, boot_with("xen", b"xen.gz 4.19.0 (patched by someone)"))
    storage = host2.vtpmmgr.storage
    assert not storage.is_open
    assert "TPM_RC_POLICY_FAIL" in storage.error
    (opened,) = hv2.trace.select("vtpmmgr.open")
    assert opened.fields["status"] == "refused"
    # The vTPM cannot get its key: it is not restored, and neither disk is touched.
    vtpm = host2.vtpm("vtpm-guest1")
    assert vtpm.restore_status == "manager-error" and vtpm.save_blocked
    vtpm_image = host2.toolstack.images[IMAGE].snapshot()
    run(hv2, host2.guest("guest1").tpm.nv_define(NV + 1, 8))     # a changing command: no save
    assert host2.toolstack.images[IMAGE].snapshot() == vtpm_image
    assert host2.toolstack.images["/var/vtpmmgr-stubdom.img"].snapshot() == image_before
    # Boot the right host again: everything is still there.
    hv3, host3 = _reboot(host2, host.spec.boot, seed=3)
    assert host3.vtpm("vtpm-guest1").restore_status == "restored"
    assert run(hv3, read_back(host3))[0] == b"first version!!!"


def test_without_strong_persistence_nothing_is_saved_and_a_restart_loses_the_state():
    spec = HostSpec.standard(options={"vtpm-guest1": {"strong_persistence": False}})
    hv, host = boot(spec)
    saves_at_boot = len(hv.trace.select("vtpm.save"))
    run(hv, provision(host))
    assert len(hv.trace.select("vtpm.save")) == saves_at_boot == 0
    vtpm = run(hv, host.restart_vtpm("vtpm-guest1"))
    assert vtpm.restore_status == "new"


# -- Xen's TPM 2.0 manager store (the default) ---------------------------------------------

def test_xen_store_writes_nothing_on_savehashkey_and_makes_rsa_keys_every_boot():
    hv, host = boot()
    mgr = host.vtpmmgr
    assert mgr.storage.kind == "xen" and mgr.storage.provisioned
    # Xen's vtpmmgr2_create: an RSA-2048 SRK by CreatePrimary, an RSA-2048 key by Create + Load
    execs = [r.fields["cc"] for r in hv.trace.select("tpm.exec") if r.fields.get("tpm") != "vtpm"]
    assert execs.count(TPM_CC.CreatePrimary) == 1
    assert TPM_CC.Create in execs and TPM_CC.Load in execs
    mgr_writes = lambda: [r for r in hv.trace.select("disk.write") if r.dom == mgr.domid]  # noqa: E731
    before, unsynced = len(mgr_writes()), mgr.storage.unsynced_saves
    run(hv, provision(host))
    assert mgr.storage.unsynced_saves > unsynced        # the SaveHashKeys arrived ...
    assert len(mgr_writes()) == before == 0             # ... and none reached the disk
    assert host.toolstack.images[MGR_IMAGE].snapshot() == bytes(len(host.toolstack.images[MGR_IMAGE].snapshot()))


def test_xen_store_loses_every_vtpm_at_a_manager_restart():
    hv, host = boot()
    run(hv, provision(host))
    mgr = run(hv, host.restart_vtpmmgr())
    assert mgr.storage.vtpm_count == 0
    vtpm = run(hv, host.restart_vtpm("vtpm-guest1"))
    assert vtpm.restore_status == "new"                  # LOADHASHKEY: TPM_BAD_PARAMETER

    def nv_gone():
        try:
            yield from host.guest("guest1").tpm.nv_read(NV, 16)
        except ResponseError as err:
            return err.rc
        return None

    assert run(hv, nv_gone()) is not None


def test_xen_store_loses_every_vtpm_at_a_host_reboot():
    hv, host = boot()
    run(hv, provision(host))
    hv2, host2 = _reboot(host, host.spec.boot, options={})
    assert host2.vtpmmgr.storage.is_open                 # a new manager, not a refusing one
    assert host2.vtpm("vtpm-guest1").restore_status == "new"

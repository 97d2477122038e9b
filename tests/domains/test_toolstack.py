"""dom0's toolstack: xl create/destroy, the XenStore entries it writes, what it refuses."""

import pytest
from domain_helpers import boot, make_profile, run

from simxen.domains.stack import guest_config, vtpm_config, vtpmmgr_config
from simxen.domains.toolstack import Toolstack
from simxen.drivers.tis import TisDriver
from simxen.xen import Hypervisor, errno
from simxen.xen.errors import XenError

UUID = "ac0a5b9e-cbe2-4c07-b43b-1d69e46fb839"


def toolstack():
    hv = Hypervisor(seed=3, profile=make_profile())
    return hv, Toolstack(hv)


def test_refuses_a_guest_whose_vtpm_backend_is_not_running():
    hv, xl = toolstack()
    before = set(hv.domains)
    with pytest.raises(XenError) as err:
        xl.create(guest_config("guest1"), source="guest1.cfg")
    assert err.value.code == -errno.ESRCH
    assert "guest1.cfg: vtpm[0]" in str(err.value) and "vtpm-guest1" in str(err.value)
    assert set(hv.domains) == before                  # nothing was built
    (refusal,) = hv.trace.select("xl.refuse")
    assert refusal.fields["backend"] == "vtpm-guest1"


def test_refuses_a_guest_whose_vtpm_was_destroyed():
    hv, host = boot()
    run(hv, _destroy_then(host, "vtpm-guest1"))
    with pytest.raises(XenError) as err:
        host.toolstack.create(guest_config("guest2", "vtpm-guest1"))
    assert err.value.code == -errno.ESRCH


def _destroy_then(host, name):
    host.destroy("guest1")
    yield host.hv.dom0.sleep(0.01)
    host.destroy(name)


def test_create_writes_the_vtpm_device_directories_with_the_uuid():
    hv, xl = toolstack()
    mgr = xl.create(vtpmmgr_config())
    vtpm = xl.create(vtpm_config("vtpm-guest1", UUID))
    dom0, be, fe = hv.dom0, mgr.domid, vtpm.domid
    back = f"/local/domain/{be}/backend/vtpm/{fe}/0"
    front = f"/local/domain/{fe}/device/vtpm/0"
    assert hv.xs.read(dom0, f"{back}/uuid") == UUID
    assert hv.xs.read(dom0, f"{back}/frontend") == front
    assert hv.xs.read(dom0, f"{back}/frontend-id") == str(fe)
    assert hv.xs.read(dom0, f"{front}/backend") == back
    assert hv.xs.read(dom0, f"{front}/backend-id") == str(be)
    assert hv.xs.get_perms(dom0, back) == [f"n{be}", f"r{fe}"]
    assert hv.xs.get_perms(dom0, front) == [f"n{fe}", f"r{be}"]
    assert xl.images["/var/vtpm-guest1.img"].size == 2 * 1024 * 1024
    assert hv.iomem.owner_of(0xFED40, 5) == mgr.domid


def test_a_guest_without_uuid_gets_a_random_version_4_uuid_deterministically():
    uuids = []
    for _ in range(2):
        hv, xl = toolstack()
        xl.create(vtpmmgr_config())
        vtpm = xl.create(vtpm_config("vtpm-guest1", UUID))
        guest = xl.create(guest_config("guest1"))
        uuids.append(hv.xs.read(hv.dom0, f"/local/domain/{vtpm.domid}/backend/vtpm/{guest.domid}/0/uuid"))
    assert uuids[0] == uuids[1] and uuids[0][14] == "4"


def test_duplicate_name_and_busy_iomem_are_refused_by_their_codes():
    hv, xl = toolstack()
    xl.create(vtpmmgr_config())
    with pytest.raises(XenError) as err:
        xl.create(vtpmmgr_config())
    assert err.value.code == -errno.EEXIST
    with pytest.raises(XenError) as err:
        xl.create(vtpmmgr_config("second-manager", image="/var/m2.img"))
    assert err.value.code == -errno.EBUSY


def test_destroy_removes_the_backend_directory_and_refuses_unknown_names():
    hv, host = boot()
    vtpm, guest = host.vtpm("vtpm-guest1"), host.guest("guest1")
    back = f"/local/domain/{vtpm.domid}/backend/vtpm/{guest.domid}/0"
    assert hv.xs.exists(hv.dom0, back)
    host.destroy("guest1")
    assert not hv.xs.exists(hv.dom0, back)
    assert not guest.dom.alive
    with pytest.raises(XenError) as err:
        host.destroy("guest1")
    assert err.value.code == -errno.ESRCH


def test_dom0_cannot_reach_the_tis_window_while_the_manager_holds_it():
    hv, host = boot()
    mgr = host.vtpmmgr
    assert mgr.tis is not None and mgr.storage.is_open
    with pytest.raises(XenError) as err:
        hv.iomem.map(hv.dom0, 0xFED40, 5)
    assert err.value.code == -errno.EPERM
    with pytest.raises(XenError) as err:
        TisDriver(hv, hv.dom0, locality=0).open()     # a dom0 TPM driver probing
    assert err.value.code == -errno.EPERM
    # Once the manager is gone, the range is free again and privileged dom0 can map it.
    host.destroy("vtpmmgr")
    assert hv.iomem.owner_of(0xFED40, 5) is None
    assert hv.iomem.map(hv.dom0, 0xFED40, 5) is not None


@pytest.mark.parametrize("options, key", [
    ({"vtpm-guest1": {"save_on": "sometimes"}}, "vtpm-guest1.save_on"),
    ({"vtpmmgr": {"policy": "lottery"}}, "vtpmmgr.policy"),
    ({"vtpmmgr": {"seal_pcrs": [0, 99]}}, "vtpmmgr.seal_pcrs"),
    ({"guest1": {"strong_persistence": True}}, "guest1.strong_persistence"),
    ({"nobody": {"policy": "fifo"}}, "nobody.policy"),
])
def test_build_host_refuses_bad_options_by_name(options, key):
    from simxen.domains.stack import HostSpec, build_host
    from simxen.errors import InputError
    hv = Hypervisor(seed=1, profile=make_profile())
    with pytest.raises(InputError) as err:
        build_host(hv, HostSpec.standard(options=options))
    assert err.value.key == key


def test_odd_layouts_degrade_with_a_reason_instead_of_crashing():
    from simxen.domains.stack import HostSpec
    no_disk_mgr = vtpmmgr_config().replace('disk=["file:/var/vtpmmgr-stubdom.img,hda,w"]\n', "")
    lonely_vtpm = vtpm_config("vtpm-guest1", UUID).replace(f'vtpm=["backend=vtpmmgr,uuid={UUID}"]\n', "")
    spec = HostSpec(configs=[no_disk_mgr, lonely_vtpm, guest_config("guest1")])
    hv, host = boot(spec)
    assert "no disk=" in host.vtpmmgr.storage.error
    assert host.vtpm("vtpm-guest1").restore_status == "no-manager"
    value = run(hv, host.guest("guest1").tpm.get_random(8))      # still a (forgetful) TPM
    assert len(value) == 8
    assert hv.trace.select("vtpm.no_manager")


def test_the_manager_takes_the_locality_its_command_line_names():
    from simxen.domains.stack import HostSpec
    spec = HostSpec.standard()
    spec.configs[0] = vtpmmgr_config(locality=2)
    hv, host = boot(spec)
    assert host.vtpmmgr.locality == 2 and host.vtpmmgr.tis.locality == 2
    (opened,) = hv.trace.select("tis.open")
    assert opened.fields["locality"] == 2
    assert host.vtpmmgr.storage.is_open
    default_hv, default_host = boot()
    assert default_host.vtpmmgr.tis.locality == 0


def test_a_spec_is_parsed_once_and_checked_every_time(monkeypatch):
    """A workload checks its host before the run, build_host checks it again and xl create
    reads each config: one parse serves all three (a 10,000-guest fleet has 20,001
    configs), while the checks still run -- an option made bad after the first check is
    refused -- and a config changed since is parsed again."""
    from simxen.domains import stack
    from simxen.domains import xl_config
    from simxen.errors import InputError
    parsed = []
    real = xl_config.parse

    def counting(text, *, source="<config>"):
        parsed.append(source)
        return real(text, source=source)

    monkeypatch.setattr(stack, "parse", counting)
    monkeypatch.setattr("simxen.domains.toolstack.parse", counting)
    spec = stack.HostSpec.standard(guests=("guest1", "guest2"))
    first = stack.check_spec(spec)
    assert len(parsed) == 5
    hv, host = boot(spec)
    assert len(parsed) == 5 and sorted(host.toolstack.configs) == sorted(c.name for c in first)
    spec.options = {"vtpmmgr": {"policy": "lottery"}}
    with pytest.raises(InputError):
        stack.check_spec(spec)
    spec.options = {}
    spec.configs = spec.configs[:-1] + [guest_config("guest2", memory=256)]
    stack.check_spec(spec)
    assert len(parsed) == 10

"""The guests a host spec will have, known before the boot, are the ones the boot has.

``simxen serve`` checks ``--domain`` against :func:`simxen.domains.stack.vtpm_guests`
before booting, then takes the guest from the booted host (``host.guest``); these
tests boot each kind of host and compare the two -- a Linux guest with and without a
``vtpm=`` line, pv-grub (which hands its domain to Linux), a ``guest_count``-style
standard stack and a shared vTPM.
"""

import sys
from pathlib import Path

import pytest

from simxen.domains.pvgrub import PVGRUB_IMAGE, PvGrub
from simxen.domains.stack import (HostSpec, guest_config, roles, vtpm_config, vtpm_guest,
                                  vtpm_guests, vtpmmgr_config)
from simxen.domains.toolstack import kernel_model
from simxen.errors import InputError

from domain_helpers import boot

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "attest"))
from attest_support import EXTRA_OPS, SCENARIO_IMAGES  # noqa: E402


def _pvgrub_spec():
    from simxen.domains.images import guest_images
    return HostSpec(configs=[vtpmmgr_config(), vtpm_config("vtpm-guest1", "ac0a5b9e-cbe2-4c07-"
                                                           "b43b-1d69e46fb839"),
                             guest_config("guest1", kernel=f"/usr/lib/xen/boot/{PVGRUB_IMAGE}")],
                    kernels={PVGRUB_IMAGE: PvGrub},
                    options={"guest1": {"images": guest_images(SCENARIO_IMAGES)}})


def _specs():
    uuid = "ac0a5b9e-cbe2-4c07-b43b-5a4a4ed0c0de"
    return {
        "standard": HostSpec.standard(["guest1", "guest2", "guest3"]),
        "no vtpm line": HostSpec(configs=[vtpmmgr_config(), vtpm_config("vtpm-a", uuid),
                                          guest_config("a", "vtpm-a"),
                                          'name="plain"\nkernel="/boot/vmlinuz-domU"\nmemory=512\n']),
        "shared vtpm": HostSpec(configs=[vtpmmgr_config(), vtpm_config("vtpm-shared", uuid),
                                         guest_config("a", "vtpm-shared"),
                                         guest_config("b", "vtpm-shared")]),
        "pv-grub": _pvgrub_spec(),
    }


@pytest.mark.parametrize("which", ["standard", "no vtpm line", "shared vtpm", "pv-grub"])
def test_the_spec_names_the_guests_the_booted_host_has(which):
    spec = _specs()[which]
    before = vtpm_guests(spec)
    expected_roles = roles(spec)
    hv, host = boot(spec, ops={op: {"dist": "fixed", "value": v} for op, v in EXTRA_OPS.items()})
    after = [k.name for k in host.kernels("guest") if k.config.vtpm]
    assert sorted(before) == sorted(after) and before
    assert expected_roles == {name: k.role for name, k in host.toolstack.kernels.items()}
    for name in before:
        assert host.guest(name).tpm is not None


def test_kernel_model_is_the_toolstacks_choice():
    assert kernel_model("/usr/lib/xen/boot/vtpmmgr-stubdom.gz").role == "vtpmmgr"
    assert kernel_model("/usr/lib/xen/boot/vtpm-stubdom.gz").role == "vtpm"
    assert kernel_model("/boot/vmlinuz-domU").role == "guest"
    assert kernel_model(f"/x/{PVGRUB_IMAGE}").role == "guest"          # no pv-grub by default
    assert kernel_model(f"/x/{PVGRUB_IMAGE}", {PVGRUB_IMAGE: PvGrub}) is PvGrub
    assert PvGrub.booted_role() == "guest"


def test_vtpm_guest_says_what_a_name_is():
    spec = _specs()["no vtpm line"]
    assert vtpm_guest(spec, "a").name == "a"
    with pytest.raises(InputError, match=r"no domain called 'b' .*\(guests with a vTPM: a; "):
        vtpm_guest(spec, "b", key="--domain")
    with pytest.raises(InputError, match="'plain' is a guest without a vTPM frontend"):
        vtpm_guest(spec, "plain")
    with pytest.raises(InputError, match="'vtpm-a' is a vtpm without"):
        vtpm_guest(spec, "vtpm-a")
    many = HostSpec.standard([f"guest{i}" for i in range(1, 41)])
    with pytest.raises(InputError) as err:
        vtpm_guest(many, "guest41")
    assert "guest1 .. guest40" in str(err.value) and "did you mean" not in str(err.value)
    with pytest.raises(InputError, match="did you mean 'guest12'"):
        vtpm_guest(many, "gueest12")

"""Guest images: deterministic bytes, one flipped byte is another measurement,
and every bad scenario value is an InputError naming the key."""

import hashlib

import pytest
from hypothesis import given, settings, strategies as st

from simxen.domains import images as im
from simxen.errors import InputError


@settings(max_examples=30, deadline=None)
@given(st.text(min_size=1, max_size=12), st.text(min_size=1, max_size=12),
       st.integers(min_value=1024, max_value=20000))
def test_generated_kernel_is_deterministic_and_sized(name, version, size):
    a = im.kernel_bytes(name, version, size)
    assert a == im.kernel_bytes(name, version, size)
    assert len(a) == size and a[0x202:0x206] == b"HdrS" and a[0x1FE:0x200] == b"\x55\xaa"


def test_versions_differ_and_initrd_is_cpio():
    assert im.kernel_bytes("linux", "6.1.0") != im.kernel_bytes("linux", "6.1.1")
    assert im.initrd_bytes("i", "1").startswith(b"070701")


@settings(max_examples=30, deadline=None)
@given(st.integers(min_value=0, max_value=im.DEFAULT_KERNEL_SIZE - 1))
def test_one_flipped_byte_is_a_different_measurement(offset):
    spec = {"name": "linux", "version": "6.1.0"}
    good = im.image_from_spec("kernel", spec)
    bad = im.image_from_spec("kernel", {**spec, "flip_byte": offset})
    assert sum(x != y for x, y in zip(good.data, bad.data)) == 1
    assert good.digest() != bad.digest()
    assert "flipped" in bad.source


def test_file_image_relative_to_scenario(tmp_path):
    (tmp_path / "vmlinuz").write_bytes(b"\x7fELF real kernel")
    img = im.image_from_spec("kernel", {"file": "vmlinuz"}, base=tmp_path)
    assert img.data == b"\x7fELF real kernel"
    assert img.digest("sha1") == hashlib.sha1(b"\x7fELF real kernel").digest()


@pytest.mark.parametrize("spec, key", [
    ({"name": "linux"}, "images.kernel.version"),
    ({"file": "missing"}, "images.kernel.file"),
    ({"name": "l", "version": "1", "size": 10}, "images.kernel.size"),
    ({"name": "l", "version": "1", "flip_byte": 10 ** 9}, "images.kernel.flip_byte"),
    ({"name": "l", "version": "1", "colour": "red"}, "images.kernel.colour"),
    ({"file": "x", "name": "l"}, "images.kernel"),
])
def test_bad_specs_name_the_key(tmp_path, spec, key):
    with pytest.raises(InputError) as err:
        im.guest_images({"kernel": spec}, base=tmp_path, path="s.toml")
    assert err.value.key == key and "s.toml" in str(err.value)


def test_guest_images_defaults_and_checks():
    g = im.guest_images({"kernel": {"name": "l", "version": "1"}, "cmdline": "ro quiet"})
    assert g.initrd is None and g.initrd_data == b""
    assert g.grub_kernel_line == "/boot/vmlinuz ro quiet"
    for table, key in [({}, "images.kernel"), ({"kernel": {"name": "l", "version": "1"},
                                                "cmdline": "a\0b"}, "images.cmdline"),
                       ({"kernel": {"name": "l", "version": "1"}, "kernel_path": "a b"},
                        "images.kernel_path")]:
        with pytest.raises(InputError) as err:
            im.guest_images(table)
        assert err.value.key == key

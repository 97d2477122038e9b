"""The xl config parser: the seed's configs, and every malformed input as an InputError."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simxen.domains.xl_config import parse
from simxen.errors import InputError

MANAGER = '''
name="vtpmmgr"
kernel="/usr/lib/xen/boot/vtpmmgr-stubdom.gz"
memory=16
disk=["file:/var/vtpmmgr-stubdom.img,hda,w"]
iomem=["fed40,5"]
'''
VTPM = '''
kernel="/usr/lib/xen/boot/vtpm-stubdom.gz"
memory=8
disk=["file:/var/vtpm.img,hda,w"]
name="domu-vtpm"
vtpm=["backend=vtpmmgr,uuid=ac0a5b9e-cbe2-4c07-b43b-1d69e46fb839"]
'''
GUEST = 'name="guest1"\nkernel="/boot/vmlinuz"\nmemory=512\nvtpm=["backend=domu-vtpm"]\n'


def test_seed_manager_config():
    cfg = parse(MANAGER, source="vtpmmgr.cfg")
    assert (cfg.name, cfg.kernel, cfg.memory) == ("vtpmmgr", "/usr/lib/xen/boot/vtpmmgr-stubdom.gz", 16)
    assert cfg.iomem == ((0xFED40, 5),)
    (disk,) = cfg.disk
    assert (disk.target, disk.vdev, disk.writable) == ("/var/vtpmmgr-stubdom.img", "hda", True)
    assert cfg.vtpm == ()


def test_seed_vtpm_and_guest_configs():
    vtpm = parse(VTPM).vtpm[0]
    assert (vtpm.backend, vtpm.uuid) == ("vtpmmgr", "ac0a5b9e-cbe2-4c07-b43b-1d69e46fb839")
    guest = parse(GUEST).vtpm[0]
    assert (guest.backend, guest.uuid) == ("domu-vtpm", None)


def test_lists_span_lines_with_comments_and_trailing_comma():
    cfg = parse('name = "g"  # the guest\nkernel = \'/k\'\nvtpm = [\n  "backend=a",  # first\n'
                '  "backend=b",\n]\nextra="tpmlocality=2 quiet"\n')
    assert [v.backend for v in cfg.vtpm] == ["a", "b"]
    assert cfg.cmdline_options() == {"tpmlocality": "2", "quiet": ""}


@pytest.mark.parametrize("text, key, words", [
    ('kernel="/k"', "name", "missing required key"),
    ('name="a"\nkernel="/k"\nmemroy=3', "memroy", "did you mean 'memory'"),
    ('name="a"\nkernel="/k"\nmemory="16"', "memory", "expected memory"),
    ('name="a"\nkernel="/k"\nmemory=0', "memory", "at least 1"),
    ('name="a"\nkernel="/k"\nvcpus=0', "vcpus", "outside 1..8192"),
    ('name="a"\nkernel="/k"\nvcpus=8193', "vcpus", "MAX_VIRT_CPUS"),
    ('name="a"\nkernel="/k"\niomem=["fed40"]', "iomem[0]", "START,PAGES"),
    ('name="a"\nkernel="/k"\niomem=["fed40,0"]', "iomem[0]", "zero pages"),
    ('name="a"\nkernel="/k"\nvtpm=["backend=m,uuid=not-a-uuid"]', "vtpm[0]", "is not a UUID"),
    ('name="a"\nkernel="/k"\nvtpm=["backend=m,colour=red"]', "vtpm[0]", "unknown vtpm parameter"),
    ('name="a"\nkernel="/k"\ndisk=["/var/x.img,hda"]', "disk[0]", "TARGET,VDEV,ACCESS"),
    ('name="a"\nkernel="/k"\ndisk=["/var/x.img,hda,x"]', "disk[0]", "access must be r or w"),
    ('name="a"\nkernel="/k"\nname="b"', "name", "set twice"),
    ('name="a b"\nkernel="/k"', "name", "not a usable domain name"),
    ('name=["a"\nkernel="/k"', "name", "expected ','"),
])
def test_errors_name_the_config_and_the_key(text, key, words):
    with pytest.raises(InputError) as err:
        parse(text, source="bad.cfg")
    assert err.value.path == "bad.cfg" and err.value.key == key
    assert words in str(err.value)


def test_unexpected_character_names_the_line():
    with pytest.raises(InputError, match="line 2: unexpected character"):
        parse('name="a"\nkernel="/k" @', source="x.cfg")


names = st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True)
uuids = st.uuids().map(str)


@settings(max_examples=60, deadline=None)
@given(name=names, memory=st.integers(1, 1 << 20), first=st.integers(0, 0xFFFFF),
       count=st.integers(1, 0x100), backends=st.lists(st.tuples(names, st.none() | uuids), max_size=3))
def test_written_configs_parse_back(name, memory, first, count, backends):
    vtpm = ", ".join(f'"backend={b}' + (f',uuid={u}"' if u else '"') for b, u in backends)
    text = (f'name="{name}"\nkernel="/boot/k"\nmemory={memory}\n'
            f'iomem=["{first:x},{count:x}"]\nvtpm=[{vtpm}]\n')
    cfg = parse(text)
    assert (cfg.name, cfg.memory, cfg.iomem) == (name, memory, ((first, count),))
    assert [(v.backend, v.uuid) for v in cfg.vtpm] == [(b, u) for b, u in backends]


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from('name=kerl"[],#\n \'0x1fed40,uuid-vtpmbackend'), max_size=80))
def test_any_text_is_parsed_or_refused_with_an_input_error(text):
    try:
        parse(text, source="fuzz.cfg")
    except InputError as err:
        assert str(err).startswith("fuzz.cfg")


def test_numbers_are_decimal_or_hexadecimal():
    assert parse('name="a"\nkernel="/k"\nmemory=016').memory == 16
    assert parse('name="a"\nkernel="/k"\nmemory=0x10').memory == 16

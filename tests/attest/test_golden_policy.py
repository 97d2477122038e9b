"""The golden-values policy file: round trip, and errors naming file and key."""

import pytest

from simxen.domains import policy as pol
from simxen.errors import InputError

GOOD = """
[policy]
name = "g"
[quote]
bank = "sha256"
pcrs = [4, 5, 10]
[boot]
kernel = "sha256:%s"
[pcrs.sha256]
4 = "%s"
[ima]
"/usr/bin/bash" = "sha1:%s"
[host.pcrs.sha256]
0 = "%s"
""" % ("11" * 32, "22" * 32, "33" * 20, "44" * 32)


def test_load_and_dump_round_trip(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(GOOD)
    p = pol.load(path)
    assert p.quote_pcrs == (4, 5, 10) and p.boot["kernel"] == ("sha256", b"\x11" * 32)
    assert p.pcrs == {"sha256": {4: b"\x22" * 32}} and p.host_pcrs["sha256"][0] == b"\x44" * 32
    again = tmp_path / "q.toml"
    again.write_text(pol.dumps(p))
    q = pol.load(again)
    q.path = p.path
    assert q == p


@pytest.mark.parametrize("old, new, key", [
    ('kernel = "sha256:' + "11" * 32, 'kernel = "sha256:' + "11" * 31, "boot.kernel"),
    ('kernel = "sha256:', 'kernel = "md5:', "boot.kernel"),
    ("[boot]\n", "[boot]\nbootloader = \"sha256:00\"\n", "boot.bootloader"),
    ("pcrs = [4, 5, 10]", "pcrs = [4, 4]", "quote.pcrs"),
    ('bank = "sha256"', 'bank = "md5"', "quote.bank"),
    ('4 = "' + "22" * 32, '24 = "' + "22" * 32, "pcrs.sha256.24"),
    ('"/usr/bin/bash"', '"bash"', "ima.bash"),
    ('name = "g"', "name = 3", "policy.name"),
    ("[host.pcrs.sha256]", "[host.pcrs.sha3]", "host.pcrs.sha3"),
])
def test_errors_name_file_and_key(tmp_path, old, new, key):
    assert old in GOOD
    path = tmp_path / "bad.toml"
    path.write_text(GOOD.replace(old, new, 1))
    with pytest.raises(InputError) as err:
        pol.load(path)
    assert err.value.key == key and str(path) in str(err.value)


def test_unreadable_and_invalid_toml(tmp_path):
    with pytest.raises(InputError):
        pol.load(tmp_path / "absent.toml")
    (tmp_path / "x.toml").write_text("[policy\n")
    with pytest.raises(InputError) as err:
        pol.load(tmp_path / "x.toml")
    assert "TOML" in str(err.value)

from hypothesis import given, settings, strategies as st  # noqa: E402

_digest = st.sampled_from(["sha1", "sha256"]).flatmap(
    lambda alg: st.binary(min_size={"sha1": 20, "sha256": 32}[alg],
                          max_size={"sha1": 20, "sha256": 32}[alg]).map(lambda d: (alg, d)))
_path = st.text(st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters='"\\'),
                min_size=1, max_size=20).map(lambda p: "/" + p)


@settings(max_examples=40, deadline=None)
@given(boot=st.dictionaries(st.sampled_from(pol.BOOT_ITEMS), _digest),
       ima=st.dictionaries(_path, _digest, max_size=5),
       pcrs=st.lists(st.integers(0, 23), min_size=1, max_size=24, unique=True),
       golden=st.dictionaries(st.integers(0, 23), st.binary(min_size=32, max_size=32), max_size=4),
       name=st.text(min_size=1, max_size=30))
def test_dumps_then_parse_is_identity(boot, ima, pcrs, golden, name):
    import tomllib
    p = pol.Policy(name, "", "sha256", tuple(sorted(pcrs)), boot,
                   {"sha256": dict(sorted(golden.items()))} if golden else {}, ima,
                   {"sha256": dict(sorted(golden.items()))} if golden else {})
    assert pol.parse(tomllib.loads(pol.dumps(p))) == p

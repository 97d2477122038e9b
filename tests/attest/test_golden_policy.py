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

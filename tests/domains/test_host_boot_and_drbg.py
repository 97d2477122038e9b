"""Host boot measurements and the vTPM's HMAC_DRBG."""

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st
from domain_helpers import boot, run

from simxen.domains.drbg import HmacDrbg, HmacSha256
from simxen.domains.host_boot import DEFAULT_BOOT, boot_with, expected_pcrs


def test_the_physical_pcrs_after_boot_are_the_golden_values():
    hv, host = boot()
    golden = expected_pcrs(DEFAULT_BOOT)
    values = run(hv, _read_ptpm(host, sorted(golden)))
    assert values == golden
    assert [r.fields["component"] for r in hv.trace.select("host.measure")] == \
        [m.component for m in DEFAULT_BOOT]
    assert host.boot_log[0] == (0, "firmware", hashlib.sha256(DEFAULT_BOOT[0].data).digest())


def _read_ptpm(host, pcrs):
    from simxen.domains import ptpm_commands
    return (yield from ptpm_commands.pcr_read(host.vtpmmgr.tis, pcrs))


def test_boot_with_changes_one_component_and_one_pcr():
    changed = boot_with("xen", b"xen.gz 4.20.0")
    before, after = expected_pcrs(DEFAULT_BOOT), expected_pcrs(changed)
    assert [p for p in before if before[p] != after[p]] == [9]
    with pytest.raises(KeyError):
        boot_with("bios", b"")


def test_drbg_is_deterministic_and_depends_on_its_entropy():
    a, b, c = HmacDrbg(b"seed"), HmacDrbg(b"seed"), HmacDrbg(b"other seed")
    first = a.generate(100)
    assert first == b.generate(100) and first != c.generate(100)
    assert a.generate(32) != first[:32]                  # the state moved on
    a.reseed(b"more")
    b.generate(32)
    assert a.generate(16) != b.generate(16)
    assert len(HmacDrbg(b"")(0)) == 0


def test_drbg_known_answer_nist_cavs_hmac_sha256():
    # NIST CAVS 14.3 HMAC_DRBG SHA-256, no prediction resistance, no reseed, count 0:
    # instantiate(entropy || nonce), generate twice, the second output is ReturnedBits.
    drbg = HmacDrbg(bytes.fromhex("ca851911349384bffe89de1cbdc46e6831e44d34a4fb935ee285dd14b71a7488")
                    + bytes.fromhex("659ba96c601dc69fc902940805ec0ca8"))
    drbg.generate(128)
    assert drbg.generate(128).hex() == (
        "e528e9abf2dece54d47c7e75e5fe302149f817ea9fb4bee6f4199697d04d5b89d54fbb978a15b5c443c9ec2"
        "1036d2460b6f73ebad0dc2aba6e624abf07745bc107694bb7547bb0995f70de25d6b29e2d3011bb19d27676"
        "c07162c8b5ccde0668961df86803482cb37ed6d5c0bb8d50cf1f50d476aa0458bdaba806f48be9dcb8")


@given(key=st.binary(max_size=100), data=st.binary(max_size=200))
def test_drbg_keyed_hmac_is_hmac_sha256(key, data):
    # the DRBG's HMAC hashes the padded key once and reuses it: still RFC 2104's bytes
    assert HmacSha256(key)(data) == hmac.digest(key, data, "sha256")

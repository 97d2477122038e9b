"""TIS register map: numbers as the PTP spec / Linux tpm_tis_core.h give them."""

import pytest
from hypothesis import given, strategies as st

from simxen.protocols import tis


def test_window():
    assert tis.TIS_BASE == 0xFED40000
    assert tis.TIS_WINDOW_SIZE == 0x5000
    assert tis.tis_address(2, tis.TPM_STS) == 0x2018  # 0xFED42018, locality 2's STS


def test_register_offsets():
    assert (tis.TPM_ACCESS, tis.TPM_INT_ENABLE, tis.TPM_INT_VECTOR, tis.TPM_INT_STATUS,
            tis.TPM_INTF_CAPABILITY, tis.TPM_STS, tis.TPM_STS_BURST_COUNT, tis.TPM_DATA_FIFO,
            tis.TPM_DID_VID, tis.TPM_RID) == (0, 8, 0xC, 0x10, 0x14, 0x18, 0x19, 0x24, 0xF00, 0xF04)


def test_bits():
    assert (tis.TPM_ACCESS_VALID, tis.TPM_ACCESS_ACTIVE_LOCALITY, tis.TPM_ACCESS_BEEN_SEIZED,
            tis.TPM_ACCESS_SEIZE, tis.TPM_ACCESS_PENDING_REQUEST, tis.TPM_ACCESS_REQUEST_USE,
            tis.TPM_ACCESS_ESTABLISHMENT) == (0x80, 0x20, 0x10, 0x08, 0x04, 0x02, 0x01)
    assert (tis.TPM_STS_VALID, tis.TPM_STS_COMMAND_READY, tis.TPM_STS_GO, tis.TPM_STS_DATA_AVAIL,
            tis.TPM_STS_EXPECT, tis.TPM_STS_SELF_TEST_DONE,
            tis.TPM_STS_RESPONSE_RETRY) == (0x80, 0x40, 0x20, 0x10, 0x08, 0x04, 0x02)
    assert tis.TPM_STS_FAMILY_TPM_2_0 == 0x04000000


def test_registers_do_not_overlap():
    taken = set()
    for off, width in tis.TIS_REGISTERS.values():
        span = set(range(off, off + width))
        assert not span & taken
        taken |= span


@given(st.integers(0, 4), st.integers(0, 0xFFF))
def test_address_round_trip(locality, register):
    assert tis.split_address(tis.tis_address(locality, register)) == (locality, register)


@pytest.mark.parametrize("bad", [-1, 0x5000, 0x10000])
def test_outside_window(bad):
    with pytest.raises(ValueError):
        tis.split_address(bad)

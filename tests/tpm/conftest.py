"""Fixtures for the TPM engine tests."""

import pytest

from tpm_helpers import make_engine


@pytest.fixture
def tpm():
    """A powered, started engine with deterministic randomness and clock."""
    return make_engine()

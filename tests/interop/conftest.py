"""Fixtures for the interoperability tests (helpers: ``tpm_serve_helpers``)."""

import os

import pytest

from tpm_serve_helpers import require_tool


@pytest.fixture
def tpm2_tools():
    """The directory of tpm2-tools; skips (or fails under
    SIMXEN_REQUIRE_TOOLS=1) when they are not installed."""
    return os.path.dirname(require_tool("tpm2_startup"))

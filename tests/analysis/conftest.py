"""Fixtures for the analysis tests. ``shipped_traces`` (the trace of every shipped
scenario, run once) is in ``tests/conftest.py``: the interoperability tests draw them too."""

"""Timing profiles shipped with simxen (TOML data files; see docs/profiles.rst)."""

"""Shared fixtures. The suite runs against the real PostgreSQL (see tests/settings.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def fresh_connection_manager():
    """Each test starts with this process's connection counts at zero."""
    import cluster.connections

    cluster.connections._manager = None
    yield
    cluster.connections._manager = None

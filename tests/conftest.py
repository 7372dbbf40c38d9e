"""Shared fixtures. The suite runs against the real PostgreSQL (see tests/settings.py)."""

from __future__ import annotations

import pytest

from tests.support.factories import make_member, make_room, make_user


@pytest.fixture(autouse=True)
def fresh_connection_manager():
    """Each test starts with this process's connection counts at zero."""
    import cluster.connections

    cluster.connections._manager = None
    yield
    cluster.connections._manager = None


@pytest.fixture
def owner():
    """A signed-up user called `owner` (tests needing a database mark themselves)."""
    return make_user("owner")


@pytest.fixture
def room(owner):
    """A room without password created by `owner`."""
    return make_room(owner, "Movie night")


@pytest.fixture
def viewer(room):
    """A user called `viewer` who joined `room` as a member with the default permissions."""
    return make_member(room, "viewer")

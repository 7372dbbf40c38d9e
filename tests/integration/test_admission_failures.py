"""A socket that fails after admission, before its snapshot, gives back everything it took.

The failure is a real PostgreSQL error: the join's read of the playlist waits behind a
table lock the test holds, and the test then terminates that backend (pg_terminate_backend),
so the consumer's database call fails as it would when PostgreSQL restarts mid-join.
"""

from __future__ import annotations

import threading
import time

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import connection, transaction

from cluster.connections import connection_manager
from rooms.models import Movie, Presence
from rooms.services.events import member_group, room_group
from tests.support.ws import (  # noqa: F401  (fixtures)
    override_connection_limits,
    socket_pool,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

db = database_sync_to_async
DEADLINE = 10.0
MOVIE_TABLE = Movie._meta.db_table
CLOSE_INTERNAL_ERROR = 1011


class TableLock:
    """`LOCK TABLE … IN ACCESS EXCLUSIVE MODE` held by a transaction of another thread."""

    def __init__(self, table: str) -> None:
        self.table = table
        self.held = threading.Event()
        self.release = threading.Event()
        self.thread = threading.Thread(target=self._hold, daemon=True)

    def _hold(self) -> None:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(f"LOCK TABLE {self.table} IN ACCESS EXCLUSIVE MODE")
                self.held.set()
                self.release.wait(DEADLINE * 3)
        finally:
            connection.close()

    def __enter__(self) -> TableLock:
        self.thread.start()
        assert self.held.wait(DEADLINE), f"{self.table} was never locked"
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.thread.join(DEADLINE)


def terminate_backend_waiting_on(table: str) -> None:
    """Wait until a backend's query on `table` waits for a lock, then terminate it."""
    deadline = time.monotonic() + DEADLINE
    with connection.cursor() as cursor:
        while True:
            cursor.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND query LIKE %s AND pid <> pg_backend_pid()",
                [f'%"{table}"%'],
            )
            row = cursor.fetchone()
            if row is not None:
                cursor.execute("SELECT pg_terminate_backend(%s)", [row[0]])
                return
            assert time.monotonic() < deadline, f"no query on {table} waited for the lock"
            time.sleep(0.02)


def room_members_here(room_id: str, user_id: int) -> int:
    """How many of this loop's channels the room's groups deliver to."""
    hub = get_channel_layer().hub
    probe = {"type": "room.event", "text": "{}", "published_at": time.time()}
    return hub.fan_out(room_group(room_id), probe) + hub.fan_out(
        member_group(room_id, user_id), probe
    )


async def test_database_error_before_the_snapshot_frees_slot_groups_and_presence(
    sockets, settings, room, viewer
):
    override_connection_limits(settings, per_user=1)

    with TableLock(MOVIE_TABLE):
        failing = await sockets.open(room.id, token=viewer.token)
        await db(terminate_backend_waiting_on)(MOVIE_TABLE)
        code = await failing.expect_close()

    assert code == CLOSE_INTERNAL_ERROR
    assert "snapshot" not in [frame["type"] for frame in failing.frames]
    manager = connection_manager()
    assert manager.total == 0
    assert str(viewer.user.id) not in manager.by_user
    assert room.id not in manager.by_room
    assert room_members_here(room.id, viewer.user.id) == 0
    assert await db(Presence.objects.filter(room_id=room.id).count)() == 0

    # Its one allowed slot is free again: the same user joins at once.
    retry = await sockets.join(room.id, token=viewer.token)
    assert [entry["user"]["id"] for entry in retry.snapshot["online"]] == [viewer.user.id]
    assert await db(Presence.objects.filter(room_id=room.id).count)() == 1

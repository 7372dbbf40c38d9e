"""A socket that fails after admission, before its snapshot, gives back everything it took.

The failures are real. A PostgreSQL error: the join's read of the playlist waits behind a
table lock the test holds, and the test then terminates that backend (pg_terminate_backend),
so the consumer's database call fails as it would when PostgreSQL restarts mid-join. A
subscribe timeout: in cluster mode, a frozen (SIGSTOPped) redis-server never confirms the
room's SUBSCRIBE.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import connection, transaction

from cluster.connections import connection_manager
from rooms.codes import CloseCode
from rooms.models import Movie, Presence
from rooms.services.events import member_group, room_group
from tests.support.clients import (
    as_guest,
    close_code_of,
    create_room,
    http_client,
    metric_value,
    next_frame,
    open_socket,
)
from tests.support.cluster import cluster, cluster_env  # noqa: F401  (fixtures)
from tests.support.redis_servers import redis_server  # noqa: F401  (fixture)
from tests.support.servers import serve_node  # noqa: F401  (fixture)
from tests.support.ws import (  # noqa: F401  (fixtures)
    override_connection_limits,
    socket_pool,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

db = database_sync_to_async
DEADLINE = 10.0
MOVIE_TABLE = Movie._meta.db_table


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

    assert code == CloseCode.INTERNAL_ERROR
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


def _presence_rows(node_id: str) -> int:
    try:
        return Presence.objects.filter(node_id=node_id).count()
    finally:
        connection.close()  # this worker thread's connection would block dropping the test db


async def sockets_counted(http, node) -> float:
    page = (await http.get("/metrics")).text
    return metric_value(page, "synctv_connections_total", f'node="{node.node_id}"')


async def eventually(check, what: str, within: float = DEADLINE):
    """Await `check()` until it returns something true; return that (fail after `within` s)."""
    deadline = time.monotonic() + within
    while not (result := await check()):
        assert time.monotonic() < deadline, f"no {what} within {within:g}s"
        await asyncio.sleep(0.1)
    return result


@pytest.mark.serve
async def test_subscribe_timeout_before_the_snapshot_frees_the_slot(
    cluster,  # noqa: F811
    redis_server,  # noqa: F811
):
    (node,) = cluster(1, env={"SYNCTV__CLUSTER__CONNECTION_LIMITS__PER_USER": "1"})
    async with http_client(node) as http:
        token = await as_guest(http, "Alice")
        room = await create_room(http, token)

        redis_server.pause()
        try:
            # The room's first socket on the node subscribes to its channel: no answer comes.
            async with open_socket(node, room["id"], token) as failing:
                code = await close_code_of(failing)

            async def slot_given_back():
                return await sockets_counted(http, node) == 0

            # Before the fix the failed connect() left the slot counted for good.
            await eventually(slot_given_back, "slot given back")
        finally:
            redis_server.resume()
        rows = await sync_to_async(_presence_rows, thread_sensitive=False)(node.node_id)

        async def redis_ok():
            return (await http.get("/ready")).json()["checks"]["redis"] == "ok"

        await eventually(redis_ok, "Redis back", within=20.0)
        async with open_socket(node, room["id"], token) as retry:
            snapshot = await next_frame(retry, "snapshot")

    assert code == CloseCode.INTERNAL_ERROR
    assert rows == 0
    assert snapshot["me"]["user"]["name"] == "Alice"

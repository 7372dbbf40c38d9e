"""Connection limits, idle and maximum-duration timeouts, and the slow-consumer close (SPEC §4)."""

from __future__ import annotations

import time

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from rooms.codes import CloseCode, ErrorCode
from rooms.models import Presence
from rooms.services.events import ROOM_EVENT, encode, room_group
from tests.support.factories import make_room, make_user
from tests.support.ws import (  # noqa: F401  (fixtures)
    override_connection_limits,
    socket_pool,
)

pytestmark = pytest.mark.django_db(transaction=True)

db = database_sync_to_async


@pytest.fixture
def alice(transactional_db):
    return make_user()


@pytest.fixture
def bob(transactional_db):
    return make_user()


@pytest.fixture
def room(alice):
    return make_room(alice, "First")


@pytest.fixture
def other_room(alice):
    return make_room(alice, "Second")


async def assert_refused_by_limit(socket, limit):
    """The socket got an `error` naming `limit`, then close 4029 with `limit` as reason."""
    error = await socket.expect_error(ErrorCode.CONNECTION_LIMIT)
    assert limit in error["message"], error
    assert await socket.expect_close() == CloseCode.CONNECTION_LIMIT
    assert socket.close_reason == limit


# --- connection limits ----------------------------------------------------------------------


async def test_per_user_limit_refuses_the_extra_socket(settings, sockets, alice, room, other_room):
    override_connection_limits(settings, per_user=2)
    await sockets.join(room.id, token=alice.token)
    await sockets.join(other_room.id, token=alice.token)

    extra = await sockets.open(room.id, token=alice.token)

    await assert_refused_by_limit(extra, "per_user")


async def test_per_user_limit_leaves_other_users_alone(settings, sockets, alice, bob, room):
    override_connection_limits(settings, per_user=1)
    await sockets.join(room.id, token=alice.token)

    other = await sockets.join(room.id, token=bob.token)

    assert other.snapshot["me"]["user"]["id"] == bob.user.id


async def test_per_room_limit_refuses_the_extra_socket(settings, sockets, alice, bob, room):
    override_connection_limits(settings, per_room=1)
    await sockets.join(room.id, token=alice.token)

    extra = await sockets.open(room.id, token=bob.token)

    await assert_refused_by_limit(extra, "per_room")


async def test_per_room_limit_leaves_other_rooms_alone(
    settings, sockets, alice, bob, room, other_room
):
    override_connection_limits(settings, per_room=1)
    await sockets.join(room.id, token=alice.token)

    other = await sockets.join(other_room.id, token=bob.token)

    assert other.snapshot["room"]["id"] == other_room.id


async def test_global_limit_refuses_the_extra_socket(
    settings, sockets, alice, bob, room, other_room
):
    override_connection_limits(settings, global_=1)
    await sockets.join(room.id, token=alice.token)

    extra = await sockets.open(other_room.id, token=bob.token)

    await assert_refused_by_limit(extra, "global")


async def test_closing_a_socket_frees_its_slot(settings, sockets, alice, room):
    override_connection_limits(settings, per_user=1)
    first = await sockets.join(room.id, token=alice.token)
    refused = await sockets.open(room.id, token=alice.token)
    await assert_refused_by_limit(refused, "per_user")
    await refused.close()

    await first.close()
    again = await sockets.join(room.id, token=alice.token)

    assert again.snapshot["me"]["user"]["id"] == alice.user.id


async def test_refused_socket_leaves_no_presence(settings, sockets, alice, bob, room):
    override_connection_limits(settings, per_room=1)
    await sockets.join(room.id, token=alice.token)

    extra = await sockets.open(room.id, token=bob.token)
    await extra.expect_close()

    users = await db(lambda: set(Presence.objects.values_list("user_id", flat=True)))()
    assert users == {alice.user.id}


async def test_sockets_refused_before_admission_take_no_slot(settings, sockets, alice, room):
    override_connection_limits(settings, global_=1)
    for _ in range(3):
        stranger = await sockets.open(room.id, token="not-a-token")
        assert await stranger.expect_close() == CloseCode.NOT_AUTHENTICATED
        await stranger.close()

    admitted = await sockets.join(room.id, token=alice.token)

    assert admitted.snapshot["type"] == "snapshot"


# --- timeouts -------------------------------------------------------------------------------


async def test_idle_socket_is_closed_with_4008(settings, sockets, alice, room):
    override_connection_limits(settings, idle_timeout_secs=1)
    socket = await sockets.join(room.id, token=alice.token)
    started = time.monotonic()

    await socket.expect_error(ErrorCode.IDLE_TIMEOUT, within=3)
    assert await socket.expect_close() == CloseCode.IDLE_TIMEOUT
    assert time.monotonic() - started >= 0.9


async def test_socket_at_maximum_duration_is_closed_with_4010_even_when_active(
    settings, sockets, alice, room
):
    override_connection_limits(settings, idle_timeout_secs=1, max_duration_secs=2)
    socket = await sockets.join(room.id, token=alice.token)
    started = time.monotonic()

    seen = []
    # A ping every ~0.3 s keeps the socket from ever being idle for 1 s.
    while not socket.closed and time.monotonic() - started < 4:
        await socket.send({"type": "ping", "client_time": 1})
        seen += await socket.drain(quiet=0.3)

    assert socket.close_code == CloseCode.MAX_DURATION
    assert len([frame for frame in seen if frame["type"] == "pong"]) >= 5
    errors = [frame["code"] for frame in seen if frame["type"] == "error"]
    assert errors == [ErrorCode.MAX_DURATION]
    assert time.monotonic() - started >= 1.9


# --- slow consumer --------------------------------------------------------------------------


async def test_socket_that_cannot_keep_up_with_room_events_is_closed_with_1013(
    sockets, alice, room
):
    socket = await sockets.join(room.id, token=alice.token)
    layer = get_channel_layer()
    event = {
        "type": ROOM_EVENT,
        "text": encode({"type": "chat", "message": {"text": "spam"}}),
        "published_at": time.time(),
    }

    # group_send never awaits anything, so this loop runs without the consumer reading one
    # message: its queue fills up, exactly as when it is stuck behind a slow client.
    for _ in range(layer.capacity + 1):
        await layer.group_send(room_group(room.id), event)

    assert await socket.expect_close() == CloseCode.TRY_AGAIN_LATER

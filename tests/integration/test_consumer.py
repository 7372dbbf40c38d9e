"""The room WebSocket (SPEC §4) in-process: auth, origin, membership, snapshot, commands, events."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from channels.db import database_sync_to_async
from django.conf import settings as django_settings
from django.test import Client

from rooms.codes import CloseCode, ErrorCode
from rooms.models import Membership
from rooms.permissions import ALL_PERMISSIONS, MemberStatus, Permission
from rooms.services import chat, members, playlist, rooms
from tests.support.factories import make_member, make_room, make_user
from tests.support.ws import (  # noqa: F401  (fixtures)
    HOST,
    override_server,
    session_cookie,
    socket_pool,
)

pytestmark = pytest.mark.django_db(transaction=True)

db = database_sync_to_async
PASSWORD = "correct-horse-9"  # what make_user signs up with


@pytest.fixture
def member(room):
    return make_member(room)


@pytest.fixture
def movies(owner, room):
    """Two playlist entries; the first becomes the current movie."""
    first = playlist.add_movie(owner.user, room.id, "https://media.example/one.mp4", "One")
    second = playlist.add_movie(owner.user, room.id, "https://media.example/two.mp4", "Two")
    return first, second


# --- authentication ---------------------------------------------------------------------


async def test_socket_without_credentials_gets_unauthenticated_then_4001(sockets, room):
    socket = await sockets.open(room.id)

    await socket.expect_error(ErrorCode.UNAUTHENTICATED)
    assert await socket.expect_close() == CloseCode.NOT_AUTHENTICATED


async def test_socket_with_unknown_token_closes_4001(sockets, room):
    socket = await sockets.open(room.id, token="not-a-real-token")

    await socket.expect_error(ErrorCode.UNAUTHENTICATED)
    assert await socket.expect_close() == CloseCode.NOT_AUTHENTICATED


async def test_session_cookie_signs_the_socket_in(sockets, room, member):
    cookie = await db(session_cookie)(member.user)

    socket = await sockets.join(room.id, cookie=cookie)

    assert socket.snapshot["me"]["user"]["id"] == member.user.id


async def test_session_started_by_api_login_signs_the_socket_in(sockets, room, member):
    def login_cookie():
        client = Client()
        response = client.post(
            "/api/auth/login",
            {"username": member.user.username, "password": PASSWORD},
            content_type="application/json",
        )
        assert response.status_code == 200, response.content
        name = django_settings.SESSION_COOKIE_NAME
        return f"{name}={client.cookies[name].value}"

    socket = await sockets.join(room.id, cookie=await db(login_cookie)())

    assert socket.snapshot["me"]["user"]["id"] == member.user.id


async def test_token_never_appears_in_log_records(sockets, room, member, caplog):
    caplog.set_level(logging.DEBUG)

    socket = await sockets.join(room.id, token=member.token)
    await socket.ping()
    await socket.close()

    assert caplog.records, "expected the socket's join and leave to be logged"
    for record in caplog.records:
        assert member.token not in record.getMessage()
        assert member.token not in repr(record.__dict__)


# --- origin -------------------------------------------------------------------------------


async def test_socket_without_origin_header_is_accepted(sockets, room, member):
    socket = await sockets.join(room.id, token=member.token)

    assert socket.snapshot["type"] == "snapshot"


@pytest.mark.parametrize(
    "origin, host",
    [
        (f"http://{HOST}", HOST),
        (f"https://{HOST}", HOST),
        ("http://localhost:8080", "localhost:8080"),
        ("HTTP://LOCALHOST:8080", "localhost:8080"),
    ],
)
async def test_same_origin_socket_is_accepted(sockets, room, member, origin, host):
    socket = await sockets.join(room.id, token=member.token, origin=origin, host=host)

    assert socket.snapshot["type"] == "snapshot"


@pytest.mark.parametrize(
    "origin",
    [
        "http://evil.example",
        f"http://{HOST}.evil.example",
        f"http://{HOST}:8081",
        "null",
    ],
)
async def test_foreign_origin_is_refused_at_the_handshake(sockets, room, member, origin):
    socket = await sockets.open(room.id, token=member.token, origin=origin)

    assert socket.closed
    assert socket.frames == []


async def test_origin_listed_in_allowed_origins_is_accepted(sockets, settings, room, member):
    override_server(settings, allowed_origins=["https://watch.example.com"])

    socket = await sockets.join(room.id, token=member.token, origin="https://watch.example.com")

    assert socket.snapshot["type"] == "snapshot"


# --- membership ---------------------------------------------------------------------------


async def test_socket_to_a_missing_room_gets_not_found_then_4004(sockets, owner):
    socket = await sockets.open("nosuchroom", token=owner.token)

    await socket.expect_error(ErrorCode.NOT_FOUND)
    assert await socket.expect_close() == CloseCode.ROOM_NOT_FOUND


async def test_password_room_refuses_a_socket_before_join_with_4003(sockets, owner):
    locked = await db(make_room)(owner, "Locked", password="sesame")
    visitor = await db(make_user)()

    socket = await sockets.open(locked.id, token=visitor.token)

    await socket.expect_error(ErrorCode.FORBIDDEN)
    assert await socket.expect_close() == CloseCode.NOT_ALLOWED
    assert not await db(Membership.objects.filter(room=locked, user=visitor.user).exists)()


async def test_password_room_admits_a_socket_after_join_with_password(sockets, owner):
    locked = await db(make_room)(owner, "Locked", password="sesame")
    visitor = await db(make_user)()
    await db(rooms.join_room)(visitor.user, locked.id, "sesame")

    socket = await sockets.join(locked.id, token=visitor.token)

    assert socket.snapshot["me"]["role"] == "member"


async def test_banned_member_is_refused_with_4003(sockets, owner, room, member):
    await db(members.update_member)(
        owner.user, room.id, member.user.id, {"status": MemberStatus.BANNED}
    )

    socket = await sockets.open(room.id, token=member.token)

    await socket.expect_error(ErrorCode.FORBIDDEN)
    assert await socket.expect_close() == CloseCode.NOT_ALLOWED


async def test_socket_to_a_room_without_password_makes_the_user_a_member(sockets, room):
    visitor = await db(make_user)()

    socket = await sockets.join(room.id, token=visitor.token)

    membership = await db(Membership.objects.get)(room=room, user=visitor.user)
    assert membership.status == MemberStatus.ACTIVE
    assert socket.snapshot["me"]["role"] == membership.role == "member"


async def test_guest_is_refused_where_guests_are_not_allowed(sockets, owner):
    members_only = await db(make_room)(owner, "Members only", settings={"guests_allowed": False})
    guest = await db(make_user)(guest=True)

    socket = await sockets.open(members_only.id, token=guest.token)

    await socket.expect_error(ErrorCode.FORBIDDEN)
    assert await socket.expect_close() == CloseCode.NOT_ALLOWED


async def test_guest_is_admitted_where_guests_are_allowed(sockets, room):
    guest = await db(make_user)(guest=True)

    socket = await sockets.join(room.id, token=guest.token)

    assert socket.snapshot["me"]["user"]["is_guest"] is True


# --- snapshot -----------------------------------------------------------------------------


async def test_snapshot_carries_every_spec_field(sockets, owner, room, member, movies):
    await db(chat.send_chat)(owner.user, room.id, "welcome")
    before = int(time.time() * 1000)

    socket = await sockets.join(room.id, token=member.token)

    snapshot = socket.snapshot
    assert set(snapshot) >= {
        "type",
        "server_time",
        "node_id",
        "connection_id",
        "room",
        "me",
        "playback",
        "playlist",
        "online",
        "viewer_count",
        "chat",
    }
    assert before <= snapshot["server_time"] <= int(time.time() * 1000)
    assert snapshot["node_id"] == django_settings.SYNCTV_NODE_ID
    assert isinstance(snapshot["connection_id"], str) and snapshot["connection_id"]
    assert snapshot["room"]["id"] == room.id and snapshot["room"]["name"] == "Movie night"
    assert snapshot["me"]["user"]["id"] == member.user.id
    assert snapshot["me"]["role"] == "member"
    assert set(snapshot["me"]["permissions"]) <= set(ALL_PERMISSIONS)
    assert Permission.CONTROL_PLAYBACK in snapshot["me"]["permissions"]
    playback = snapshot["playback"]
    assert set(playback) == {"movie_id", "position", "playing", "rate", "version", "updated_at"}
    assert playback["movie_id"] == movies[0]["id"]
    assert playback["playing"] is False and playback["rate"] == 1.0
    assert isinstance(playback["version"], int) and isinstance(playback["updated_at"], int)
    assert [movie["id"] for movie in snapshot["playlist"]["movies"]] == [m["id"] for m in movies]
    assert snapshot["playlist"]["version"] == 2
    assert [entry["user"]["id"] for entry in snapshot["online"]] == [member.user.id]
    assert snapshot["online"][0]["connections"] == 1
    assert snapshot["viewer_count"] == 1
    assert [line["text"] for line in snapshot["chat"]] == ["welcome"]


async def test_each_socket_gets_its_own_connection_id(sockets, room, member):
    first = await sockets.join(room.id, token=member.token)
    second = await sockets.join(room.id, token=member.token)

    assert first.snapshot["connection_id"] != second.snapshot["connection_id"]


# --- ping and sync ------------------------------------------------------------------------


async def test_ping_is_answered_with_pong_carrying_both_clocks(sockets, room, member):
    socket = await sockets.join(room.id, token=member.token)
    before = int(time.time() * 1000)

    await socket.send({"type": "ping", "client_time": 12345.5})

    pong = await socket.expect("pong")
    assert pong["client_time"] == 12345.5
    assert before <= pong["server_time"] <= int(time.time() * 1000)


async def test_sync_returns_the_current_playback(sockets, room, member, movies):
    socket = await sockets.join(room.id, token=member.token)
    ack = await socket.request({"type": "seek", "position": 42.0})

    reply = await socket.request({"type": "sync"}, reply="playback")

    assert reply["playback"]["version"] == ack["version"]
    assert reply["playback"]["position"] == 42.0
    assert reply["playback"]["movie_id"] == movies[0]["id"]


# --- playback -----------------------------------------------------------------------------

PLAYBACK_COMMANDS = [
    pytest.param({"type": "play"}, {"playing": True}, id="play"),
    pytest.param(
        {"type": "play", "position": 3.5}, {"playing": True, "position": 3.5}, id="play-at"
    ),
    pytest.param({"type": "pause", "position": 7}, {"playing": False, "position": 7.0}, id="pause"),
    pytest.param({"type": "seek", "position": 90.25}, {"position": 90.25}, id="seek"),
    pytest.param({"type": "rate", "rate": 1.5}, {"rate": 1.5}, id="rate"),
    pytest.param({"type": "rate", "rate": 0.25}, {"rate": 0.25}, id="rate-min"),
    pytest.param({"type": "rate", "rate": 4}, {"rate": 4.0}, id="rate-max"),
]


@pytest.mark.parametrize("command, expected", PLAYBACK_COMMANDS)
async def test_playback_command_acks_sender_and_reaches_every_socket(
    sockets, room, owner, member, movies, command, expected
):
    actor = await sockets.join(room.id, token=member.token)
    watcher = await sockets.join(room.id, token=owner.token)
    version = actor.snapshot["playback"]["version"]

    ack = await actor.request(command)

    assert ack["version"] == version + 1
    for socket in (actor, watcher):
        event = await socket.expect("playback")
        assert event["playback"]["version"] == version + 1
        assert event["by"]["id"] == member.user.id
        for key, value in expected.items():
            assert event["playback"][key] == value, (key, event)


async def test_set_movie_acks_sender_and_reaches_every_socket(sockets, room, owner, member, movies):
    actor = await sockets.join(room.id, token=member.token)
    watcher = await sockets.join(room.id, token=owner.token)
    version = actor.snapshot["playback"]["version"]

    ack = await actor.request({"type": "set_movie", "movie_id": movies[1]["id"]})

    assert ack["version"] == version + 1
    for socket in (actor, watcher):
        event = await socket.expect("playback")
        assert event["playback"] == {
            **event["playback"],
            "movie_id": movies[1]["id"],
            "position": 0.0,
            "playing": False,
            "version": version + 1,
        }


async def test_each_accepted_change_bumps_the_version_by_one(sockets, room, owner, member, movies):
    actor = await sockets.join(room.id, token=member.token)
    watcher = await sockets.join(room.id, token=owner.token)
    start = actor.snapshot["playback"]["version"]
    commands = [
        {"type": "play", "position": 1},
        {"type": "pause"},
        {"type": "seek", "position": 30},
        {"type": "rate", "rate": 2},
        {"type": "set_movie", "movie_id": movies[1]["id"]},
    ]

    acks = [(await actor.request(command))["version"] for command in commands]

    expected = list(range(start + 1, start + 1 + len(commands)))
    assert acks == expected
    seen = [(await watcher.expect("playback"))["playback"]["version"] for _ in commands]
    assert seen == expected


async def test_member_without_control_playback_is_refused_and_stays_connected(
    sockets, room, owner, movies
):
    viewer = await db(make_member)(room, permissions=[Permission.SEND_CHAT])
    socket = await sockets.join(room.id, token=viewer.token)
    watcher = await sockets.join(room.id, token=owner.token)
    version = socket.snapshot["playback"]["version"]

    await socket.send({"type": "seek", "position": 10, "req_id": "seek-1"})

    await socket.expect_error(ErrorCode.FORBIDDEN, req_id="seek-1")
    await socket.ping()
    reply = await socket.request({"type": "sync"}, reply="playback")
    assert reply["playback"]["version"] == version
    assert not [frame for frame in await watcher.drain() if frame["type"] == "playback"]


async def test_permission_taken_away_applies_to_the_open_socket(
    sockets, room, owner, member, movies
):
    socket = await sockets.join(room.id, token=member.token)
    await socket.request({"type": "seek", "position": 1})

    await db(members.update_member)(
        owner.user, room.id, member.user.id, {"permissions": [Permission.SEND_CHAT]}
    )

    await socket.send({"type": "seek", "position": 2, "req_id": "after"})
    await socket.expect_error(ErrorCode.FORBIDDEN, req_id="after")


async def test_pause_without_position_keeps_the_position_reached_while_playing(
    sockets, room, member, movies
):
    socket = await sockets.join(room.id, token=member.token)
    await socket.request({"type": "play", "position": 5})
    await socket.request({"type": "rate", "rate": 2})
    played = time.monotonic()
    await asyncio.sleep(0.2)  # let playback advance

    await socket.request({"type": "pause"})

    elapsed = time.monotonic() - played
    state = (await socket.request({"type": "sync"}, reply="playback"))["playback"]
    assert state["playing"] is False
    # At rate 2, the position moved twice as fast as the clock (with some clock slack).
    assert 5 + 2 * 0.2 - 0.05 <= state["position"] <= 5 + 2 * elapsed + 0.05


async def test_member_without_set_current_movie_cannot_change_the_movie(sockets, room, movies):
    viewer = await db(make_member)(room, permissions=[Permission.CONTROL_PLAYBACK])
    socket = await sockets.join(room.id, token=viewer.token)

    await socket.send({"type": "set_movie", "movie_id": movies[1]["id"], "req_id": 7})

    await socket.expect_error(ErrorCode.FORBIDDEN, req_id=7)
    await socket.ping()


# --- chat ---------------------------------------------------------------------------------


async def test_chat_is_kept_and_broadcast_to_every_socket(sockets, room, owner, member):
    speaker = await sockets.join(room.id, token=member.token)
    listener = await sockets.join(room.id, token=owner.token)

    await speaker.request({"type": "chat", "text": "hello, room"})

    for socket in (speaker, listener):
        message = (await socket.expect("chat"))["message"]
        assert message["text"] == "hello, room"
        assert message["user"]["id"] == member.user.id
        assert isinstance(message["id"], int) and isinstance(message["sent_at"], int)
    history = await db(chat.history)(owner.user, room.id)
    assert [line["text"] for line in history] == ["hello, room"]
    late = await sockets.join(room.id, token=owner.token)
    assert [line["text"] for line in late.snapshot["chat"]] == ["hello, room"]


async def test_member_without_send_chat_is_refused(sockets, room):
    mute = await db(make_member)(room, permissions=[])
    socket = await sockets.join(room.id, token=mute.token)

    await socket.send({"type": "chat", "text": "hi", "req_id": "c1"})

    await socket.expect_error(ErrorCode.FORBIDDEN, req_id="c1")
    await socket.ping()


# --- events from services ----------------------------------------------------------------


async def test_playlist_change_reaches_every_socket(sockets, room, owner, member):
    sockets_in_room = [
        await sockets.join(room.id, token=member.token),
        await sockets.join(room.id, token=owner.token),
    ]

    movie = await db(playlist.add_movie)(owner.user, room.id, "https://media.example/a.webm")

    for socket in sockets_in_room:
        event = await socket.expect("playlist")
        assert event["playlist"]["version"] == 1
        assert [entry["id"] for entry in event["playlist"]["movies"]] == [movie["id"]]
        assert event["playlist"]["movies"][0]["type"] == "webm"


async def test_playlist_removal_reaches_every_socket(sockets, room, owner, member, movies):
    socket = await sockets.join(room.id, token=member.token)

    await db(playlist.delete_movie)(owner.user, room.id, movies[1]["id"])

    event = await socket.expect("playlist")
    assert [entry["id"] for entry in event["playlist"]["movies"]] == [movies[0]["id"]]


async def test_room_update_reaches_every_socket(sockets, room, owner, member):
    sockets_in_room = [
        await sockets.join(room.id, token=member.token),
        await sockets.join(room.id, token=owner.token),
    ]

    await db(rooms.update_room)(owner.user, room.id, {"name": "Film club"})

    for socket in sockets_in_room:
        event = await socket.expect("room")
        assert event["room"]["id"] == room.id
        assert event["room"]["name"] == "Film club"


async def test_deleting_the_room_closes_every_socket_with_4004(sockets, room, owner, member):
    sockets_in_room = [
        await sockets.join(room.id, token=member.token),
        await sockets.join(room.id, token=owner.token),
    ]

    await db(rooms.delete_room)(owner.user, room.id)

    for socket in sockets_in_room:
        assert await socket.expect_close() == CloseCode.ROOM_NOT_FOUND
        kinds = [frame["type"] for frame in socket.frames]
        assert "room_deleted" in kinds and "error" in kinds
        assert kinds.index("room_deleted") < kinds.index("error") == len(kinds) - 1
        assert socket.frames[-1]["code"] == ErrorCode.NOT_FOUND


async def test_banning_a_member_kicks_only_their_sockets(sockets, room, owner, member):
    banned = [
        await sockets.join(room.id, token=member.token),
        await sockets.join(room.id, token=member.token),
    ]
    bystander = await sockets.join(room.id, token=owner.token)

    await db(members.update_member)(
        owner.user, room.id, member.user.id, {"status": MemberStatus.BANNED}
    )

    for socket in banned:
        assert await socket.expect_close() == CloseCode.NOT_ALLOWED
        kinds = [frame["type"] for frame in socket.frames]
        assert "kicked" in kinds and kinds.index("kicked") < kinds.index("error")
        assert socket.frames[-1] == {**socket.frames[-1], "type": "error", "code": "forbidden"}
    assert not bystander.closed
    await bystander.ping()


async def test_kicked_sockets_leave_presence_when_they_disconnect(sockets, room, owner, member):
    kicked = await sockets.join(room.id, token=member.token)
    bystander = await sockets.join(room.id, token=owner.token)
    await bystander.expect("presence", where=lambda f: f["viewer_count"] == 2)

    await db(members.update_member)(
        owner.user, room.id, member.user.id, {"status": MemberStatus.BANNED}
    )
    await kicked.expect_close()
    await kicked.close()

    event = await bystander.expect("presence", where=lambda f: f["viewer_count"] == 1)
    assert [entry["user"]["id"] for entry in event["online"]] == [owner.user.id]


# --- presence -----------------------------------------------------------------------------


async def test_second_viewer_joining_updates_presence_of_the_first(sockets, room, owner, member):
    first = await sockets.join(room.id, token=owner.token)

    await sockets.join(room.id, token=member.token)

    event = await first.expect("presence", where=lambda f: f["viewer_count"] == 2)
    assert sorted(entry["user"]["id"] for entry in event["online"]) == sorted(
        [owner.user.id, member.user.id]
    )


async def test_viewer_leaving_updates_presence_of_the_others(sockets, room, owner, member):
    stays = await sockets.join(room.id, token=owner.token)
    leaves = await sockets.join(room.id, token=member.token)
    await stays.expect("presence", where=lambda f: f["viewer_count"] == 2)

    await leaves.close()

    event = await stays.expect("presence", where=lambda f: f["viewer_count"] == 1)
    assert [entry["user"]["id"] for entry in event["online"]] == [owner.user.id]


async def test_two_sockets_of_one_user_count_as_one_viewer(sockets, room, owner, member):
    watcher = await sockets.join(room.id, token=owner.token)
    await sockets.join(room.id, token=member.token)
    await sockets.join(room.id, token=member.token)

    event = await watcher.expect(
        "presence",
        where=lambda f: any(entry["connections"] == 2 for entry in f["online"]),
    )
    assert event["viewer_count"] == 2


# --- the database thread off the delivery path ---------------------------------------------


async def test_room_events_reach_sockets_without_a_hop_to_the_database_thread(
    sockets, room, owner, member, monkeypatch
):
    import channels.consumer

    hops = []
    real = channels.consumer.aclose_old_connections

    async def counted():
        hops.append(1)
        await real()

    monkeypatch.setattr(channels.consumer, "aclose_old_connections", counted)
    sender = await sockets.join(room.id, token=owner.token)
    watcher = await sockets.join(room.id, token=member.token)
    await sender.drain()
    await watcher.drain()
    hops.clear()

    late = await sockets.join(room.id, token=member.token)
    for n in range(5):
        await sender.request({"type": "chat", "text": f"line {n}", "req_id": n})
    for n in range(5):
        await watcher.expect("chat", where=lambda f, n=n: f["message"]["text"] == f"line {n}")
    await late.close()

    # A join, five inbound frames, fifteen deliveries and a leave, and not one hop: the
    # socket's database calls run on rooms.db's threads, which close their own connections.
    assert hops == []

"""Malformed and hostile client frames: each is refused with an `error`, and the socket lives on."""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.db import database_sync_to_async

from rooms.codes import MAX_FRAME_BYTES, CloseCode, ErrorCode
from rooms.models import ChatMessage, PlaybackState
from rooms.services import playlist
from rooms.services.chat import MAX_CHAT_LENGTH
from tests.support.factories import make_member, make_room, make_user
from tests.support.ws import (  # noqa: F401  (fixtures)
    override_websocket,
    socket_pool,
)

pytestmark = pytest.mark.django_db(transaction=True)

db = database_sync_to_async


@pytest.fixture
def room(transactional_db):
    owner = make_user()
    room = make_room(owner, "Bad input")
    playlist.add_movie(owner.user, room.id, "https://media.example/one.mp4")
    return room


@pytest.fixture
def member(room):
    return make_member(room)


@pytest.fixture
async def socket(sockets, room, member):
    return await sockets.join(room.id, token=member.token)


def frame(**fields):
    return json.dumps(fields)


NOT_JSON = [
    pytest.param("{not json", id="malformed-json"),
    pytest.param("", id="empty-text"),
    pytest.param('{"type": "ping"', id="truncated-object"),
    pytest.param("[" * 20000, id="deeply-nested"),
    pytest.param('[{"type": "ping"}]', id="array"),
    pytest.param("42", id="number"),
    pytest.param('"ping"', id="string"),
    pytest.param("null", id="null"),
    pytest.param("true", id="boolean"),
    pytest.param(frame(client_time=1), id="missing-type"),
    pytest.param(frame(type=5), id="type-number"),
    pytest.param(frame(type=None), id="type-null"),
    pytest.param(frame(type=["ping"]), id="type-list"),
    pytest.param(frame(type="PING"), id="type-wrong-case"),
]


@pytest.mark.parametrize("text", NOT_JSON)
async def test_frame_that_is_not_a_typed_object_gets_bad_request(socket, text):
    await socket.send_text(text)

    await socket.expect_error(ErrorCode.BAD_REQUEST)
    await socket.ping()


async def test_binary_frame_gets_bad_request(socket):
    await socket.send_bytes(b'{"type": "ping"}')

    await socket.expect_error(ErrorCode.BAD_REQUEST)
    await socket.ping()


# Frames with a known or unknown `type` and a req_id, whose error must echo that req_id.
BAD_FIELDS = [
    pytest.param({"type": "dance"}, id="unknown-type"),
    pytest.param({"type": "pong"}, id="server-only-type"),
    pytest.param({"type": "snapshot"}, id="server-only-snapshot"),
    pytest.param({"type": "ping", "client_time": "now"}, id="ping-client-time-string"),
    pytest.param({"type": "seek"}, id="seek-missing-position"),
    pytest.param({"type": "seek", "position": None}, id="seek-position-null"),
    pytest.param({"type": "seek", "position": -1}, id="seek-negative"),
    pytest.param({"type": "seek", "position": "12"}, id="seek-string"),
    pytest.param({"type": "seek", "position": True}, id="seek-true"),
    pytest.param({"type": "seek", "position": [12]}, id="seek-list"),
    pytest.param({"type": "seek", "position": {"at": 12}}, id="seek-object"),
    pytest.param({"type": "seek", "position": 1e400}, id="seek-overflow-infinity"),
    pytest.param({"type": "seek", "position": 10**400}, id="seek-giant-integer"),
    pytest.param({"type": "play", "position": -0.5}, id="play-negative"),
    pytest.param({"type": "play", "position": "start"}, id="play-string"),
    pytest.param({"type": "pause", "position": False}, id="pause-false"),
    pytest.param({"type": "rate"}, id="rate-missing"),
    pytest.param({"type": "rate", "rate": 0.1}, id="rate-too-slow"),
    pytest.param({"type": "rate", "rate": 5}, id="rate-too-fast"),
    pytest.param({"type": "rate", "rate": 0}, id="rate-zero"),
    pytest.param({"type": "rate", "rate": -1}, id="rate-negative"),
    pytest.param({"type": "rate", "rate": "fast"}, id="rate-word"),
    pytest.param({"type": "rate", "rate": True}, id="rate-true"),
    pytest.param({"type": "set_movie"}, id="set-movie-missing"),
    pytest.param({"type": "set_movie", "movie_id": 5}, id="set-movie-number"),
    pytest.param({"type": "set_movie", "movie_id": ""}, id="set-movie-empty"),
    pytest.param({"type": "set_movie", "movie_id": "x" * 1000}, id="set-movie-huge"),
    pytest.param({"type": "chat"}, id="chat-missing"),
    pytest.param({"type": "chat", "text": ""}, id="chat-empty"),
    pytest.param({"type": "chat", "text": "   \n\t"}, id="chat-blank"),
    pytest.param({"type": "chat", "text": "x" * (MAX_CHAT_LENGTH + 1)}, id="chat-4097"),
    pytest.param({"type": "chat", "text": 5}, id="chat-number"),
    pytest.param({"type": "chat", "text": ["hi"]}, id="chat-list"),
    pytest.param({"type": "chat", "text": "nul\u0000byte"}, id="chat-nul-character"),
    pytest.param({"type": "chat", "text": "lone \ud800 surrogate"}, id="chat-lone-surrogate"),
]


@pytest.mark.parametrize("message", BAD_FIELDS)
async def test_bad_field_gets_bad_request_echoing_req_id(socket, room, message):
    version = socket.snapshot["playback"]["version"]

    await socket.send({**message, "req_id": "bad-1"})

    await socket.expect_error(ErrorCode.BAD_REQUEST, req_id="bad-1")
    await socket.ping()
    state = await db(PlaybackState.objects.get)(room_id=room.id)
    assert state.version == version
    assert not await db(ChatMessage.objects.filter(room_id=room.id).exists)()


async def test_integer_req_id_is_echoed_on_errors(socket):
    await socket.send({"type": "seek", "position": -1, "req_id": 99})

    await socket.expect_error(ErrorCode.BAD_REQUEST, req_id=99)


NON_FINITE = [
    pytest.param("NaN", id="nan"),
    pytest.param("Infinity", id="infinity"),
    pytest.param("-Infinity", id="minus-infinity"),
]


@pytest.mark.parametrize("literal", NON_FINITE)
@pytest.mark.parametrize(
    "kind, field", [("seek", "position"), ("play", "position"), ("rate", "rate")]
)
async def test_non_finite_number_gets_bad_request(socket, literal, kind, field):
    # Python's json accepts these non-standard literals, so they reach validation.
    await socket.send_text(f'{{"type": "{kind}", "{field}": {literal}, "req_id": "nf"}}')

    await socket.expect_error(ErrorCode.BAD_REQUEST, req_id="nf")
    await socket.ping()


async def test_set_movie_to_an_unknown_id_gets_not_found(socket):
    await socket.send({"type": "set_movie", "movie_id": "nosuchmovie", "req_id": "m1"})

    await socket.expect_error(ErrorCode.NOT_FOUND, req_id="m1")
    await socket.ping()


@pytest.mark.parametrize("length", [17, 32])
async def test_set_movie_to_an_id_longer_than_any_movie_id_gets_not_found(socket, length):
    # Found by tests/fuzz/test_ws_frames.py: PostgreSQL refused to write such an id into
    # movie_id ("value too long"), and the client got server_error.
    await socket.send({"type": "set_movie", "movie_id": "m" * length, "req_id": "long"})

    await socket.expect_error(ErrorCode.NOT_FOUND, req_id="long")
    await socket.ping()


async def test_set_movie_to_another_rooms_movie_gets_not_found(socket):
    def other_rooms_movie():
        stranger = make_user()
        other = make_room(stranger, "Elsewhere")
        return playlist.add_movie(stranger.user, other.id, "https://media.example/two.mp4")

    movie = await db(other_rooms_movie)()

    await socket.send({"type": "set_movie", "movie_id": movie["id"], "req_id": "m2"})

    await socket.expect_error(ErrorCode.NOT_FOUND, req_id="m2")


async def test_set_movie_with_a_nul_character_is_refused_as_bad_input(socket):
    await socket.send({"type": "set_movie", "movie_id": "a\u0000b", "req_id": "m3"})

    error = await socket.expect("error")
    assert error["code"] in (ErrorCode.BAD_REQUEST, ErrorCode.NOT_FOUND), error
    assert error["req_id"] == "m3"
    await socket.ping()


@pytest.mark.parametrize(
    "req_id",
    [
        pytest.param("r" * 65, id="too-long"),
        pytest.param(True, id="boolean"),
        pytest.param({"id": 1}, id="object"),
        pytest.param(1.5, id="float"),
    ],
)
async def test_invalid_req_id_gets_bad_request_without_echo(socket, req_id):
    await socket.send({"type": "ping", "client_time": 1, "req_id": req_id})

    error = await socket.expect_error(ErrorCode.BAD_REQUEST)
    assert "req_id" not in error
    await socket.ping()


async def test_unknown_extra_fields_are_ignored(socket):
    await socket.send({"type": "ping", "client_time": 5, "req_id": "x1", "colour": "blue"})

    pong = await socket.answer("x1")
    assert pong["type"] == "pong" and pong["client_time"] == 5


async def test_errors_explain_what_is_allowed(socket):
    await socket.send({"type": "rate", "rate": 9, "req_id": "why"})

    error = await socket.expect_error(ErrorCode.BAD_REQUEST, req_id="why")
    assert "rate" in error["message"]


# --- frame size -----------------------------------------------------------------------------


def ping_of_size(size: int) -> str:
    """A ping frame padded with an ignored field to exactly `size` bytes of UTF-8."""
    text = frame(type="ping", client_time=1, req_id="big", pad="")
    return text.replace('"pad": ""', '"pad": "' + "x" * (size - len(text)) + '"')


async def test_frame_of_exactly_the_limit_is_accepted(socket):
    text = ping_of_size(MAX_FRAME_BYTES)
    assert len(text.encode()) == MAX_FRAME_BYTES

    await socket.send_text(text)

    assert (await socket.answer("big"))["type"] == "pong"


async def test_frame_over_the_limit_gets_too_large_then_1009(socket):
    text = ping_of_size(MAX_FRAME_BYTES + 1)

    await socket.send_text(text)

    await socket.expect_error(ErrorCode.TOO_LARGE)
    assert await socket.expect_close() == CloseCode.FRAME_TOO_LARGE


async def test_frame_over_the_limit_in_multibyte_characters_is_too_large(socket):
    # Fewer characters than the limit, but more bytes once encoded as UTF-8.
    euro = "\u20ac"  # three bytes in UTF-8
    text = json.dumps(
        {"type": "chat", "text": euro * (MAX_FRAME_BYTES // 3 + 1)}, ensure_ascii=False
    )
    assert len(text) < MAX_FRAME_BYTES < len(text.encode())

    await socket.send_text(text)

    await socket.expect_error(ErrorCode.TOO_LARGE)
    assert await socket.expect_close() == CloseCode.FRAME_TOO_LARGE


async def test_binary_frame_over_the_limit_gets_too_large_then_1009(socket):
    await socket.send_bytes(b"x" * (MAX_FRAME_BYTES + 1))

    await socket.expect_error(ErrorCode.TOO_LARGE)
    assert await socket.expect_close() == CloseCode.FRAME_TOO_LARGE


# --- flooding -------------------------------------------------------------------------------


async def test_burst_of_commands_gets_rate_limited(settings, sockets, room, member):
    override_websocket(settings, rate_limit_per_sec=5, rate_limit_burst=5)
    socket = await sockets.join(room.id, token=member.token)

    for number in range(20):
        await socket.send({"type": "ping", "client_time": number, "req_id": number})

    answers = [await socket.answer(number) for number in range(20)]
    pongs = [answer for answer in answers if answer["type"] == "pong"]
    limited = [answer for answer in answers if answer["type"] == "error"]
    assert 5 <= len(pongs) <= 7
    assert len(pongs) + len(limited) == 20
    assert {answer["code"] for answer in limited} == {ErrorCode.RATE_LIMITED}
    assert not socket.closed


async def test_rate_limited_socket_recovers_when_the_bucket_refills(
    settings, sockets, room, member
):
    override_websocket(settings, rate_limit_per_sec=10, rate_limit_burst=2)
    socket = await sockets.join(room.id, token=member.token)
    for number in range(6):
        await socket.send({"type": "ping", "client_time": number, "req_id": number})
    answers = [await socket.answer(number) for number in range(6)]
    assert answers[-1]["type"] == "error"

    await asyncio.sleep(0.3)  # the bucket refills at 10 a second

    await socket.ping()


async def test_client_sending_a_few_frames_a_second_is_never_rate_limited(
    settings, sockets, room, member
):
    override_websocket(settings, rate_limit_per_sec=5, rate_limit_burst=5)
    socket = await sockets.join(room.id, token=member.token)

    for _ in range(8):  # 4 a second for 2 seconds: more than the burst alone would allow
        await socket.ping()
        await asyncio.sleep(0.25)

    assert not [frame for frame in await socket.drain() if frame["type"] == "error"]


async def test_repeated_bad_frames_close_the_socket_with_1008(settings, sockets, room, member):
    override_websocket(settings, abuse_max_errors=5)
    socket = await sockets.join(room.id, token=member.token)
    for _ in range(5):
        await socket.send_text("{garbage")
        await socket.expect_error(ErrorCode.BAD_REQUEST)
    await socket.ping()  # at the threshold, not over it: still served

    await socket.send_text("{garbage")

    await socket.expect_error(ErrorCode.BAD_REQUEST)
    assert await socket.expect_close() == CloseCode.POLICY_VIOLATION


async def test_sustained_flood_closes_the_socket_with_1008(settings, sockets, room, member):
    override_websocket(settings, rate_limit_per_sec=1, rate_limit_burst=1, abuse_max_errors=10)
    socket = await sockets.join(room.id, token=member.token)

    for number in range(30):
        await socket.send({"type": "ping", "client_time": number})

    assert await socket.expect_close() == CloseCode.POLICY_VIOLATION
    codes = [frame["code"] for frame in socket.frames if frame["type"] == "error"]
    assert codes.count(ErrorCode.RATE_LIMITED) == 11


async def test_errors_older_than_the_window_are_forgotten(settings, sockets, room, member):
    override_websocket(settings, abuse_max_errors=3, abuse_window_secs=1)
    socket = await sockets.join(room.id, token=member.token)
    for _ in range(3):
        await socket.send_text("[]")
        await socket.expect_error(ErrorCode.BAD_REQUEST)

    await asyncio.sleep(1.1)  # let the window slide past those errors
    for _ in range(3):
        await socket.send_text("[]")
        await socket.expect_error(ErrorCode.BAD_REQUEST)

    await socket.ping()
    assert not socket.closed

"""Real `manage.py serve` processes on 127.0.0.1, driven by real HTTP and WebSocket clients."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from rooms.codes import MAX_FRAME_BYTES, CloseCode, ErrorCode
from rooms.models import Presence
from tests.support.clients import (
    FRAME_TIMEOUT,
    add_movie,
    as_guest,
    close_code_of,
    create_room,
    metric_value,
    next_frame,
    open_socket,
    unique,
)
from tests.support.servers import (
    REPO_ROOT,
    daphne_argv,
    free_port,
    node_env,
    serve_argv,
    serve_node,  # noqa: F401
)

pytestmark = pytest.mark.serve

PASSWORD = "correct-horse-9"


def count_presence_rows(node_id: str) -> int:
    try:
        return Presence.objects.filter(node_id=node_id).count()
    finally:
        connection.close()  # this worker thread's connection would block dropping the test db


async def presence_count(node_id: str) -> int:
    return await sync_to_async(count_presence_rows)(node_id)


@pytest.fixture
def node(serve_node):  # noqa: F811
    return serve_node(node_id=unique("serve-test"))


@pytest.fixture
async def http(node):
    async with httpx.AsyncClient(base_url=node.base_url, timeout=FRAME_TIMEOUT) as client:
        yield client


@pytest.fixture
async def room_with_tokens(http):
    """A room with one movie, made by guest A; B is another guest (not yet a member)."""
    token_a = await as_guest(http, "Alice")
    token_b = await as_guest(http, "Bob")
    room = await create_room(http, token_a)
    movie = await add_movie(http, token_a, room["id"])
    return room, movie, token_a, token_b


async def test_signup_and_login_over_http_return_a_working_token(http):
    username = unique("carol")

    signed_up = await http.post(
        "/api/auth/signup", json={"username": username, "password": PASSWORD}
    )
    logged_in = await http.post(
        "/api/auth/login", json={"username": username, "password": PASSWORD}
    )
    me = await http.get("/api/me", headers={"Authorization": f"Bearer {logged_in.json()['token']}"})

    assert signed_up.status_code == 201, signed_up.text
    assert signed_up.json()["token"]
    assert logged_in.status_code == 200, logged_in.text
    assert logged_in.json()["user"]["username"] == username
    assert me.status_code == 200
    assert me.json()["user"]["username"] == username


async def test_two_clients_each_get_a_snapshot_of_the_room(node, room_with_tokens):
    room, movie, token_a, token_b = room_with_tokens

    async with (
        open_socket(node, room["id"], token_a) as socket_a,
        open_socket(node, room["id"], token_b) as socket_b,
    ):
        first_a = json.loads(await asyncio.wait_for(socket_a.recv(), FRAME_TIMEOUT))
        first_b = json.loads(await asyncio.wait_for(socket_b.recv(), FRAME_TIMEOUT))

    for snapshot in (first_a, first_b):
        assert snapshot["type"] == "snapshot"
        assert snapshot["room"]["id"] == room["id"]
        assert snapshot["node_id"] == node.node_id
        assert [entry["id"] for entry in snapshot["playlist"]["movies"]] == [movie["id"]]
    assert first_a["me"]["role"] == "creator"
    assert first_b["me"]["role"] == "member"


async def test_seek_on_one_client_reaches_the_other(node, room_with_tokens):
    room, _, token_a, token_b = room_with_tokens
    async with (
        open_socket(node, room["id"], token_a) as socket_a,
        open_socket(node, room["id"], token_b) as socket_b,
    ):
        before = (await next_frame(socket_a, "snapshot"))["playback"]["version"]
        await next_frame(socket_b, "snapshot")

        await socket_a.send(json.dumps({"type": "seek", "position": 42.5, "req_id": "seek-1"}))
        seen_by_b = await next_frame(socket_b, "playback")
        ack = await next_frame(socket_a, "ack", lambda frame: frame.get("req_id") == "seek-1")

    assert seen_by_b["playback"]["version"] == before + 1
    assert seen_by_b["playback"]["position"] == 42.5
    assert seen_by_b["by"]["name"] == "Alice"
    assert ack["version"] == before + 1


async def test_chat_from_one_client_reaches_the_other_and_the_history(node, http, room_with_tokens):
    room, _, token_a, token_b = room_with_tokens
    async with (
        open_socket(node, room["id"], token_a) as socket_a,
        open_socket(node, room["id"], token_b) as socket_b,
    ):
        await next_frame(socket_a, "snapshot")
        await next_frame(socket_b, "snapshot")

        await socket_b.send(json.dumps({"type": "chat", "text": "popcorn?", "req_id": 7}))
        seen_by_a = await next_frame(socket_a, "chat")
        await next_frame(socket_b, "ack", lambda frame: frame.get("req_id") == 7)
    history = await http.get(
        f"/api/rooms/{room['id']}/chat", headers={"Authorization": f"Bearer {token_a}"}
    )

    assert seen_by_a["message"]["text"] == "popcorn?"
    assert seen_by_a["message"]["user"]["name"] == "Bob"
    assert history.status_code == 200, history.text
    assert [line["text"] for line in history.json()] == ["popcorn?"]
    assert history.json()[-1]["id"] == seen_by_a["message"]["id"]


async def test_reconnecting_client_gets_a_fresh_snapshot_with_the_latest_version(
    node, room_with_tokens
):
    room, _, token_a, token_b = room_with_tokens
    async with open_socket(node, room["id"], token_a) as socket_a:
        await next_frame(socket_a, "snapshot")
        async with open_socket(node, room["id"], token_b) as socket_b:
            await next_frame(socket_b, "snapshot")
        # B is gone; A changes playback twice meanwhile.
        await socket_a.send(json.dumps({"type": "seek", "position": 10.0, "req_id": 1}))
        await next_frame(socket_a, "ack", lambda frame: frame.get("req_id") == 1)
        await socket_a.send(json.dumps({"type": "seek", "position": 20.0, "req_id": 2}))
        latest = await next_frame(socket_a, "ack", lambda frame: frame.get("req_id") == 2)

        async with open_socket(node, room["id"], token_b) as socket_b:
            snapshot = json.loads(await asyncio.wait_for(socket_b.recv(), FRAME_TIMEOUT))

    assert snapshot["type"] == "snapshot"
    assert snapshot["playback"]["version"] == latest["version"]
    assert snapshot["playback"]["position"] == 20.0


async def test_sigterm_drains_a_node_telling_sockets_to_reconnect_then_exits(
    node, http, room_with_tokens
):
    room, _, token_a, _ = room_with_tokens
    async with open_socket(node, room["id"], token_a) as socket_a:
        await next_frame(socket_a, "snapshot")
        online_before = await presence_count(node.node_id)

        started = time.monotonic()
        stopping = asyncio.create_task(asyncio.to_thread(node.stop, 8.0))
        notice = await next_frame(socket_a, "shutdown")
        code = await close_code_of(socket_a)
        exit_code = await stopping
        took = time.monotonic() - started

    assert online_before == 1
    assert notice["reconnect_after_ms"] > 0
    assert code == CloseCode.SERVER_RESTARTING
    assert exit_code == 0  # not killed after the deadline
    assert took < 8.0
    assert await presence_count(node.node_id) == 0


async def test_health_and_ready_report_a_single_node_with_its_database(node, http):
    health = await http.get("/health")
    ready = await http.get("/ready")

    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    assert health.json()["node_id"] == node.node_id
    assert isinstance(health.json()["uptime_seconds"], int)
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "checks": {"database": "ok", "redis": "disabled", "cluster_mode": False},
    }


async def test_metrics_are_prometheus_text_counting_open_sockets(node, http, room_with_tokens):
    room, _, token_a, _ = room_with_tokens
    async with open_socket(node, room["id"], token_a) as socket_a:
        await next_frame(socket_a, "snapshot")
        metrics = await http.get("/metrics")

    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    assert f'synctv_connections_total{{node="{node.node_id}"}} 1.0' in metrics.text
    assert re.search(r"^django_http_requests_total_by_method_total\{", metrics.text, re.M)
    assert re.search(r"^django_http_responses_total_by_status_total\{", metrics.text, re.M)


async def test_a_frame_over_64_kib_closes_the_socket_with_1009(node, room_with_tokens):
    room, _, token_a, _ = room_with_tokens
    envelope = json.dumps({"type": "chat", "text": ""})
    at_limit = json.dumps({"type": "chat", "text": "x" * (MAX_FRAME_BYTES - len(envelope))})
    over_limit = json.dumps({"type": "chat", "text": "x" * (MAX_FRAME_BYTES + 1 - len(envelope))})
    assert len(at_limit.encode()) == MAX_FRAME_BYTES
    async with open_socket(node, room["id"], token_a) as socket_a:
        await next_frame(socket_a, "snapshot")

        await socket_a.send(at_limit)
        refused = await next_frame(socket_a, "error")
        await socket_a.send(over_limit)
        code = await close_code_of(socket_a)

    assert refused["code"] == ErrorCode.BAD_REQUEST  # read and answered: too long a chat line
    assert code == CloseCode.FRAME_TOO_LARGE


async def test_a_foreign_origin_is_refused_at_the_handshake(node, room_with_tokens):
    room, _, token_a, _ = room_with_tokens

    with pytest.raises(InvalidStatus) as refused:
        async with open_socket(node, room["id"], token_a, origin="http://evil.example"):
            pass
    async with open_socket(node, room["id"], token_a, origin=node.base_url) as same_origin:
        snapshot = await next_frame(same_origin, "snapshot")

    assert refused.value.response.status_code == 403
    assert snapshot["room"]["id"] == room["id"]


async def test_lobby_and_room_pages_are_html_with_one_video_in_the_room(http, room_with_tokens):
    room, _, _, _ = room_with_tokens

    lobby = await http.get("/")
    page = await http.get(f"/r/{room['id']}")

    assert lobby.status_code == 200
    assert lobby.headers["content-type"].startswith("text/html")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert len(re.findall(r"<video\b", page.text, re.I)) == 1


def test_plain_daphne_command_serves_health(serve_node):  # noqa: F811
    node = serve_node(node_id=unique("daphne-test"), launcher=daphne_argv)

    health = httpx.get(f"{node.base_url}/health", timeout=FRAME_TIMEOUT)

    assert health.status_code == 200
    assert health.json()["node_id"] == node.node_id


def test_serve_refuses_a_negative_per_user_limit():
    env = node_env({"SYNCTV__CLUSTER__CONNECTION_LIMITS__PER_USER": "-1"})
    started = time.monotonic()

    result = subprocess.run(
        serve_argv("127.0.0.1", free_port()),
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )

    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode != 0
    assert time.monotonic() - started < 15
    assert len(lines) == 1, lines
    assert "cluster.connection_limits.per_user" in lines[0]
    assert "-1" in lines[0]


async def test_close_codes_and_reasons_reach_the_client_on_the_wire(serve_node):  # noqa: F811
    # Autobahn alone refuses to send 1008 and drops close reasons: check what a client sees.
    node = serve_node(
        node_id=unique("close-codes"),
        env={
            "SYNCTV__CLUSTER__CONNECTION_LIMITS__PER_USER": "1",
            "SYNCTV__WEBSOCKET__ABUSE_MAX_ERRORS": "2",
        },
    )
    async with httpx.AsyncClient(base_url=node.base_url, timeout=FRAME_TIMEOUT) as http:
        token = await as_guest(http, "Alice")
        room = await create_room(http, token)
    async with open_socket(node, room["id"], token) as first:
        await next_frame(first, "snapshot")
        async with open_socket(node, room["id"], token) as second:
            refusal = await next_frame(second, "error")
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(second.recv(), FRAME_TIMEOUT)
        for _ in range(3):
            await first.send("not json")
        abuse_code = await close_code_of(first)

    assert refusal["code"] == ErrorCode.CONNECTION_LIMIT
    assert closed.value.rcvd.code == CloseCode.CONNECTION_LIMIT
    assert closed.value.rcvd.reason == "per_user"
    assert abuse_code == CloseCode.POLICY_VIOLATION


async def test_clients_closing_at_once_leave_no_ghost_sockets(node, http, room_with_tokens):
    # An event sent to a socket that was just closed once raised into the consumer, which
    # then never ran its disconnect (a ghost viewer and a lost slot); the race is timing-
    # dependent, so this checks the outcome rather than reproducing it every time.
    room, _, token_a, _ = room_with_tokens
    for _ in range(10):
        async with open_socket(node, room["id"], token_a) as socket:
            await next_frame(socket, "snapshot")

    async with asyncio.timeout(FRAME_TIMEOUT):
        while True:
            page = (await http.get("/metrics")).text
            open_sockets = metric_value(page, "synctv_connections_total", f'node="{node.node_id}"')
            if open_sockets == 0 and await presence_count(node.node_id) == 0:
                break
            await asyncio.sleep(0.05)
    assert "Attempt to send on a closed protocol" not in node.log_tail(100000)

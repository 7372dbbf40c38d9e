"""The connection log of a real `manage.py serve` process, read from its JSON lines on stderr.

Each socket's open and close, and a connection-limit refusal, are INFO lines carrying the
node, room, user, connection and correlation ids (SPEC 5); a close says its code, its
reason and who closed; no line carries a token. The correlation id is the handshake's
X-Request-ID, passed on by nginx (deploy/nginx.conf), made by nginx when the client sent
none, or made by the node for a socket that came straight to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import connect

from rooms.codes import CloseCode
from tests.support.clients import (
    FRAME_TIMEOUT,
    RoomClient,
    as_guest,
    bearer,
    create_room,
    http_client,
    unique,
)
from tests.support.nginx import NginxProcess, nginx_proxy  # noqa: F401
from tests.support.servers import ServeProcess, serve_node  # noqa: F401

pytestmark = pytest.mark.serve

LOG_DEADLINE = 5.0
JOINED = "socket joined room"
LEFT = "socket left room"
REFUSED = "socket refused: connection limit"
MADE_ID = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture
def node(serve_node):  # noqa: F811
    return serve_node(
        node_id=unique("logs"),
        env={
            "SYNCTV__LOGGING__FORMAT": "json",
            "SYNCTV__LOGGING__LEVEL": "INFO",
            "SYNCTV__CLUSTER__CONNECTION_LIMITS__PER_USER": "1",
        },
    )


@contextlib.asynccontextmanager
async def socket_of(
    node: ServeProcess | NginxProcess, room_id: str, token: str, request_id: str | None = None
) -> AsyncIterator[RoomClient]:
    """A RoomClient of the room, its handshake with `X-Request-ID: request_id` when given;
    returns once the first frame (snapshot, or the refusal's error) arrived."""
    headers = {"X-Request-ID": request_id} if request_id else {}
    socket = await connect(
        node.room_socket_url(room_id, token),
        open_timeout=FRAME_TIMEOUT,
        close_timeout=2,
        additional_headers=headers,
    )
    client = RoomClient(socket, request_id or "socket")
    try:
        await client.wait_until(lambda: client.frames, "first frame")
        yield client
    finally:
        await client.close()


def json_lines(node: ServeProcess) -> list[dict[str, Any]]:
    """Every JSON object the node wrote, one a line (anything else it printed is skipped)."""
    lines = []
    for line in node.log_path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict):
                lines.append(record)
    return lines


def find(records: list[dict[str, Any]], message: str, **fields: Any) -> dict[str, Any] | None:
    """The first record of `message` with these field values."""
    return next(
        (
            record
            for record in records
            if record.get("message") == message
            and all(record.get(key) == value for key, value in fields.items())
        ),
        None,
    )


async def logged(node: ServeProcess, message: str, **fields: Any) -> dict[str, Any]:
    """The node's first line `message` with these fields, waiting for it to be written."""
    deadline = time.monotonic() + LOG_DEADLINE
    while (record := find(json_lines(node), message, **fields)) is None:
        assert time.monotonic() < deadline, f"no {message!r} {fields} in:\n{node.log_tail()}"
        await asyncio.sleep(0.05)
    return record


def assert_ids(record: dict[str, Any], node: ServeProcess, room_id: str, user_id: int) -> None:
    """An INFO line with the node's, the room's, the user's and a connection's id."""
    assert record["level"] == "INFO", record
    assert record["node_id"] == node.node_id, record
    assert record["room_id"] == room_id, record
    assert record["user_id"] == user_id, record
    assert MADE_ID.match(record["connection_id"]), record


async def test_socket_open_close_and_limit_refusal_are_logged_with_their_ids(
    node,
    nginx_proxy,  # noqa: F811
):
    proxy = nginx_proxy([node])  # passes X-Request-ID on, or makes one
    async with http_client(node) as http:
        alice = await as_guest(http, "Alice")
        bob = await as_guest(http, "Bob")
        room = await create_room(http, alice)
        room_id = room["id"]
        async with socket_of(proxy, room_id, alice, "corr-alice") as alice_socket:
            alice_id = alice_socket.snapshot["me"]["user"]["id"]
            async with socket_of(node, room_id, alice) as refused:  # straight to the node
                refused_code = await refused.wait_closed()
            async with socket_of(proxy, room_id, bob) as bob_socket:
                bob_id = bob_socket.snapshot["me"]["user"]["id"]
                ban = await http.patch(
                    f"/api/rooms/{room_id}/members/{bob_id}",
                    json={"status": "banned"},
                    headers=bearer(alice),
                )
                kicked_code = await bob_socket.wait_closed()
        alice_connection = alice_socket.snapshot["connection_id"]
        bob_connection = bob_socket.snapshot["connection_id"]

    joined = await logged(node, JOINED, connection_id=alice_connection)
    left = await logged(node, LEFT, connection_id=alice_connection)
    refusal = await logged(node, REFUSED)
    bob_joined = await logged(node, JOINED, connection_id=bob_connection)
    bob_left = await logged(node, LEFT, connection_id=bob_connection)
    text = node.log_path.read_text(encoding="utf-8")

    assert ban.status_code == 200, ban.text
    assert (refused_code, kicked_code) == (CloseCode.CONNECTION_LIMIT, CloseCode.NOT_ALLOWED)
    for record in (joined, left):
        assert_ids(record, node, room_id, alice_id)
        assert record["correlation_id"] == "corr-alice"
    assert (left["close_code"], left["close_reason"], left["closed_by"]) == (1000, "", "client")
    assert_ids(refusal, node, room_id, alice_id)
    assert refusal["limit"] == "per_user"
    assert refusal["close_code"] == CloseCode.CONNECTION_LIMIT
    assert refusal["connection_id"] != alice_connection
    assert MADE_ID.match(refusal["correlation_id"]), refusal  # no X-Request-ID: the node made one
    for record in (bob_joined, bob_left):
        assert_ids(record, node, room_id, bob_id)
        assert MADE_ID.match(record["correlation_id"]), record  # no X-Request-ID: nginx made one
    assert bob_joined["correlation_id"] == bob_left["correlation_id"]
    assert (bob_left["close_code"], bob_left["closed_by"]) == (CloseCode.NOT_ALLOWED, "server")
    assert bob_left["close_reason"] == "kicked"
    assert alice not in text and bob not in text  # no token in any line

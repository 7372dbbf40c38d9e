"""The fan-out fast lane and the outgoing byte budget, on real `manage.py serve` processes.

One contract over both paths: a node with the fast lane (room events written straight to
each socket's sink) and a node without it (every frame through a Channels consumer) send a
watcher the same frames in the same order. A client that stops reading is closed with 1013
once its backlog passes the budget, and the node's memory does not grow with what it missed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
from typing import Any

import httpx
import pytest

from tests.support.clients import (
    FRAME_TIMEOUT,
    add_movie,
    as_guest,
    bearer,
    create_room,
    room_client,
    unique,
)
from tests.support.servers import serve_node  # noqa: F401

pytestmark = pytest.mark.serve

UNLIMITED = {
    "SYNCTV__WEBSOCKET__RATE_LIMIT_PER_SEC": "100000",
    "SYNCTV__WEBSOCKET__RATE_LIMIT_BURST": "100000",
}
BURST = 40


def comparable(frame: dict[str, Any]) -> Any:
    """What a frame tells a viewer, without what differs between two runs (ids, clocks)."""
    kind = frame["type"]
    if kind == "playback":
        state = frame["playback"]
        # After playing, a position depends on when the command ran: compare it only before.
        exact = not state["playing"] and state["rate"] == 1.0
        position = state["position"] if exact else None
        return kind, state["version"], state["playing"], position, state["rate"]
    if kind == "chat":
        return kind, frame["message"]["user"]["name"], frame["message"]["text"]
    if kind == "playlist":
        return kind, [movie["title"] for movie in frame["playlist"]["movies"]]
    return (kind,)


async def script(node) -> list[Any]:
    """Drive one room through chat, playback, playlist and deletion; what a watcher saw."""
    async with httpx.AsyncClient(base_url=node.base_url, timeout=FRAME_TIMEOUT) as http:
        owner = await as_guest(http, "Olga")
        watcher_token = await as_guest(http, "Walt")
        room = await create_room(http, owner)
        await add_movie(http, owner, room["id"], title="First")
        async with (
            room_client(node, room["id"], owner, "owner") as commander,
            room_client(node, room["id"], watcher_token, "watcher") as watcher,
        ):
            await commander.wait_until(
                lambda: any(
                    f["type"] == "presence" and f["viewer_count"] == 2 for f in commander.frames
                ),
                "both online",
            )
            start = watcher.mark()
            await commander.request({"type": "chat", "text": "hello", "req_id": "c1"})
            for index in range(BURST):  # no waiting between commands: a burst
                await commander.send(
                    {"type": "seek", "position": float(index), "req_id": f"s{index}"}
                )
            await commander.request({"type": "rate", "rate": 1.5, "req_id": "r"})
            await commander.request({"type": "play", "req_id": "p"})
            await add_movie(http, owner, room["id"], title="Second")
            said = await commander.request({"type": "chat", "text": "delete me", "req_id": "c2"})
            assert said["type"] == "ack", said
            chats = await http.get(f"/api/rooms/{room['id']}/chat", headers=bearer(owner))
            last = chats.json()[-1]  # newest last
            answer = await http.delete(
                f"/api/rooms/{room['id']}/chat/{last['id']}", headers=bearer(owner)
            )
            assert answer.status_code == 204, answer.text
            await commander.request({"type": "pause", "req_id": "end"})
            await commander.request({"type": "chat", "text": "the end", "req_id": "c3"})
            await watcher.wait_until(
                lambda: any(
                    f["type"] == "chat" and f["message"]["text"] == "the end"
                    for f in watcher.frames
                ),
                "the last chat",
            )
            assert watcher.frames[0]["type"] == "snapshot"
            return [
                comparable(frame)
                for frame in watcher.frames[start:]
                if frame["type"] != "presence"  # when a coalesced presence goes out is timing
            ]


async def test_the_fast_lane_sends_the_same_frames_in_the_same_order_as_channels(serve_node):  # noqa: F811
    fast = serve_node(node_id=unique("fast"), env=UNLIMITED)
    slow = serve_node(
        node_id=unique("fallback"), env={**UNLIMITED, "SYNCTV__WEBSOCKET__FAST_LANE": "false"}
    )

    through_fast_lane = await script(fast)
    through_channels = await script(slow)

    assert through_fast_lane == through_channels
    versions = [frame[1] for frame in through_fast_lane if frame[0] == "playback"]
    assert versions == sorted(versions) and len(versions) == BURST + 3
    kinds = [frame[0] for frame in through_fast_lane]
    assert kinds.count("chat") == 3 and "chat_deleted" in kinds and "playlist" in kinds


async def test_sockets_joining_during_a_burst_get_the_snapshot_first_then_newer_versions(
    serve_node,  # noqa: F811
):
    node = serve_node(node_id=unique("fast-join"), env=UNLIMITED)
    async with httpx.AsyncClient(base_url=node.base_url, timeout=FRAME_TIMEOUT) as http:
        owner = await as_guest(http, "Olga")
        room = await create_room(http, owner)
        await add_movie(http, owner, room["id"])
        guests = [await as_guest(http, f"g{index}") for index in range(20)]
        async with room_client(node, room["id"], owner, "owner") as commander:

            async def seeks() -> int:
                for index in range(199):
                    await commander.send({"type": "seek", "position": float(index)})
                    if index % 20 == 0:
                        await asyncio.sleep(0.01)
                last = await commander.request({"type": "seek", "position": 1.0, "req_id": "last"})
                return int(last["version"])

            final = asyncio.get_running_loop().create_future()

            async def join(token: str) -> list[dict[str, Any]]:
                async with room_client(node, room["id"], token, "joiner") as joiner:
                    version = await final
                    await joiner.wait_until(
                        lambda: joiner.highest_version() >= version, "the last seek", within=20
                    )
                    return joiner.frames

            joins = asyncio.gather(*(join(token) for token in guests))
            final.set_result(await seeks())
            seen = await joins

    last_version = final.result()
    for frames in seen:
        assert frames[0]["type"] == "snapshot"
        snapshot_version = frames[0]["playback"]["version"]
        later = [f["playback"]["version"] for f in frames[1:] if f["type"] == "playback"]
        newer = [version for version in later if version > snapshot_version]
        # In order, none missing after the snapshot (the burst is one version per seek).
        assert newer == list(range(snapshot_version + 1, last_version + 1)), (
            snapshot_version,
            later[:10],
        )


# --- a client that stops reading ----------------------------------------------------------


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


async def open_stalled_socket(node, room_id: str, token: str) -> socket.socket:
    """A WebSocket whose client completes the handshake, then never reads again."""
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window: fills fast
    raw.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(raw, (node.host, node.port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /ws/rooms/{room_id}/?token={token} HTTP/1.1\r\n"
        f"Host: {node.host}:{node.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await loop.sock_sendall(raw, request.encode())
    answer = b""
    async with asyncio.timeout(FRAME_TIMEOUT):
        while b"\r\n\r\n" not in answer:
            answer += await loop.sock_recv(raw, 1)
    assert answer.startswith(b"HTTP/1.1 101"), answer
    return raw


async def read_until_closed(raw: socket.socket) -> bytes:
    """Everything the server still sends, until it closes or resets the connection."""
    loop = asyncio.get_running_loop()
    received = b""
    async with asyncio.timeout(FRAME_TIMEOUT):
        while True:
            try:
                chunk = await loop.sock_recv(raw, 1 << 16)
            except ConnectionResetError:
                return received
            if not chunk:
                return received
            received += chunk


async def send_chats(sender, reader, text: str, count: int) -> None:
    """`count` chats from `sender` as fast as it can write, until `reader` has them all."""
    seen = len(reader.of_type("chat"))
    for index in range(count):
        await sender.send({"type": "chat", "text": f"{index:03d} {text}"})
    await reader.wait_until(
        lambda: len(reader.of_type("chat")) >= seen + count, "every chat", within=60
    )


async def test_a_client_that_stops_reading_is_closed_and_memory_stays_bounded(serve_node):  # noqa: F811
    node = serve_node(
        node_id=unique("slow-reader"),
        env={
            **UNLIMITED,
            "SYNCTV__WEBSOCKET__TRANSPORT_BUFFER_BYTES": str(32 << 10),
            "SYNCTV__WEBSOCKET__SEND_BACKLOG_BYTES": str(256 << 10),
        },
    )
    big = "€" * 4000  # escaped in JSON: about 24 KB per chat frame
    messages = 600  # about 15 MB that the stalled client would have to hold
    async with httpx.AsyncClient(base_url=node.base_url, timeout=FRAME_TIMEOUT) as http:
        owner = await as_guest(http, "Olga")
        reader_token = await as_guest(http, "Rita")
        stalled_token = await as_guest(http, "Stan")
        room = await create_room(http, owner)
        async with (
            room_client(node, room["id"], owner, "owner") as sender,
            room_client(node, room["id"], reader_token, "reader") as reader,
        ):
            # The same traffic once without the stalled client: the allocator's pools grow.
            await send_chats(sender, reader, big, messages)
            stalled = await open_stalled_socket(node, room["id"], stalled_token)
            try:
                await reader.wait_until(
                    lambda: any(
                        f["type"] == "presence" and f["viewer_count"] == 3 for f in reader.frames
                    ),
                    "the stalled client online",
                )
                before = rss_bytes(node.pid)
                await send_chats(sender, reader, big, messages)
                grown = rss_bytes(node.pid) - before
                tail = await read_until_closed(stalled)
            finally:
                stalled.close()
            assert not reader.closed.is_set()

    sent = messages * len(json.dumps(big))
    # Without a budget the node would hold what the stalled client did not read (~15 MB).
    assert grown < sent // 3, f"RSS grew by {grown} bytes while {sent} were sent"
    assert len(tail) < (32 << 10) + (256 << 10) + (4 << 20), len(tail)
    log = node.log_tail(400)
    assert "cannot keep up" in log and "1013" in log, log[-2000:]

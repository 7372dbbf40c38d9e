"""A watch party fills: 300 distinct guests open one room, 50 at a time, on a real node.

Before presence was coalesced, every join sent the whole online list to every member: the
per-socket queues overflowed, sockets closed with 1013 and reconnected, and the room never
settled (issue 7). Now every socket stays open and presence settles at the exact count.
"""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.support.clients import FRAME_TIMEOUT, RoomClient, as_guest, create_room, unique
from tests.support.servers import serve_node  # noqa: F401

pytestmark = pytest.mark.serve

GUESTS = 300
AT_A_TIME = 50


async def test_300_guests_joining_50_at_a_time_all_stay_and_presence_settles(serve_node):  # noqa: F811
    node = serve_node(node_id=unique("party"))
    async with httpx.AsyncClient(base_url=node.base_url, timeout=FRAME_TIMEOUT) as http:
        host = await as_guest(http, "Host")
        room = await create_room(http, host, "Watch party")
        tokens = await asyncio.gather(*(as_guest(http, f"guest {n}") for n in range(GUESTS)))

    clients: list[RoomClient] = []

    async def join(token: str, label: str) -> RoomClient:
        socket = await connect(
            node.room_socket_url(room["id"], token), open_timeout=FRAME_TIMEOUT, close_timeout=2
        )
        client = RoomClient(socket, label)
        clients.append(client)
        await client.wait_until(lambda: client.frames, "snapshot")
        return client

    try:
        watcher = await join(host, "host")
        for start in range(0, GUESTS, AT_A_TIME):
            batch = tokens[start : start + AT_A_TIME]
            await asyncio.gather(*(join(t, f"guest{start + i}") for i, t in enumerate(batch)))

        everyone = GUESTS + 1
        await watcher.wait_until(
            lambda: any(
                f["type"] == "presence" and f["viewer_count"] == everyone
                for f in watcher.frames[-3:]
            ),
            f"presence with {everyone} viewers",
            within=20,
        )
        closed = [(c.label, c.close_code) for c in clients if c.closed.is_set()]
        assert not closed, f"{len(closed)} sockets closed: {closed[:5]}"
        assert all(c.frames[0]["type"] == "snapshot" for c in clients)
        last = [f for f in watcher.frames if f["type"] == "presence"][-1]
        assert len(last["online"]) == 100  # the first 100 by join time, SPEC §4
        assert last["online"][0]["role"] == "creator"
        # Joining stays linear: far fewer presence frames than joins reached the host.
        assert len([f for f in watcher.frames if f["type"] == "presence"]) < GUESTS // 4
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                await client.close()

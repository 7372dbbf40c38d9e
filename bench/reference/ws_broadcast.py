#!/usr/bin/env python
"""Plain `websockets` broadcast server, no Django: the floor SyncTV is measured against.

`/ws/rooms/<room>/` joins the room; every text frame received is sent as is to all the
room's sockets (the sender too) with `websockets.broadcast()`, which skips a socket whose
write buffer is full instead of waiting for it. Usage: `ws_broadcast.py --port P`.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections import defaultdict

import websockets
from websockets.asyncio.server import ServerConnection, serve

rooms: defaultdict[str, set[ServerConnection]] = defaultdict(set)


def room_of(path: str) -> str | None:
    """The room of `/ws/rooms/<room>/`, None for any other path."""
    parts = path.split("?", 1)[0].strip("/").split("/")
    if len(parts) == 3 and parts[:2] == ["ws", "rooms"] and parts[2]:
        return parts[2]
    return None


async def member(connection: ServerConnection) -> None:
    """One socket: in its room until it closes; its frames go to the whole room."""
    room = room_of(connection.request.path if connection.request else "")
    if room is None:
        await connection.close(4004, "no such path: use /ws/rooms/<room>/")
        return
    members = rooms[room]
    members.add(connection)
    try:
        async for message in connection:
            websockets.broadcast(members, message)
    finally:
        members.discard(connection)
        if not members:
            rooms.pop(room, None)


async def serve_forever(host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT."""
    stop = asyncio.get_running_loop().create_future()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set_result, None)
    async with serve(member, host, port, compression=None, ping_interval=None):
        print(f"ws_broadcast listening on {host}:{port}", flush=True)
        await stop


def main() -> None:
    """Parse the address and serve."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(serve_forever(args.host, args.port))


if __name__ == "__main__":
    main()

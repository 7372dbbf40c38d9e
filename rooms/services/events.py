"""Publishing room events: encode once, send after the transaction commits."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import time
from collections.abc import Collection
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from cluster.layer import BROADCAST, LOCAL_ONLY, Route
from monitoring.metrics import ALL_ROOMS, EVENT_PUBLISH_DURATION, count_published
from rooms.codes import CLOSE_ERROR, CloseCode
from rooms.loops import start_task

logger = logging.getLogger(__name__)

# Layer message types, handled by RoomConsumer.room_event / room_close / server_shutdown.
ROOM_EVENT = "room.event"
ROOM_CLOSE = "room.close"
SERVER_SHUTDOWN = "server.shutdown"

# Groups named `local.*` never leave this node.
LOCAL_GROUP_PREFIX = "local."
# Every socket of this node: the shutdown notice.
NODE_SOCKETS_GROUP = f"{LOCAL_GROUP_PREFIX}sockets"


def room_group(room_id: str) -> str:
    """Every connection of a room."""
    return f"room.{room_id}"


def member_group(room_id: str, user_id: int) -> str:
    """Every connection of one user in one room (kicks, bans)."""
    return f"member.{room_id}.{user_id}"


def user_group(user_id: int) -> str:
    """Every connection of one user, in any room, on any node (an account deactivated)."""
    return f"user.{user_id}"


def route_group(group: str) -> Route:
    """The channel layer's routing function (its `routing` option) for the groups above.

    `local.*` stays on this node; `room.<id>` and `member.<id>.<user>` travel on room <id>'s
    Redis channel, which only nodes with members of that room subscribe to; anything else
    (`user.<id>`) goes to every node.
    """
    if group.startswith(LOCAL_GROUP_PREFIX):
        return LOCAL_ONLY
    kind, _, rest = group.partition(".")
    if kind == "room" and rest:
        return Route(room=rest)
    if kind == "member" and "." in rest:
        return Route(room=rest.split(".", 1)[0])
    return BROADCAST


def encode(frame: dict[str, Any]) -> str:
    """A frame's JSON text, made once per event and shared by every recipient."""
    return json.dumps(frame, separators=(",", ":"), allow_nan=False)


def error_frame(code: str, message: str, req_id: Any = None) -> dict[str, Any]:
    """An `error` frame."""
    frame: dict[str, Any] = {"type": "error", "code": str(code), "message": message}
    if req_id is not None:
        frame["req_id"] = req_id
    return frame


# The consumers' event loop, once a socket has connected (RoomConsumer.connect).
_loop: asyncio.AbstractEventLoop | None = None


def use_event_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Publish this process's room events on `loop`, the one its sockets are served by."""
    global _loop
    _loop = loop


def _send(group: str, message: dict[str, Any], room_id: str, event_type: str) -> None:
    started = time.perf_counter()
    loop = _loop
    if loop is None:  # no socket served yet (or a worker process): wait for the send
        async_to_sync(get_channel_layer().group_send)(group, message)
        EVENT_PUBLISH_DURATION.observe(time.perf_counter() - started)
    else:
        # Handed to the loop without waiting: the database thread goes on with the next
        # command at once (docs/performance.md, commands). Events handed over in order are
        # sent in order: the loop runs its callbacks, and the tasks they start, first in,
        # first out, and group_send never waits. A fresh context: a database thread's
        # (asgiref's executor state) must not leak into the task.
        try:
            loop.call_soon_threadsafe(
                _start_send, loop, group, message, started, context=contextvars.Context()
            )
        except RuntimeError:  # the loop has closed: the process is stopping
            logger.warning("event loop closed: a room event was not sent", extra={"group": group})
            return
    count_published(room_id, event_type)


def _start_send(
    loop: asyncio.AbstractEventLoop, group: str, message: dict[str, Any], started: float
) -> None:
    start_task(loop, _group_send(group, message, started))


async def _group_send(group: str, message: dict[str, Any], started: float) -> None:
    try:
        await get_channel_layer().group_send(group, message)
    except Exception:
        logger.exception("a room event could not be published", extra={"group": group})
    EVENT_PUBLISH_DURATION.observe(time.perf_counter() - started)


# The rooms of a node that died (or crashed and restarted) are re-read by every other node,
# with the chat of this last stretch: what it had not yet published reached nobody.
DEAD_NODE_WINDOW_MS = 60_000


def announce_changed(room_ids: Collection[str], since_ms: int) -> None:
    """Have every other node re-read these rooms from the database (from a thread that a
    running event loop started, such as a job's)."""
    if not room_ids:
        return

    async def announce() -> None:
        get_channel_layer().announce_changed(room_ids, since_ms)

    async_to_sync(announce)()


def event_message(frame: dict[str, Any], receipt: str | None = None) -> dict[str, Any]:
    """The layer message that carries one frame, encoded once for every recipient; with a
    `receipt`, every node remembers it was handed to the group's members."""
    message = {"type": ROOM_EVENT, "text": encode(frame), "published_at": time.time()}
    if receipt is not None:
        message["receipt"] = receipt
    return message


def chat_receipt(message_id: int, deleted: bool = False) -> str:
    """The receipt of a chat message's event (or of its deletion's): a re-read after an
    outage does not repeat it."""
    return f"chat_deleted:{message_id}" if deleted else f"chat:{message_id}"


def close_message(frame: dict[str, Any], code: CloseCode, reason: str) -> dict[str, Any]:
    """The layer message that sends `frame`, then the matching `error`, then closes."""
    texts = [encode(frame), encode(error_frame(CLOSE_ERROR[code], reason))]
    return {"type": ROOM_CLOSE, "texts": texts, "code": int(code), "published_at": time.time()}


def publish(
    room_id: str, frame: dict[str, Any], group: str | None = None, receipt: str | None = None
) -> None:
    """Send `frame` to every connection of the room (or of `group`) once the write commits."""
    message = event_message(frame, receipt)
    target = group or room_group(room_id)
    transaction.on_commit(lambda: _send(target, message, room_id, frame["type"]))


def publish_close(
    room_id: str, frame: dict[str, Any], code: CloseCode, reason: str, group: str | None = None
) -> None:
    """Send `frame`, then the matching `error`, then close every connection of the group."""
    message = close_message(frame, code, reason)
    target = group or room_group(room_id)
    transaction.on_commit(lambda: _send(target, message, room_id, frame["type"]))


def publish_user_close(user_id: int, frame: dict[str, Any], code: CloseCode, reason: str) -> None:
    """Send `frame`, then the matching `error`, then close every connection of a user, in
    every room on every node, once the write commits."""
    message = close_message(frame, code, reason)
    target = user_group(user_id)
    # Counted under room `*`: it is no one room's event.
    transaction.on_commit(lambda: _send(target, message, ALL_ROOMS, frame["type"]))

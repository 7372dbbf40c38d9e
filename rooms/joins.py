"""Sockets that join or leave together share their database work (issue 7, watch parties).

A join writes the socket's presence row and reads what its snapshot shares with the rest of
the room. Done one socket at a time, a wave of 100 guests made 100 INSERTs, 100 reads of
the same room and 100 encodings of the same JSON. Here the sockets of one event loop queue
their joins and leaves; one database call at a time takes everything queued (up to
MAX_BATCH) and, for the whole batch, inserts the rows in one statement, deletes the leavers'
in another, and reads and encodes each joined room once. A lone join in a quiet room is
flushed at once (no timer): batches only form while a call is already running, so batching
never adds latency, it only takes away queueing.

The batcher also counts the sockets whose join completed (`present`), so the node can tell
when its presence rows were cleared while its sockets stayed open (another node took it for
dead during a partition): `reclaim_lost_presence` then has every socket write its row again.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import get_user_model

from rooms.db import database_call
from rooms.loops import per_loop
from rooms.models import Membership
from rooms.permissions import MemberStatus
from rooms.services import presence
from rooms.services.events import NODE_SOCKETS_GROUP, encode
from rooms.services.snapshot import room_view

logger = logging.getLogger(__name__)

MAX_BATCH = 200
# The layer message that has every socket of this node write its presence row again.
PRESENCE_RECLAIM = "presence.reclaim"


@dataclass
class Batch:
    """What one database call does: sockets joining and leaving."""

    joins: list[tuple[str, str, int]] = field(default_factory=list)  # connection, room, user
    leaves: list[tuple[str, str]] = field(default_factory=list)  # connection, room
    reclaims: list[tuple[str, str, int]] = field(default_factory=list)  # as joins


@dataclass
class BatchResult:
    """Each joined room's shared snapshot part, encoded (None: the room is gone), the
    joining connections whose room was deleted before their row could be written, and
    those whose user was banned or deactivated since admission."""

    rooms: dict[str, str | None]
    gone: set[str]
    refused: set[str] = field(default_factory=set)


class JoinRefused(Exception):
    """The socket's user was banned from the room, or deactivated, after its admission."""


def refused_since_admission(joins: list[tuple[str, str, int]]) -> set[str]:
    """Joining connections whose user is banned from the room or deactivated now.

    Admission checked both, but a ban or deactivation committed before the socket joined
    its groups reached none of them; read after the groups are joined, any later one
    reaches the socket there, so no socket stays open past its ban."""
    users = {user for _, _, user in joins}
    inactive = set(
        get_user_model().objects.filter(id__in=users, is_active=False).values_list("id", flat=True)
    )
    banned = set(
        Membership.objects.filter(
            room_id__in={room for _, room, _ in joins},
            user_id__in=users,
            status=MemberStatus.BANNED,
        ).values_list("room_id", "user_id")
    )
    return {
        connection for connection, room, user in joins if user in inactive or (room, user) in banned
    }


def run_batch(batch: Batch, node_id: str, chat_history: int) -> BatchResult:
    """Write the batch's presence changes, then read and encode every joined room once."""
    refused = refused_since_admission(batch.joins) if batch.joins else set()
    joining = [entry for entry in batch.joins if entry[0] not in refused]
    gone = presence.connect_many(joining, node_id) if joining else set()
    if batch.leaves:
        presence.disconnect_many(batch.leaves)
    if batch.reclaims:
        presence.reclaim_many(batch.reclaims, node_id)
    rooms: dict[str, str | None] = {}
    for room_id in dict.fromkeys(room for _, room, _ in joining):
        view = room_view(room_id, chat_history)
        rooms[room_id] = None if view is None else encode(view)
    return BatchResult(rooms, gone, refused)


class JoinBatcher:
    """One event loop's queue of joins and leaves, drained by one database call at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.joins: list[tuple[tuple[str, str, int], asyncio.Future[str | None]]] = []
        self.leaves: list[tuple[tuple[str, str], asyncio.Future[None]]] = []
        self.reclaims: list[tuple[str, str, int]] = []
        self.task: asyncio.Task | None = None
        # Sockets of this loop whose join completed and whose leave has not begun: each has
        # a presence row, written before it counts here and deleted after it stops counting.
        self.present = 0

    async def join(self, connection_id: str, room_id: str, user_id: int) -> str | None:
        """Record the socket as online; the room's shared snapshot part, encoded, or None
        when the room is gone."""
        future: asyncio.Future[str | None] = self.loop.create_future()
        self.joins.append(((connection_id, room_id, user_id), future))
        self._start()
        return await future

    async def leave(self, connection_id: str, room_id: str) -> None:
        """Forget the socket's presence."""
        future: asyncio.Future[None] = self.loop.create_future()
        self.leaves.append(((connection_id, room_id), future))
        self._start()
        await future

    def reclaim(self, connection_id: str, room_id: str, user_id: int) -> None:
        """Write the socket's presence row again if it is missing (in the next batch)."""
        self.reclaims.append((connection_id, room_id, user_id))
        self._start()

    def _start(self) -> None:
        if self.task is None or self.task.done():
            self.task = self.loop.create_task(self._drain())

    async def _drain(self) -> None:
        while self.joins or self.leaves or self.reclaims:
            joins, self.joins = self.joins[:MAX_BATCH], self.joins[MAX_BATCH:]
            space = max(0, MAX_BATCH - len(joins))
            leaves, self.leaves = self.leaves[:space], self.leaves[space:]
            space = max(0, space - len(leaves))
            reclaims, self.reclaims = self.reclaims[:space], self.reclaims[space:]
            batch = Batch([entry for entry, _ in joins], [entry for entry, _ in leaves], reclaims)
            try:
                result = await database_call(run_batch)(
                    batch, settings.SYNCTV_NODE_ID, settings.SYNCTV.websocket.chat_history
                )
            except Exception as exc:
                logger.exception("presence could not be written")
                futures: list[asyncio.Future[Any]] = [future for _, future in joins]
                futures += [future for _, future in leaves]
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (connection_id, room_id, _), future in joins:
                if future.done():
                    continue
                if connection_id in result.refused:
                    future.set_exception(JoinRefused("you may no longer join this room"))
                else:
                    gone = connection_id in result.gone
                    future.set_result(None if gone else result.rooms.get(room_id))
            for _, future in leaves:
                if not future.done():
                    future.set_result(None)


_batchers: dict[asyncio.AbstractEventLoop, JoinBatcher] = {}


def batcher() -> JoinBatcher:
    """The running event loop's batcher."""
    return per_loop(_batchers, JoinBatcher)


async def reclaim_lost_presence() -> None:
    """Fewer presence rows for this node than sockets present: another node cleared them
    (it took this one for dead while it was cut off from Redis). Every socket of the node
    then writes its row again. Run by the node registry after each heartbeat."""
    present = batcher().present
    if not present:
        return
    node_id = settings.SYNCTV_NODE_ID
    rows = await database_call(presence.count_on_node)(node_id)
    if rows < present:
        logger.warning(
            "presence rows of this node were cleared while its sockets stayed open:"
            " writing them again",
            extra={"rows": rows, "sockets": present},
        )
        get_channel_layer().deliver_locally(NODE_SOCKETS_GROUP, {"type": PRESENCE_RECLAIM})

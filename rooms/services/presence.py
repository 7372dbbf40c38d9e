"""Presence: which users have sockets open in a room, on any node (kept in the database).

A join or a leave does not send `presence` at once: it asks this process's
`PresenceCoalescer`, which sends at most one frame per room per PRESENCE_INTERVAL_S, read
from the database when it goes out (SPEC §4), so filling a room of N costs O(N) frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Count, Min

from rooms.db import database_call
from rooms.loops import start_task
from rooms.models import Membership, Presence
from rooms.payloads import user_fields
from rooms.services.events import publish

logger = logging.getLogger(__name__)

PRESENCE_INTERVAL_S = 0.5  # at most one `presence` frame per room per this (SPEC §4)
ONLINE_LIMIT = 100  # `online` lists the first 100 users by join time; viewer_count is exact


def online(room_id: str) -> tuple[list[dict[str, Any]], int]:
    """`[{user, role, connections}]` of the first ONLINE_LIMIT users by join time, and the
    exact viewer count (distinct users).

    Three small queries, whatever the room's size: the count, the first users (limited in
    SQL) and their memberships as plain rows. A join reads this for its snapshot, so it
    must not grow with the room (issue 7: a watch party of 2,000).
    """
    present = Presence.objects.filter(room_id=room_id)
    viewers = present.values("user_id").distinct().count()
    shown = list(
        present.values("user_id")
        .annotate(n=Count("connection_id"), since=Min("connected_at"))
        .order_by("since", "user_id")[:ONLINE_LIMIT]
    )
    # Only members are admitted to a socket, so every online user has a membership (a role).
    members = {
        row["user_id"]: row
        for row in Membership.objects.filter(
            room_id=room_id, user_id__in=[row["user_id"] for row in shown]
        ).values(
            "user_id",
            "role",
            "user__username",
            "user__synctv_profile__display_name",
            "user__synctv_profile__is_guest",
        )
    }
    entries = [
        {
            "user": _user_of(members[row["user_id"]]),
            "role": members[row["user_id"]]["role"],
            "connections": row["n"],
        }
        for row in shown
        if row["user_id"] in members
    ]
    return entries, viewers


def _user_of(row: Any) -> dict[str, Any]:
    """The `user` of an online entry, from a membership row of `online()`."""
    return user_fields(
        row["user_id"],
        row["user__username"],
        row["user__synctv_profile__display_name"],
        row["user__synctv_profile__is_guest"],
    )


def publish_presence(room_id: str) -> None:
    """Tell the room who is online, with their roles: `presence {online, viewer_count}`."""
    entries, viewers = online(room_id)
    publish(room_id, {"type": "presence", "online": entries, "viewer_count": viewers})


class PresenceCoalescer:
    """This process's `presence` sender, on its event loop: the first change of a quiet room
    goes out at once, later ones within PRESENCE_INTERVAL_S are merged into one frame."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pending: set[str] = set()
        self.last_sent: dict[str, float] = {}

    @property
    def usable(self) -> bool:
        """Whether its loop still runs (a loop of a finished test or command does not)."""
        return self.loop.is_running() and not self.loop.is_closed()

    def request(self, room_id: str) -> None:
        """Ask for a `presence` frame for the room; safe from any thread."""
        # A fresh context: the caller's (a database thread's, with asgiref's executor state)
        # must not leak into the task that sends, or asgiref sees a deadlock.
        self.loop.call_soon_threadsafe(self._schedule, room_id, context=contextvars.Context())

    def _schedule(self, room_id: str) -> None:
        if room_id in self.pending:
            return
        self.pending.add(room_id)
        due = self.last_sent.get(room_id, float("-inf")) + PRESENCE_INTERVAL_S
        self.loop.call_later(max(0.0, due - time.monotonic()), self._fire, room_id)

    def _fire(self, room_id: str) -> None:
        start_task(self.loop, self._send(room_id))

    async def _send(self, room_id: str) -> None:
        # Changes made while this frame is read schedule the next one.
        self.pending.discard(room_id)
        self.last_sent[room_id] = time.monotonic()
        self.loop.call_later(PRESENCE_INTERVAL_S, self._forget, room_id)
        try:
            await database_call(publish_presence)(room_id)
        except Exception:
            logger.exception("presence could not be sent", extra={"room_id": room_id})

    def _forget(self, room_id: str) -> None:
        sent = self.last_sent.get(room_id)
        if sent is not None and time.monotonic() - sent >= PRESENCE_INTERVAL_S:
            del self.last_sent[room_id]


_coalescer: PresenceCoalescer | None = None


def use_event_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Send this process's presence frames from `loop` (the consumers' loop)."""
    global _coalescer
    if _coalescer is None or _coalescer.loop is not loop:
        _coalescer = PresenceCoalescer(loop)


def request_presence(room_id: str) -> None:
    """A `presence` frame for the room, coalesced, once the current transaction commits;
    sent at once where no consumer loop runs (workers, management commands)."""
    coalescer = _coalescer
    if coalescer is None or not coalescer.usable:
        publish_presence(room_id)
        return
    transaction.on_commit(lambda: coalescer.request(room_id))


def connect(connection_id: str, room_id: str, user_id: int, node_id: str) -> None:
    """Record an open socket and tell the room who is online."""
    connect_many([(connection_id, room_id, user_id)], node_id)


def connect_many(sockets: list[tuple[str, str, int]], node_id: str) -> set[str]:
    """Record open sockets `(connection_id, room_id, user_id)` in one INSERT where it can,
    and tell their rooms who is online; returns the connection ids of rooms that are gone.

    One socket whose room was deleted meanwhile must not fail the others: then each row is
    tried on its own.
    """
    rows = [
        Presence(connection_id=connection, room_id=room, user_id=user, node_id=node_id)
        for connection, room, user in sockets
    ]
    gone: set[str] = set()
    try:
        with transaction.atomic():
            Presence.objects.bulk_create(rows)
    except IntegrityError:
        for row in rows:
            try:
                with transaction.atomic():
                    row.save(force_insert=True)
            except IntegrityError:
                gone.add(row.connection_id)
    for room_id in {row.room_id for row in rows if row.connection_id not in gone}:
        request_presence(room_id)
    return gone


def reclaim_many(sockets: list[tuple[str, str, int]], node_id: str) -> None:
    """Write again the rows of open sockets `(connection_id, room_id, user_id)` that were
    cleared while they stayed open (their node was taken for dead); rows still there are
    kept, a socket whose room is gone is skipped. Tells their rooms who is online."""
    rows = [
        Presence(connection_id=connection, room_id=room, user_id=user, node_id=node_id)
        for connection, room, user in sockets
    ]
    try:
        with transaction.atomic():
            Presence.objects.bulk_create(rows, ignore_conflicts=True)
    except IntegrityError:  # a room deleted meanwhile: the others still go in
        for row in rows:
            with contextlib.suppress(IntegrityError), transaction.atomic():
                Presence.objects.bulk_create([row], ignore_conflicts=True)
    for room_id in {row.room_id for row in rows}:
        request_presence(room_id)


def count_on_node(node_id: str) -> int:
    """How many open sockets the database records for a node."""
    return Presence.objects.filter(node_id=node_id).count()


def disconnect(connection_id: str, room_id: str) -> None:
    """Forget a closed socket and tell the room who is online."""
    disconnect_many([(connection_id, room_id)])


def disconnect_many(sockets: list[tuple[str, str]]) -> None:
    """Forget closed sockets `(connection_id, room_id)` in one DELETE; tell their rooms."""
    deleted, _ = Presence.objects.filter(
        connection_id__in=[connection for connection, _ in sockets]
    ).delete()
    if deleted:
        for room_id in {room for _, room in sockets}:
            request_presence(room_id)


def clear_node(node_id: str) -> set[str]:
    """Forget every socket of a node (at its start or shutdown, or dead); returns the rooms
    it had sockets in."""
    room_ids = set(Presence.objects.filter(node_id=node_id).values_list("room_id", flat=True))
    Presence.objects.filter(node_id=node_id).delete()
    for room_id in room_ids:
        request_presence(room_id)
    return room_ids


def node_ids() -> set[str]:
    """The nodes that hold sockets, according to the database."""
    return set(Presence.objects.values_list("node_id", flat=True).distinct())

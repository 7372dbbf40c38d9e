"""Re-reading rooms from the database: bring this node's sockets up to PostgreSQL's state.

The Redis bridge calls `resync_rooms` (its `on_recovered`) for rooms whose missed events it
cannot read back from their Redis Streams after a cut (docs/cluster.md, "Convergence after
an outage"), and for rooms another node announces it changed while it was cut off. For each
room the state is read once from PostgreSQL and handed to the local sockets only (every
other node does its own). Clients keep the highest playback/playlist version and ignore
chat ids they already have, so the frames are safe to repeat.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from rooms.codes import CloseCode
from rooms.loops import per_loop
from rooms.models import ChatMessage, Membership, Presence, Room
from rooms.payloads import chat_payload, me_payload, room_payload
from rooms.permissions import MemberStatus
from rooms.services import playback, playlist, presence
from rooms.services.events import (
    chat_receipt,
    close_message,
    event_message,
    member_group,
    room_group,
)

logger = logging.getLogger(__name__)

# Chat sent this long before the outage was noticed is repeated too (clocks, in-flight).
CHAT_MARGIN_MS = 5_000


def room_catch_up(
    room_id: str, since_ms: int, node_id: str, handed: Collection[str] = ()
) -> list[tuple[str, dict[str, Any]]]:
    """(group, layer message) pairs that bring this node's sockets of a room up to date.

    `handed`: receipts of the chat events (and deletions) its sockets already got: those
    are not repeated, and a chat they got that is gone from the database is deleted.
    """
    room = Room.objects.select_related("created_by__synctv_profile").filter(pk=room_id).first()
    if room is None:
        deleted = {"type": "room_deleted", "room_id": room_id}
        message = close_message(deleted, CloseCode.ROOM_NOT_FOUND, "the room was deleted")
        return [(room_group(room_id), message)]
    online, viewers = presence.online(room_id)
    frames: list[dict[str, Any]] = [
        {"type": "room", "room": room_payload(room, viewers)},
        {"type": "playback", "playback": playback.current(room_id), "by": None},
        {"type": "playlist", "playlist": playlist.playlist(room_id)},
        {"type": "presence", "online": online, "viewer_count": viewers},
    ]
    pairs = [(room_group(room_id), event_message(frame)) for frame in frames]
    pairs += [
        (room_group(room_id), message) for message in _chat_catch_up(room_id, since_ms, handed)
    ]
    pairs += _members_catch_up(room_id, node_id)
    return pairs


def _members_catch_up(room_id: str, node_id: str) -> list[tuple[str, dict[str, Any]]]:
    """Each local member's current role and permissions (`me`), and a kick for the banned."""
    local_users = Presence.objects.filter(room_id=room_id, node_id=node_id).values("user_id")
    memberships = Membership.objects.filter(
        room_id=room_id, user_id__in=local_users
    ).select_related("user__synctv_profile")
    pairs = []
    for membership in memberships:
        group = member_group(room_id, membership.user_id)
        if membership.status == MemberStatus.BANNED:
            frame: dict[str, Any] = {"type": "kicked", "room_id": room_id, "by": None}
            reason = "you were banned from this room"
            pairs.append((group, close_message(frame, CloseCode.NOT_ALLOWED, reason)))
        else:
            pairs.append((group, event_message({"type": "me", "me": me_payload(membership)})))
    return pairs


def _chat_catch_up(room_id: str, since_ms: int, handed: Collection[str]) -> list[dict[str, Any]]:
    """Chat the sockets missed since `since_ms` (plus a margin), and deletions of chat they
    got, each as a layer message with its receipt."""
    handed = set(handed)
    messages = []
    recent = (
        ChatMessage.objects.filter(room_id=room_id, sent_at__gte=since_ms - CHAT_MARGIN_MS)
        .select_related("user__synctv_profile")
        .order_by("id")
    )
    for chat in recent:
        receipt = chat_receipt(chat.id)
        if receipt not in handed:
            frame = {"type": "chat", "message": chat_payload(chat)}
            messages.append(event_message(frame, receipt))
    got = {int(receipt[len("chat:") :]) for receipt in handed if receipt.startswith("chat:")}
    deleted_seen = {receipt for receipt in handed if receipt.startswith("chat_deleted:")}
    kept = set(ChatMessage.objects.filter(room_id=room_id, id__in=got).values_list("id", flat=True))
    for gone in sorted(got - kept):
        receipt = chat_receipt(gone, deleted=True)
        if receipt not in deleted_seen:
            messages.append(event_message({"type": "chat_deleted", "id": gone}, receipt))
    return messages


_turns: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}


async def resync_rooms(room_ids: set[str], since_ms: int) -> None:
    """Push each room's current state to this node's sockets (called by the Redis bridge).

    One re-read at a time per loop: two at once (after an outage, and for another node's
    announcement) would both find the same chat not yet handed out, and both send it.
    """
    layer = get_channel_layer()
    node_id = settings.SYNCTV_NODE_ID
    async with per_loop(_turns, lambda loop: asyncio.Lock()):
        for room_id in room_ids:
            try:
                handed = [r for r in layer.receipts(room_group(room_id)) if isinstance(r, str)]
                pairs = await database_sync_to_async(room_catch_up)(
                    room_id, since_ms, node_id, handed
                )
            except Exception:
                logger.exception("resync failed", extra={"room_id": room_id})
                continue
            for group, message in pairs:
                layer.deliver_locally(group, message)
    logger.info("resynced rooms", extra={"rooms": len(room_ids)})

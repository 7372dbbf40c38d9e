"""The `snapshot` a socket receives on connect: everything a client needs to join in."""

from __future__ import annotations

from typing import Any

from rooms.models import Membership, Room
from rooms.payloads import me_payload, room_payload
from rooms.services import chat, playback, playlist, presence


def build_snapshot(room: Room, membership: Membership, chat_history: int) -> dict[str, Any]:
    """Room, me, playback, playlist, who is online and recent chat, read from the database."""
    online, viewers = presence.online(room.id)
    return {
        "type": "snapshot",
        "room": room_payload(room, viewers),
        "me": me_payload(membership),
        "playback": playback.current(room.id),
        "playlist": playlist.playlist(room.id),
        "online": online,
        "viewer_count": viewers,
        "chat": chat.recent(room.id, chat_history) if chat_history else [],
    }

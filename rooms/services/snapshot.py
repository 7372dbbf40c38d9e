"""The `snapshot` a socket receives on connect: everything a client needs to join in.

Most of it is the same for every socket of a room at a given moment (room, playback,
playlist, who is online, recent chat); only `me` and the connection's own fields differ.
Sockets that join together (rooms/joins.py) share one read of the room and one encoding
of that common part, and each one's frame is its own few fields spliced in front of it.
"""

from __future__ import annotations

from typing import Any

from rooms.models import PlaybackState, Room
from rooms.payloads import playback_payload, playlist_payload, room_payload
from rooms.services import chat, playlist, presence
from rooms.services.events import encode


def room_view(room_id: str, chat_history: int) -> dict[str, Any] | None:
    """The part of a snapshot every socket of the room shares, read from the database now;
    None when the room is gone."""
    room = (
        Room.objects.select_related("created_by__synctv_profile", "playback")
        .filter(pk=room_id)
        .first()
    )
    if room is None:
        return None
    try:
        state = room.playback
    except PlaybackState.DoesNotExist:
        return None
    online, viewers = presence.online(room.id)
    return {
        "room": room_payload(room, viewers),
        "playback": playback_payload(state),
        "playlist": playlist_payload(room.playlist_version, playlist.movies(room.id)),
        "online": online,
        "viewer_count": viewers,
        "chat": chat.recent(room.id, chat_history) if chat_history else [],
    }


def snapshot_text(head: dict[str, Any], shared_text: str) -> str:
    """One socket's `snapshot` frame: its own fields (`head`: type, me, ids, time) followed
    by the room's shared part, already encoded once (an object with other keys)."""
    return f"{encode(head)[:-1]},{shared_text[1:]}"

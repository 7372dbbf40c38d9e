"""How rooms, users, movies, playback and chat look on the wire (HTTP and WebSocket alike)."""

from __future__ import annotations

import time
from typing import Any

from rooms.models import ChatMessage, Membership, Movie, PlaybackState, Room
from rooms.permissions import effective_permissions


def now_ms() -> int:
    """Server time in epoch milliseconds, the unit of every timestamp on the wire."""
    return int(time.time() * 1000)


def user_payload(user: Any) -> dict[str, Any] | None:
    """`{id, username, name, is_guest}`; None for a deleted user."""
    if user is None:
        return None
    profile = getattr(user, "synctv_profile", None)
    return user_fields(
        user.id,
        user.username,
        profile.display_name if profile else None,
        bool(profile and profile.is_guest),
    )


def user_fields(
    user_id: int, username: str, display_name: str | None, is_guest: bool | None
) -> dict[str, Any]:
    """`user_payload` from plain values (rows read with `.values()`); no profile: None."""
    return {
        "id": user_id,
        "username": username,
        "name": display_name if display_name is not None else username,
        "is_guest": bool(is_guest),
    }


def room_payload(room: Room, viewer_count: int = 0) -> dict[str, Any]:
    """A room as the API and the `room` event show it (never its password hash)."""
    return {
        "id": room.id,
        "name": room.name,
        "has_password": bool(room.password),
        "hidden": room.hidden,
        "settings": room.settings,
        "created_by": user_payload(room.created_by),
        "created_at": int(room.created_at.timestamp() * 1000),
        "viewer_count": viewer_count,
    }


def room_summary(room: Room, viewer_count: int) -> dict[str, Any]:
    """One entry of the public room list."""
    return {
        "id": room.id,
        "name": room.name,
        "has_password": bool(room.password),
        "viewer_count": viewer_count,
        "created_by": user_payload(room.created_by),
    }


def subtitle_payload(track: dict[str, Any]) -> dict[str, str]:
    """One WebVTT track of a movie: `{url, label, lang}` (`lang` may be "")."""
    return {
        "url": track.get("url", ""),
        "label": track.get("label", ""),
        "lang": track.get("lang", ""),
    }


def movie_payload(movie: Movie) -> dict[str, Any]:
    """One playlist entry, with its subtitle tracks (always a list)."""
    return {
        "id": movie.id,
        "url": movie.url,
        "title": movie.title,
        "type": movie.type,
        "position": movie.position,
        "subtitles": [subtitle_payload(track) for track in movie.subtitles or []],
    }


def playlist_payload(version: int, movies: list[Movie]) -> dict[str, Any]:
    """The whole playlist with its version."""
    return {"version": version, "movies": [movie_payload(movie) for movie in movies]}


def playback_payload(state: PlaybackState) -> dict[str, Any]:
    """The versioned playback state; `position` is the position at `updated_at`."""
    return playback_fields(
        state.movie_id, state.position, state.playing, state.rate, state.version, state.updated_at
    )


def playback_fields(
    movie_id: str | None,
    position: float,
    playing: bool,
    rate: float,
    version: int,
    updated_at: int,
) -> dict[str, Any]:
    """`playback_payload` from plain values (a row an UPDATE returned)."""
    return {
        "movie_id": movie_id,
        "position": position,
        "playing": playing,
        "rate": rate,
        "version": version,
        "updated_at": updated_at,
    }


def chat_payload(message: ChatMessage) -> dict[str, Any]:
    """One chat line."""
    return {
        "id": message.id,
        "user": user_payload(message.user),
        "text": message.text,
        "sent_at": message.sent_at,
    }


def member_payload(membership: Membership, online: bool = False) -> dict[str, Any]:
    """One member of a room, with the permissions that apply to them."""
    return {
        "user": user_payload(membership.user),
        "role": membership.role,
        "status": membership.status,
        "permissions": effective_permissions(membership.role, membership.permissions),
        "online": online,
    }


def me_payload(membership: Membership) -> dict[str, Any]:
    """The `me` part of a snapshot: who this connection is in the room."""
    return {
        "user": user_payload(membership.user),
        "role": membership.role,
        "permissions": effective_permissions(membership.role, membership.permissions),
    }

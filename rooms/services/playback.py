"""Playback: play, pause, seek, rate and set_movie, each one atomic UPDATE that bumps the version."""

from __future__ import annotations

import math
from typing import Any

from django.db import connection, transaction

from rooms.errors import bad_request, not_found
from rooms.models import Movie, PlaybackState
from rooms.payloads import now_ms, playback_fields, playback_payload, user_payload
from rooms.permissions import Permission
from rooms.services.events import publish
from rooms.services.rooms import has_nul, lock_room, require_permission

MIN_RATE = 0.25
MAX_RATE = 4.0


# `position` re-anchored at the command's time: it only moves while playing. In SET, every
# column names its value from before the UPDATE (SQL semantics, PostgreSQL and SQLite alike).
POSITION_NOW = object()
_POSITION_NOW_SQL = (
    "CASE WHEN playing THEN position + (%s - updated_at) / 1000.0 * rate ELSE position END"
)
_COLUMNS = ("movie_id", "position", "playing", "rate")
_TABLE = PlaybackState._meta.db_table
# A longer id names no movie, and PostgreSQL refuses to write it into movie_id at all.
_MOVIE_ID_LENGTH = Movie._meta.get_field("id").max_length or 0
# A movie becomes current only if it is in the room's playlist when the UPDATE runs.
_MOVIE_IN_ROOM_SQL = (
    f" AND EXISTS (SELECT 1 FROM {Movie._meta.db_table} WHERE id = %s AND room_id = %s)"
)


def _check_position(position: Any) -> float:
    if (
        isinstance(position, bool)
        or not isinstance(position, int | float)
        or not math.isfinite(position)
        or position < 0
    ):
        raise bad_request("position must be a finite number of seconds, at least 0")
    return float(position)


def bump(room_id: str, changes: dict[str, Any], by: Any = None) -> dict[str, Any]:
    """Apply `changes` in ONE UPDATE that also bumps the version; publish and return the state.

    `changes` maps columns of _COLUMNS to values, or `position` to POSITION_NOW. Written as
    one UPDATE … RETURNING rather than the ORM's update() and get(): a command's CPU was
    mostly Django compiling those two queries (docs/performance.md, commands). Outside a
    transaction it commits alone; inside one, its publish waits for the commit. A new
    `movie_id` applies only if that movie is in the room's playlist, checked in the same
    statement (else not_found).
    """
    now = now_ms()
    assignments, params = [], []
    for column, value in changes.items():
        if column not in _COLUMNS:
            raise ValueError(f"not a playback column: {column!r}")
        if value is POSITION_NOW:
            assignments.append(f"{column} = {_POSITION_NOW_SQL}")
            params.append(now)
        else:
            assignments.append(f"{column} = %s")
            params.append(value)
    movie_id = changes.get("movie_id")
    condition, condition_params = (
        ("", []) if movie_id is None else (_MOVIE_IN_ROOM_SQL, [movie_id, room_id])
    )
    sql = (
        f"UPDATE {_TABLE} SET {', '.join(assignments)}, version = version + 1, updated_at = %s"
        f" WHERE room_id = %s{condition}"
        " RETURNING movie_id, position, playing, rate, version, updated_at"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, now, room_id, *condition_params])
        row = cursor.fetchone()
    if row is None:
        if movie_id is not None:
            raise not_found(f"no movie {movie_id!r} in this room's playlist")
        raise not_found(f"no room {room_id!r}")
    movie_id, position, playing, rate, version, updated_at = row
    state = playback_fields(
        movie_id, float(position), bool(playing), float(rate), version, updated_at
    )
    publish(room_id, {"type": "playback", "playback": state, "by": user_payload(by)})
    return state


def change_playback(user: Any, room_id: str, action: str, **fields: Any) -> dict[str, Any]:
    """One client command (play, pause, seek, rate, set_movie) with its permission check."""
    if action == "set_movie":
        require_permission(room_id, user, Permission.SET_CURRENT_MOVIE)
        return set_movie(room_id, fields.get("movie_id"), by=user)
    require_permission(room_id, user, Permission.CONTROL_PLAYBACK)
    position = fields.get("position")
    if action in ("play", "pause"):
        anchor = _check_position(position) if position is not None else POSITION_NOW
        return bump(room_id, {"position": anchor, "playing": action == "play"}, by=user)
    if action == "seek":
        return bump(room_id, {"position": _check_position(position)}, by=user)
    if action == "rate":
        rate = fields.get("rate")
        if (
            isinstance(rate, bool)
            or not isinstance(rate, int | float)
            or not (MIN_RATE <= rate <= MAX_RATE)
        ):
            raise bad_request(f"rate must be a number from {MIN_RATE} to {MAX_RATE}")
        # Re-anchor the position at the old rate before the new one applies.
        return bump(room_id, {"position": POSITION_NOW, "rate": float(rate)}, by=user)
    raise bad_request(f"unknown playback action {action!r}")


def set_movie(room_id: str, movie_id: Any, by: Any = None) -> dict[str, Any]:
    """Make `movie_id` (or nothing, with None) the current movie, paused at 0.

    Under the room's lock, as playlist edits: a movie being deleted is either gone (not_found)
    or still there and then cleared by its deletion; it never stays current once deleted.
    """
    if movie_id is not None and (
        not isinstance(movie_id, str) or has_nul(movie_id) or len(movie_id) > _MOVIE_ID_LENGTH
    ):
        raise not_found(f"no movie {movie_id!r} in this room's playlist")
    with transaction.atomic():
        if not lock_room(room_id):
            raise not_found(f"no room {room_id!r}")
        return bump(room_id, {"movie_id": movie_id, "position": 0.0, "playing": False}, by=by)


def current(room_id: str) -> dict[str, Any]:
    """The room's playback state as stored."""
    state = PlaybackState.objects.filter(room_id=room_id).first()
    if state is None:
        raise not_found(f"no room {room_id!r}")
    return playback_payload(state)

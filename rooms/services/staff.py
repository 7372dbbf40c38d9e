"""What staff do in the admin: the changes the API makes, without a room role, each logged.

Every function here calls the same service the HTTP API calls (rooms, members, playlist,
chat, accounts), so clients see an admin change as they see any other: `room`, `playlist`,
`chat_deleted`, `room_deleted` + 4004, `kicked` + 4003. Each writes one INFO line naming
the staff user (`user_id`), the room and the target; the node and the request's
correlation id come from the log context (monitoring/logging.py).
"""

from __future__ import annotations

import logging
from typing import Any

from rooms.errors import forbidden
from rooms.models import Room
from rooms.services import accounts, chat, members, playlist, rooms

logger = logging.getLogger(__name__)


def _require_staff(user: Any) -> None:
    if not (getattr(user, "is_active", False) and getattr(user, "is_staff", False)):
        raise forbidden("only staff may do this")


def log_action(action: str, staff: Any, room_id: str | None = None, **targets: Any) -> None:
    """One INFO line `admin <action>` naming the staff user, the room and the targets."""
    logger.info(
        f"admin {action}", extra={"room_id": room_id, "user_id": staff.pk, "staff": True, **targets}
    )


def update_room(staff: Any, room_id: str, changes: dict[str, Any]) -> Room:
    """Change a room's name, password (hashed), hidden flag or settings; clients get `room`."""
    _require_staff(staff)
    room = rooms.change_room(room_id, changes)
    log_action("changed room", staff, room_id, fields=sorted(changes))
    return room


def delete_room(staff: Any, room_id: str) -> None:
    """Delete a room; its sockets on every node get `room_deleted` and close 4004."""
    _require_staff(staff)
    rooms.remove_room(room_id)
    log_action("deleted room", staff, room_id)


def update_member(staff: Any, room_id: str, user_id: int, changes: dict[str, Any]) -> None:
    """Change a member's role, permissions or status; a ban kicks the user's sockets (4003)."""
    members.staff_update_member(staff, room_id, user_id, changes)
    log_action("changed member", staff, room_id, target_user_id=user_id, changes=changes)


def add_movie(staff: Any, room_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Append a movie to a room's playlist; clients get `playlist`."""
    _require_staff(staff)
    movie = playlist.append_movie(room_id, by=staff, **fields)
    log_action("added movie", staff, room_id, movie_id=movie["id"])
    return movie


def update_movie(staff: Any, room_id: str, movie_id: str, changes: dict[str, Any]) -> None:
    """Change a movie's url, title or subtitles; clients get `playlist`."""
    _require_staff(staff)
    playlist.edit_movie(room_id, movie_id, changes)
    log_action("changed movie", staff, room_id, movie_id=movie_id, fields=sorted(changes))


def delete_movie(staff: Any, room_id: str, movie_id: str) -> None:
    """Remove a movie; clients get `playlist` (and `playback` if it was playing)."""
    _require_staff(staff)
    playlist.remove_movie(room_id, movie_id, by=staff)
    log_action("deleted movie", staff, room_id, movie_id=movie_id)


def delete_chat(staff: Any, room_id: str, message_id: int) -> None:
    """Delete a chat line, as `DELETE /api/rooms/{id}/chat/{message_id}`; clients get
    `chat_deleted {id}`."""
    _require_staff(staff)
    chat.delete_chat(staff, room_id, message_id)
    log_action("deleted chat message", staff, room_id, message_id=message_id)


def deactivate_user(staff: Any, user: Any) -> None:
    """Deactivate an account site-wide: tokens revoked, sessions refused, sockets closed 4003."""
    _require_staff(staff)
    if user.pk == staff.pk:
        raise forbidden("you cannot deactivate your own account")
    revoked = accounts.deactivate_user(user)
    log_action("deactivated user", staff, target_user_id=user.pk, tokens_revoked=revoked)


def close_sockets_of(staff: Any, user: Any) -> None:
    """Before staff delete an account: its sockets get `kicked` and close 4003 everywhere."""
    _require_staff(staff)
    accounts.close_user_sockets(user, "your account was deleted")
    log_action("deleted user", staff, target_user_id=user.pk)

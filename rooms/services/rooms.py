"""Rooms: create, read, change, delete, join, and admission of a WebSocket."""

from __future__ import annotations

import json
from typing import Any, NoReturn

from django.contrib.auth.hashers import check_password, make_password
from django.db import connection, transaction
from django.db.models import Count
from pydantic import BaseModel, ConfigDict, StrictBool, ValidationError

from rooms.codes import CloseCode
from rooms.errors import bad_request, forbidden, not_found
from rooms.models import Membership, PlaybackState, Room
from rooms.payloads import room_payload, room_summary
from rooms.permissions import (
    ADMIN_ROLES,
    DEFAULT_MEMBER_PERMISSIONS,
    MemberStatus,
    Permission,
    Role,
)
from rooms.services.events import publish, publish_close

MAX_PASSWORD_LENGTH = 128


def has_nul(text: Any) -> bool:
    """PostgreSQL text cannot hold NUL: such input is refused (or names nothing) before any query."""
    return isinstance(text, str) and "\x00" in text


class RoomSettings(BaseModel):
    """A room's settings: who may join and what a new member may do."""

    model_config = ConfigDict(extra="forbid")

    guests_allowed: StrictBool = True
    member_permissions: list[Permission] = list(DEFAULT_MEMBER_PERMISSIONS)


def _settings(raw: Any, base: dict | None = None) -> dict:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise bad_request("settings must be an object")
    try:
        parsed = RoomSettings.model_validate({**(base or {}), **raw})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise bad_request(f"settings.{where}: {first['msg']}") from None
    return parsed.model_dump(mode="json")


def room_settings(room: Room) -> RoomSettings:
    """The room's settings with defaults filled in."""
    return RoomSettings.model_validate(room.settings)


def _clean_room_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise bad_request("name must be a non-empty string")
    if has_nul(name):
        raise bad_request("name must not contain NUL characters")
    cleaned = " ".join(name.split())
    if len(cleaned) > 100:
        raise bad_request("name must be at most 100 characters")
    return cleaned


def _hash_password(password: Any) -> str:
    if password is None or password == "":
        return ""
    if not isinstance(password, str) or len(password) > MAX_PASSWORD_LENGTH:
        raise bad_request(f"password must be a string of at most {MAX_PASSWORD_LENGTH} characters")
    return make_password(password)


def get_room(room_id: str) -> Room:
    """The room, or 404."""
    rooms = Room.objects.select_related("created_by__synctv_profile")
    room = None if has_nul(room_id) else rooms.filter(pk=room_id).first()
    if room is None:
        raise not_found(f"no room {room_id!r}")
    return room


def viewer_count(room_id: str) -> int:
    """Distinct users connected to the room, on any node."""
    return Room.objects.filter(pk=room_id).aggregate(n=Count("presences__user", distinct=True))["n"]


def room_with_viewers(room: Room) -> dict[str, Any]:
    """The room payload with its live viewer count."""
    return room_payload(room, viewer_count(room.id))


def list_public_rooms() -> list[dict[str, Any]]:
    """Rooms that are not hidden, busiest first."""
    rooms = (
        Room.objects.filter(hidden=False)
        .select_related("created_by__synctv_profile")
        .annotate(viewers=Count("presences__user", distinct=True))
        .order_by("-viewers", "-created_at")
    )
    return [room_summary(room, room.viewers) for room in rooms]


def create_room(
    user: Any, name: Any, password: Any = None, hidden: Any = False, settings: Any = None
) -> Room:
    """A new room; its creator becomes its first member with role `creator`."""
    if not isinstance(hidden, bool):
        raise bad_request("hidden must be true or false")
    with transaction.atomic():
        room = Room.objects.create(
            name=_clean_room_name(name),
            password=_hash_password(password),
            hidden=hidden,
            settings=_settings(settings),
            created_by=user,
        )
        Membership.objects.create(room=room, user=user, role=Role.CREATOR, permissions=[])
        PlaybackState.objects.create(room=room)
    return room


def membership_of(room_id: str, user: Any) -> Membership | None:
    """The user's membership in the room, if any."""
    if user is None or not user.is_authenticated or has_nul(room_id):
        return None
    return (
        Membership.objects.select_related("user__synctv_profile")
        .filter(room_id=room_id, user=user)
        .first()
    )


def _refuse_inactive(room_id: str, status: str | None) -> NoReturn:
    """404 when there is no room, else 403: not a member (`status` None), or banned."""
    if status is None:
        get_room(room_id)
        raise forbidden("you are not a member of this room: join it first")
    raise forbidden("you are banned from this room")


def require_active_member(room_id: str, user: Any) -> Membership:
    """The caller's active membership, or 404 (no room) / 403 (not a member, banned)."""
    membership = membership_of(room_id, user)
    if membership is None or membership.status != MemberStatus.ACTIVE:
        _refuse_inactive(room_id, membership.status if membership else None)
    return membership


def _grant(room_id: str, user: Any) -> tuple[str, str, list[str]] | None:
    """The membership's role, status and granted permissions, in one plain query.

    Every socket command checks a permission first: Django's SQL compilation of the same
    lookup cost more CPU than the query itself (docs/performance.md, commands).
    """
    if user is None or not user.is_authenticated or has_nul(room_id):
        return None
    with connection.cursor() as cursor:
        cursor.execute(_GRANT_SQL, [room_id, user.id])
        row = cursor.fetchone()
    if row is None:
        return None
    role, status, permissions = row
    return role, status, json.loads(permissions) if isinstance(permissions, str) else permissions


_GRANT_SQL = (
    f"SELECT role, status, permissions FROM {Membership._meta.db_table}"
    " WHERE room_id = %s AND user_id = %s"
)


def require_permission(room_id: str, user: Any, permission: Permission) -> None:
    """Nothing if the caller is an active member carrying `permission`, else 404 / 403."""
    grant = _grant(room_id, user)
    if grant is None or grant[1] != MemberStatus.ACTIVE:
        _refuse_inactive(room_id, grant[1] if grant else None)
    role, _, permissions = grant
    if role not in ADMIN_ROLES and permission not in permissions:
        raise forbidden(f"you do not have the {permission} permission in this room")


def require_admin(room_id: str, user: Any) -> Membership:
    """The caller's membership if they are the creator or an admin, else 403."""
    membership = require_active_member(room_id, user)
    if membership.role not in ADMIN_ROLES:
        raise forbidden("only the room's creator and admins may do this")
    return membership


def update_room(user: Any, room_id: str, changes: dict[str, Any]) -> Room:
    """Change name, password, hidden or settings (admins); publishes `room`."""
    require_admin(room_id, user)
    return change_room(room_id, changes)


def change_room(room_id: str, changes: dict[str, Any]) -> Room:
    """Apply `update_room`'s changes without a room role (staff in the admin); publishes `room`."""
    allowed = {"name", "password", "hidden", "settings"}
    unknown = set(changes) - allowed
    if unknown:
        raise bad_request(
            f"cannot change {', '.join(sorted(unknown))}; allowed: name, password, hidden, settings"
        )
    with transaction.atomic():
        room = Room.objects.select_for_update().get(pk=room_id)
        if "name" in changes:
            room.name = _clean_room_name(changes["name"])
        if "password" in changes:
            room.password = _hash_password(changes["password"])
        if "hidden" in changes:
            if not isinstance(changes["hidden"], bool):
                raise bad_request("hidden must be true or false")
            room.hidden = changes["hidden"]
        if "settings" in changes:
            room.settings = _settings(changes["settings"], base=room.settings)
        room.save()
        room = get_room(room_id)
        publish(room_id, {"type": "room", "room": room_with_viewers(room)})
    return room


def lock_room(room_id: str) -> bool:
    """Lock the room's row until the transaction ends; False when there is no such room.

    Every change to a room's playlist or current movie takes this lock first, then the
    movies', then the playback's: one order, so two such changes never deadlock.
    """
    rooms = Room.objects.select_for_update().filter(pk=room_id)
    return rooms.values_list("pk", flat=True).first() is not None


def delete_room(user: Any, room_id: str) -> None:
    """Delete a room (creator only); its sockets get `room_deleted` and close 4004."""
    membership = require_active_member(room_id, user)
    if membership.role != Role.CREATOR:
        raise forbidden("only the room's creator may delete it")
    remove_room(room_id)


def remove_room(room_id: str) -> None:
    """Delete a room without a room role (staff in the admin); its sockets get `room_deleted`
    and close 4004, on every node."""
    with transaction.atomic():
        # The room's row first, as every playlist change does: the cascade then deletes
        # movies, which a reorder would otherwise lock in between.
        lock_room(room_id)
        Room.objects.filter(pk=room_id).delete()
        publish_close(
            room_id,
            {"type": "room_deleted", "room_id": room_id},
            CloseCode.ROOM_NOT_FOUND,
            "the room was deleted",
        )


def _admit(room: Room, user: Any, membership: Membership | None, password_ok: bool) -> Membership:
    """An existing active membership, or a new one when the room lets this user in."""
    if membership is not None:
        return admit_member(membership)
    profile = getattr(user, "synctv_profile", None)
    settings = room_settings(room)
    if profile is not None and profile.is_guest and not settings.guests_allowed:
        raise forbidden("this room does not admit guests: sign up or log in")
    if not password_ok:
        raise forbidden("this room has a password: join it with the password first")
    membership, _ = Membership.objects.get_or_create(
        room=room,
        user=user,
        defaults={"role": Role.MEMBER, "permissions": list(settings.member_permissions)},
    )
    return membership


def join_room(user: Any, room_id: str, password: Any = None) -> Membership:
    """Become a member (with the password where the room has one); 403 if wrong or banned."""
    room = get_room(room_id)
    membership = membership_of(room_id, user)
    password_ok = not room.password or (
        isinstance(password, str) and check_password(password, room.password)
    )
    if membership is None and not password_ok:
        raise forbidden("wrong room password")
    return _admit(room, user, membership, password_ok)


def admit_socket(user: Any, room_id: str, new_member: bool = False) -> Membership:
    """Who may open the room's socket: active members, or anyone for a room without password.

    `new_member`: the caller already knows the user has no membership (one query fewer).
    """
    room = None if has_nul(room_id) else Room.objects.filter(pk=room_id).first()
    if room is None:
        raise not_found(f"no room {room_id!r}")
    known = None if new_member else membership_of(room_id, user)
    return _admit(room, user, known, password_ok=not room.password)


def admit_member(membership: Membership) -> Membership:
    """An existing membership that may open a socket (it exists, so the room does); 403 if
    banned."""
    if membership.status == MemberStatus.BANNED:
        raise forbidden("you are banned from this room")
    return membership

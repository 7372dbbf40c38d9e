"""Members: list them, change roles, permissions and bans, and tell connected clients."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from rooms.codes import CloseCode
from rooms.errors import bad_request, forbidden, not_found
from rooms.models import Membership, Presence
from rooms.payloads import me_payload, member_payload, user_payload
from rooms.permissions import ALL_PERMISSIONS, MemberStatus, Role, effective_permissions
from rooms.services.events import member_group, publish, publish_close
from rooms.services.presence import request_presence
from rooms.services.rooms import get_room, require_active_member, require_admin


def list_members(user: Any, room_id: str) -> list[dict[str, Any]]:
    """Every member with role, status, permissions and whether they are online (members only)."""
    require_active_member(room_id, user)
    online = set(Presence.objects.filter(room_id=room_id).values_list("user_id", flat=True))
    memberships = (
        Membership.objects.filter(room_id=room_id)
        .select_related("user__synctv_profile")
        .order_by("joined_at", "id")
    )
    return [member_payload(m, online=m.user_id in online) for m in memberships]


def _check_values(target: Membership, changes: dict[str, Any]) -> None:
    """What any change must respect, whoever makes it: known fields and values, and the
    creator left as they are."""
    unknown = set(changes) - {"role", "permissions", "status"}
    if unknown:
        raise bad_request(
            f"cannot change {', '.join(sorted(unknown))}; allowed: role, permissions, status"
        )
    if target.role == Role.CREATOR:
        raise forbidden("the room's creator cannot be changed")
    role = changes.get("role")
    if role is not None and role not in (Role.ADMIN, Role.MEMBER):
        raise bad_request("role must be 'admin' or 'member'")
    permissions = changes.get("permissions")
    if permissions is not None and (
        not isinstance(permissions, list)
        or not all(isinstance(p, str) and p in ALL_PERMISSIONS for p in permissions)
    ):
        raise bad_request(f"permissions must be a list drawn from {', '.join(ALL_PERMISSIONS)}")
    status = changes.get("status")
    if status is not None and status not in (MemberStatus.ACTIVE, MemberStatus.BANNED):
        raise bad_request("status must be 'active' or 'banned'")


def _check_authority(actor: Membership, target: Membership, changes: dict[str, Any]) -> None:
    """What a room admin may change: not themselves, an admin only as the creator, and the
    admin role only as the creator."""
    if target.user_id == actor.user_id:
        raise forbidden("you cannot change your own membership")
    if target.role == Role.ADMIN and actor.role != Role.CREATOR:
        raise forbidden("only the room's creator may change an admin")
    if changes.get("role") is not None and actor.role != Role.CREATOR:
        raise forbidden("only the room's creator may grant or take the admin role")


def _standing(membership: Membership) -> tuple[str, list[str]]:
    """What a member's open pages show of them: the role and the permissions in force."""
    return membership.role, effective_permissions(membership.role, membership.permissions)


def update_member(
    actor_user: Any, room_id: str, user_id: int, changes: dict[str, Any]
) -> dict[str, Any]:
    """Change a member's role, permissions or status (admins); a ban kicks every connection.

    Any other change of role or permissions is told to the room (`presence`, with roles) and
    to the member's own sockets (`me`), so open pages show what they may now do.
    """
    actor = require_admin(room_id, actor_user)
    return _change_member(actor_user, room_id, user_id, changes, actor)


def staff_update_member(
    staff_user: Any, room_id: str, user_id: int, changes: dict[str, Any]
) -> dict[str, Any]:
    """`update_member` for Django staff (the admin): any member but the creator, without a
    room role; the same events reach the clients."""
    if not getattr(staff_user, "is_staff", False):
        raise forbidden("only staff may change members without a room role")
    get_room(room_id)
    return _change_member(staff_user, room_id, user_id, changes, actor=None)


def _change_member(
    actor_user: Any,
    room_id: str,
    user_id: int,
    changes: dict[str, Any],
    actor: Membership | None,
) -> dict[str, Any]:
    """Lock the membership, check the change (room authority unless `actor` is None: staff),
    save it and tell the clients."""
    with transaction.atomic():
        target = (
            # Lock only the membership row: PostgreSQL refuses FOR UPDATE across the outer join.
            Membership.objects.select_for_update(of=("self",))
            .select_related("user__synctv_profile")
            .filter(room_id=room_id, user_id=user_id)
            .first()
        )
        if target is None:
            raise not_found(f"user {user_id} is not a member of this room")
        _check_values(target, changes)
        if actor is not None:
            _check_authority(actor, target, changes)
        before = _standing(target)
        for field in ("role", "permissions", "status"):
            if changes.get(field) is not None:
                setattr(target, field, changes[field])
        target.save()
        if target.status == MemberStatus.BANNED:
            publish_close(
                room_id,
                {"type": "kicked", "room_id": room_id, "by": user_payload(actor_user)},
                CloseCode.NOT_ALLOWED,
                "you were banned from this room",
                group=member_group(room_id, target.user_id),
            )
        elif _standing(target) != before:
            request_presence(room_id)
            publish(
                room_id,
                {"type": "me", "me": me_payload(target)},
                group=member_group(room_id, target.user_id),
            )
    online = Presence.objects.filter(room_id=room_id, user_id=user_id).exists()
    return member_payload(target, online=online)

"""Roles and permissions of room members (SPEC §3)."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """A member's role in one room."""

    CREATOR = "creator"
    ADMIN = "admin"
    MEMBER = "member"


class MemberStatus(StrEnum):
    """Whether a member may take part."""

    ACTIVE = "active"
    BANNED = "banned"


class Permission(StrEnum):
    """One thing a member may be allowed to do."""

    ADD_MOVIE = "add_movie"
    EDIT_MOVIE = "edit_movie"
    DELETE_MOVIE = "delete_movie"
    SET_CURRENT_MOVIE = "set_current_movie"
    CONTROL_PLAYBACK = "control_playback"
    SEND_CHAT = "send_chat"


ALL_PERMISSIONS: tuple[str, ...] = tuple(permission.value for permission in Permission)

DEFAULT_MEMBER_PERMISSIONS: tuple[Permission, ...] = (
    Permission.ADD_MOVIE,
    Permission.SET_CURRENT_MOVIE,
    Permission.CONTROL_PLAYBACK,
    Permission.SEND_CHAT,
)

ADMIN_ROLES = frozenset({Role.CREATOR, Role.ADMIN})


def effective_permissions(role: str, granted: list[str]) -> list[str]:
    """Creators and admins may do everything; members what they were granted."""
    if role in ADMIN_ROLES:
        return list(ALL_PERMISSIONS)
    return [permission for permission in ALL_PERMISSIONS if permission in granted]

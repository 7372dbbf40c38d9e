"""Presence: which users have sockets open in a room, on any node (kept in the database)."""

from __future__ import annotations

from typing import Any

from django.db.models import Count

from rooms.models import Membership, Presence
from rooms.payloads import user_payload
from rooms.services.events import publish


def online(room_id: str) -> tuple[list[dict[str, Any]], int]:
    """`[{user, role, connections}]` and the viewer count (distinct users)."""
    counts = dict(
        Presence.objects.filter(room_id=room_id)
        .values("user_id")
        .annotate(n=Count("connection_id"))
        .values_list("user_id", "n")
    )
    # Only members are admitted to a socket, so every online user has a membership (a role).
    memberships = Membership.objects.filter(
        room_id=room_id, user_id__in=list(counts)
    ).select_related("user__synctv_profile")
    entries = [
        {"user": user_payload(m.user), "role": m.role, "connections": counts[m.user_id]}
        for m in memberships
    ]
    entries.sort(key=lambda entry: entry["user"]["name"].lower())
    return entries, len(entries)


def publish_presence(room_id: str) -> None:
    """Tell the room who is online, with their roles: `presence {online, viewer_count}`."""
    entries, viewers = online(room_id)
    publish(room_id, {"type": "presence", "online": entries, "viewer_count": viewers})


def connect(connection_id: str, room_id: str, user_id: int, node_id: str) -> None:
    """Record an open socket and tell the room who is online."""
    Presence.objects.create(
        connection_id=connection_id, room_id=room_id, user_id=user_id, node_id=node_id
    )
    publish_presence(room_id)


def disconnect(connection_id: str, room_id: str) -> None:
    """Forget a closed socket and tell the room who is online."""
    deleted, _ = Presence.objects.filter(connection_id=connection_id).delete()
    if deleted:
        publish_presence(room_id)


def clear_node(node_id: str) -> int:
    """Forget every socket of a node (at its start or shutdown); returns how many."""
    room_ids = set(Presence.objects.filter(node_id=node_id).values_list("room_id", flat=True))
    deleted, _ = Presence.objects.filter(node_id=node_id).delete()
    for room_id in room_ids:
        publish_presence(room_id)
    return deleted


def node_ids() -> set[str]:
    """The nodes that hold sockets, according to the database."""
    return set(Presence.objects.values_list("node_id", flat=True).distinct())

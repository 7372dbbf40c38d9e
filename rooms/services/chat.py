"""Chat: send a line (kept, then broadcast), read history, delete a line (moderation)."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from rooms.errors import bad_request, not_found
from rooms.models import ChatMessage
from rooms.payloads import chat_payload, now_ms
from rooms.permissions import Permission
from rooms.services.events import chat_receipt, publish
from rooms.services.rooms import (
    get_room,
    has_nul,
    require_active_member,
    require_admin,
    require_permission,
)

MAX_CHAT_LENGTH = 4096
MAX_HISTORY = 200


def send_chat(user: Any, room_id: str, text: Any) -> dict[str, Any]:
    """Keep a chat line and broadcast it as `chat {message}`."""
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_CHAT_LENGTH:
        raise bad_request(f"text must be 1 to {MAX_CHAT_LENGTH} characters, not only spaces")
    if has_nul(text):
        raise bad_request("text must not contain NUL characters")
    require_permission(room_id, user, Permission.SEND_CHAT)
    message = ChatMessage.objects.create(room_id=room_id, user=user, text=text, sent_at=now_ms())
    payload = chat_payload(message)
    publish(room_id, {"type": "chat", "message": payload}, receipt=chat_receipt(message.id))
    return payload


def recent(room_id: str, limit: int, before: int | None = None) -> list[dict[str, Any]]:
    """Up to `limit` messages (older than id `before`), newest last."""
    query = ChatMessage.objects.filter(room_id=room_id).select_related("user__synctv_profile")
    if before is not None:
        query = query.filter(id__lt=before)
    newest_first = list(query.order_by("-id")[:limit])
    return [chat_payload(message) for message in reversed(newest_first)]


def history(user: Any, room_id: str, before: Any = None, limit: Any = 50) -> list[dict[str, Any]]:
    """Chat history for a member: `?before=ID&limit=N`, newest last."""
    require_active_member(room_id, user)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_HISTORY:
        raise bad_request(f"limit must be a whole number from 1 to {MAX_HISTORY}")
    if before is not None and (not isinstance(before, int) or isinstance(before, bool)):
        raise bad_request("before must be a message id")
    return recent(room_id, limit, before)


def delete_chat(user: Any, room_id: str, message_id: Any) -> None:
    """Delete a chat line (room admins, and Django staff in any room); publishes `chat_deleted`."""
    if getattr(user, "is_staff", False):
        get_room(room_id)
    else:
        require_admin(room_id, user)
    if not isinstance(message_id, int) or isinstance(message_id, bool):
        raise bad_request("message_id must be a chat message id")
    with transaction.atomic():
        deleted, _ = ChatMessage.objects.filter(room_id=room_id, pk=message_id).delete()
        if not deleted:
            raise not_found(f"no chat message {message_id} in this room")
        publish(
            room_id,
            {"type": "chat_deleted", "id": message_id},
            receipt=chat_receipt(message_id, deleted=True),
        )

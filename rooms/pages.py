"""The browser pages: the lobby, the shareable room page and its not-found page.

The pages are thin: they render what the visitor needs to start (who is signed in, the
room's public facts) and the ES modules in static/synctv/ do the rest over the HTTP API
and the room WebSocket.
"""

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie

from rooms.errors import ServiceError
from rooms.models import Membership
from rooms.payloads import user_payload
from rooms.services import rooms


def _visitor(request: HttpRequest) -> dict[str, Any] | None:
    user = request.user
    return user_payload(user) if user.is_authenticated else None


@ensure_csrf_cookie
def lobby(request: HttpRequest) -> HttpResponse:
    """`/`: sign in, the public rooms, create a room."""
    return render(request, "lobby.html", {"page": {"user": _visitor(request)}})


@ensure_csrf_cookie
def room_page(request: HttpRequest, room_id: str) -> HttpResponse:
    """`/r/{room_id}`: the room with its synced player, or a 404 page if there is none."""
    try:
        room = rooms.get_room(room_id)
    except ServiceError:
        return render(request, "room_not_found.html", {"room_id": room_id}, status=404)
    membership = (
        Membership.objects.filter(room=room, user=request.user).first()
        if request.user.is_authenticated
        else None
    )
    page = {
        "user": _visitor(request),
        # Lets the page ask for the password only when it is needed, without a failing call.
        "membership": {"role": membership.role, "status": membership.status}
        if membership
        else None,
        "room": {
            "id": room.id,
            "name": room.name,
            "has_password": bool(room.password),
            "guests_allowed": rooms.room_settings(room).guests_allowed,
        },
    }
    return render(request, "room.html", {"room": room, "page": page})

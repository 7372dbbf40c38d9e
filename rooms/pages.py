"""The browser pages: the lobby and the shareable room page."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie


@ensure_csrf_cookie
def lobby(request: HttpRequest) -> HttpResponse:
    """`/`: what SyncTV is, and the public rooms."""
    return render(request, "lobby.html")


@ensure_csrf_cookie
def room_page(request: HttpRequest, room_id: str) -> HttpResponse:
    """`/r/{room_id}`: the room with its synced player."""
    return render(request, "room.html", {"room_id": room_id})

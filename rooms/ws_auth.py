"""Before a room socket's consumer: the Origin check; and who the socket belongs to."""

from __future__ import annotations

from importlib import import_module
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

from channels.middleware import BaseMiddleware
from django.conf import settings
from django.contrib import auth
from django.contrib.auth.models import AnonymousUser
from django.http.cookie import parse_cookie

from rooms.codes import CloseCode
from rooms.models import Membership
from rooms.services.accounts import member_by_token, user_for_token
from rooms.services.rooms import admit_member, admit_socket

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def _host_port(netloc: str, scheme: str) -> tuple[str, int | None]:
    parts = urlsplit(f"//{netloc}")
    try:
        port = parts.port
    except ValueError:
        return "", None
    return (parts.hostname or "").lower(), port or DEFAULT_PORTS.get(scheme)


def origin_allowed(origin: str | None, host: str | None, allowed: list[str]) -> bool:
    """A browser's Origin must match the request's Host, or be listed in server.allowed_origins."""
    if origin is None:
        return True  # not a browser: nothing to protect against cross-site use
    if "*" in allowed or origin.rstrip("/") in (item.rstrip("/") for item in allowed):
        return True
    parts = urlsplit(origin)
    if not parts.scheme or not parts.netloc or host is None:
        return False
    origin_host = _host_port(parts.netloc, parts.scheme)
    secure = parts.scheme == "https"
    request_host = _host_port(host, "https" if secure else "http")
    return bool(origin_host[0]) and origin_host == request_host


class OriginCheckMiddleware(BaseMiddleware):
    """Refuses the handshake (HTTP 403) when a browser's Origin is not allowed."""

    async def __call__(self, scope: dict, receive: Any, send: Any) -> Any:
        """Pass allowed sockets on; close the others before accept."""
        origin = _header(scope, b"origin")
        host = _header(scope, b"host")
        if origin_allowed(origin, host, settings.SYNCTV.server.allowed_origins):
            return await super().__call__(scope, receive, send)
        await receive()  # the websocket.connect event
        await send({"type": "websocket.close", "code": int(CloseCode.NOT_ALLOWED)})
        return None


def socket_admission(scope: dict[str, Any], room_id: str) -> tuple[Any, Membership | None]:
    """Who opened a room socket and their active membership (None: not signed in); raises
    the ServiceError that refuses them. `?token=<bearer token>` counts over any session
    cookie. A member reconnecting with a token takes one query.

    Runs on a database thread as the socket's one admission call (rooms/consumers.py),
    rather than in middlewares that each hop onto Channels' single database thread.
    """
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    token = (query.get("token") or [""])[0]
    if token:
        membership = member_by_token(token, room_id)
        if membership is not None:
            return membership.user, admit_member(membership)
        user = user_for_token(token) or AnonymousUser()
    else:
        user = _session_user(scope)
    if not user.is_authenticated:
        return user, None
    # With a valid token, member_by_token found no membership: the user is new to the room.
    return user, admit_socket(user, room_id, new_member=bool(token))


def _session_user(scope: dict[str, Any]) -> Any:
    """The user of the socket's session cookie, read here rather than by Channels' cookie
    and session middlewares: those keep three copies of the scope, a lazy session and
    their own instances for as long as each socket is open (docs/performance.md)."""
    user = scope.get("user")
    if user is not None:  # resolved by an outer AuthMiddleware
        return user
    session = scope.get("session")  # or by an outer SessionMiddleware
    if session is None:
        key = parse_cookie(_header(scope, b"cookie") or "").get(settings.SESSION_COOKIE_NAME)
        if not key:
            return AnonymousUser()
        session = import_module(settings.SESSION_ENGINE).SessionStore(key)
    # Django's own session check (user id, backend, session hash); it reads only .session.
    return auth.get_user(SimpleNamespace(session=session))  # type: ignore[arg-type]

"""What runs before a room socket's consumer: the Origin check and bearer-token auth."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from channels.middleware import BaseMiddleware
from django.conf import settings
from django.contrib.auth.models import AnonymousUser

from rooms.codes import CloseCode
from rooms.db import database_call
from rooms.services.accounts import user_for_token

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


class TokenAuthMiddleware(BaseMiddleware):
    """`?token=<bearer token>` signs the socket in, over any session cookie."""

    async def __call__(self, scope: dict, receive: Any, send: Any) -> Any:
        """Replace scope["user"] when the query string carries a token."""
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        token = (query.get("token") or [""])[0]
        if token:
            user = await database_call(user_for_token)(token)
            if user is not None:
                scope = dict(scope, user=user)
            else:
                scope = dict(scope, user=AnonymousUser())
        return await super().__call__(scope, receive, send)

"""JSON logging context: every line carries node_id and, where known, room/connection/user ids.

Ids live in a context variable, so each WebSocket connection (its own asyncio task) and
each request logs with its own ids without passing them around.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse

LOG_FIELDS = ("room_id", "connection_id", "user_id", "correlation_id")
REQUEST_ID_HEADER = "X-Request-ID"

log_context: ContextVar[dict[str, Any] | None] = ContextVar("synctv_log_context", default=None)


def bind_log_context(**fields: Any) -> None:
    """Add ids to every log line written from the current task or request from now on."""
    current = dict(log_context.get() or {})
    current.update({key: value for key, value in fields.items() if value is not None})
    log_context.set(current)


class ContextFilter(logging.Filter):
    """Puts node_id and the bound ids on each record, for the JSON formatter."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Always keeps the record; only decorates it."""
        record.node_id = getattr(settings, "SYNCTV_NODE_ID", "")
        for key, value in (log_context.get() or {}).items():
            setattr(record, key, value)
        return True


def _clean_request_id(raw: str | None) -> str:
    if raw and len(raw) <= 128 and raw.isprintable():
        return raw
    return uuid.uuid4().hex


class CorrelationIdMiddleware:
    """Takes X-Request-ID (or makes one), binds it for logging and echoes it in the answer."""

    async_capable = True
    sync_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        """Handle one request, sync or async as the chain is."""
        if iscoroutinefunction(self):
            return self._acall(request)
        correlation_id = self._bind(request)
        response: HttpResponse = self.get_response(request)
        response[REQUEST_ID_HEADER] = correlation_id
        return response

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        correlation_id = self._bind(request)
        response: HttpResponse = await self.get_response(request)
        response[REQUEST_ID_HEADER] = correlation_id
        return response

    @staticmethod
    def _bind(request: HttpRequest) -> str:
        correlation_id = _clean_request_id(request.headers.get(REQUEST_ID_HEADER))
        request.correlation_id = correlation_id  # type: ignore[attr-defined]
        log_context.set({"correlation_id": correlation_id})
        return correlation_id

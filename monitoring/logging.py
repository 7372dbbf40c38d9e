"""JSON logging context: every line carries node_id and, where known, room/connection/user ids.

Ids live in a context variable, so each WebSocket connection (its own asyncio task) and
each request logs with its own ids without passing them around. `RedactingFilter` keeps
passwords of Redis and database URLs (and secret query parameters) out of every line.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.safestring import SafeString, mark_safe
from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

from synctv_project.redaction import redact_secrets, redacted_repr

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


# The attributes every LogRecord has; any other attribute came from `extra=`.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
}
_plain_formatter = logging.Formatter()


class RedactingFilter(logging.Filter):
    """Replaces URL passwords and secret parameters by **** in the message, extras and traceback.

    The record is rewritten in place (message formatted, traceback turned into text), so
    every formatter after it, JSON or console, writes the redacted text only.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Always keeps the record; only redacts it."""
        record.msg = redact_secrets(record.getMessage())
        record.args = None
        if record.exc_info:
            record.exc_text = _plain_formatter.formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact_secrets(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_secrets(record.stack_info)
        for key, value in list(vars(record).items()):
            if key not in _RECORD_ATTRIBUTES and isinstance(value, str):
                setattr(record, key, redact_secrets(value))
        return True


def _redacted(value: Any) -> Any:
    """A setting's or a frame variable's value as an error report may show it."""
    if isinstance(value, str):
        return redact_secrets(value)
    if value is None or isinstance(value, (bool, int, float, dict, list, tuple)) or callable(value):
        return value  # nothing to mask, or a container whose items were cleansed one by one
    shown = redacted_repr(value)
    return value if shown == repr(value) else shown


class RedactingExceptionReporterFilter(SafeExceptionReporterFilter):
    """Django's error page and error reports, with URL passwords masked in every value.

    Django hides settings whose name looks secret (`*PASSWORD*`, `*KEY*`); a Redis or
    database URL is in `SYNCTV` and `CHANNEL_LAYERS` under names that do not.
    """

    def cleanse_setting(self, key: Any, value: Any) -> Any:
        """Django's cleansing, then secrets in the value masked."""
        return _redacted(super().cleanse_setting(key, value))

    def get_traceback_frame_variables(self, request: Any, tb_frame: Any) -> Any:
        """A frame's local variables, with secrets in their values masked."""
        variables = super().get_traceback_frame_variables(request, tb_frame)
        return [(name, _redacted(value)) for name, value in variables]


class RedactingExceptionReporter(ExceptionReporter):
    """Django's error report (the debug page, error mails) with every secret in it masked:
    the exception's text and the request's query string too, not only settings and frames."""

    def get_traceback_data(self) -> dict[str, Any]:
        """Django's report data, with query parameters named like secrets (token) masked."""
        data = super().get_traceback_data()
        if "request_GET_items" in data:
            hidden = self.filter.hidden_settings
            substitute = self.filter.cleansed_substitute
            data["request_GET_items"] = [
                (name, substitute if hidden.search(name) else value)
                for name, value in data["request_GET_items"]
            ]
        return data

    # Masking only replaces characters of a URL's password or a parameter's value with
    # asterisks, so a safe report stays safe.
    def get_traceback_html(self) -> SafeString:
        """The HTML report, redacted."""
        return mark_safe(redact_secrets(super().get_traceback_html()))

    def get_traceback_text(self) -> SafeString:
        """The plain-text report, redacted."""
        return mark_safe(redact_secrets(super().get_traceback_text()))


def _clean_request_id(raw: str | None) -> str:
    if raw and len(raw) <= 128 and raw.isprintable():
        return raw
    return uuid.uuid4().hex


def correlation_id_of(scope: Mapping[str, Any]) -> str:
    """A WebSocket's correlation id: its handshake's X-Request-ID (nginx sets one), or made."""
    header = REQUEST_ID_HEADER.lower().encode()
    sent = next((value for name, value in scope.get("headers") or () if name == header), None)
    return _clean_request_id(sent.decode("latin-1") if sent is not None else None)


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

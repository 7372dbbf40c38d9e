"""Every error code and WebSocket close code of SPEC §4, defined once.

Import these everywhere (consumers, services, API, tests); never write the literals.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class ErrorCode(StrEnum):
    """`error.code` values, over HTTP and WebSocket alike."""

    BAD_REQUEST = "bad_request"
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    RATE_LIMITED = "rate_limited"
    TOO_LARGE = "too_large"
    CONNECTION_LIMIT = "connection_limit"
    IDLE_TIMEOUT = "idle_timeout"
    MAX_DURATION = "max_duration"
    SERVER_ERROR = "server_error"


HTTP_STATUS = {
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.CONFLICT: 409,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.CONNECTION_LIMIT: 429,
    ErrorCode.SERVER_ERROR: 500,
}


class CloseCode(IntEnum):
    """WebSocket close codes."""

    NOT_AUTHENTICATED = 4001
    NOT_ALLOWED = 4003
    ROOM_NOT_FOUND = 4004
    IDLE_TIMEOUT = 4008
    MAX_DURATION = 4010
    CONNECTION_LIMIT = 4029
    FRAME_TOO_LARGE = 1009
    POLICY_VIOLATION = 1008
    SERVER_RESTARTING = 1012
    TRY_AGAIN_LATER = 1013
    # RFC 6455's "internal error": the socket failed to join; clients reconnect (SPEC §4).
    INTERNAL_ERROR = 1011


MAX_FRAME_BYTES = 64 * 1024

# The error sent just before each 4xxx close, so a client knows why.
CLOSE_ERROR = {
    CloseCode.NOT_AUTHENTICATED: ErrorCode.UNAUTHENTICATED,
    CloseCode.NOT_ALLOWED: ErrorCode.FORBIDDEN,
    CloseCode.ROOM_NOT_FOUND: ErrorCode.NOT_FOUND,
    CloseCode.IDLE_TIMEOUT: ErrorCode.IDLE_TIMEOUT,
    CloseCode.MAX_DURATION: ErrorCode.MAX_DURATION,
    CloseCode.CONNECTION_LIMIT: ErrorCode.CONNECTION_LIMIT,
}

"""The one exception type that services raise for a refused action."""

from __future__ import annotations

from rooms.codes import HTTP_STATUS, ErrorCode


class ServiceError(Exception):
    """An action refused for a reason the caller can show: a code and a sentence for people."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        """The HTTP status that fits the code."""
        return HTTP_STATUS.get(self.code, 400)

    def as_payload(self) -> dict:
        """`{"code", "message"}`, the body of an `error` on both transports."""
        return {"code": str(self.code), "message": self.message}


def bad_request(message: str) -> ServiceError:
    """Malformed or out-of-range input."""
    return ServiceError(ErrorCode.BAD_REQUEST, message)


def forbidden(message: str) -> ServiceError:
    """The caller may not do this."""
    return ServiceError(ErrorCode.FORBIDDEN, message)


def not_found(message: str) -> ServiceError:
    """No such room, movie or user."""
    return ServiceError(ErrorCode.NOT_FOUND, message)

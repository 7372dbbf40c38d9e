"""Secrets out of text meant for people: passwords in URLs and secret query parameters.

`redact_secrets("redis://:hunter2@redis:6379/0")` is `"redis://:****@redis:6379/0"`. Used by
the log filter (monitoring/logging.py) and wherever a configured URL is shown.
"""

from __future__ import annotations

import re

MASK = "****"
# scheme://user:password@ — the user may be empty (redis://:password@host).
_URL_PASSWORD = re.compile(r"(?P<keep>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]*):[^\s@]+@")
# password=..., token=... in a query string or a libpq keyword string.
_SECRET_PARAMETER = re.compile(
    r"(?P<keep>\b(?:password|passwd|pwd|token|secret)=)[^&;,)\s#'\"]+",
    re.IGNORECASE,
)


class Shown(str):
    """Text already written as it should be shown: its repr is itself (no quotes added)."""

    def __repr__(self) -> str:
        return str(self)


def redact_secrets(text: str) -> str:
    """`text` with URL passwords and secret parameters replaced by ****."""
    if "=" not in text and "@" not in text:
        return text  # the common case: nothing that could be a secret
    text = _URL_PASSWORD.sub(rf"\g<keep>:{MASK}@", text)
    return _SECRET_PARAMETER.sub(rf"\g<keep>{MASK}", text)


def redacted_repr(value: object) -> Shown:
    """`repr(value)` with its secrets masked, to show in place of the value."""
    return Shown(redact_secrets(repr(value)))

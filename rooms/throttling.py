"""Throttles of the sign-in endpoints (docs/api.md): tries per client address, and per
username for login, so a spread attack on one account is limited too.

django-ninja's SimpleRateThrottle does the counting (a sliding log of request times in
Django's cache); the rates come from settings.SYNCTV_THROTTLE_RATES (`auth.throttle`),
read at each request, and an empty rate means no limit.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest
from ninja.throttling import BaseThrottle, SimpleRateThrottle


class ConfiguredThrottle(SimpleRateThrottle):
    """A throttle whose rate is `settings.SYNCTV_THROTTLE_RATES[rate_key]`."""

    def __init__(self, rate_key: str) -> None:
        # SimpleRateThrottle would read its rate once, here; ours is read per request.
        self.rate_key = rate_key
        self.scope = rate_key
        self.rate = None
        self.num_requests, self.duration = None, None

    def allow_request(self, request: HttpRequest) -> bool:
        """Count this request; False once the window holds as many as the rate allows."""
        rate = settings.SYNCTV_THROTTLE_RATES.get(self.rate_key)
        if not rate:
            return True
        self.rate = rate
        self.num_requests, self.duration = self.parse_rate(rate)
        return super().allow_request(request)

    def wait(self) -> float | None:
        """Seconds until enough requests have left the window for one more to pass."""
        if self.num_requests is None or self.duration is None or not self.history:
            return None
        frees_a_slot = self.history[min(self.num_requests, len(self.history)) - 1]
        return max(1.0, self.duration - (self.now - frees_a_slot))


class ClientAddressThrottle(ConfiguredThrottle):
    """Tries per client address: the peer, or X-Forwarded-For `auth.num_proxies` deep."""

    def get_cache_key(self, request: HttpRequest) -> str | None:
        """One counter per endpoint and client address."""
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class UsernameThrottle(ConfiguredThrottle):
    """Tries per username named in the JSON body, from any number of addresses."""

    def get_cache_key(self, request: HttpRequest) -> str | None:
        """One counter per endpoint and username (case-folded); None when the body names
        none (validation then refuses the request)."""
        username = _body_username(request)
        if username is None:
            return None
        ident = hashlib.sha256(username.casefold().encode()).hexdigest()
        return self.cache_format % {"scope": self.scope, "ident": ident}


def _body_username(request: HttpRequest) -> str | None:
    try:
        body: Any = json.loads(request.body)
    except (ValueError, RequestDataTooBig):
        return None
    username = body.get("username") if isinstance(body, dict) else None
    return username if isinstance(username, str) and username else None


def login_throttles() -> list[BaseThrottle]:
    """Login: per address and per username."""
    return [ClientAddressThrottle("login_per_ip"), UsernameThrottle("login_per_username")]


def signup_throttles() -> list[BaseThrottle]:
    """Sign-up: per address."""
    return [ClientAddressThrottle("signup_per_ip")]


def guest_throttles() -> list[BaseThrottle]:
    """Guest accounts: per address."""
    return [ClientAddressThrottle("guest_per_ip")]


def password_throttles() -> list[BaseThrottle]:
    """Password changes (guessing the old password with a stolen session): per address."""
    return [ClientAddressThrottle("password_per_ip")]

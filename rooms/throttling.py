"""Throttles of the sign-in endpoints (docs/api.md): tries per client address, and per
username for login, so a spread attack on one account is limited too.

In cluster mode the tries are counted across the cluster, in Redis
(cluster/throttle_redis.py), so N nodes do not allow N times the rate. In single-node
mode, and while Redis gives no answer, django-ninja's SimpleRateThrottle counts them in
this node's memory (a sliding log of request times in Django's cache). The rates come
from settings.SYNCTV_THROTTLE_RATES (`auth.throttle`), read at each request, and an
empty rate means no limit.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest
from ninja.throttling import BaseThrottle, SimpleRateThrottle

from cluster import throttle_redis


class ConfiguredThrottle(SimpleRateThrottle):
    """A throttle whose rate is `settings.SYNCTV_THROTTLE_RATES[rate_key]`."""

    def __init__(self, rate_key: str) -> None:
        # SimpleRateThrottle would read its rate once, here; ours is read per request.
        self.rate_key = rate_key
        self.scope = rate_key
        self.rate = None
        self.num_requests, self.duration = None, None
        self.shared_wait: float | None = None  # set when Redis refused the try

    def allow_request(self, request: HttpRequest) -> bool:
        """Count this request; False once the window holds as many as the rate allows."""
        rate = settings.SYNCTV_THROTTLE_RATES.get(self.rate_key)
        if not rate:
            return True
        self.rate = rate
        self.num_requests, self.duration = self.parse_rate(rate)
        self.shared_wait = None
        counted = self._count_in_cluster(request)
        if counted != throttle_redis.NOT_REACHED:
            self.shared_wait = counted if isinstance(counted, float) else None
            return counted is None
        return super().allow_request(request)

    def _count_in_cluster(self, request: HttpRequest) -> float | None | str:
        """This try counted in Redis (cluster mode), or NOT_REACHED: count it here. In
        single-node mode nothing is computed (the key is, by the local count)."""
        allowed, window = self.num_requests, self.duration
        if not settings.SYNCTV.redis.url or allowed is None or window is None:
            return throttle_redis.NOT_REACHED
        key = self.get_cache_key(request)
        if key is None:
            return throttle_redis.NOT_REACHED
        try:
            return async_to_sync(throttle_redis.count_try)(key, allowed, window)
        except RuntimeError:  # called on a thread that runs an event loop: no way to wait here
            return throttle_redis.NOT_REACHED

    def wait(self) -> float | None:
        """Seconds until enough requests have left the window for one more to pass."""
        if self.shared_wait is not None:
            return max(1.0, self.shared_wait)
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

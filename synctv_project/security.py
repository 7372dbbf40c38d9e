"""Response headers a browser enforces: the Content-Security-Policy, and Secure cookies over TLS.

Django's SecurityMiddleware and XFrameOptionsMiddleware send nosniff, Referrer-Policy,
Cross-Origin-Opener-Policy and X-Frame-Options (settings.py); Django 5.2 has no CSP of its
own, so `SecurityHeadersMiddleware` adds one to every response (docs/security.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponseBase

CSP_HEADER = "Content-Security-Policy"

# Movies are arbitrary URLs: media (and the subtitle tracks, fetched as media) may come from
# anywhere; hls.js fetches manifests and segments (connect-src) and plays through blob:
# MediaSource URLs from a blob: worker. Scripts, styles and fonts come from this site only,
# and no inline script runs at all (no 'unsafe-inline', no nonce: the pages have none).
CSP_DIRECTIVES: dict[str, tuple[str, ...]] = {
    "default-src": ("'self'",),
    "script-src": ("'self'",),
    "style-src": ("'self'",),
    "img-src": ("'self'", "data:", "blob:"),
    "font-src": ("'self'",),
    "media-src": ("*", "blob:", "data:"),
    "connect-src": ("'self'", "http:", "https:", "blob:"),  # + this host's ws:// and wss://
    "worker-src": ("'self'", "blob:"),
    "object-src": ("'none'",),
    "base-uri": ("'none'",),
    "form-action": ("'self'",),
    "frame-ancestors": ("'none'",),
}


def content_security_policy(host: str | None) -> str:
    """The policy for a page served as `host`: its own WebSocket URLs added to connect-src.

    `host` comes from `request.get_host()`, which Django has validated (a host and a port,
    no spaces or semicolons), so it cannot add directives of its own; None (a refused Host)
    adds nothing.
    """
    directives = dict(CSP_DIRECTIVES)
    if host:
        directives["connect-src"] = (*directives["connect-src"], f"ws://{host}", f"wss://{host}")
    return "; ".join(f"{name} {' '.join(sources)}" for name, sources in directives.items())


class SecurityHeadersMiddleware:
    """Adds the CSP (and X-Frame-Options where missing) to every answer; over TLS, Secure cookies.

    Over TLS (`request.is_secure()`: directly, or behind a proxy trusted with
    `security.behind_tls_proxy`) the session and CSRF cookies get `Secure`; over plain HTTP
    they cannot, or a browser would drop them. Placed outside the session and CSRF
    middleware, so their cookies are set by the time the answer passes through here.
    """

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
        return self._decorate(request, self.get_response(request))

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        return self._decorate(request, await self.get_response(request))

    @staticmethod
    def _decorate(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        if CSP_HEADER not in response:
            try:
                host: str | None = request.get_host()
            except DisallowedHost:
                host = None
            response[CSP_HEADER] = content_security_policy(host)
        if not getattr(response, "xframe_options_exempt", False):
            # What XFrameOptionsMiddleware sets, for answers that never reached it (static
            # files, served by WhiteNoise further out).
            response.headers.setdefault("X-Frame-Options", settings.X_FRAME_OPTIONS)
        if request.is_secure():
            for cookie in response.cookies.values():
                cookie["secure"] = True
        return response

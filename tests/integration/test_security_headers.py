"""Security headers and cookies on real answers: the Django test client and `serve` nodes."""

from __future__ import annotations

import re
from http.cookies import SimpleCookie
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.test import Client

from synctv_project.security import CSP_HEADER
from tests.support.servers import serve_node  # noqa: F401

pytestmark = pytest.mark.django_db

TEMPLATES = Path(settings.BASE_DIR) / "templates"


def directives(response) -> dict[str, list[str]]:
    """The response's CSP as {directive: [sources]}."""
    policy = response.headers[CSP_HEADER]
    parsed = {}
    for part in policy.split(";"):
        name, *sources = part.split()
        parsed[name] = sources
    return parsed


def assert_hardened(response, host: str) -> None:
    csp = directives(response)
    assert csp["script-src"] == ["'self'"]  # no 'unsafe-inline', no 'unsafe-eval'
    assert csp["object-src"] == ["'none'"] and csp["base-uri"] == ["'none'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert "*" in csp["media-src"] and "blob:" in csp["media-src"]
    assert {"'self'", "https:", f"ws://{host}", f"wss://{host}"} <= set(csp["connect-src"])
    assert "blob:" in csp["worker-src"]  # hls.js's worker
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"


@pytest.mark.parametrize(
    "path",
    ["/", "ROOM", "/r/nosuchroom", "/api/rooms", "/api/me", "/health", "/static/synctv/room.js"],
)
def test_every_kind_of_answer_carries_the_security_headers(room, path):
    path = f"/r/{room.id}" if path == "ROOM" else path

    response = Client().get(path)

    assert response.status_code in (200, 401, 404)
    assert_hardened(response, "testserver")


def test_a_refused_host_still_gets_a_policy():
    response = Client(HTTP_HOST="bad host;script-src *").get("/")

    assert response.status_code == 400
    assert "bad host" not in response.headers[CSP_HEADER]
    assert directives(response)["script-src"] == ["'self'"]


@pytest.mark.parametrize("template", sorted(p.name for p in TEMPLATES.glob("*.html")))
def test_templates_have_no_inline_script_or_event_handler(template):
    text = (TEMPLATES / template).read_text(encoding="utf-8")

    for tag in re.findall(r"<script\b[^>]*>", text):
        assert "src=" in tag or 'type="application/json"' in tag, tag  # data, not code
    assert not re.search(r"\son[a-z]+\s*=", text)
    assert "javascript:" not in text


def test_session_and_csrf_cookies_are_httponly_as_needed_and_samesite_lax():
    client = Client(enforce_csrf_checks=True)

    response = client.post("/api/auth/guest", {"name": "Cookie"}, content_type="application/json")
    client.get("/")  # the lobby sets the CSRF cookie its scripts send back

    assert response.status_code == 200, response.content
    session = response.cookies[settings.SESSION_COOKIE_NAME]
    assert session["httponly"] and session["samesite"] == "Lax"
    assert not session["secure"]  # plain HTTP: a Secure cookie would be dropped
    csrf = client.cookies[settings.CSRF_COOKIE_NAME]
    assert csrf["samesite"] == "Lax" and not csrf["httponly"]  # api.js reads it


# --- real nodes ---------------------------------------------------------------------------------


def guest_cookie(node, headers=None) -> SimpleCookie:
    answer = httpx.post(
        f"{node.base_url}/api/auth/guest", json={"name": "Cookie"}, headers=headers, timeout=5
    )
    assert answer.status_code == 200, answer.text
    cookie = SimpleCookie()
    for line in answer.headers.get_list("set-cookie"):
        cookie.load(line)
    return cookie


@pytest.mark.serve
@pytest.mark.timeout(90)
def test_a_node_sends_the_headers_and_marks_cookies_secure_only_behind_its_tls_proxy(
    serve_node,  # noqa: F811
):
    direct = serve_node()
    proxied = serve_node(env={"SYNCTV__SECURITY__BEHIND_TLS_PROXY": "true"})
    forwarded = {"X-Forwarded-Proto": "https"}

    page = httpx.get(f"{direct.base_url}/", timeout=5)
    api = httpx.get(f"{direct.base_url}/api/rooms", timeout=5)
    forged = guest_cookie(direct, forwarded)  # a client's own header is not believed
    plain = guest_cookie(proxied)
    over_tls = guest_cookie(proxied, forwarded)

    host = f"127.0.0.1:{direct.port}"
    assert_hardened(page, host)
    assert_hardened(api, host)
    session = settings.SESSION_COOKIE_NAME
    assert forged[session]["httponly"] and not forged[session]["secure"]
    assert not plain[session]["secure"]
    assert over_tls[session]["secure"] and over_tls[session]["httponly"]
    assert over_tls[session]["samesite"] == "Lax"

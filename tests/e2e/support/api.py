"""Arrange state over the real HTTP API (SPEC §3) with httpx, and sign browsers in.

Every call asserts the status the SPEC promises and returns the JSON the test needs, so a
test reads as the arrangement it makes: `room = api.create_room(alice, password="pw")`.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from playwright.sync_api import BrowserContext, Page

HTTP_TIMEOUT = 10.0
PASSWORD = "correct-horse-battery"
_numbers = itertools.count(1)


def unique_name(prefix: str) -> str:
    """`prefix` and a short random suffix (accounts and rooms never collide across tests)."""
    return f"{prefix}-{next(_numbers)}-{uuid.uuid4().hex[:6]}"


@dataclass
class Account:
    """A signed-in user: the `user` object, the bearer token and the session cookies."""

    user: dict[str, Any]
    token: str
    cookies: dict[str, str]

    @property
    def id(self) -> int:
        """The user id (what `PATCH .../members/{user_id}` takes)."""
        return self.user["id"]

    @property
    def name(self) -> str:
        """The display name."""
        return self.user.get("name") or self.user.get("username", "")

    @property
    def auth(self) -> dict[str, str]:
        """The Authorization header."""
        return {"Authorization": f"Bearer {self.token}"}


def _expect(answer: httpx.Response, status: int) -> Any:
    assert answer.status_code == status, (
        f"{answer.request.method} {answer.request.url.path}: expected {status}, "
        f"got {answer.status_code}: {answer.text}"
    )
    return answer.json() if answer.content else None


class Api:
    """The HTTP API of one SyncTV node at `base_url`."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def _client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=HTTP_TIMEOUT)

    def _signed_in(self, path: str, body: dict[str, Any], status: int) -> Account:
        with self._client() as client:
            answer = _expect(client.post(path, json=body), status)
            cookies = {cookie.name: cookie.value or "" for cookie in client.cookies.jar}
        return Account(user=answer["user"], token=answer["token"], cookies=cookies)

    def signup(self, username: str | None = None, password: str = PASSWORD) -> Account:
        """`POST /api/auth/signup`: a new account (a unique name unless given)."""
        body = {"username": username or unique_name("user"), "password": password}
        return self._signed_in("/api/auth/signup", body, 201)

    def login(self, username: str, password: str = PASSWORD) -> Account:
        """`POST /api/auth/login`."""
        return self._signed_in("/api/auth/login", {"username": username, "password": password}, 200)

    def guest(self, name: str | None = None) -> Account:
        """`POST /api/auth/guest`: a guest account (display name unique unless given)."""
        return self._signed_in("/api/auth/guest", {"name": name or unique_name("guest")}, 200)

    def call(self, account: Account, method: str, path: str, status: int, body: Any = None) -> Any:
        """Any API call as `account`, asserting `status`; the JSON answer (None for 204)."""
        with self._client() as client:
            answer = client.request(method, path, json=body, headers=account.auth)
        return _expect(answer, status)

    def create_room(
        self,
        account: Account,
        name: str | None = None,
        password: str | None = None,
        hidden: bool = False,
        settings: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """`POST /api/rooms`: a room created by `account`; the room."""
        body: dict[str, Any] = {"name": name or unique_name("room"), "hidden": hidden}
        if password is not None:
            body["password"] = password
        if settings is not None:
            body["settings"] = settings
        return self.call(account, "POST", "/api/rooms", 201, body)["room"]

    def update_room(self, account: Account, room_id: str, **changes: Any) -> dict[str, Any]:
        """`PATCH /api/rooms/{id}` (name, password, hidden, settings); the room."""
        return self.call(account, "PATCH", f"/api/rooms/{room_id}", 200, changes)["room"]

    def join(self, account: Account, room_id: str, password: str | None = None) -> dict[str, Any]:
        """`POST /api/rooms/{id}/join`; the membership."""
        body = {"password": password} if password is not None else {}
        return self.call(account, "POST", f"/api/rooms/{room_id}/join", 200, body)["member"]

    def add_movie(
        self,
        account: Account,
        room_id: str,
        url: str,
        title: str | None = None,
        subtitles: list[dict[str, str]] | None = None,
    ) -> dict[str, Any]:
        """`POST /api/rooms/{id}/movies`; `subtitles` as `[{url, label?, lang?}]`; the movie."""
        body: dict[str, Any] = {"url": url}
        if title is not None:
            body["title"] = title
        if subtitles is not None:
            body["subtitles"] = subtitles
        return self.call(account, "POST", f"/api/rooms/{room_id}/movies", 201, body)["movie"]

    def movies(self, account: Account, room_id: str) -> dict[str, Any]:
        """`GET /api/rooms/{id}/movies`: `{version, movies}`."""
        return self.call(account, "GET", f"/api/rooms/{room_id}/movies", 200)

    def members(self, account: Account, room_id: str) -> list[dict[str, Any]]:
        """`GET /api/rooms/{id}/members`."""
        return self.call(account, "GET", f"/api/rooms/{room_id}/members", 200)

    def set_member(
        self,
        account: Account,
        room_id: str,
        user_id: int,
        role: str | None = None,
        permissions: list[str] | None = None,
        status: str | None = None,
    ) -> dict[str, Any]:
        """`PATCH /api/rooms/{id}/members/{user_id}` as a room admin; the member."""
        body = {
            key: value
            for key, value in {"role": role, "permissions": permissions, "status": status}.items()
            if value is not None
        }
        path = f"/api/rooms/{room_id}/members/{user_id}"
        return self.call(account, "PATCH", path, 200, body)["member"]


def sign_in_context(context: BrowserContext, base_url: str, account: Account) -> None:
    """Give a browser context `account`'s session cookies, so its pages are signed in."""
    context.add_cookies(
        [{"name": name, "value": value, "url": base_url} for name, value in account.cookies.items()]
    )


def sign_in_page(page: Page, base_url: str, name: str | None = None) -> dict[str, Any]:
    """Sign a page in as a new guest the way the client does: `fetch` from the node's origin,
    which sets the session cookie. Leaves the page on `/health`; the `{user, token}` answer."""
    page.goto(f"{base_url}/health")
    answer = page.evaluate(
        """async (name) => {
            const response = await fetch('/api/auth/guest', {
                method: 'POST', credentials: 'same-origin',
                headers: {'content-type': 'application/json'},
                body: JSON.stringify({name}),
            });
            return {status: response.status, body: await response.json()};
        }""",
        name or unique_name("guest"),
    )
    assert answer["status"] == 200, answer
    return answer["body"]

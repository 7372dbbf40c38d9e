"""Bearer tokens and sessions (docs/api.md): tokens expire, a password change revokes every
token and other session of the account, and an expired guest signs in nowhere, over HTTP
and on the room WebSocket."""

from __future__ import annotations

from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from rooms.codes import CloseCode, ErrorCode
from rooms.models import AuthToken, Profile
from rooms.services import accounts
from tests.support.factories import make_room, make_user
from tests.support.ws import session_cookie, socket_pool  # noqa: F401  (fixture)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

db = database_sync_to_async
PASSWORD = "correct-horse-9"  # what make_user signs up with


def _bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def _me_status(client: Client, token: str | None = None) -> int:
    return client.get("/api/me", **(_bearer(token) if token else {})).status_code


def _expire_token(token: str) -> None:
    AuthToken.objects.filter(key_hash=accounts._token_hash(token)).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )


def _expire_guest(user) -> None:
    Profile.objects.filter(user=user).update(expires_at=timezone.now() - timedelta(seconds=1))


# --- lifetime -----------------------------------------------------------------------------


def test_a_token_is_issued_for_the_configured_lifetime(settings):
    settings.SYNCTV_TOKEN_LIFETIME_DAYS = 30
    account = make_user()

    token = AuthToken.objects.get(key_hash=accounts._token_hash(account.token))

    lifetime = token.expires_at - token.created_at
    assert timedelta(days=30) - timedelta(seconds=5) < lifetime <= timedelta(days=30)


def test_an_expired_token_is_refused_over_http():
    account = make_user()
    client = Client()
    assert _me_status(client, account.token) == 200

    _expire_token(account.token)

    response = client.get("/api/me", **_bearer(account.token))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == ErrorCode.UNAUTHENTICATED


async def test_an_expired_token_closes_the_socket_4001(sockets):
    owner = await db(make_user)()
    room = await db(make_room)(owner)
    await db(_expire_token)(owner.token)

    socket = await sockets.open(room.id, token=owner.token)

    await socket.expect_error(ErrorCode.UNAUTHENTICATED)
    assert await socket.expect_close() == CloseCode.NOT_AUTHENTICATED


def test_pruning_deletes_expired_tokens_and_keeps_live_ones():
    live, expired = make_user(), make_user()
    _expire_token(expired.token)

    accounts.prune_expired_guests()

    assert AuthToken.objects.filter(key_hash=accounts._token_hash(live.token)).exists()
    assert not AuthToken.objects.filter(key_hash=accounts._token_hash(expired.token)).exists()


# --- password change ----------------------------------------------------------------------


def test_password_change_revokes_every_token_and_answers_a_fresh_one():
    account = make_user()
    other_token = accounts.issue_token(account.user)
    client = Client()

    response = client.post(
        "/api/auth/password",
        {"old_password": PASSWORD, "new_password": "a-new-horse-10"},
        content_type="application/json",
        **_bearer(account.token),
    )

    assert response.status_code == 200, response.content
    fresh = response.json()["token"]
    assert _me_status(Client(), account.token) == 401
    assert _me_status(Client(), other_token) == 401
    assert _me_status(Client(), fresh) == 200
    login = Client().post(
        "/api/auth/login",
        {"username": account.user.username, "password": "a-new-horse-10"},
        content_type="application/json",
    )
    assert login.status_code == 200


def test_password_change_ends_other_sessions_and_keeps_this_one():
    make_user("carol")
    this_browser, other_browser = Client(), Client()
    for browser in (this_browser, other_browser):
        answer = browser.post(
            "/api/auth/login",
            {"username": "carol", "password": PASSWORD},
            content_type="application/json",
        )
        assert answer.status_code == 200

    response = this_browser.post(
        "/api/auth/password",
        {"old_password": PASSWORD, "new_password": "a-new-horse-10"},
        content_type="application/json",
    )

    assert response.status_code == 200, response.content
    assert _me_status(this_browser) == 200
    assert _me_status(other_browser) == 401


def test_password_change_with_a_wrong_old_password_is_refused_and_revokes_nothing():
    account = make_user()

    response = Client().post(
        "/api/auth/password",
        {"old_password": "not-the-password", "new_password": "a-new-horse-10"},
        content_type="application/json",
        **_bearer(account.token),
    )

    assert response.status_code == 403
    assert response.json()["error"]["code"] == ErrorCode.FORBIDDEN
    assert _me_status(Client(), account.token) == 200


def test_a_guest_has_no_password_to_change():
    guest = make_user("Guesty", guest=True)

    response = Client().post(
        "/api/auth/password",
        {"old_password": "whatever-it-was", "new_password": "a-new-horse-10"},
        content_type="application/json",
        **_bearer(guest.token),
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == ErrorCode.BAD_REQUEST


def test_a_password_set_outside_the_api_revokes_the_tokens_too():
    account = make_user()
    user = get_user_model().objects.get(pk=account.user.pk)

    user.set_password("set-in-a-shell-11")
    user.save()

    assert _me_status(Client(), account.token) == 401


def test_saving_a_user_without_changing_the_password_keeps_the_tokens():
    account = make_user()
    user = get_user_model().objects.get(pk=account.user.pk)

    user.first_name = "Renamed"
    user.save()
    Client().post(
        "/api/auth/login",
        {"username": user.username, "password": PASSWORD},
        content_type="application/json",
    )

    assert _me_status(Client(), account.token) == 200


# --- expired guests -----------------------------------------------------------------------


def test_an_expired_guests_session_cookie_no_longer_signs_in():
    browser = Client()
    answer = browser.post("/api/auth/guest", {"name": "Visitor"}, content_type="application/json")
    assert answer.status_code == 200
    assert _me_status(browser) == 200

    _expire_guest(get_user_model().objects.get(pk=answer.json()["user"]["id"]))

    response = browser.get("/api/me")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == ErrorCode.UNAUTHENTICATED


async def test_an_expired_guests_session_cookie_closes_the_socket_4001(sockets):
    owner = await db(make_user)()
    room = await db(make_room)(owner)
    guest = await db(make_user)("Visitor", guest=True)
    cookie = await db(session_cookie)(guest.user)
    await db(_expire_guest)(guest.user)

    socket = await sockets.open(room.id, cookie=cookie)

    await socket.expect_error(ErrorCode.UNAUTHENTICATED)
    assert await socket.expect_close() == CloseCode.NOT_AUTHENTICATED


async def test_a_live_guests_session_cookie_still_signs_the_socket_in(sockets):
    owner = await db(make_user)()
    room = await db(make_room)(owner)
    guest = await db(make_user)("Visitor", guest=True)
    cookie = await db(session_cookie)(guest.user)

    socket = await sockets.join(room.id, cookie=cookie)

    assert socket.snapshot["me"]["user"]["id"] == guest.user.pk


async def test_the_session_backend_finds_users_from_async_code_too():
    member = await db(make_user)("Async")
    expired = await db(make_user)("Gone", guest=True)
    await db(_expire_guest)(expired.user)
    backend = accounts.AccountBackend()

    found = await backend.aget_user(member.user.pk)

    assert found is not None and found.pk == member.user.pk
    assert found.synctv_profile.display_name == "Async"
    assert await backend.aget_user(expired.user.pk) is None

"""Regression tests for what the API fuzzer (tests/fuzz/test_api_schema.py) found: the
OpenAPI schema declares every error answer, in SPEC §3's shape, and the request schemas are
exactly as strict as the validation behind them."""

from __future__ import annotations

import pytest
from django.test import Client

from rooms.codes import ErrorCode
from rooms.models import Room
from tests.support.factories import make_member, make_room, make_user

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]

PASSWORD = "correct-horse-9"


@pytest.fixture(scope="module")
def openapi(django_db_blocker):
    with django_db_blocker.unblock():
        return Client().get("/api/schema/").json()


def _error_of(response, status: int) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return body["error"]


def _post(client: Client, path: str, body: dict, **headers: str):
    return client.post(path, body, content_type="application/json", **headers)


def _property(openapi: dict, schema: str, name: str) -> dict:
    return openapi["components"]["schemas"][schema]["properties"][name]


# --- the schema declares the errors -------------------------------------------------------


def test_every_declared_error_answer_is_the_error_shape(openapi):
    error = openapi["components"]["schemas"]["ErrorOut"]
    assert error["required"] == ["error"]
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            for status, answer in operation["responses"].items():
                if status.startswith("4"):
                    ref = answer["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("/ErrorOut"), (method, path, status)


@pytest.mark.parametrize(
    "method, path, statuses",
    [
        ("post", "/api/auth/signup", {"400", "409", "413", "429"}),
        ("post", "/api/auth/login", {"400", "401", "413", "429"}),
        ("post", "/api/auth/guest", {"400", "413", "429"}),
        ("get", "/api/me", {"401"}),
        ("post", "/api/rooms", {"400", "401", "403", "413"}),
        ("get", "/api/rooms/{room_id}", {"404"}),
        ("delete", "/api/rooms/{room_id}", {"401", "403", "404"}),
        ("patch", "/api/rooms/{room_id}/members/{user_id}", {"400", "401", "403", "404"}),
        ("get", "/api/rooms/{room_id}/chat", {"400", "401", "403", "404"}),
    ],
)
def test_operations_declare_the_errors_they_give(openapi, method, path, statuses):
    declared = set(openapi["paths"][path][method]["responses"])

    assert statuses <= declared


# --- answers that were not in the error shape ---------------------------------------------


def test_a_body_over_the_size_limit_is_413_too_large(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000

    response = _post(Client(), "/api/auth/guest", {"name": "x" * 2000})

    assert _error_of(response, 413)["code"] == ErrorCode.TOO_LARGE


def test_a_method_the_path_lacks_is_405_in_the_error_shape():
    response = Client().put("/api/me")

    assert _error_of(response, 405)["code"] == ErrorCode.BAD_REQUEST
    assert response["Allow"] == "GET"


def test_a_write_without_credentials_is_401_not_a_csrf_403():
    response = _post(Client(), "/api/rooms", {"name": "Movie night"})

    assert _error_of(response, 401)["code"] == ErrorCode.UNAUTHENTICATED


# --- guest: the schema says what the validation does --------------------------------------


def test_guest_schema_states_the_name_rules(openapi):
    name = _property(openapi, "GuestIn", "name")

    assert (name["minLength"], name["maxLength"]) == (1, 64)
    assert "pattern" in name


@pytest.mark.parametrize("name", ["   ", "\x1c\x1f", "\u3000\u2028", "a\x00b", "x" * 65])
def test_guest_names_the_schema_refuses_are_refused(name):
    response = _post(Client(), "/api/auth/guest", {"name": name})

    assert _error_of(response, 400)["code"] == ErrorCode.BAD_REQUEST


@pytest.mark.parametrize("name", ["x" * 64, " Ann  Lee ", "\u00e9\u00e8", "a\x1cb"])
def test_guest_names_the_schema_allows_are_accepted(name):
    response = _post(Client(), "/api/auth/guest", {"name": name})

    assert response.status_code == 200, response.content


# --- signup -------------------------------------------------------------------------------


def test_signup_schema_states_the_username_and_password_rules(openapi):
    username = _property(openapi, "SignupIn", "username")
    password = _property(openapi, "SignupIn", "password")

    assert username["pattern"] == "^[A-Za-z0-9_.-]{3,32}$"
    assert (password["minLength"], password["maxLength"]) == (8, 256)


def test_signup_refuses_a_username_with_a_trailing_newline():
    response = _post(Client(), "/api/auth/signup", {"username": "alice\n", "password": PASSWORD})

    assert _error_of(response, 400)["code"] == ErrorCode.BAD_REQUEST


@pytest.mark.parametrize("password", ["short12", "x" * 257])
def test_signup_refuses_a_password_outside_the_schemas_lengths(password):
    response = _post(Client(), "/api/auth/signup", {"username": "alice", "password": password})

    assert _error_of(response, 400)["code"] == ErrorCode.BAD_REQUEST


def test_signup_accepts_the_shortest_and_longest_schema_values():
    short = _post(Client(), "/api/auth/signup", {"username": "abc", "password": "8chars!!"})
    long = _post(Client(), "/api/auth/signup", {"username": "a" * 32, "password": "p" * 256})

    assert (short.status_code, long.status_code) == (201, 201)


# --- rooms --------------------------------------------------------------------------------


@pytest.fixture
def owner_client():
    owner = make_user("owner")
    return owner, Client(HTTP_AUTHORIZATION=f"Bearer {owner.token}")


def test_create_room_schema_states_name_password_and_settings(openapi):
    name = _property(openapi, "RoomIn", "name")
    settings = openapi["components"]["schemas"]["RoomSettingsIn"]

    assert (name["minLength"], name["maxLength"]) == (1, 100)
    assert settings["additionalProperties"] is False
    assert "member_permissions" in settings["properties"]


@pytest.mark.parametrize(
    "body",
    [
        {"name": "  "},
        {"name": "x" * 101},
        {"name": "Room", "password": "p" * 129},
        {"name": "Room", "settings": {"member_permissions": ["fly"]}},
        {"name": "Room", "settings": {"unknown": True}},
    ],
)
def test_create_room_refuses_what_the_schema_refuses(owner_client, body):
    _, client = owner_client

    response = _post(client, "/api/rooms", body)

    assert _error_of(response, 400)["code"] == ErrorCode.BAD_REQUEST


def test_create_room_takes_settings_as_the_schema_gives_them(owner_client):
    _, client = owner_client

    response = _post(
        client,
        "/api/rooms",
        {"name": "Room", "settings": {"guests_allowed": None, "member_permissions": ["send_chat"]}},
    )

    assert response.status_code == 201, response.content
    assert response.json()["room"]["settings"]["member_permissions"] == ["send_chat"]
    assert response.json()["room"]["settings"]["guests_allowed"] is True


def test_patching_a_room_with_null_name_or_hidden_changes_nothing(owner_client):
    owner, client = owner_client
    room = make_room(owner, "Kept")

    response = client.patch(
        f"/api/rooms/{room.id}", {"name": None, "hidden": None}, content_type="application/json"
    )

    assert response.status_code == 200, response.content
    room = Room.objects.get(pk=room.id)
    assert (room.name, room.hidden) == ("Kept", False)


def test_a_member_cannot_be_given_the_creator_role_by_the_schema(owner_client):
    owner, client = owner_client
    room = make_room(owner)
    member = make_member(room)

    response = client.patch(
        f"/api/rooms/{room.id}/members/{member.user.pk}",
        {"role": "creator"},
        content_type="application/json",
    )

    assert _error_of(response, 400)["code"] == ErrorCode.BAD_REQUEST


@pytest.mark.parametrize("limit", [0, 201])
def test_chat_history_limit_outside_the_schema_is_refused(owner_client, limit):
    owner, client = owner_client
    room = make_room(owner)

    response = client.get(f"/api/rooms/{room.id}/chat?limit={limit}")

    assert _error_of(response, 400)["code"] == ErrorCode.BAD_REQUEST


# --- movies -------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://[1]/a.mp4", "http://[::1/a.mp4", "http://a\uff03b/a.mp4"])
def test_a_movie_url_urllib_cannot_read_is_400_not_500(owner_client, url):
    owner, client = owner_client
    room = make_room(owner)

    response = _post(client, f"/api/rooms/{room.id}/movies", {"url": url})

    assert "url is not a URL that can be read" in _error_of(response, 400)["message"]


def test_a_subtitle_url_urllib_cannot_read_is_400_not_500(owner_client):
    owner, client = owner_client
    room = make_room(owner)
    body = {"url": "/static/a.mp4", "subtitles": [{"url": "http://[::1/a.vtt"}]}

    response = _post(client, f"/api/rooms/{room.id}/movies", body)

    assert "subtitles[0].url is not a URL" in _error_of(response, 400)["message"]

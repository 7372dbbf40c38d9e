"""The HTTP API of SPEC §3 through django.test.Client against PostgreSQL, plus /health and /ready."""

import json
import re

import pytest
from django.test import Client

from rooms.codes import ErrorCode
from rooms.models import Membership, Room
from rooms.permissions import DEFAULT_MEMBER_PERMISSIONS, MemberStatus, Role
from rooms.services import chat, playlist, presence
from tests.support.factories import make_member, make_room, make_user

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-9"
USER_KEYS = {"id", "username", "name", "is_guest"}
ROOM_SUMMARY_KEYS = {"id", "name", "has_password", "viewer_count", "created_by"}
MEMBER_KEYS = {"user", "role", "status", "permissions", "online"}
MOVIE_KEYS = {"id", "url", "title", "type", "position", "subtitles"}


class Api:
    """A django.test.Client speaking JSON, optionally with a bearer token."""

    def __init__(self, token=None):
        self.client = Client()
        self.token = token

    def request(self, method, path, body=None, raw=None):
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        if method == "get":
            return self.client.get(path, headers=headers)
        data = raw if raw is not None else (None if body is None else json.dumps(body))
        return getattr(self.client, method)(
            path, data=data, content_type="application/json", headers=headers
        )

    def get(self, path):
        return self.request("get", path)

    def post(self, path, body=None, raw=None):
        return self.request("post", path, body, raw)

    def patch(self, path, body=None, raw=None):
        return self.request("patch", path, body, raw)

    def delete(self, path):
        return self.request("delete", path)


def assert_error(response, status, code):
    """The response is `{"error": {"code", "message"}}` with this status and code."""
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]


@pytest.fixture
def as_owner(owner):
    return Api(owner.token)


@pytest.fixture
def as_viewer(viewer):
    return Api(viewer.token)


@pytest.fixture
def anonymous():
    return Api()


@pytest.fixture
def movie(owner, room):
    return playlist.add_movie(owner.user, room.id, "https://media.example/one.mp4", "One")


# Accounts and authentication


def test_signup_answers_201_with_user_and_token(anonymous):
    response = anonymous.post("/api/auth/signup", {"username": "alice", "password": PASSWORD})

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"user", "token"}
    assert set(body["user"]) == USER_KEYS
    assert (body["user"]["username"], body["user"]["is_guest"]) == ("alice", False)


def test_signup_starts_a_session(anonymous):
    anonymous.post("/api/auth/signup", {"username": "alice", "password": PASSWORD})

    response = anonymous.get("/api/me")

    assert response.status_code == 200
    assert response.json()["user"]["username"] == "alice"


def test_signup_token_authenticates_another_client(anonymous):
    token = anonymous.post("/api/auth/signup", {"username": "alice", "password": PASSWORD}).json()[
        "token"
    ]

    response = Api(token).get("/api/me")

    assert response.json()["user"]["username"] == "alice"


def test_signup_with_a_taken_name_is_a_conflict(anonymous, owner):
    response = anonymous.post("/api/auth/signup", {"username": "OWNER", "password": PASSWORD})

    assert_error(response, 409, ErrorCode.CONFLICT)


@pytest.mark.parametrize(
    "body",
    [
        {"username": "a", "password": PASSWORD},
        {"username": "has space", "password": PASSWORD},
        {"username": "alice", "password": "short"},
        {"username": "alice"},
        {"username": "alice", "password": PASSWORD, "admin": True},
    ],
    ids=["short-name", "space-in-name", "short-password", "no-password", "unknown-field"],
)
def test_bad_signup_is_a_bad_request(anonymous, body):
    assert_error(anonymous.post("/api/auth/signup", body), 400, ErrorCode.BAD_REQUEST)


def test_login_answers_user_and_token(anonymous, owner):
    response = anonymous.post("/api/auth/login", {"username": "owner", "password": PASSWORD})

    assert response.status_code == 200
    body = response.json()
    assert body["user"]["id"] == owner.user.id
    assert Api(body["token"]).get("/api/me").status_code == 200


def test_login_starts_a_session(anonymous, owner):
    anonymous.post("/api/auth/login", {"username": "owner", "password": PASSWORD})

    assert anonymous.get("/api/me").json()["user"]["id"] == owner.user.id


def test_login_with_a_wrong_password_is_unauthenticated(anonymous, owner):
    response = anonymous.post("/api/auth/login", {"username": "owner", "password": "wrong-one!"})

    assert_error(response, 401, ErrorCode.UNAUTHENTICATED)


def test_guest_answers_a_guest_user_and_token(anonymous):
    response = anonymous.post("/api/auth/guest", {"name": "  Couch   Potato "})

    assert response.status_code == 200
    user = response.json()["user"]
    assert (user["name"], user["is_guest"]) == ("Couch Potato", True)
    assert Api(response.json()["token"]).get("/api/me").json()["user"]["id"] == user["id"]


def test_guest_starts_a_session(anonymous):
    anonymous.post("/api/auth/guest", {"name": "Visitor"})

    assert anonymous.get("/api/me").json()["user"]["is_guest"] is True


def test_me_without_credentials_is_unauthenticated(anonymous):
    assert_error(anonymous.get("/api/me"), 401, ErrorCode.UNAUTHENTICATED)


def test_me_with_an_unknown_token_is_unauthenticated():
    assert_error(Api("not-a-token").get("/api/me"), 401, ErrorCode.UNAUTHENTICATED)


def test_me_answers_the_bearer_tokens_user(as_owner, owner):
    body = as_owner.get("/api/me").json()

    assert body == {
        "user": {"id": owner.user.id, "username": "owner", "name": "owner", "is_guest": False}
    }


def test_logout_answers_204(as_owner):
    response = as_owner.post("/api/auth/logout")

    assert response.status_code == 204
    assert response.content == b""


def test_logout_revokes_the_bearer_token(as_owner, owner):
    as_owner.post("/api/auth/logout")

    assert_error(Api(owner.token).get("/api/me"), 401, ErrorCode.UNAUTHENTICATED)


def test_logout_ends_the_session(anonymous):
    anonymous.post("/api/auth/signup", {"username": "alice", "password": PASSWORD})

    anonymous.post("/api/auth/logout")

    assert_error(anonymous.get("/api/me"), 401, ErrorCode.UNAUTHENTICATED)


def test_session_cookie_authenticates_a_write(anonymous):
    anonymous.post("/api/auth/signup", {"username": "alice", "password": PASSWORD})

    response = anonymous.post("/api/rooms", {"name": "Cookie room"})

    assert response.status_code == 201
    assert response.json()["room"]["created_by"]["username"] == "alice"


# Rooms


def test_room_list_shows_public_rooms_only(anonymous, owner, room):
    make_room(owner, "Secret", hidden=True)

    response = anonymous.get("/api/rooms")

    assert response.status_code == 200
    listed = response.json()
    assert [entry["name"] for entry in listed] == ["Movie night"]
    assert set(listed[0]) == ROOM_SUMMARY_KEYS
    assert listed[0]["created_by"]["username"] == "owner"


def test_room_list_shows_the_viewer_count(anonymous, room, viewer):
    presence.connect("c1", room.id, viewer.user.id, "node-a")

    assert anonymous.get("/api/rooms").json()[0]["viewer_count"] == 1


def test_creating_a_room_answers_201_and_makes_the_caller_creator(as_owner, owner):
    response = as_owner.post(
        "/api/rooms",
        {"name": "Club", "password": "pw", "hidden": True, "settings": {"guests_allowed": False}},
    )

    assert response.status_code == 201
    room = response.json()["room"]
    assert (room["name"], room["has_password"], room["hidden"]) == ("Club", True, True)
    assert room["settings"]["guests_allowed"] is False
    assert Membership.objects.get(room_id=room["id"], user=owner.user).role == Role.CREATOR


def test_creating_a_room_needs_credentials(anonymous):
    assert_error(anonymous.post("/api/rooms", {"name": "R"}), 401, ErrorCode.UNAUTHENTICATED)


def test_get_room_answers_the_room(anonymous, room):
    response = anonymous.get(f"/api/rooms/{room.id}")

    assert response.status_code == 200
    body = response.json()["room"]
    assert (body["id"], body["name"], body["has_password"]) == (room.id, "Movie night", False)


def test_get_unknown_room_is_not_found(anonymous):
    assert_error(anonymous.get("/api/rooms/nosuchroom"), 404, ErrorCode.NOT_FOUND)


def test_creator_patches_the_room(as_owner, room):
    response = as_owner.patch(f"/api/rooms/{room.id}", {"name": "Renamed", "hidden": True})

    assert response.status_code == 200
    assert (response.json()["room"]["name"], response.json()["room"]["hidden"]) == (
        "Renamed",
        True,
    )


def test_member_cannot_patch_the_room(as_viewer, room):
    assert_error(as_viewer.patch(f"/api/rooms/{room.id}", {"name": "Mine"}), 403, "forbidden")


def test_patching_an_unknown_room_is_not_found(as_owner):
    response = as_owner.patch("/api/rooms/nosuchroom", {"name": "X"})

    assert_error(response, 404, ErrorCode.NOT_FOUND)


def test_creator_deletes_the_room(as_owner, anonymous, room):
    response = as_owner.delete(f"/api/rooms/{room.id}")

    assert response.status_code == 204
    assert_error(anonymous.get(f"/api/rooms/{room.id}"), 404, ErrorCode.NOT_FOUND)


def test_member_cannot_delete_the_room(as_viewer, room):
    assert_error(as_viewer.delete(f"/api/rooms/{room.id}"), 403, ErrorCode.FORBIDDEN)
    assert Room.objects.filter(pk=room.id).exists()


# Joining and members


def test_join_answers_the_new_member(room):
    joiner = make_user("joiner")

    response = Api(joiner.token).post(f"/api/rooms/{room.id}/join")

    assert response.status_code == 200
    member = response.json()["member"]
    assert set(member) == MEMBER_KEYS
    assert (member["role"], member["status"]) == (Role.MEMBER, MemberStatus.ACTIVE)
    assert member["permissions"] == list(DEFAULT_MEMBER_PERMISSIONS)


@pytest.fixture
def locked_room(owner):
    return make_room(owner, "Locked", password="open-sesame")


def test_join_with_the_right_password(locked_room):
    response = Api(make_user().token).post(
        f"/api/rooms/{locked_room.id}/join", {"password": "open-sesame"}
    )

    assert response.status_code == 200


@pytest.mark.parametrize("body", [None, {}, {"password": "wrong"}])
def test_join_without_the_right_password_is_forbidden(locked_room, body):
    response = Api(make_user().token).post(f"/api/rooms/{locked_room.id}/join", body)

    assert_error(response, 403, ErrorCode.FORBIDDEN)


def test_join_when_banned_is_forbidden(as_viewer, room, viewer):
    Membership.objects.filter(room=room, user=viewer.user).update(status=MemberStatus.BANNED)

    assert_error(as_viewer.post(f"/api/rooms/{room.id}/join"), 403, ErrorCode.FORBIDDEN)


def test_join_an_unknown_room_is_not_found(as_viewer):
    assert_error(as_viewer.post("/api/rooms/nosuchroom/join"), 404, ErrorCode.NOT_FOUND)


def test_members_are_listed(as_viewer, room):
    response = as_viewer.get(f"/api/rooms/{room.id}/members")

    assert response.status_code == 200
    listed = response.json()
    assert [(entry["user"]["username"], entry["role"]) for entry in listed] == [
        ("owner", Role.CREATOR),
        ("viewer", Role.MEMBER),
    ]
    assert all(set(entry) == MEMBER_KEYS for entry in listed)


def test_non_member_cannot_list_members(room):
    response = Api(make_user().token).get(f"/api/rooms/{room.id}/members")

    assert_error(response, 403, ErrorCode.FORBIDDEN)


def test_admin_patches_a_member(as_owner, room, viewer):
    response = as_owner.patch(
        f"/api/rooms/{room.id}/members/{viewer.user.id}",
        {"permissions": ["send_chat"], "status": "banned"},
    )

    assert response.status_code == 200
    member = response.json()["member"]
    assert (member["permissions"], member["status"]) == (["send_chat"], MemberStatus.BANNED)


def test_member_cannot_patch_a_member(room, viewer):
    other = make_member(room, "other")

    response = Api(other.token).patch(
        f"/api/rooms/{room.id}/members/{viewer.user.id}", {"status": "banned"}
    )

    assert_error(response, 403, ErrorCode.FORBIDDEN)


def test_patching_a_non_member_is_not_found(as_owner, room):
    response = as_owner.patch(f"/api/rooms/{room.id}/members/{make_user().user.id}", {})

    assert_error(response, 404, ErrorCode.NOT_FOUND)


def test_patching_a_member_with_a_bad_role_is_a_bad_request(as_owner, room, viewer):
    response = as_owner.patch(f"/api/rooms/{room.id}/members/{viewer.user.id}", {"role": "king"})

    assert_error(response, 400, ErrorCode.BAD_REQUEST)


# Playlist


def test_movies_answer_version_and_movies(as_viewer, room, movie):
    response = as_viewer.get(f"/api/rooms/{room.id}/movies")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"version", "movies"}
    assert body["version"] == 1
    assert body["movies"] == [movie]
    assert set(body["movies"][0]) == MOVIE_KEYS


def test_non_member_cannot_see_the_playlist(room):
    response = Api(make_user().token).get(f"/api/rooms/{room.id}/movies")

    assert_error(response, 403, ErrorCode.FORBIDDEN)


def test_adding_a_movie_answers_201_with_the_movie(as_viewer, room):
    response = as_viewer.post(
        f"/api/rooms/{room.id}/movies", {"url": "https://media.example/a.m3u8"}
    )

    assert response.status_code == 201
    movie = response.json()["movie"]
    assert set(movie) == MOVIE_KEYS
    assert (movie["title"], movie["type"], movie["position"]) == ("a.m3u8", "hls", 0)


def test_adding_a_movie_with_a_bad_url_is_a_bad_request(as_viewer, room):
    response = as_viewer.post(f"/api/rooms/{room.id}/movies", {"url": "javascript:alert(1)"})

    assert_error(response, 400, ErrorCode.BAD_REQUEST)


def test_patching_a_movie_answers_the_movie(as_owner, room, movie):
    response = as_owner.patch(f"/api/rooms/{room.id}/movies/{movie['id']}", {"title": "Two"})

    assert response.status_code == 200
    assert response.json()["movie"]["title"] == "Two"


def test_member_without_edit_permission_cannot_patch_a_movie(as_viewer, room, movie):
    response = as_viewer.patch(f"/api/rooms/{room.id}/movies/{movie['id']}", {"title": "Two"})

    assert_error(response, 403, ErrorCode.FORBIDDEN)


def test_patching_an_unknown_movie_is_not_found(as_owner, room):
    response = as_owner.patch(f"/api/rooms/{room.id}/movies/nosuchmovie", {"title": "Two"})

    assert_error(response, 404, ErrorCode.NOT_FOUND)


def test_deleting_a_movie_answers_204(as_owner, room, movie):
    response = as_owner.delete(f"/api/rooms/{room.id}/movies/{movie['id']}")

    assert response.status_code == 204
    assert as_owner.get(f"/api/rooms/{room.id}/movies").json()["movies"] == []


def test_reorder_answers_the_playlist_in_the_new_order(as_owner, owner, room, movie):
    second = playlist.add_movie(owner.user, room.id, "https://media.example/two.mp4")

    response = as_owner.post(
        f"/api/rooms/{room.id}/movies/reorder", {"order": [second["id"], movie["id"]]}
    )

    assert response.status_code == 200
    body = response.json()
    assert [entry["id"] for entry in body["movies"]] == [second["id"], movie["id"]]
    assert body["version"] == 3


def test_reorder_naming_too_few_movies_is_a_bad_request(as_owner, owner, room, movie):
    playlist.add_movie(owner.user, room.id, "https://media.example/two.mp4")

    response = as_owner.post(f"/api/rooms/{room.id}/movies/reorder", {"order": [movie["id"]]})

    assert_error(response, 400, ErrorCode.BAD_REQUEST)


# Chat


@pytest.fixture
def five_lines(room, viewer):
    return [chat.send_chat(viewer.user, room.id, f"line {n}")["id"] for n in range(5)]


def test_chat_history_is_newest_last(as_viewer, room, five_lines):
    response = as_viewer.get(f"/api/rooms/{room.id}/chat")

    assert response.status_code == 200
    listed = response.json()
    assert [message["id"] for message in listed] == five_lines
    assert set(listed[0]) == {"id", "user", "text", "sent_at"}


def test_chat_history_pages_with_before_and_limit(as_viewer, room, five_lines):
    response = as_viewer.get(f"/api/rooms/{room.id}/chat?before={five_lines[3]}&limit=2")

    assert [message["id"] for message in response.json()] == five_lines[1:3]


@pytest.mark.parametrize("query", ["limit=0", "limit=201", "limit=abc", "before=abc"])
def test_bad_chat_paging_is_a_bad_request(as_viewer, room, query):
    response = as_viewer.get(f"/api/rooms/{room.id}/chat?{query}")

    assert_error(response, 400, ErrorCode.BAD_REQUEST)


def test_non_member_cannot_read_chat(room):
    response = Api(make_user().token).get(f"/api/rooms/{room.id}/chat")

    assert_error(response, 403, ErrorCode.FORBIDDEN)


# Bad input: 400 with the error body, never a 500


def test_malformed_json_is_a_bad_request(as_owner):
    response = as_owner.post("/api/rooms", raw=b'{"name": ')

    assert_error(response, 400, ErrorCode.BAD_REQUEST)


@pytest.mark.parametrize(
    "body",
    [{"name": 5}, {"name": "R", "hidden": "yes"}, {"name": "R", "hidden": 1}, {"name": ["R"]}],
)
def test_wrong_field_types_are_a_bad_request(as_owner, body):
    assert_error(as_owner.post("/api/rooms", body), 400, ErrorCode.BAD_REQUEST)


def test_unknown_fields_are_a_bad_request(as_owner):
    response = as_owner.post("/api/rooms", {"name": "R", "colour": "red"})

    assert_error(response, 400, ErrorCode.BAD_REQUEST)
    assert "colour" in response.json()["error"]["message"]


def test_bad_settings_are_a_bad_request(as_owner):
    response = as_owner.post("/api/rooms", {"name": "R", "settings": {"guests_allowed": "no"}})

    assert_error(response, 400, ErrorCode.BAD_REQUEST)


ODD_RAW_BODIES = [b"", b"{", b"null", b"[]", b"42", b'"text"', b"true", b"{}", b"[" * 5000]
ODD_VALUES = [None, 0, -1, 1e308, True, "", "\x00", "a\x00b", "x" * 5000, [], {}, ["\x00"]]

WRITE_ENDPOINTS = {
    "signup": ("post", "/api/auth/signup", ["username", "password"]),
    "login": ("post", "/api/auth/login", ["username", "password"]),
    "guest": ("post", "/api/auth/guest", ["name"]),
    "logout": ("post", "/api/auth/logout", []),
    "create_room": ("post", "/api/rooms", ["name", "password", "hidden", "settings"]),
    "patch_room": ("patch", "/api/rooms/{room}", ["name", "password", "hidden", "settings"]),
    "join": ("post", "/api/rooms/{room}/join", ["password"]),
    "patch_member": (
        "patch",
        "/api/rooms/{room}/members/{user}",
        ["role", "permissions", "status"],
    ),
    "add_movie": ("post", "/api/rooms/{room}/movies", ["url", "title", "subtitles"]),
    "patch_movie": ("patch", "/api/rooms/{room}/movies/{movie}", ["url", "title", "subtitles"]),
    "reorder": ("post", "/api/rooms/{room}/movies/reorder", ["order"]),
}


def odd_bodies(fields):
    """Raw odd bodies, then each field alone and beside a valid-looking sibling, set to odd values."""
    yield from ODD_RAW_BODIES
    for field in fields:
        for value in ODD_VALUES:
            yield json.dumps({field: value}).encode()
            yield json.dumps({field: value, **{other: "ok" for other in fields if other != field}})
        yield json.dumps({field: {"nested": [{"deep": value} for value in ODD_VALUES]}}).encode()


@pytest.mark.parametrize("endpoint", WRITE_ENDPOINTS)
def test_odd_bodies_never_cause_a_server_error(as_owner, room, viewer, movie, endpoint):
    method, template, fields = WRITE_ENDPOINTS[endpoint]
    path = template.format(room=room.id, user=viewer.user.id, movie=movie["id"])
    failures = []

    for raw in odd_bodies(fields):
        response = as_owner.request(method, path, raw=raw)
        if response.status_code >= 500:
            failures.append((raw[:80], response.status_code))
        elif response.status_code >= 400:
            assert set(response.json()["error"]) == {"code", "message"}

    assert failures == []


@pytest.mark.parametrize(
    "method, path",
    [
        ("get", "/api/rooms/a%00b"),
        ("patch", "/api/rooms/a%00b"),
        ("delete", "/api/rooms/a%00b"),
        ("post", "/api/rooms/a%00b/join"),
        ("get", "/api/rooms/a%00b/movies"),
        ("get", "/api/rooms/a%00b/chat"),
        ("get", "/api/rooms/" + "x" * 500),
        ("patch", "/api/rooms/{room}/members/99999999999999999999"),
        ("patch", "/api/rooms/{room}/members/-1"),
        ("patch", "/api/rooms/{room}/movies/a%00b"),
        ("delete", "/api/rooms/{room}/movies/a%00b"),
        ("get", "/api/rooms/{room}/chat?before=99999999999999999999"),
        ("get", "/api/rooms/{room}/chat?limit=-99999999999999999999"),
        ("delete", "/api/rooms/{room}/chat/99999999999999999999"),
        ("delete", "/api/rooms/{room}/chat/-1"),
        ("delete", "/api/rooms/{room}/chat/abc"),
        ("delete", "/api/rooms/a%00b/chat/1"),
    ],
)
def test_odd_ids_are_answered_without_a_server_error(as_owner, room, method, path):
    response = as_owner.request(method, path.format(room=room.id), raw=b"{}")

    assert response.status_code < 500


# OpenAPI schema, health and readiness


SPEC_OPERATIONS = {
    ("post", "/api/auth/signup"),
    ("post", "/api/auth/login"),
    ("post", "/api/auth/guest"),
    ("post", "/api/auth/logout"),
    ("get", "/api/me"),
    ("get", "/api/rooms"),
    ("post", "/api/rooms"),
    ("get", "/api/rooms/{}"),
    ("patch", "/api/rooms/{}"),
    ("delete", "/api/rooms/{}"),
    ("post", "/api/rooms/{}/join"),
    ("get", "/api/rooms/{}/members"),
    ("patch", "/api/rooms/{}/members/{}"),
    ("get", "/api/rooms/{}/movies"),
    ("post", "/api/rooms/{}/movies"),
    ("patch", "/api/rooms/{}/movies/{}"),
    ("delete", "/api/rooms/{}/movies/{}"),
    ("post", "/api/rooms/{}/movies/reorder"),
    ("get", "/api/rooms/{}/chat"),
    ("delete", "/api/rooms/{}/chat/{}"),
}


def test_schema_is_an_openapi_document_listing_every_spec_operation(anonymous):
    response = anonymous.get("/api/schema/")

    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    operations = {
        (method, re.sub(r"\{[^}]+\}", "{}", path))
        for path, item in document["paths"].items()
        for method in item
    }
    assert SPEC_OPERATIONS - operations == set()


def test_health_answers_ok_with_node_id_and_uptime(anonymous, settings):
    response = anonymous.get("/health")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["node_id"] == settings.SYNCTV_NODE_ID
    assert isinstance(body["uptime_seconds"], int) and body["uptime_seconds"] >= 0


def test_ready_in_single_node_mode(anonymous):
    response = anonymous.get("/ready")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {"database": "ok", "redis": "disabled", "cluster_mode": False},
    }


def test_an_unknown_api_path_answers_404_in_the_error_format(anonymous):
    assert_error(anonymous.get("/api/no/such/thing"), 404, ErrorCode.NOT_FOUND)


def test_the_node_registry_is_shown_to_staff_in_the_admin_only(client, django_user_model):
    staff = django_user_model.objects.create_user("staffer", password="x", is_staff=True)
    assert client.get("/admin/nodes/").status_code == 302  # to the admin login

    client.force_login(staff)
    body = client.get("/admin/nodes/").json()

    assert body["cluster_mode"] is False
    assert body["nodes"] == []
    assert body["node_id"]

"""Subtitle tracks of a movie (SPEC §3): added with the movie or later, checked by the service."""

import pytest
from channels.db import database_sync_to_async

from rooms.codes import ErrorCode
from rooms.errors import ServiceError
from rooms.models import Movie, Room
from rooms.services import playlist
from rooms.services.playlist import MAX_SUBTITLES
from tests.integration.test_api import Api, assert_error
from tests.support.factories import make_member
from tests.support.ws import socket_pool  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db

MOVIE_URL = "https://media.example/film.mp4"
ENGLISH = {"url": "https://media.example/film.en.vtt", "label": "English", "lang": "en"}
BRAZILIAN = {"url": "/static/subs/film.pt-BR.vtt", "label": "Português", "lang": "pt-BR"}


@pytest.fixture
def movie(owner, room):
    return playlist.add_movie(owner.user, room.id, MOVIE_URL, "Film")


def tracks(count):
    return [{"url": f"https://media.example/film.{n}.vtt"} for n in range(count)]


def playlist_version(room):
    return Room.objects.get(pk=room.id).playlist_version


# Adding a movie with subtitles


def test_a_movie_added_without_subtitles_has_an_empty_list(viewer, room):
    response = Api(viewer.token).post(f"/api/rooms/{room.id}/movies", {"url": MOVIE_URL})

    assert response.status_code == 201
    assert response.json()["movie"]["subtitles"] == []


def test_subtitles_given_with_a_new_movie_are_kept_in_order(viewer, room):
    response = Api(viewer.token).post(
        f"/api/rooms/{room.id}/movies", {"url": MOVIE_URL, "subtitles": [ENGLISH, BRAZILIAN]}
    )

    assert response.status_code == 201
    assert response.json()["movie"]["subtitles"] == [ENGLISH, BRAZILIAN]
    listed = Api(viewer.token).get(f"/api/rooms/{room.id}/movies").json()["movies"]
    assert listed[0]["subtitles"] == [ENGLISH, BRAZILIAN]


def test_adding_subtitles_with_a_movie_needs_only_add_movie(room):
    adder = make_member(room, "adder", permissions=["add_movie"])

    response = Api(adder.token).post(
        f"/api/rooms/{room.id}/movies", {"url": MOVIE_URL, "subtitles": [ENGLISH]}
    )

    assert response.status_code == 201
    assert response.json()["movie"]["subtitles"] == [ENGLISH]


def test_a_missing_label_is_the_language_tag_else_numbered(viewer, room):
    given = [
        {"url": "https://media.example/a.vtt", "lang": "de"},
        {"url": "https://media.example/b.vtt"},
        {"url": "https://media.example/c.vtt", "label": "", "lang": ""},
    ]

    response = Api(viewer.token).post(
        f"/api/rooms/{room.id}/movies", {"url": MOVIE_URL, "subtitles": given}
    )

    assert [(t["label"], t["lang"]) for t in response.json()["movie"]["subtitles"]] == [
        ("de", "de"),
        ("Subtitles 2", ""),
        ("Subtitles 3", ""),
    ]


def test_a_label_has_its_spaces_folded_and_a_url_its_ends_trimmed(viewer, room):
    given = [{"url": "  https://media.example/a.vtt ", "label": "  Director's   commentary "}]

    response = Api(viewer.token).post(
        f"/api/rooms/{room.id}/movies", {"url": MOVIE_URL, "subtitles": given}
    )

    assert response.json()["movie"]["subtitles"] == [
        {"url": "https://media.example/a.vtt", "label": "Director's commentary", "lang": ""}
    ]


def test_a_movie_may_have_the_maximum_number_of_tracks(viewer, room):
    response = Api(viewer.token).post(
        f"/api/rooms/{room.id}/movies", {"url": MOVIE_URL, "subtitles": tracks(MAX_SUBTITLES)}
    )

    assert response.status_code == 201
    assert len(response.json()["movie"]["subtitles"]) == MAX_SUBTITLES


# Changing a movie's subtitles


def test_patching_subtitles_replaces_the_whole_list(owner, room):
    movie = playlist.add_movie(owner.user, room.id, MOVIE_URL, subtitles=[ENGLISH])

    response = Api(owner.token).patch(
        f"/api/rooms/{room.id}/movies/{movie['id']}", {"subtitles": [BRAZILIAN]}
    )

    assert response.status_code == 200
    assert response.json()["movie"]["subtitles"] == [BRAZILIAN]
    assert Movie.objects.get(pk=movie["id"]).subtitles == [BRAZILIAN]


def test_a_track_is_added_later_by_sending_the_longer_list(owner, room):
    movie = playlist.add_movie(owner.user, room.id, MOVIE_URL, subtitles=[ENGLISH])

    response = Api(owner.token).patch(
        f"/api/rooms/{room.id}/movies/{movie['id']}", {"subtitles": [ENGLISH, BRAZILIAN]}
    )

    assert response.json()["movie"]["subtitles"] == [ENGLISH, BRAZILIAN]


@pytest.mark.parametrize("cleared", [[], None], ids=["empty-list", "null"])
def test_patching_subtitles_to_nothing_removes_every_track(owner, room, cleared):
    movie = playlist.add_movie(owner.user, room.id, MOVIE_URL, subtitles=[ENGLISH])

    response = Api(owner.token).patch(
        f"/api/rooms/{room.id}/movies/{movie['id']}", {"subtitles": cleared}
    )

    assert response.json()["movie"]["subtitles"] == []


def test_patching_only_the_title_keeps_the_subtitles(owner, room):
    movie = playlist.add_movie(owner.user, room.id, MOVIE_URL, subtitles=[ENGLISH])

    response = Api(owner.token).patch(
        f"/api/rooms/{room.id}/movies/{movie['id']}", {"title": "Renamed"}
    )

    assert response.json()["movie"]["subtitles"] == [ENGLISH]


def test_changing_subtitles_bumps_the_playlist_version(owner, room, movie):
    before = playlist_version(room)

    Api(owner.token).patch(f"/api/rooms/{room.id}/movies/{movie['id']}", {"subtitles": [ENGLISH]})

    assert playlist_version(room) == before + 1


def test_changing_subtitles_needs_edit_movie(viewer, room, movie):
    response = Api(viewer.token).patch(
        f"/api/rooms/{room.id}/movies/{movie['id']}", {"subtitles": [ENGLISH]}
    )

    assert_error(response, 403, ErrorCode.FORBIDDEN)
    assert Movie.objects.get(pk=movie["id"]).subtitles == []


def test_a_member_granted_edit_movie_may_change_subtitles(room, movie):
    editor = make_member(room, "editor", permissions=["edit_movie"])

    response = Api(editor.token).patch(
        f"/api/rooms/{room.id}/movies/{movie['id']}", {"subtitles": [ENGLISH]}
    )

    assert response.status_code == 200
    assert response.json()["movie"]["subtitles"] == [ENGLISH]


# Refused subtitles: 400 with a message that names the problem, and nothing changes

BAD_SUBTITLES = {
    "too-many": (tracks(MAX_SUBTITLES + 1), f"at most {MAX_SUBTITLES}"),
    "same-url-twice": (
        [ENGLISH, {**BRAZILIAN, "url": ENGLISH["url"]}],
        "subtitles[1].url repeats subtitles[0].url",
    ),
    "unknown-key": ([{**ENGLISH, "kind": "captions"}], "unknown keys kind"),
    "no-url": ([{"label": "English"}], "subtitles[0].url"),
    "url-not-a-string": ([{"url": 42}], "subtitles[0].url must be a non-empty string"),
    "url-javascript": ([{"url": "javascript:alert(1)"}], "http(s) URL"),
    "url-protocol-relative": ([{"url": "//evil.example/a.vtt"}], "http(s) URL"),
    "url-too-long": ([{"url": "https://media.example/" + "a" * 2048}], "2048"),
    "url-with-nul": ([{"url": "https://media.example/a\x00.vtt"}], "NUL"),
    "label-not-a-string": ([{**ENGLISH, "label": 7}], "subtitles[0].label"),
    "label-too-long": ([{**ENGLISH, "label": "x" * 101}], "at most 100"),
    "label-with-nul": ([{**ENGLISH, "label": "a\x00b"}], "NUL"),
    "lang-not-a-string": ([{**ENGLISH, "lang": ["en"]}], "subtitles[0].lang"),
    "lang-with-space": ([{**ENGLISH, "lang": "en US"}], "language tag"),
    "lang-with-underscore": ([{**ENGLISH, "lang": "en_US"}], "language tag"),
    "lang-starting-with-digit": ([{**ENGLISH, "lang": "419"}], "language tag"),
    "lang-too-long": ([{**ENGLISH, "lang": "en-" + "-".join(["abcdefgh"] * 4)}], "at most 35"),
    "track-not-an-object": (["https://media.example/a.vtt"], "subtitles"),
    "not-a-list": ({"url": ENGLISH["url"]}, "subtitles"),
}


@pytest.mark.parametrize(("given", "says"), BAD_SUBTITLES.values(), ids=BAD_SUBTITLES.keys())
def test_bad_subtitles_on_a_new_movie_are_a_bad_request(owner, room, given, says):
    response = Api(owner.token).post(
        f"/api/rooms/{room.id}/movies", {"url": MOVIE_URL, "subtitles": given}
    )

    assert_error(response, 400, ErrorCode.BAD_REQUEST)
    assert says in response.json()["error"]["message"]
    assert not Movie.objects.filter(room=room).exists()


@pytest.mark.parametrize(("given", "says"), BAD_SUBTITLES.values(), ids=BAD_SUBTITLES.keys())
def test_bad_subtitles_on_a_patch_are_a_bad_request(owner, room, given, says):
    movie = playlist.add_movie(owner.user, room.id, MOVIE_URL, subtitles=[ENGLISH])
    before = playlist_version(room)

    response = Api(owner.token).patch(
        f"/api/rooms/{room.id}/movies/{movie['id']}", {"subtitles": given}
    )

    assert_error(response, 400, ErrorCode.BAD_REQUEST)
    assert says in response.json()["error"]["message"]
    assert Movie.objects.get(pk=movie["id"]).subtitles == [ENGLISH]
    assert playlist_version(room) == before


@pytest.mark.parametrize(
    "given",
    [("not", "a", "list"), [ENGLISH["url"]], [{**ENGLISH, "lang": True}], [{"url": None}]],
    ids=["tuple", "bare-url", "lang-bool", "url-none"],
)
def test_the_service_refuses_bad_subtitles_whoever_calls_it(owner, room, given):
    with pytest.raises(ServiceError) as raised:
        playlist.add_movie(owner.user, room.id, MOVIE_URL, subtitles=given)

    assert raised.value.code == ErrorCode.BAD_REQUEST
    assert "subtitles" in raised.value.message


# Sockets see the tracks


@pytest.mark.django_db(transaction=True)
async def test_a_subtitle_change_reaches_sockets_in_the_playlist_event(sockets, owner, room):
    movie = await database_sync_to_async(playlist.add_movie)(owner.user, room.id, MOVIE_URL)
    socket = await sockets.join(room.id, token=owner.token)
    assert socket.snapshot["playlist"]["movies"][0]["subtitles"] == []

    await database_sync_to_async(playlist.update_movie)(
        owner.user, room.id, movie["id"], {"subtitles": [ENGLISH]}
    )

    event = await socket.expect("playlist", where=lambda f: f["playlist"]["movies"][0]["subtitles"])
    assert event["playlist"]["movies"][0]["subtitles"] == [ENGLISH]
    assert event["playlist"]["version"] == socket.snapshot["playlist"]["version"] + 1

"""Services against PostgreSQL: rooms, members, playlist, chat, playback and presence."""

import pytest
from django.db import connection

from rooms.codes import ErrorCode
from rooms.errors import ServiceError
from rooms.models import Membership, Movie, PlaybackState, Room
from rooms.payloads import now_ms
from rooms.permissions import DEFAULT_MEMBER_PERMISSIONS, MemberStatus, Role
from rooms.services import chat, members, playback, playlist, presence, rooms
from rooms.services.playback import MAX_RATE, MIN_RATE
from tests.support.factories import make_member, make_room, make_user

pytestmark = pytest.mark.django_db

MOVIE_URL = "https://media.example/films/one.mp4"


def refused(code: ErrorCode, action, *args, **kwargs) -> ServiceError:
    """Run `action` and return the ServiceError it raises, which must carry `code`."""
    with pytest.raises(ServiceError) as raised:
        action(*args, **kwargs)
    assert raised.value.code == code, raised.value.message
    return raised.value


def stored_playback(room) -> PlaybackState:
    return PlaybackState.objects.get(room_id=room.id)


def playlist_version(room) -> int:
    return Room.objects.get(pk=room.id).playlist_version


def add(owner, room, url=MOVIE_URL, title=None) -> dict:
    return playlist.add_movie(owner.user, room.id, url, title)


def test_suite_runs_against_postgresql(settings):
    assert settings.DATABASES["default"]["ENGINE"].endswith("postgresql")
    assert connection.vendor == "postgresql"


def test_connections_share_one_counting_cursor_class():
    first = connection.get_connection_params()["cursor_factory"]
    second = connection.get_connection_params()["cursor_factory"]

    assert first is second
    assert first.__name__ == "CursorWrapper"  # django-prometheus's counting cursor


# Rooms: create and join


def test_creating_a_room_makes_the_caller_its_creator(owner, room):
    membership = Membership.objects.get(room=room, user=owner.user)

    assert membership.role == Role.CREATOR
    assert membership.status == MemberStatus.ACTIVE


def test_a_new_room_starts_paused_at_version_zero(room):
    assert playback.current(room.id) == {
        "movie_id": None,
        "position": 0.0,
        "playing": False,
        "rate": 1.0,
        "version": 0,
        "updated_at": 0,
    }


def test_room_payload_never_shows_the_password(owner):
    room = make_room(owner, "Private", password="s3cret-pass")

    payload = rooms.room_with_viewers(room)

    assert payload["has_password"] is True
    assert "s3cret-pass" not in str(payload)
    assert "password" not in payload


@pytest.mark.parametrize("name", ["", "   ", None, 5, "x" * 101, "bad\x00name"])
def test_room_name_must_be_sensible_text(owner, name):
    refused(ErrorCode.BAD_REQUEST, rooms.create_room, owner.user, name)


def test_unknown_room_setting_is_refused(owner):
    refused(ErrorCode.BAD_REQUEST, rooms.create_room, owner.user, "R", settings={"autoplay": True})


def test_joining_an_open_room_gives_the_default_member_permissions(room):
    account = make_user("joiner")

    membership = rooms.join_room(account.user, room.id)

    assert membership.role == Role.MEMBER
    assert membership.permissions == list(DEFAULT_MEMBER_PERMISSIONS)


def test_joining_uses_the_rooms_member_permissions_setting(owner):
    room = make_room(owner, "Quiet", settings={"member_permissions": ["send_chat"]})

    membership = rooms.join_room(make_user("joiner").user, room.id)

    assert membership.permissions == ["send_chat"]


def test_joining_twice_keeps_one_membership(room, viewer):
    rooms.join_room(viewer.user, room.id)

    assert Membership.objects.filter(room=room, user=viewer.user).count() == 1


def test_joining_an_unknown_room_is_not_found():
    refused(ErrorCode.NOT_FOUND, rooms.join_room, make_user().user, "nosuchroom")


@pytest.fixture
def locked_room(owner):
    return make_room(owner, "Locked", password="open-sesame")


@pytest.mark.parametrize("password", [None, "", "wrong", 1234])
def test_password_room_refuses_a_missing_or_wrong_password(locked_room, password):
    refused(ErrorCode.FORBIDDEN, rooms.join_room, make_user().user, locked_room.id, password)


def test_password_room_admits_the_right_password(locked_room):
    membership = rooms.join_room(make_user().user, locked_room.id, "open-sesame")

    assert membership.status == MemberStatus.ACTIVE


def test_a_member_of_a_password_room_rejoins_without_the_password(locked_room):
    account = make_user()
    rooms.join_room(account.user, locked_room.id, "open-sesame")

    assert rooms.join_room(account.user, locked_room.id).user_id == account.user.id


def test_banned_member_cannot_join_again(room, viewer):
    Membership.objects.filter(room=room, user=viewer.user).update(status=MemberStatus.BANNED)

    refused(ErrorCode.FORBIDDEN, rooms.join_room, viewer.user, room.id)


def test_guests_may_join_by_default(room):
    guest = make_user("Visitor", guest=True)

    assert rooms.join_room(guest.user, room.id).role == Role.MEMBER


def test_guests_are_refused_when_the_room_does_not_allow_them(owner):
    room = make_room(owner, "Members only", settings={"guests_allowed": False})
    guest = make_user("Visitor", guest=True)

    refused(ErrorCode.FORBIDDEN, rooms.join_room, guest.user, room.id)


def test_hidden_rooms_are_left_out_of_the_public_list(owner, room):
    make_room(owner, "Secret", hidden=True)

    assert [entry["name"] for entry in rooms.list_public_rooms()] == ["Movie night"]


# Rooms: update and delete


def test_admin_renames_the_room(room):
    admin = make_member(room, "admin", role=Role.ADMIN)

    updated = rooms.update_room(admin.user, room.id, {"name": "  Film   club "})

    assert updated.name == "Film club"
    assert Room.objects.get(pk=room.id).name == "Film club"


def test_setting_a_password_marks_the_room_as_having_one(owner, room):
    updated = rooms.update_room(owner.user, room.id, {"password": "new-pass"})

    assert rooms.room_with_viewers(updated)["has_password"] is True


def test_settings_change_keeps_the_other_settings(owner):
    room = make_room(owner, "R", settings={"member_permissions": ["send_chat"]})

    updated = rooms.update_room(owner.user, room.id, {"settings": {"guests_allowed": False}})

    assert updated.settings == {"guests_allowed": False, "member_permissions": ["send_chat"]}


@pytest.mark.parametrize(
    "changes",
    [{"owner": 3}, {"hidden": "yes"}, {"name": ""}, {"settings": []}, {"settings": {"x": 1}}],
)
def test_bad_room_change_is_refused(owner, room, changes):
    refused(ErrorCode.BAD_REQUEST, rooms.update_room, owner.user, room.id, changes)


def test_creator_deletes_the_room(owner, room):
    rooms.delete_room(owner.user, room.id)

    assert not Room.objects.filter(pk=room.id).exists()


def test_admin_cannot_delete_the_room(room):
    admin = make_member(room, "admin", role=Role.ADMIN)

    refused(ErrorCode.FORBIDDEN, rooms.delete_room, admin.user, room.id)
    assert Room.objects.filter(pk=room.id).exists()


def test_deleting_an_unknown_room_is_not_found(owner):
    refused(ErrorCode.NOT_FOUND, rooms.delete_room, owner.user, "nosuchroom")


# Members


def test_members_are_listed_with_role_and_online_flag(owner, room, viewer):
    presence.connect("c1", room.id, viewer.user.id, "node-a")

    listed = {
        entry["user"]["username"]: entry for entry in members.list_members(owner.user, room.id)
    }

    assert listed["owner"]["role"] == Role.CREATOR
    assert listed["owner"]["online"] is False
    assert listed["viewer"]["online"] is True
    assert listed["viewer"]["permissions"] == list(DEFAULT_MEMBER_PERMISSIONS)


def test_non_member_cannot_list_members(room):
    refused(ErrorCode.FORBIDDEN, members.list_members, make_user().user, room.id)


def test_creator_makes_a_member_admin(owner, room, viewer):
    changed = members.update_member(owner.user, room.id, viewer.user.id, {"role": "admin"})

    assert changed["role"] == Role.ADMIN
    assert Membership.objects.get(room=room, user=viewer.user).role == Role.ADMIN


def test_banning_a_member_shuts_them_out(owner, room, viewer):
    members.update_member(owner.user, room.id, viewer.user.id, {"status": "banned"})

    refused(ErrorCode.FORBIDDEN, chat.send_chat, viewer.user, room.id, "still here?")


def test_the_creator_cannot_be_changed(room, owner):
    admin = make_member(room, "admin", role=Role.ADMIN)

    refused(
        ErrorCode.FORBIDDEN,
        members.update_member,
        admin.user,
        room.id,
        owner.user.id,
        {"status": "banned"},
    )


def test_an_admin_cannot_change_another_admin(room):
    first = make_member(room, "admin1", role=Role.ADMIN)
    second = make_member(room, "admin2", role=Role.ADMIN)

    refused(
        ErrorCode.FORBIDDEN,
        members.update_member,
        first.user,
        room.id,
        second.user.id,
        {"permissions": []},
    )


@pytest.mark.parametrize(
    "changes",
    [{"role": "creator"}, {"permissions": ["fly"]}, {"status": "gone"}, {"nickname": "x"}],
)
def test_bad_member_change_is_refused(owner, room, viewer, changes):
    refused(
        ErrorCode.BAD_REQUEST, members.update_member, owner.user, room.id, viewer.user.id, changes
    )


def test_changing_a_non_member_is_not_found(owner, room):
    stranger = make_user()

    refused(ErrorCode.NOT_FOUND, members.update_member, owner.user, room.id, stranger.user.id, {})


# Playlist


def test_first_movie_becomes_the_current_movie(owner, room):
    movie = add(owner, room)

    assert stored_playback(room).movie_id == movie["id"]


def test_adding_a_movie_bumps_the_playlist_version(owner, room):
    before = playlist_version(room)

    add(owner, room)

    assert playlist_version(room) == before + 1


def test_later_movies_are_appended_and_leave_the_current_movie(owner, room):
    first = add(owner, room)

    second = add(owner, room, "https://media.example/two.m3u8", "Two")

    assert stored_playback(room).movie_id == first["id"]
    assert (second["position"], second["type"], second["title"]) == (1, "hls", "Two")


def test_movie_title_defaults_to_the_file_name(owner, room):
    assert add(owner, room)["title"] == "one.mp4"


@pytest.mark.parametrize(
    "url",
    ["", "javascript:alert(1)", "ftp://host/a.mp4", "//evil.example/a.mp4", 7, "https://a/\x00"],
)
def test_bad_movie_url_is_refused(owner, room, url):
    refused(ErrorCode.BAD_REQUEST, playlist.add_movie, owner.user, room.id, url)


def test_movie_on_this_site_is_accepted(owner, room):
    assert add(owner, room, "/static/films/local.webm")["type"] == "webm"


def test_playlist_lists_movies_in_order_with_its_version(owner, room):
    add(owner, room, title="A")
    add(owner, room, title="B")

    listed = playlist.get_playlist(owner.user, room.id)

    assert listed["version"] == 2
    assert [movie["title"] for movie in listed["movies"]] == ["A", "B"]


def test_editing_a_movie_changes_it_and_bumps_the_version(owner, room):
    movie = add(owner, room)
    before = playlist_version(room)

    edited = playlist.update_movie(
        owner.user, room.id, movie["id"], {"title": "Renamed", "url": "https://x.example/a.webm"}
    )

    assert (edited["title"], edited["type"]) == ("Renamed", "webm")
    assert playlist_version(room) == before + 1


def test_editing_an_unknown_field_is_refused(owner, room):
    movie = add(owner, room)

    refused(
        ErrorCode.BAD_REQUEST, playlist.update_movie, owner.user, room.id, movie["id"], {"x": 1}
    )


def test_editing_an_unknown_movie_is_not_found(owner, room):
    refused(ErrorCode.NOT_FOUND, playlist.update_movie, owner.user, room.id, "nosuch", {})


def test_deleting_the_current_movie_clears_it(owner, room):
    movie = add(owner, room)

    playlist.delete_movie(owner.user, room.id, movie["id"])

    assert stored_playback(room).movie_id is None
    assert not Movie.objects.filter(pk=movie["id"]).exists()


def test_deleting_another_movie_keeps_the_current_one(owner, room):
    current = add(owner, room)
    other = add(owner, room)

    playlist.delete_movie(owner.user, room.id, other["id"])

    assert stored_playback(room).movie_id == current["id"]


def test_deleting_a_movie_bumps_the_playlist_version(owner, room):
    movie = add(owner, room)
    before = playlist_version(room)

    playlist.delete_movie(owner.user, room.id, movie["id"])

    assert playlist_version(room) == before + 1


def test_deleting_a_movie_of_another_room_is_not_found(owner, room):
    elsewhere = make_room(owner, "Elsewhere")
    movie = add(owner, elsewhere)

    refused(ErrorCode.NOT_FOUND, playlist.delete_movie, owner.user, room.id, movie["id"])


@pytest.fixture
def three_movies(owner, room):
    return [add(owner, room, title=title)["id"] for title in ("A", "B", "C")]


def test_reorder_puts_movies_in_the_given_order(owner, room, three_movies):
    a, b, c = three_movies

    result = playlist.reorder(owner.user, room.id, [c, a, b])

    assert [movie["id"] for movie in result["movies"]] == [c, a, b]
    assert [movie["position"] for movie in result["movies"]] == [0, 1, 2]
    assert result["version"] == playlist_version(room) == 4


@pytest.mark.parametrize(
    "order",
    [
        lambda a, b, c: [a, b],
        lambda a, b, c: [a, b, c, a],
        lambda a, b, c: [a, a, b],
        lambda a, b, c: [a, b, "nosuch"],
        lambda a, b, c: "abc",
        lambda a, b, c: [a, b, 3],
    ],
    ids=["missing", "repeated", "duplicate", "unknown", "not-a-list", "not-a-string"],
)
def test_reorder_must_name_every_movie_once(owner, room, three_movies, order):
    refused(ErrorCode.BAD_REQUEST, playlist.reorder, owner.user, room.id, order(*three_movies))


# Chat


def test_sent_chat_is_returned_with_its_author(room, viewer):
    message = chat.send_chat(viewer.user, room.id, "hello")

    assert message["text"] == "hello"
    assert message["user"]["username"] == "viewer"
    assert abs(message["sent_at"] - now_ms()) < 5000


@pytest.mark.parametrize("text", ["", "   ", None, 5, "x" * (chat.MAX_CHAT_LENGTH + 1), "a\x00b"])
def test_bad_chat_text_is_refused(room, viewer, text):
    refused(ErrorCode.BAD_REQUEST, chat.send_chat, viewer.user, room.id, text)


def test_longest_chat_line_is_accepted(room, viewer):
    text = "x" * chat.MAX_CHAT_LENGTH

    assert chat.send_chat(viewer.user, room.id, text)["text"] == text


@pytest.fixture
def five_lines(room, viewer):
    return [chat.send_chat(viewer.user, room.id, f"line {n}")["id"] for n in range(5)]


def test_history_is_newest_last(room, viewer, five_lines):
    history = chat.history(viewer.user, room.id)

    assert [message["id"] for message in history] == five_lines


def test_history_limit_keeps_the_newest(room, viewer, five_lines):
    history = chat.history(viewer.user, room.id, limit=2)

    assert [message["id"] for message in history] == five_lines[-2:]


def test_history_before_pages_back(room, viewer, five_lines):
    history = chat.history(viewer.user, room.id, before=five_lines[3], limit=2)

    assert [message["id"] for message in history] == five_lines[1:3]


@pytest.mark.parametrize(
    ("before", "limit"), [(None, 0), (None, chat.MAX_HISTORY + 1), (None, "5"), ("x", 5)]
)
def test_bad_history_paging_is_refused(room, viewer, before, limit):
    refused(ErrorCode.BAD_REQUEST, chat.history, viewer.user, room.id, before, limit)


def test_non_member_cannot_read_history(room):
    refused(ErrorCode.FORBIDDEN, chat.history, make_user().user, room.id)


# Playback


def set_state(room, **fields):
    PlaybackState.objects.filter(room_id=room.id).update(**fields)


def change(account, room, action, **fields) -> dict:
    return playback.change_playback(account.user, room.id, action, **fields)


def test_play_starts_playing_where_it_was_paused(room, viewer):
    set_state(room, position=42.0, playing=False, updated_at=now_ms() - 10_000)

    state = change(viewer, room, "play")

    assert state["playing"] is True
    assert state["position"] == 42.0
    assert state["version"] == 1


def test_play_with_a_position_starts_there(room, viewer):
    state = change(viewer, room, "play", position=12.5)

    assert (state["playing"], state["position"]) == (True, 12.5)


def test_pause_re_anchors_the_position_where_playback_got_to(room, viewer):
    set_state(room, position=5.0, playing=True, rate=1.0, updated_at=now_ms() - 10_000)

    state = change(viewer, room, "pause")

    assert state["playing"] is False
    assert 14.9 <= state["position"] <= 16.0


def test_rate_change_while_playing_re_anchors_at_the_old_rate(room, viewer):
    set_state(room, position=0.0, playing=True, rate=2.0, updated_at=now_ms() - 10_000)

    state = change(viewer, room, "rate", rate=1.0)

    assert state["rate"] == 1.0
    assert state["playing"] is True
    assert 19.9 <= state["position"] <= 21.0


def test_rate_change_while_paused_keeps_the_position(room, viewer):
    set_state(room, position=30.0, playing=False, updated_at=now_ms() - 10_000)

    state = change(viewer, room, "rate", rate=0.5)

    assert (state["position"], state["rate"]) == (30.0, 0.5)


def test_seek_moves_the_position_and_keeps_playing(room, viewer):
    set_state(room, playing=True)

    state = change(viewer, room, "seek", position=90)

    assert (state["position"], state["playing"]) == (90.0, True)


def test_updated_at_is_stamped_with_server_time(room, viewer):
    state = change(viewer, room, "seek", position=1)

    assert abs(state["updated_at"] - now_ms()) < 5000


def test_every_change_bumps_the_version_by_one(room, viewer):
    versions = [
        change(viewer, room, "play")["version"],
        change(viewer, room, "seek", position=3)["version"],
        change(viewer, room, "rate", rate=1.5)["version"],
        change(viewer, room, "pause")["version"],
    ]

    assert versions == [1, 2, 3, 4]
    assert stored_playback(room).version == 4


@pytest.mark.parametrize("rate", [MIN_RATE, MAX_RATE, 1])
def test_rate_at_the_bounds_is_accepted(room, viewer, rate):
    assert change(viewer, room, "rate", rate=rate)["rate"] == rate


@pytest.mark.parametrize("rate", [MIN_RATE - 0.01, MAX_RATE + 0.01, 0, "2", True, None])
def test_rate_out_of_bounds_is_refused(room, viewer, rate):
    refused(ErrorCode.BAD_REQUEST, change, viewer, room, "rate", rate=rate)
    assert stored_playback(room).version == 0


@pytest.mark.parametrize("position", [-1, float("nan"), float("inf"), "10", True, None])
def test_bad_seek_position_is_refused(room, viewer, position):
    refused(ErrorCode.BAD_REQUEST, change, viewer, room, "seek", position=position)


def test_unknown_playback_action_is_refused(room, viewer):
    refused(ErrorCode.BAD_REQUEST, change, viewer, room, "rewind")


def test_set_movie_makes_it_current_paused_at_zero(owner, room, viewer):
    add(owner, room)
    second = add(owner, room)
    set_state(room, position=50.0, playing=True)

    state = change(viewer, room, "set_movie", movie_id=second["id"])

    assert (state["movie_id"], state["position"], state["playing"]) == (second["id"], 0.0, False)


@pytest.mark.parametrize("movie_id", ["nosuchmovie", "bad\x00id"])
def test_set_movie_to_an_unknown_movie_is_not_found(room, viewer, movie_id):
    refused(ErrorCode.NOT_FOUND, change, viewer, room, "set_movie", movie_id=movie_id)


def test_set_movie_from_another_room_is_not_found(owner, room, viewer):
    movie = add(owner, make_room(owner, "Elsewhere"))

    refused(ErrorCode.NOT_FOUND, change, viewer, room, "set_movie", movie_id=movie["id"])


def test_playback_of_an_unknown_room_is_not_found(viewer):
    refused(ErrorCode.NOT_FOUND, playback.change_playback, viewer.user, "nosuchroom", "play")


# Presence


def test_presence_counts_connections_per_user_and_distinct_viewers(room, owner, viewer):
    presence.connect("c1", room.id, viewer.user.id, "node-a")
    presence.connect("c2", room.id, viewer.user.id, "node-b")
    presence.connect("c3", room.id, owner.user.id, "node-a")

    online, viewers = presence.online(room.id)

    assert viewers == 2
    assert {entry["user"]["username"]: entry["connections"] for entry in online} == {
        "owner": 1,
        "viewer": 2,
    }


def test_presence_entries_carry_each_users_role(room, owner, viewer):
    presence.connect("c1", room.id, viewer.user.id, "node-a")
    presence.connect("c2", room.id, owner.user.id, "node-a")

    online, _ = presence.online(room.id)

    assert [(entry["user"]["username"], entry["role"]) for entry in online] == [
        ("viewer", Role.MEMBER),  # by join time
        ("owner", Role.CREATOR),
    ]
    assert all(set(entry) == {"user", "role", "connections"} for entry in online)


def test_disconnect_removes_the_connection(room, viewer):
    presence.connect("c1", room.id, viewer.user.id, "node-a")

    presence.disconnect("c1", room.id)

    assert presence.online(room.id) == ([], 0)


def test_viewer_count_shows_in_the_room_and_the_public_list(room, viewer):
    presence.connect("c1", room.id, viewer.user.id, "node-a")
    presence.connect("c2", room.id, viewer.user.id, "node-a")

    assert rooms.room_with_viewers(room)["viewer_count"] == 1
    assert rooms.list_public_rooms()[0]["viewer_count"] == 1


def test_clearing_a_node_forgets_only_its_connections(room, owner, viewer):
    presence.connect("c1", room.id, viewer.user.id, "node-a")
    presence.connect("c2", room.id, owner.user.id, "node-b")

    cleared = presence.clear_node("node-a")

    assert cleared == {room.id}
    assert [entry["user"]["username"] for entry in presence.online(room.id)[0]] == ["owner"]


@pytest.mark.parametrize("url", ["http://[::1/a.mp4", "http://[1]/a.mp4", "http://a\uff03b/a.mp4"])
def test_a_movie_url_that_cannot_be_parsed_is_refused_as_bad_input(url):
    owner = make_user("owner")
    room = make_room(owner)

    error = refused(ErrorCode.BAD_REQUEST, playlist.add_movie, owner.user, room.id, url)

    assert "url" in error.message
    assert not Movie.objects.filter(room=room).exists()

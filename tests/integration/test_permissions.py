"""Who may do what in a room (SPEC §3 roles and permissions), as one table of role x action."""

import pytest

from rooms.codes import ErrorCode
from rooms.errors import ServiceError
from rooms.models import Membership, Room
from rooms.permissions import (
    ALL_PERMISSIONS,
    DEFAULT_MEMBER_PERMISSIONS,
    MemberStatus,
    Role,
    effective_permissions,
)
from rooms.services import chat, members, playback, playlist, rooms
from tests.support.factories import make_member, make_room, make_user

pytestmark = pytest.mark.django_db


class Scene:
    """A room with its creator, a movie in the playlist and a plain member to act on."""

    def __init__(self):
        self.owner = make_user("owner")
        self.room = make_room(self.owner, "Movie night")
        self.movie_id = playlist.add_movie(
            self.owner.user, self.room.id, "https://media.example/a.mp4"
        )["id"]
        self.target = make_member(self.room, "target")
        self.message_id = chat.send_chat(self.target.user, self.room.id, "spoiler")["id"]

    def actor(self, role: str):
        """The user who acts, in one of the roles of the table."""
        if role == "creator":
            return self.owner.user
        if role == "admin":
            return make_member(self.room, "admin", role=Role.ADMIN).user
        if role == "member":
            return make_member(self.room, "member").user
        if role == "member_without_permissions":
            return make_member(self.room, "powerless", permissions=[]).user
        if role == "banned":
            account = make_member(self.room, "banned")
            Membership.objects.filter(room=self.room, user=account.user).update(
                status=MemberStatus.BANNED
            )
            return account.user
        if role == "non_member":
            return make_user("stranger").user
        raise AssertionError(role)


@pytest.fixture
def scene():
    return Scene()


SUBTITLES = [{"url": "https://media.example/b.en.vtt", "lang": "en"}]

ACTIONS = {
    "add_movie": lambda s, user: playlist.add_movie(user, s.room.id, "https://media.example/b.mp4"),
    "add_movie_with_subtitles": lambda s, user: playlist.add_movie(
        user, s.room.id, "https://media.example/b.mp4", subtitles=SUBTITLES
    ),
    "edit_movie": lambda s, user: playlist.update_movie(
        user, s.room.id, s.movie_id, {"title": "Renamed"}
    ),
    "edit_subtitles": lambda s, user: playlist.update_movie(
        user, s.room.id, s.movie_id, {"subtitles": SUBTITLES}
    ),
    "delete_movie": lambda s, user: playlist.delete_movie(user, s.room.id, s.movie_id),
    "set_current_movie": lambda s, user: playback.change_playback(
        user, s.room.id, "set_movie", movie_id=s.movie_id
    ),
    "control_playback": lambda s, user: playback.change_playback(
        user, s.room.id, "seek", position=10
    ),
    "send_chat": lambda s, user: chat.send_chat(user, s.room.id, "hello"),
    "delete_chat": lambda s, user: chat.delete_chat(user, s.room.id, s.message_id),
    "patch_room": lambda s, user: rooms.update_room(user, s.room.id, {"name": "Renamed"}),
    "delete_room": lambda s, user: rooms.delete_room(user, s.room.id),
    "patch_member": lambda s, user: members.update_member(
        user, s.room.id, s.target.user.id, {"permissions": ["send_chat"]}
    ),
}

MEMBER_MAY = {"add_movie", "set_current_movie", "control_playback", "send_chat"}
MEMBER_ACTIONS_MAY = MEMBER_MAY | {"add_movie_with_subtitles"}
ALLOWED = {
    "creator": set(ACTIONS),
    "admin": set(ACTIONS) - {"delete_room"},
    "member": MEMBER_ACTIONS_MAY,
    "member_without_permissions": set(),
    "banned": set(),
    "non_member": set(),
}

TABLE = [
    pytest.param(role, action, action in allowed, id=f"{role}-{action}")
    for role, allowed in ALLOWED.items()
    for action in ACTIONS
]


@pytest.mark.parametrize(("role", "action", "allowed"), TABLE)
def test_role_may_or_may_not_act(scene, role, action, allowed):
    user = scene.actor(role)

    if allowed:
        ACTIONS[action](scene, user)
    else:
        with pytest.raises(ServiceError) as raised:
            ACTIONS[action](scene, user)
        assert raised.value.code == ErrorCode.FORBIDDEN, raised.value.message


def test_a_refused_action_changes_nothing(scene):
    user = scene.actor("member")

    with pytest.raises(ServiceError):
        ACTIONS["patch_room"](scene, user)

    assert Room.objects.get(pk=scene.room.id).name == "Movie night"


def test_member_default_permissions_are_the_member_column_of_the_table():
    assert set(DEFAULT_MEMBER_PERMISSIONS) == MEMBER_MAY


def test_granting_a_permission_lets_a_member_use_it(scene):
    user = scene.actor("member_without_permissions")
    members.update_member(scene.owner.user, scene.room.id, user.id, {"permissions": ["edit_movie"]})

    edited = ACTIONS["edit_movie"](scene, user)

    assert edited["title"] == "Renamed"


@pytest.mark.parametrize("role", [Role.CREATOR, Role.ADMIN])
def test_creators_and_admins_have_every_permission(role):
    assert effective_permissions(role, []) == list(ALL_PERMISSIONS)


def test_members_have_what_they_were_granted_in_canonical_order():
    assert effective_permissions(Role.MEMBER, ["send_chat", "add_movie", "fly"]) == [
        "add_movie",
        "send_chat",
    ]


def test_permission_names_are_those_of_the_spec():
    assert set(ALL_PERMISSIONS) == {
        "add_movie",
        "edit_movie",
        "delete_movie",
        "set_current_movie",
        "control_playback",
        "send_chat",
    }

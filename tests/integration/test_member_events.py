"""Live membership changes: `online` entries carry the role, and a changed member hears `me`."""

import pytest
from channels.db import database_sync_to_async

from rooms.models import Membership
from rooms.permissions import ALL_PERMISSIONS, MemberStatus, Permission, Role
from rooms.services import members
from tests.integration.test_api import Api
from tests.support.factories import make_member
from tests.support.ws import socket_pool  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db(transaction=True)

db = database_sync_to_async


def roles_of(frame):
    """{user id: role} of an `online` list (of a snapshot or a presence frame)."""
    return {entry["user"]["id"]: entry["role"] for entry in frame["online"]}


def frames_of(frames, kind):
    return [frame for frame in frames if frame["type"] == kind]


# Roles in `online`


async def test_the_snapshot_lists_online_users_with_their_roles(sockets, owner, room, viewer):
    admin = await db(make_member)(room, "moderator", role=Role.ADMIN)
    await sockets.join(room.id, token=owner.token)
    await sockets.join(room.id, token=admin.token)

    socket = await sockets.join(room.id, token=viewer.token)

    assert roles_of(socket.snapshot) == {
        owner.user.id: Role.CREATOR,
        admin.user.id: Role.ADMIN,
        viewer.user.id: Role.MEMBER,
    }


async def test_presence_frames_carry_roles(sockets, owner, room, viewer):
    first = await sockets.join(room.id, token=owner.token)

    await sockets.join(room.id, token=viewer.token)

    event = await first.expect("presence", where=lambda f: f["viewer_count"] == 2)
    assert roles_of(event) == {owner.user.id: Role.CREATOR, viewer.user.id: Role.MEMBER}


# A role or permission change is told to the room and to the member


async def test_promotion_updates_the_rooms_presence(sockets, owner, room, viewer):
    watcher = await sockets.join(room.id, token=owner.token)
    await sockets.join(room.id, token=viewer.token)

    response = await db(Api(owner.token).patch)(
        f"/api/rooms/{room.id}/members/{viewer.user.id}", {"role": Role.ADMIN}
    )

    assert response.status_code == 200
    event = await watcher.expect(
        "presence", where=lambda f: roles_of(f).get(viewer.user.id) == Role.ADMIN
    )
    assert roles_of(event) == {owner.user.id: Role.CREATOR, viewer.user.id: Role.ADMIN}
    assert event["viewer_count"] == 2


async def test_promotion_sends_me_to_every_socket_of_that_member_only(sockets, owner, room, viewer):
    watcher = await sockets.join(room.id, token=owner.token)
    promoted = [
        await sockets.join(room.id, token=viewer.token),
        await sockets.join(room.id, token=viewer.token),
    ]

    await db(Api(owner.token).patch)(
        f"/api/rooms/{room.id}/members/{viewer.user.id}", {"role": Role.ADMIN}
    )

    for socket in promoted:
        event = await socket.expect("me")
        assert set(event) == {"type", "me"}
        assert event["me"] == {
            **socket.snapshot["me"],
            "role": Role.ADMIN,
            "permissions": list(ALL_PERMISSIONS),
        }
    await watcher.expect("presence", where=lambda f: roles_of(f).get(viewer.user.id) == Role.ADMIN)
    assert frames_of(await watcher.drain(), "me") == []


async def test_a_permission_change_sends_me_with_the_new_permissions(sockets, owner, room, viewer):
    socket = await sockets.join(room.id, token=viewer.token)

    await db(Api(owner.token).patch)(
        f"/api/rooms/{room.id}/members/{viewer.user.id}",
        {"permissions": [Permission.SEND_CHAT, Permission.EDIT_MOVIE]},
    )

    event = await socket.expect("me")
    assert event["me"]["user"]["id"] == viewer.user.id
    assert event["me"]["role"] == Role.MEMBER
    assert event["me"]["permissions"] == [Permission.EDIT_MOVIE, Permission.SEND_CHAT]


async def test_a_permission_change_is_also_told_to_the_room(sockets, owner, room, viewer):
    watcher = await sockets.join(room.id, token=owner.token)
    await sockets.join(room.id, token=viewer.token)
    await watcher.expect("presence", where=lambda f: f["viewer_count"] == 2)
    await watcher.drain()

    await db(members.update_member)(
        owner.user, room.id, viewer.user.id, {"permissions": [Permission.SEND_CHAT]}
    )

    event = await watcher.expect("presence")
    assert roles_of(event) == {owner.user.id: Role.CREATOR, viewer.user.id: Role.MEMBER}


async def test_demotion_sends_me_with_the_stored_permissions(sockets, owner, room):
    admin = await db(make_member)(room, "moderator", role=Role.ADMIN, permissions=["send_chat"])
    socket = await sockets.join(room.id, token=admin.token)
    assert socket.snapshot["me"]["permissions"] == list(ALL_PERMISSIONS)

    await db(members.update_member)(owner.user, room.id, admin.user.id, {"role": Role.MEMBER})

    event = await socket.expect("me")
    assert (event["me"]["role"], event["me"]["permissions"]) == (Role.MEMBER, ["send_chat"])


async def test_a_change_that_changes_nothing_sends_no_events(sockets, owner, room, viewer):
    socket = await sockets.join(room.id, token=viewer.token)
    unchanged = socket.snapshot["me"]["permissions"]
    await socket.drain()

    await db(members.update_member)(owner.user, room.id, viewer.user.id, {"permissions": unchanged})

    frames = await socket.drain()
    assert frames_of(frames, "me") == [] and frames_of(frames, "presence") == []


async def test_a_ban_kicks_without_me(sockets, owner, room, viewer):
    socket = await sockets.join(room.id, token=viewer.token)

    await db(members.update_member)(
        owner.user, room.id, viewer.user.id, {"status": MemberStatus.BANNED, "role": Role.ADMIN}
    )

    await socket.expect_close()
    assert "kicked" in [frame["type"] for frame in socket.frames]
    assert frames_of(socket.frames, "me") == []


async def test_a_refused_change_sends_no_events(sockets, owner, room, viewer):
    other = await db(make_member)(room, "other")
    socket = await sockets.join(room.id, token=viewer.token)
    await socket.drain()

    response = await db(Api(other.token).patch)(
        f"/api/rooms/{room.id}/members/{viewer.user.id}", {"permissions": []}
    )

    assert response.status_code == 403
    assert frames_of(await socket.drain(), "me") == []
    stored = await db(Membership.objects.get)(room=room, user=viewer.user)
    assert stored.permissions != []

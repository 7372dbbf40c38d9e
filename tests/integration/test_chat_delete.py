"""Deleting a chat message (SPEC §3, §4): room admins and staff; sockets get `chat_deleted`."""

import pytest
from channels.db import database_sync_to_async

from rooms.codes import ErrorCode
from rooms.models import ChatMessage
from rooms.permissions import Role
from rooms.services import chat
from tests.integration.test_api import Api, assert_error
from tests.support.factories import make_member, make_room, make_user
from tests.support.ws import socket_pool  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db

db = database_sync_to_async


@pytest.fixture
def message(room, viewer):
    return chat.send_chat(viewer.user, room.id, "spoiler: the butler did it")


def staff_user():
    account = make_user()
    account.user.is_staff = True
    account.user.save(update_fields=["is_staff"])
    return account


def delete_path(room, message_id):
    return f"/api/rooms/{room.id}/chat/{message_id}"


def still_there(message_id):
    return ChatMessage.objects.filter(pk=message_id).exists()


def test_the_creator_deletes_a_message(owner, room, message):
    response = Api(owner.token).delete(delete_path(room, message["id"]))

    assert response.status_code == 204
    assert response.content == b""
    assert not still_there(message["id"])


def test_a_room_admin_deletes_a_message(room, message):
    admin = make_member(room, "moderator", role=Role.ADMIN)

    response = Api(admin.token).delete(delete_path(room, message["id"]))

    assert response.status_code == 204
    assert not still_there(message["id"])


def test_staff_delete_a_message_in_a_room_they_never_joined(room, message):
    response = Api(staff_user().token).delete(delete_path(room, message["id"]))

    assert response.status_code == 204
    assert not still_there(message["id"])


def test_a_deleted_message_leaves_the_history(owner, room, viewer, message):
    kept = chat.send_chat(viewer.user, room.id, "nice film")

    Api(owner.token).delete(delete_path(room, message["id"]))

    history = Api(viewer.token).get(f"/api/rooms/{room.id}/chat").json()
    assert [line["id"] for line in history] == [kept["id"]]


def test_a_member_cannot_delete_even_their_own_message(viewer, room, message):
    response = Api(viewer.token).delete(delete_path(room, message["id"]))

    assert_error(response, 403, ErrorCode.FORBIDDEN)
    assert still_there(message["id"])


def test_a_non_member_cannot_delete_a_message(room, message):
    response = Api(make_user().token).delete(delete_path(room, message["id"]))

    assert_error(response, 403, ErrorCode.FORBIDDEN)
    assert still_there(message["id"])


def test_an_admin_of_another_room_cannot_delete_a_message(owner, room, message):
    other_owner = make_user("elsewhere")
    make_room(other_owner, "Other room")

    response = Api(other_owner.token).delete(delete_path(room, message["id"]))

    assert_error(response, 403, ErrorCode.FORBIDDEN)
    assert still_there(message["id"])


def test_deleting_needs_credentials(room, message):
    assert_error(Api().delete(delete_path(room, message["id"])), 401, ErrorCode.UNAUTHENTICATED)


def test_a_message_of_another_room_is_not_found(owner, room):
    other_room = make_room(owner, "Other room")
    elsewhere = chat.send_chat(owner.user, other_room.id, "hello there")

    response = Api(owner.token).delete(delete_path(room, elsewhere["id"]))

    assert_error(response, 404, ErrorCode.NOT_FOUND)
    assert still_there(elsewhere["id"])


@pytest.mark.parametrize("message_id", ["0", "99999999", "99999999999999999999"])
def test_an_unknown_message_is_not_found(owner, room, message_id):
    response = Api(owner.token).delete(delete_path(room, message_id))

    assert_error(response, 404, ErrorCode.NOT_FOUND)


def test_a_message_id_that_is_not_a_number_is_a_bad_request(owner, room):
    assert_error(Api(owner.token).delete(delete_path(room, "abc")), 400, ErrorCode.BAD_REQUEST)


def test_deleting_in_an_unknown_room_is_not_found(owner, message):
    response = Api(staff_user().token).delete(f"/api/rooms/nosuchroom/chat/{message['id']}")

    assert_error(response, 404, ErrorCode.NOT_FOUND)


def test_deleting_twice_is_not_found_the_second_time(owner, room, message):
    as_owner = Api(owner.token)
    as_owner.delete(delete_path(room, message["id"]))

    assert_error(as_owner.delete(delete_path(room, message["id"])), 404, ErrorCode.NOT_FOUND)


# Sockets


@pytest.mark.django_db(transaction=True)
async def test_every_socket_in_the_room_gets_chat_deleted(sockets, owner, room, viewer):
    message = await db(chat.send_chat)(viewer.user, room.id, "spoiler")
    watching = [
        await sockets.join(room.id, token=viewer.token),
        await sockets.join(room.id, token=owner.token),
    ]

    response = await db(Api(owner.token).delete)(delete_path(room, message["id"]))

    assert response.status_code == 204
    for socket in watching:
        event = await socket.expect("chat_deleted")
        assert event == {"type": "chat_deleted", "id": message["id"]}


@pytest.mark.django_db(transaction=True)
async def test_sockets_of_other_rooms_get_no_chat_deleted(sockets, owner, room, viewer):
    other_room = await db(make_room)(owner, "Other room")
    elsewhere = await sockets.join(other_room.id, token=owner.token)
    message = await db(chat.send_chat)(viewer.user, room.id, "spoiler")

    await db(chat.delete_chat)(owner.user, room.id, message["id"])

    assert [f for f in await elsewhere.drain() if f["type"] == "chat_deleted"] == []


@pytest.mark.django_db(transaction=True)
async def test_a_refused_delete_sends_no_chat_deleted(sockets, owner, room, viewer):
    message = await db(chat.send_chat)(owner.user, room.id, "hello")
    socket = await sockets.join(room.id, token=owner.token)

    response = await db(Api(viewer.token).delete)(delete_path(room, message["id"]))

    assert response.status_code == 403
    assert [f for f in await socket.drain() if f["type"] == "chat_deleted"] == []

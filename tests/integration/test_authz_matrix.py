"""Every cell of tests/authz_matrix.py tried against the real application.

HTTP through Django's test client (the whole middleware chain and the API's auth); the
WebSocket through Channels' communicator on the real ASGI application. Each cell starts
from a fresh scene (the declaration's docstring) and acts as one role.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Mapping
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from rooms.codes import CloseCode, ErrorCode
from rooms.models import Membership
from rooms.permissions import MemberStatus, Role
from rooms.services import chat, playlist, rooms
from tests.authz_matrix import HttpAction, WsAction, http_cells, ws_cells
from tests.support.factories import Account, make_member, make_room, make_user
from tests.support.ws import next_req_id, socket_pool  # noqa: F401  (fixture)

pytestmark = pytest.mark.timeout(60)

# A client address per HTTP cell (TEST-NET-2): were sign-in throttling on (tests/settings.py
# turns it off), each cell would be counted alone.
_addresses = itertools.count(1)


class Scene:
    """The room, its movie, chat line and `target` member, and the actor of one role."""

    def __init__(self, role: str, room_changes: Mapping[str, Any]) -> None:
        self.creator = make_user("creator")
        self.room = make_room(self.creator, "Movie night")
        self.movie_id = playlist.add_movie(
            self.creator.user, self.room.id, "https://media.example/a.mp4"
        )["id"]
        self.target = make_member(self.room, "target")
        self.admin2 = make_member(self.room, "admin2", role=Role.ADMIN)
        self.message_id = chat.send_chat(self.target.user, self.room.id, "spoiler")["id"]
        self.actor = self._actor(role)
        if room_changes:
            rooms.update_room(self.creator.user, self.room.id, dict(room_changes))

    def _actor(self, role: str) -> Account | None:
        if role == "creator":
            return self.creator
        if role == "admin":
            return make_member(self.room, "admin", role=Role.ADMIN)
        if role == "member":
            return make_member(self.room, "member")
        if role == "guest":
            return make_member(self.room, "visitor", guest=True)
        if role == "restricted":
            return make_member(self.room, "restricted", permissions=[])
        if role == "non_member":
            return make_user("stranger")
        if role == "banned":
            account = make_member(self.room, "banned")
            Membership.objects.filter(room=self.room, user=account.user).update(
                status=MemberStatus.BANNED
            )
            return account
        assert role == "anonymous", role
        return None

    def fill(self, value: Any) -> Any:
        """`value` with the scene's ids put in for the declaration's placeholders."""
        if isinstance(value, str):
            return value.format(
                room=self.room.id,
                movie=self.movie_id,
                target=self.target.user.id,
                admin2=self.admin2.user.id,
                creator=self.creator.user.id,
                self=(self.actor or self.target).user.id,
                message=self.message_id,
                fresh=f"new{uuid.uuid4().hex[:12]}",
            )
        if isinstance(value, dict):
            return {key: self.fill(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.fill(item) for item in value]
        return value


def _http_id(cell: tuple[HttpAction, str, int]) -> str:
    action, role, status = cell
    return f"{action.name}-{role}-{status}"


@pytest.mark.django_db
@pytest.mark.parametrize("cell", http_cells(), ids=_http_id)
def test_http_action_answers_as_declared(cell):
    action, role, expected = cell
    scene = Scene(role, action.room_changes)
    client = Client(REMOTE_ADDR=f"198.51.100.{next(_addresses) % 250 + 1}")
    headers = {}
    if scene.actor is not None:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {scene.actor.token}"
    body = scene.fill(action.body)

    response = client.generic(
        action.method,
        scene.fill(action.path),
        data=json.dumps(body) if body is not None else "",
        content_type="application/json",
        **headers,
    )

    assert response.status_code == expected, response.content
    if expected >= 400:
        assert set(response.json()["error"]) == {"code", "message"}


def _ws_id(cell: tuple[WsAction, str, str | int]) -> str:
    action, role, outcome = cell
    return f"{action.name}-{role}-{outcome}"


@pytest.mark.parametrize("cell", ws_cells(), ids=_ws_id)
async def test_websocket_action_answers_as_declared(cell, sockets):
    action, role, expected = cell
    scene = await database_sync_to_async(Scene)(role, action.room_changes)
    token = scene.actor.token if scene.actor is not None else None

    socket = await sockets.open(scene.room.id, token=token)

    if isinstance(expected, CloseCode):
        code = socket.close_code if socket.closed else await socket.expect_close()
        assert code == expected
        return
    socket.snapshot = await socket.expect("snapshot")
    if action.frame is None:
        assert expected == "snapshot"
        return
    req_id = next_req_id()
    await socket.send({**scene.fill(dict(action.frame)), "req_id": req_id})
    answer = await socket.answer(req_id)
    if isinstance(expected, ErrorCode):
        assert (answer["type"], answer.get("code")) == ("error", expected), answer
    else:
        assert answer["type"] == expected, answer

"""The browser pages as Django renders them: lobby, room, the room's not-found page."""

import json
import re

import pytest
from django.test import Client

from rooms.permissions import MemberStatus
from rooms.services import members
from tests.support.factories import make_member, make_room

pytestmark = pytest.mark.django_db


def page_data(response):
    """The JSON the page's modules start from (<script id="page-data">)."""
    match = re.search(
        rb'<script id="page-data" type="application/json">(.*?)</script>', response.content
    )
    assert match, "the page carries no page-data"
    return json.loads(match.group(1))


def signed_in_client(account):
    client = Client()
    client.force_login(account.user)
    return client


def test_a_room_that_does_not_exist_is_a_404_page_not_a_room():
    response = Client().get("/r/nosuchroom")
    assert response.status_code == 404
    assert b"Room not found" in response.content
    assert b"<video" not in response.content


def test_the_room_page_has_exactly_one_video_and_its_public_facts(room):
    response = Client().get(f"/r/{room.id}")
    assert response.status_code == 200
    assert response.content.count(b"<video") == 1
    data = page_data(response)
    assert data["user"] is None and data["membership"] is None
    assert data["room"] == {
        "id": room.id,
        "name": "Movie night",
        "has_password": False,
        "guests_allowed": True,
    }
    assert b"synctv/room.js" in response.content


def test_the_room_page_tells_a_member_apart_from_a_visitor_who_needs_the_password(owner):
    locked = make_room(owner, "Locked", password="sesame", settings={"guests_allowed": False})
    visitor = make_member(make_room(owner, "Elsewhere"), "visitor")
    data = page_data(signed_in_client(visitor).get(f"/r/{locked.id}"))
    assert data["room"]["has_password"] is True and data["room"]["guests_allowed"] is False
    assert data["user"]["username"] == "visitor" and data["membership"] is None
    assert page_data(signed_in_client(owner).get(f"/r/{locked.id}"))["membership"] == {
        "role": "creator",
        "status": "active",
    }


def test_a_banned_member_sees_their_status_on_the_room_page(owner, room, viewer):
    members.update_member(owner.user, room.id, viewer.user.id, {"status": MemberStatus.BANNED})
    data = page_data(signed_in_client(viewer).get(f"/r/{room.id}"))
    assert data["membership"]["status"] == "banned"


def test_the_lobby_serves_its_module_and_the_signed_in_user(owner):
    response = signed_in_client(owner).get("/")
    assert response.status_code == 200
    assert b"synctv/lobby.js" in response.content
    assert page_data(response)["user"]["name"] == "owner"

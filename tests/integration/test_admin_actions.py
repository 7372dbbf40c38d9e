"""The staff admin acts through rooms.services: every change clients must see reaches them.

Each test signs a staff superuser in to the real admin of a served node over HTTP, reads
the admin's own form (CSRF token, inline management forms and all), changes a field and
posts it back, while a real room socket watches. The cross-node actions (room delete, ban,
deactivating a user) post on node A while the watched sockets are on node B.
"""

from __future__ import annotations

import asyncio
import json
import re
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model

from rooms.codes import CloseCode, ErrorCode
from rooms.models import ChatMessage, Presence, Room
from tests.support.clients import (
    add_movie,
    as_guest,
    bearer,
    close_code_of,
    create_room,
    http_client,
    open_socket,
    room_client,
    unique,
)
from tests.support.cluster import cluster, cluster_env  # noqa: F401
from tests.support.redis_servers import redis_server  # noqa: F401
from tests.support.servers import serve_node  # noqa: F401

pytestmark = pytest.mark.serve

STAFF_PASSWORD = "correct horse battery staple"
REGISTRY_DEADLINE = 15.0  # nodes beat every 5 s
LOGGED = {"SYNCTV__LOGGING__LEVEL": "INFO", "SYNCTV__LOGGING__FORMAT": "json"}


class AdminForm(HTMLParser):
    """The fields of an admin page's main form (the POST form with the most fields: not the
    logout button's), as a browser would post them: text and hidden inputs, ticked boxes,
    selected options and textareas."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.forms: list[list[tuple[str, str]]] = []
        self._form: list[tuple[str, str]] | None = None
        self._select: str | None = None
        self._textarea: str | None = None
        self._text: list[str] = []
        self.feed(html)
        self.fields = max(self.forms, key=len, default=[])

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Collect the fields of each POST form."""
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form" and attributes.get("method", "").lower() == "post":
            self._form = []
            self.forms.append(self._form)
        form = self._form
        if form is None:
            return
        name = attributes.get("name")
        if tag == "input" and name and attributes.get("type") not in ("submit", "button", "file"):
            ticks = attributes.get("type") in ("checkbox", "radio")
            if ticks and "checked" not in attributes:
                return
            form.append((name, attributes.get("value", "on" if ticks else "")))
        elif tag == "select" and name:
            self._select = name
        elif tag == "option" and self._select and "selected" in attributes:
            form.append((self._select, attributes.get("value", "")))
        elif tag == "textarea" and name:
            self._textarea, self._text = name, []

    def handle_data(self, data: str) -> None:
        """A textarea's text."""
        if self._textarea:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        """Close a select, a textarea or the form."""
        if tag == "select":
            self._select = None
        elif tag == "textarea" and self._textarea and self._form is not None:
            self._form.append((self._textarea, "".join(self._text).lstrip("\n")))
            self._textarea = None
        elif tag == "form":
            self._form = None

    def with_changes(self, **changes: str | None) -> list[tuple[str, str]]:
        """The fields with some replaced (None: left out, as an unticked box)."""
        kept = [(name, value) for name, value in self.fields if name not in changes]
        return kept + [(name, value) for name, value in changes.items() if value is not None]


async def make_staff(http: httpx.AsyncClient) -> httpx.AsyncClient:
    """Sign up a user on the node (its own password hasher), make it a staff superuser and
    sign it in to the admin; `http` then carries its session."""
    username = unique("staff")
    answer = await http.post(
        "/api/auth/signup", json={"username": username, "password": STAFF_PASSWORD}
    )
    assert answer.status_code == 201, answer.text
    await database_sync_to_async(get_user_model().objects.filter(username=username).update)(
        is_staff=True, is_superuser=True
    )
    http.cookies.clear()
    login = AdminForm((await http.get("/admin/login/")).text)
    answer = await http.post(
        "/admin/login/?next=/admin/",
        data=dict(login.with_changes(username=username, password=STAFF_PASSWORD)),
    )
    assert answer.status_code == 302 and answer.headers["location"] == "/admin/", answer.text
    return http


async def submit(
    http: httpx.AsyncClient, path: str, headers: dict[str, str] | None = None, **changes: Any
) -> httpx.Response:
    """GET an admin page, post its form back with `changes`; the answer must redirect (done)."""
    page = await http.get(path)
    assert page.status_code == 200, page.text
    form = AdminForm(page.text)
    assert any(name == "csrfmiddlewaretoken" for name, _ in form.fields), path
    answer = await http.post(
        path,
        content=urlencode(form.with_changes(**changes)),
        headers={"Content-Type": "application/x-www-form-urlencoded", **(headers or {})},
    )
    problems = re.findall(
        r'<ul class="errorlist[^"]*"[^>]*>.*?</ul>|class="errornote">[^<]*', answer.text, re.S
    )
    assert answer.status_code == 302, (
        f"{path}: {answer.status_code} {problems or answer.text[:500]}"
    )
    return answer


def user_id_of(client) -> int:
    return client.snapshot["me"]["user"]["id"]


def log_lines(node, message: str) -> list[dict[str, Any]]:
    """The JSON log lines of a node with this message."""
    lines = []
    for line in node.log_path.read_text().splitlines():
        if line.startswith("{") and f'"{message}"' in line:
            record = json.loads(line)
            if record.get("message") == message:
                lines.append(record)
    return lines


def room_row(room_id: str) -> Room:
    return Room.objects.get(pk=room_id)


async def test_a_room_edited_in_the_admin_reaches_its_sockets_and_keeps_the_password_hashed(
    serve_node,  # noqa: F811
):
    node = serve_node()
    async with http_client(node) as http, http_client(node) as admin:
        alice = await as_guest(http, "Alice")
        room = await create_room(http, alice, "Before")
        await make_staff(admin)
        async with room_client(node, room["id"], alice, "alice") as watcher:
            await submit(
                admin,
                f"/admin/rooms/room/{room['id']}/change/",
                name="After the edit",
                new_password="open sesame",
            )
            changed = await watcher.wait_for(
                "room", lambda f: f["room"]["name"] == "After the edit"
            )
        stranger = await as_guest(http, "Stranger")
        wrong = await http.post(
            f"/api/rooms/{room['id']}/join", json={"password": "nope"}, headers=bearer(stranger)
        )
        right = await http.post(
            f"/api/rooms/{room['id']}/join",
            json={"password": "open sesame"},
            headers=bearer(stranger),
        )

    stored = (await database_sync_to_async(room_row)(room["id"])).password
    assert changed["room"]["has_password"] is True
    assert stored != "open sesame" and stored.startswith("pbkdf2_sha256$")
    assert wrong.status_code == 403 and right.status_code == 200


async def test_a_room_deleted_in_the_admin_on_one_node_closes_its_sockets_on_another(
    cluster,  # noqa: F811
):
    a, b = cluster(2, env=LOGGED)
    async with http_client(a) as http, http_client(a) as admin:
        alice = await as_guest(http, "Alice")
        room = await create_room(http, alice)
        await make_staff(admin)
        async with room_client(b, room["id"], alice, "alice@b") as watcher:
            await submit(
                admin,
                f"/admin/rooms/room/{room['id']}/delete/",
                headers={"X-Request-ID": "admin-delete-1"},
                post="yes",
            )
            code = await watcher.wait_closed()

    deleted, error = watcher.frames[-2:]
    assert code == CloseCode.ROOM_NOT_FOUND
    assert deleted == {"type": "room_deleted", "room_id": room["id"]}
    assert error["type"] == "error" and error["code"] == ErrorCode.NOT_FOUND
    assert not await database_sync_to_async(Room.objects.filter(pk=room["id"]).exists)()
    [logged] = log_lines(a, "admin deleted room")
    assert logged["node_id"] == a.node_id
    assert logged["room_id"] == room["id"]
    assert logged["correlation_id"] == "admin-delete-1"
    assert isinstance(logged["user_id"], int)


async def test_a_ban_in_the_admin_on_one_node_kicks_every_socket_of_the_user_on_another(
    cluster,  # noqa: F811
):
    a, b = cluster(2, env=LOGGED)
    async with http_client(a) as http, http_client(a) as admin:
        alice = await as_guest(http, "Alice")
        bob = await as_guest(http, "Bob")
        carol = await as_guest(http, "Carol")
        room = await create_room(http, alice)
        await make_staff(admin)
        async with (
            room_client(b, room["id"], bob, "bob@b-1") as banned_1,
            room_client(b, room["id"], bob, "bob@b-2") as banned_2,
            room_client(b, room["id"], carol, "carol@b") as bystander,
        ):
            bob_id = user_id_of(banned_1)
            membership = await database_sync_to_async(
                lambda: room_row(room["id"]).memberships.get(user_id=bob_id).pk
            )()
            await submit(admin, f"/admin/rooms/membership/{membership}/change/", status="banned")
            codes = [await banned_1.wait_closed(), await banned_2.wait_closed()]
            still_answered = await bystander.request({"type": "sync"})
        http.cookies.clear()  # bob's token alone
        rejoin = await http.post(f"/api/rooms/{room['id']}/join", headers=bearer(bob))

    assert codes == [CloseCode.NOT_ALLOWED, CloseCode.NOT_ALLOWED]
    for socket in (banned_1, banned_2):
        kicked, error = socket.frames[-2:]
        assert kicked["type"] == "kicked" and kicked["room_id"] == room["id"]
        assert error["type"] == "error" and error["code"] == ErrorCode.FORBIDDEN
    assert still_answered["type"] == "playback"
    assert rejoin.status_code == 403
    [logged] = log_lines(a, "admin changed member")
    assert logged["target_user_id"] == bob_id and logged["room_id"] == room["id"]


async def test_a_user_deactivated_in_the_admin_loses_every_socket_token_and_session(
    cluster,  # noqa: F811
):
    a, b = cluster(2, env=LOGGED)
    async with http_client(a) as http, http_client(b) as bob_browser, http_client(a) as admin:
        alice = await as_guest(http, "Alice")
        first = await create_room(http, alice, "First")
        second = await create_room(http, alice, "Second")
        bob = await as_guest(bob_browser, "Bob")  # also signs bob_browser in (session)
        await make_staff(admin)
        async with (
            room_client(b, first["id"], bob, "bob@b-first") as in_first,
            room_client(b, second["id"], bob, "bob@b-second") as in_second,
            room_client(a, first["id"], bob, "bob@a-first") as on_a,
            room_client(b, first["id"], alice, "alice@b") as bystander,
        ):
            bob_id = user_id_of(in_first)
            await submit(admin, f"/admin/auth/user/{bob_id}/change/", is_active=None)
            codes = [await s.wait_closed() for s in (in_first, in_second, on_a)]
            still_answered = await bystander.request({"type": "sync"})
        http.cookies.clear()  # bob's token alone
        by_token = await http.get("/api/me", headers=bearer(bob))
        by_session = await bob_browser.get("/api/me")
        reconnect = await http.post(f"/api/rooms/{first['id']}/join", headers=bearer(bob))
        async with open_socket(b, first["id"], bob) as socket:
            refused = await close_code_of(socket)

    assert codes == [CloseCode.NOT_ALLOWED] * 3
    for socket in (in_first, in_second, on_a):
        kicked, error = socket.frames[-2:]
        assert kicked["type"] == "kicked"
        assert error == {
            "type": "error",
            "code": ErrorCode.FORBIDDEN,
            "message": "your account was deactivated",
        }
    assert still_answered["type"] == "playback"
    assert by_token.status_code == 401 and by_session.status_code == 401
    assert reconnect.status_code == 401 and refused == CloseCode.NOT_AUTHENTICATED
    [logged] = log_lines(a, "admin deactivated user")
    assert logged["target_user_id"] == bob_id and logged["tokens_revoked"] >= 1


async def test_a_chat_line_deleted_in_the_admin_disappears_from_its_sockets(serve_node):  # noqa: F811
    node = serve_node()
    async with http_client(node) as http, http_client(node) as admin:
        alice = await as_guest(http, "Alice")
        room = await create_room(http, alice)
        await make_staff(admin)
        async with room_client(node, room["id"], alice, "alice") as watcher:
            await watcher.request({"type": "chat", "text": "a spoiler"})
            line = await watcher.wait_for("chat")
            message_id = line["message"]["id"]
            await submit(admin, f"/admin/rooms/chatmessage/{message_id}/delete/", post="yes")
            deleted = await watcher.wait_for("chat_deleted")

    assert deleted == {"type": "chat_deleted", "id": message_id}
    assert not await database_sync_to_async(ChatMessage.objects.filter(pk=message_id).exists)()


async def test_movies_edited_added_and_removed_in_the_admin_reach_the_playlist(serve_node):  # noqa: F811
    node = serve_node()
    async with http_client(node) as http, http_client(node) as admin:
        alice = await as_guest(http, "Alice")
        room = await create_room(http, alice)
        movie = await add_movie(http, alice, room["id"], title="Old title")
        await make_staff(admin)
        async with room_client(node, room["id"], alice, "alice") as watcher:
            start = watcher.snapshot["playlist"]["version"]
            await submit(admin, f"/admin/rooms/movie/{movie['id']}/change/", title="New title")
            edited = await watcher.wait_for("playlist")
            mark = watcher.mark()
            await submit(
                admin,
                f"/admin/rooms/room/{room['id']}/change/",
                **{
                    "movies-TOTAL_FORMS": "2",
                    "movies-1-title": "Added in the admin",
                    "movies-1-url": "https://example.com/second.webm",
                    "movies-1-subtitles": "[]",
                    "movies-1-room": room["id"],
                },
            )
            added = await watcher.wait_for("playlist", after=mark)
            mark = watcher.mark()
            await submit(admin, f"/admin/rooms/movie/{movie['id']}/delete/", post="yes")
            removed = await watcher.wait_for("playlist", after=mark)

    assert edited["playlist"]["version"] == start + 1
    assert [m["title"] for m in edited["playlist"]["movies"]] == ["New title"]
    assert [(m["title"], m["type"]) for m in added["playlist"]["movies"]] == [
        ("New title", "mp4"),
        ("Added in the admin", "webm"),
    ]
    assert [m["title"] for m in removed["playlist"]["movies"]] == ["Added in the admin"]
    assert removed["playlist"]["version"] == start + 3


async def test_the_live_view_lists_both_nodes_and_each_rooms_connections(cluster):  # noqa: F811
    a, b = cluster(2)
    # Asked on B, which started after A: its first registry read already found A.
    async with http_client(a) as http, http_client(b) as admin:
        alice = await as_guest(http, "Alice")
        bob = await as_guest(http, "Bob")
        room = await create_room(http, alice, "Live room")
        await make_staff(admin)
        async with (
            room_client(a, room["id"], alice, "alice@a"),
            room_client(b, room["id"], bob, "bob@b-1"),
            room_client(b, room["id"], bob, "bob@b-2") as last,
        ):
            await last.wait_for("presence", lambda f: f["viewer_count"] == 2)
            state = await poll_live(admin, a.node_id, b.node_id)
            page = await admin.get("/admin/rooms/presence/live/")
            index = await admin.get("/admin/")

    nodes = {node["node_id"]: node for node in state["nodes"]}
    assert nodes[a.node_id]["alive"] and nodes[b.node_id]["alive"]
    assert nodes[b.node_id]["last_seen"] >= nodes[b.node_id]["started_at"]
    assert nodes[a.node_id]["rooms"] == [
        {"room_id": room["id"], "name": "Live room", "connections": 1}
    ]
    assert nodes[b.node_id]["rooms"] == [
        {"room_id": room["id"], "name": "Live room", "connections": 2}
    ]
    assert page.status_code == 200
    assert a.node_id in page.text and b.node_id in page.text and "Live room" in page.text
    assert "synctv/staff_live.js" in page.text and "<script>" not in page.text
    assert "/admin/rooms/presence/live/" in index.text


async def poll_live(admin: httpx.AsyncClient, *node_ids: str) -> dict[str, Any]:
    """live.json once it lists every node alive with its rooms counted (bounded wait)."""
    state: dict[str, Any] = {}
    async with asyncio.timeout(REGISTRY_DEADLINE):
        while True:
            answer = await admin.get("/admin/rooms/presence/live.json")
            assert answer.status_code == 200, answer.text
            state = answer.json()
            nodes = {node["node_id"]: node for node in state["nodes"]}
            if all(nodes.get(n, {}).get("alive") and nodes[n]["rooms"] for n in node_ids):
                counts = [nodes[n]["connections"] for n in node_ids]
                if counts == [1, 2]:
                    return state
            await asyncio.sleep(0.25)


async def test_the_live_view_is_for_staff_only(serve_node):  # noqa: F811
    node = serve_node()
    async with http_client(node) as anonymous, http_client(node) as guest:
        await as_guest(guest, "Not staff")  # a session, but no staff flag
        answers = [
            await client.get(path)
            for client in (anonymous, guest)
            for path in ("/admin/rooms/presence/live/", "/admin/rooms/presence/live.json")
        ]

    for answer in answers:
        assert answer.status_code == 302
        assert answer.headers["location"].startswith("/admin/login/")


@pytest.mark.django_db
def test_a_change_the_service_refuses_is_shown_and_nothing_is_saved(
    client, admin_user, room, owner
):
    creator = room.memberships.get(user=owner.user)
    client.force_login(admin_user)
    path = f"/admin/rooms/membership/{creator.pk}/change/"
    form = AdminForm(client.get(path).content.decode())

    answer = client.post(path, dict(form.with_changes(status="banned")), follow=True)

    creator.refresh_from_db()
    assert creator.status == "active"
    assert answer.redirect_chain == [(path, 302)]  # back to the form, with the service's reason
    assert (
        '<li class="error">The room&#x27;s creator cannot be changed</li>'
        in answer.content.decode()
    )


@pytest.mark.django_db
def test_the_live_view_of_a_single_node_lists_it_and_a_node_gone_from_it(
    client, admin_user, room, viewer, settings
):
    Presence.objects.create(connection_id="c1", room=room, user=viewer.user, node_id="gone-1")
    for connection_id in ("c2", "c3"):
        Presence.objects.create(
            connection_id=connection_id,
            room=room,
            user=viewer.user,
            node_id=settings.SYNCTV_NODE_ID,
        )
    client.force_login(admin_user)

    state = client.get("/admin/rooms/presence/live.json").json()

    nodes = {node["node_id"]: node for node in state["nodes"]}
    this = nodes[settings.SYNCTV_NODE_ID]
    assert state["cluster_mode"] is False
    assert this["alive"] is True and this["started_at"] <= this["last_seen"]
    assert this["rooms"] == [{"room_id": room.id, "name": room.name, "connections": 2}]
    assert nodes["gone-1"]["alive"] is False and nodes["gone-1"]["connections"] == 1

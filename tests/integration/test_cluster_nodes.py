"""Cluster mode with real processes: 2-3 `manage.py serve` nodes, one Redis, runworker processes."""

from __future__ import annotations

import asyncio
import time

import pytest

from rooms.codes import CloseCode, ErrorCode
from tests.integration.test_jobs import Answer, media  # noqa: F401  (fixture)
from tests.support.clients import (
    add_movie,
    as_guest,
    bearer,
    create_room,
    http_client,
    metric_value,
    room_client,
)
from tests.support.cluster import cluster, cluster_env, worker_process  # noqa: F401
from tests.support.redis_servers import redis_server  # noqa: F401
from tests.support.servers import serve_node  # noqa: F401

pytestmark = pytest.mark.serve

MESSAGES = 20
QUIET = 0.5  # a duplicate job would have been done within this after the last expected one
JOB_DEADLINE = 15.0  # a probe of 127.0.0.1 takes milliseconds; the worker picks jobs at once
REGISTRY_DEADLINE = 15.0  # nodes beat every 5 s


def user_id_of(client) -> int:
    return client.snapshot["me"]["user"]["id"]


def room_events(client) -> list[tuple[str, object]]:
    """The chat lines and playback positions a client received, in arrival order."""
    events = []
    for frame in client.frames[1:]:
        if frame["type"] == "chat":
            events.append(("chat", frame["message"]["text"]))
        elif frame["type"] == "playback":
            events.append(("seek", frame["playback"]["position"]))
    return events


async def test_chat_and_seeks_from_one_node_reach_every_client_once_in_order(cluster):  # noqa: F811
    a, b, c = cluster(3)
    async with http_client(a) as http:
        alice = await as_guest(http, "Alice")
        carol = await as_guest(http, "Carol")
        bob = await as_guest(http, "Bob")
        dave = await as_guest(http, "Dave")
        room = await create_room(http, alice)
    expected = []
    for i in range(MESSAGES):
        expected += [("chat", f"line {i}"), ("seek", 1.5 * (i + 1))]

    async with (
        room_client(a, room["id"], alice, "alice@a") as sender,
        room_client(a, room["id"], carol, "carol@a") as same_node,
        room_client(b, room["id"], bob, "bob@b") as on_b,
        room_client(c, room["id"], dave, "dave@c") as on_c,
    ):
        everyone = (sender, same_node, on_b, on_c)
        await sender.wait_for("presence", lambda f: f["viewer_count"] == 4)
        for i in range(MESSAGES):
            await sender.send({"type": "chat", "text": f"line {i}"})
            await sender.send({"type": "seek", "position": 1.5 * (i + 1)})
        for client in everyone:
            await client.wait_until(
                lambda client=client: len(room_events(client)) >= len(expected),
                f"{len(expected)} chat and playback events",
            )
        # A line from B and one from C come after everything A published on the room's
        # Redis channel: once a client has both, any duplicate would already be there.
        await on_b.send({"type": "chat", "text": "end from b"})
        await on_c.send({"type": "chat", "text": "end from c"})
        ends = {("chat", "end from b"), ("chat", "end from c")}
        for client in everyone:
            await client.wait_until(
                lambda client=client: ends <= set(room_events(client)), "the closing lines"
            )

    start_version = sender.snapshot["playback"]["version"]
    for client in everyone:
        events = room_events(client)
        assert [event for event in events if event not in ends] == expected, client.label
        assert sorted(event for event in events if event in ends) == sorted(ends)
        versions = [frame["playback"]["version"] for frame in client.of_type("playback")]
        assert versions == list(range(start_version + 1, start_version + 1 + MESSAGES))
    assert len(sender.of_type("ack")) == 2 * MESSAGES
    assert not any(client.of_type("error") for client in everyone)


async def test_a_client_joining_on_one_node_shows_in_the_presence_on_another(cluster):  # noqa: F811
    a, b = cluster(2)
    async with http_client(a) as http:
        alice = await as_guest(http, "Alice")
        bob = await as_guest(http, "Bob")
        room = await create_room(http, alice)

        async with room_client(a, room["id"], alice, "alice@a") as on_a:
            async with room_client(b, room["id"], bob, "bob@b") as on_b:
                joined = await on_a.wait_for("presence", lambda f: f["viewer_count"] == 2)
                listed = (await http.get("/api/rooms")).json()
            left = await on_a.wait_for(
                "presence", lambda f: f["viewer_count"] == 1, after=on_a.frames.index(joined) + 1
            )

    assert sorted(entry["user"]["name"] for entry in joined["online"]) == ["Alice", "Bob"]
    assert [entry["user"]["name"] for entry in on_b.snapshot["online"]] == ["Alice", "Bob"]
    assert on_b.snapshot["viewer_count"] == 2
    assert [r["viewer_count"] for r in listed if r["id"] == room["id"]] == [2]
    assert [entry["user"]["name"] for entry in left["online"]] == ["Alice"]


async def test_a_ban_over_http_on_one_node_closes_the_users_sockets_on_another(cluster):  # noqa: F811
    a, b = cluster(2)
    async with http_client(a) as http:
        alice = await as_guest(http, "Alice")
        bob = await as_guest(http, "Bob")
        carol = await as_guest(http, "Carol")
        room = await create_room(http, alice)
        async with (
            room_client(a, room["id"], alice, "alice@a") as admin,
            room_client(b, room["id"], bob, "bob@b-1") as banned_1,
            room_client(b, room["id"], bob, "bob@b-2") as banned_2,
            room_client(b, room["id"], carol, "carol@b") as bystander,
        ):
            await admin.wait_for("presence", lambda f: f["viewer_count"] == 3)

            answer = await http.patch(
                f"/api/rooms/{room['id']}/members/{user_id_of(banned_1)}",
                json={"status": "banned"},
                headers=bearer(alice),
            )
            codes = [await banned_1.wait_closed(), await banned_2.wait_closed()]
            still_answered = await bystander.request({"type": "sync"})
            bystander_open = not bystander.closed.is_set()
            gone = await admin.wait_for(
                "presence", lambda f: [e["user"]["name"] for e in f["online"]] == ["Alice", "Carol"]
            )

    assert answer.status_code == 200, answer.text
    assert answer.json()["member"]["status"] == "banned"
    assert codes == [CloseCode.NOT_ALLOWED, CloseCode.NOT_ALLOWED]
    for socket in (banned_1, banned_2):
        kicked, error = socket.frames[-2:]
        assert kicked["type"] == "kicked"
        assert kicked["by"]["name"] == "Alice"
        assert error["type"] == "error"
        assert error["code"] == ErrorCode.FORBIDDEN
    assert still_answered["type"] == "playback"
    assert bystander_open
    assert gone["viewer_count"] == 2


async def test_deleting_a_room_on_one_node_closes_its_sockets_on_another(cluster):  # noqa: F811
    a, b = cluster(2)
    async with http_client(a) as http:
        alice = await as_guest(http, "Alice")
        bob = await as_guest(http, "Bob")
        room = await create_room(http, alice)
        async with (
            room_client(a, room["id"], alice, "alice@a") as on_a,
            room_client(b, room["id"], bob, "bob@b") as on_b,
        ):
            await on_a.wait_for("presence", lambda f: f["viewer_count"] == 2)

            answer = await http.delete(f"/api/rooms/{room['id']}", headers=bearer(alice))
            codes = [await on_a.wait_closed(), await on_b.wait_closed()]

    assert answer.status_code == 204, answer.text
    assert codes == [CloseCode.ROOM_NOT_FOUND, CloseCode.ROOM_NOT_FOUND]
    for socket in (on_a, on_b):
        deleted, error = socket.frames[-2:]
        assert deleted == {"type": "room_deleted", "room_id": room["id"]}
        assert error["type"] == "error"
        assert error["code"] == ErrorCode.NOT_FOUND


async def test_playlist_changes_over_http_on_one_node_reach_sockets_on_another(cluster):  # noqa: F811
    a, b = cluster(2)
    async with http_client(a) as http:
        alice = await as_guest(http, "Alice")
        bob = await as_guest(http, "Bob")
        room = await create_room(http, alice)
        movies_url = f"/api/rooms/{room['id']}/movies"
        async with room_client(b, room["id"], bob, "bob@b") as on_b:

            async def change_then_wait(change, condition):
                after = on_b.mark()
                answer = await change()
                assert answer.status_code < 300, answer.text
                return await on_b.wait_for("playlist", condition, after=after)

            first = await add_movie(http, alice, room["id"], "https://example.invalid/1.mp4", "One")
            added = await on_b.wait_for("playlist", lambda f: len(f["playlist"]["movies"]) == 1)
            second = await add_movie(
                http, alice, room["id"], "https://example.invalid/2.mp4", "Two"
            )
            await on_b.wait_for("playlist", lambda f: len(f["playlist"]["movies"]) == 2)
            after_reorder = await change_then_wait(
                lambda: http.post(
                    f"{movies_url}/reorder",
                    json={"order": [second["id"], first["id"]]},
                    headers=bearer(alice),
                ),
                lambda f: f["playlist"]["movies"][0]["id"] == second["id"],
            )
            after_rename = await change_then_wait(
                lambda: http.patch(
                    f"{movies_url}/{first['id']}", json={"title": "Uno"}, headers=bearer(alice)
                ),
                lambda f: any(m["title"] == "Uno" for m in f["playlist"]["movies"]),
            )
            after_removal = await change_then_wait(
                lambda: http.delete(f"{movies_url}/{second['id']}", headers=bearer(alice)),
                lambda f: [m["id"] for m in f["playlist"]["movies"]] == [first["id"]],
            )
            stored = (await http.get(movies_url, headers=bearer(alice))).json()

    assert [m["title"] for m in added["playlist"]["movies"]] == ["One"]
    versions = [
        frame["playlist"]["version"]
        for frame in (added, after_reorder, after_rename, after_removal)
    ]
    assert versions == sorted(set(versions))
    assert after_removal["playlist"]["version"] == stored["version"]
    assert [m["title"] for m in after_removal["playlist"]["movies"]] == ["Uno"]


async def test_a_movie_added_on_a_node_is_probed_by_a_runworker_process(
    cluster,  # noqa: F811
    worker_process,  # noqa: F811
    media,  # noqa: F811
):
    media.answers["/films/one.bin"] = Answer(content_type="application/dash+xml")
    a, b = cluster(2)
    worker_process()
    async with http_client(a) as http:
        alice = await as_guest(http, "Alice")
        bob = await as_guest(http, "Bob")
        room = await create_room(http, alice)
        async with room_client(b, room["id"], bob, "bob@b") as on_b:
            movie = await add_movie(http, alice, room["id"], media.url("/films/one.bin"))
            probed = await on_b.wait_for(
                "playlist",
                lambda f: [m["type"] for m in f["playlist"]["movies"]] == ["dash"],
                within=JOB_DEADLINE,
            )
        stored = (await http.get(f"/api/rooms/{room['id']}/movies", headers=bearer(alice))).json()

    assert movie["type"] == "video"  # the guess from the URL, until the worker probed it
    assert [m["type"] for m in stored["movies"]] == ["dash"]
    assert probed["playlist"]["version"] == stored["version"]
    assert media.requests == [("HEAD", "/films/one.bin", None)]


async def test_two_runworker_processes_do_each_job_once(
    cluster,  # noqa: F811
    worker_process,  # noqa: F811
    media,  # noqa: F811
):
    paths = [f"/films/{number}.bin" for number in range(8)]
    for path in paths:
        media.answers[path] = Answer(content_type="application/dash+xml")
    a, b = cluster(2)
    worker_process()
    worker_process()
    async with http_client(a) as http_a, http_client(b) as http_b:
        alice = await as_guest(http_a, "Alice")
        room = await create_room(http_a, alice)
        movies_url = f"/api/rooms/{room['id']}/movies"
        for number, path in enumerate(paths):
            await add_movie((http_a, http_b)[number % 2], alice, room["id"], media.url(path))

        deadline = time.monotonic() + JOB_DEADLINE
        while True:
            stored = (await http_a.get(movies_url, headers=bearer(alice))).json()
            if all(m["type"] == "dash" for m in stored["movies"]):
                break
            assert time.monotonic() < deadline, f"movies not all probed: {stored['movies']}"
            await asyncio.sleep(0.1)
    await asyncio.sleep(QUIET)  # room for a second worker's duplicate probe to arrive

    heads = [path for method, path, _ in media.requests if method == "HEAD"]
    assert sorted(heads) == sorted(paths)  # each path probed exactly once
    assert len(stored["movies"]) == len(paths)


async def test_health_ready_and_metrics_describe_the_cluster(cluster):  # noqa: F811
    a, b = cluster(2)
    async with http_client(a) as http_a, http_client(b) as http_b:
        alice = await as_guest(http_a, "Alice")
        bob = await as_guest(http_a, "Bob")
        room = await create_room(http_a, alice)
        healths = [(await http.get("/health")).json() for http in (http_a, http_b)]

        deadline = time.monotonic() + REGISTRY_DEADLINE
        while True:
            readies = [await http.get("/ready") for http in (http_a, http_b)]
            listed = [{n["node_id"] for n in r.json().get("nodes", [])} for r in readies]
            if all(ids >= {a.node_id, b.node_id} for ids in listed):
                break
            assert time.monotonic() < deadline, f"nodes missing from /ready: {listed}"
            await asyncio.sleep(0.2)

        async with (
            room_client(a, room["id"], alice, "alice@a") as on_a,
            room_client(b, room["id"], bob, "bob@b") as on_b,
        ):
            ack = await on_a.request({"type": "seek", "position": 5.0})
            await on_b.wait_for_version(ack["version"])
            metrics_b = (await http_b.get("/metrics")).text

    assert [health["node_id"] for health in healths] == [a.node_id, b.node_id]
    for ready, node in zip(readies, (a, b), strict=True):
        body = ready.json()
        assert ready.status_code == 200
        assert body["status"] == "ready"
        assert body["checks"] == {"database": "ok", "redis": "ok", "cluster_mode": True}
        assert body["node_id"] == node.node_id
        assert all(n["alive"] for n in body["nodes"])
    received = metric_value(metrics_b, "synctv_events_received_total", f'node="{b.node_id}"')
    assert received > 0

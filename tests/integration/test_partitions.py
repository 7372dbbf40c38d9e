"""Convergence after a partition (issue 8, point 1): real nodes, a real Redis, a TCP proxy.

One node reaches Redis through a `PartitionProxy`, the other directly. While the proxy is
cut, both sides change playback and chat, and one renames the room, deletes a chat line and
makes the other side's user an admin; after the heal every client holds the database's
playback, both sides' chat (each line once), the deletion, the new name and its own role
(`me`) within 5 s. The node that was cut reads what it
missed from the room's Redis Stream; the other re-reads the room from PostgreSQL because
the cut node announces it. With Redis killed and restarted empty (streams lost), both
re-read from PostgreSQL. Each test prints its heal-to-converged time. A node whose
presence rows another node cleared (taking it for dead during a long cut) writes them again,
and the rooms of a node that crashed are re-read by the others once it is back.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from asgiref.sync import sync_to_async
from django.db import connection

from rooms.models import ChatMessage
from rooms.payloads import now_ms
from rooms.services import presence
from tests.integration.test_cluster_faults import (
    chat_lines,
    database_version,
    eventually,
    redis_check,
)
from tests.support.clients import as_guest, bearer, create_room, http_client, room_client
from tests.support.cluster import cluster, cluster_env  # noqa: F401
from tests.support.proxy import partition_proxy  # noqa: F401
from tests.support.redis_servers import redis_server  # noqa: F401
from tests.support.servers import serve_node  # noqa: F401

pytestmark = pytest.mark.serve

CONVERGED_WITHIN = 5.0  # from the heal (or the restart) to every client up to date
DETECT_DEADLINE = 8.0  # a cut is noticed after 3 s of silence, a kill at once
RECLAIM_WITHIN = 12.0  # the node checks its own presence rows after each 5 s heartbeat


async def _is_degraded(http) -> bool:
    return await redis_check(http) == "degraded"


RENAMED = "Renamed during the cut"


def _converged(client, version: int, lines: set[str], deleted: int, role: str | None) -> bool:
    renamed = any(frame["room"]["name"] == RENAMED for frame in client.of_type("room"))
    removed = any(frame["id"] == deleted for frame in client.of_type("chat_deleted"))
    chat = lines <= set(chat_lines(client))
    promoted = role is None or any(f["me"]["role"] == role for f in client.of_type("me"))
    return renamed and removed and chat and promoted and client.highest_version() == version


def _kept_state(client) -> dict:
    """The playback a client keeps: the highest version it has seen (replays come late)."""
    frames = [client.snapshot["playback"]] + [f["playback"] for f in client.of_type("playback")]
    return max(frames, key=lambda playback: playback["version"])


async def _cut_both_sides_and_converge(a, b, cut, heal, degraded) -> tuple[float, dict]:
    """Both nodes' clients change the room while `cut()` holds; return the time from
    `heal()` to every client converged, and what the clients saw."""
    async with http_client(a) as http_a, http_client(b) as http_b:
        alice = await as_guest(http_a, "Alice")
        bob = await as_guest(http_b, "Bob")
        room = await create_room(http_a, alice)
        async with (
            room_client(a, room["id"], alice, "alice@a") as on_a,
            room_client(b, room["id"], bob, "bob@b") as on_b,
        ):
            await on_a.wait_for("presence", lambda frame: frame["viewer_count"] == 2)
            first = await on_a.request({"type": "seek", "position": 1.0})
            await on_b.wait_for_version(first["version"])
            doomed = await on_b.request({"type": "chat", "text": "deleted during the cut"})
            assert doomed["type"] == "ack"
            doomed_id = (await on_a.wait_for("chat", lambda f: True))["message"]["id"]

            cut()
            for http in degraded(http_a, http_b):
                await eventually(lambda http=http: _is_degraded(http), "degraded", DETECT_DEADLINE)
            seek = await on_a.request({"type": "seek", "position": 42.0})
            rate = await on_b.request({"type": "rate", "rate": 1.5})
            chat_a = await on_a.request({"type": "chat", "text": "from A during the cut"})
            chat_b = await on_b.request({"type": "chat", "text": "from B during the cut"})
            renamed = await http_a.patch(
                f"/api/rooms/{room['id']}", json={"name": RENAMED}, headers=bearer(alice)
            )
            assert renamed.status_code == 200, renamed.text
            removed = await http_a.delete(
                f"/api/rooms/{room['id']}/chat/{doomed_id}", headers=bearer(alice)
            )
            assert removed.status_code == 204, removed.text
            bob_id = (await http_b.get("/api/me", headers=bearer(bob))).json()["user"]["id"]
            promoted = await http_a.patch(
                f"/api/rooms/{room['id']}/members/{bob_id}",
                json={"role": "admin"},
                headers=bearer(alice),
            )
            assert promoted.status_code == 200, promoted.text
            assert {seek["type"], rate["type"], chat_a["type"], chat_b["type"]} == {"ack"}
            version = await database_version(room["id"])
            lines = {"from A during the cut", "from B during the cut"}

            healed = time.monotonic()
            heal()
            for client, role in ((on_a, None), (on_b, "admin")):
                await client.wait_until(
                    lambda client=client, role=role: _converged(
                        client, version, lines, doomed_id, role
                    ),
                    "the database's playback, both sides' chat, the deletion, the new name"
                    " and Bob's new role",
                    within=CONVERGED_WITHIN + 5.0,
                )
            took = time.monotonic() - healed
            seen = {
                "a_chat": [f["message"]["text"] for f in on_a.of_type("chat")],
                "b_chat": [f["message"]["text"] for f in on_b.of_type("chat")],
                "a_state": _kept_state(on_a),
                "b_state": _kept_state(on_b),
            }
    return took, seen


@pytest.mark.parametrize("behind_proxy", ["first node", "second node"])
async def test_after_a_partition_between_one_node_and_redis_both_sides_converge(
    cluster,  # noqa: F811
    redis_server,  # noqa: F811
    partition_proxy,  # noqa: F811
    behind_proxy,
):
    proxy = partition_proxy(redis_server.port)
    via_proxy = {"SYNCTV__REDIS__URL": proxy.url}
    if behind_proxy == "first node":
        (a,) = cluster(1, env=via_proxy)
        (b,) = cluster(1)
    else:
        (a,) = cluster(1)
        (b,) = cluster(1, env=via_proxy)

    def degraded(http_a, http_b):
        return [http_a] if behind_proxy == "first node" else [http_b]

    took, seen = await _cut_both_sides_and_converge(a, b, proxy.cut, proxy.heal, degraded)
    print(f"\nheal to converged ({behind_proxy} cut off): {took:.2f} s")

    assert took < CONVERGED_WITHIN
    assert seen["a_state"]["position"] >= 42.0 and seen["a_state"]["rate"] == 1.5
    assert seen["b_state"]["position"] >= 42.0 and seen["b_state"]["rate"] == 1.5
    # Each side got the other's chat once (the cut node from the stream, the other from
    # the database), and nothing twice.
    for side in ("a_chat", "b_chat"):
        assert len(seen[side]) == len(set(seen[side])), seen[side]
        assert {"from A during the cut", "from B during the cut"} <= set(seen[side])


async def test_after_redis_restarts_empty_both_nodes_converge_from_the_database(
    cluster,  # noqa: F811
    redis_server,  # noqa: F811
):
    a, b = cluster(2)

    def degraded(http_a, http_b):
        return [http_a, http_b]

    took, seen = await _cut_both_sides_and_converge(
        a, b, redis_server.kill, redis_server.restart, degraded
    )
    print(f"\nrestart to converged (Redis restarted empty): {took:.2f} s")

    assert took < CONVERGED_WITHIN
    for side in ("a_state", "b_state"):
        assert seen[side]["position"] >= 42.0 and seen[side]["rate"] == 1.5
    for side in ("a_chat", "b_chat"):
        assert len(seen[side]) == len(set(seen[side])), seen[side]
        assert {"from A during the cut", "from B during the cut"} <= set(seen[side])


def _clear_node(node_id: str) -> set[str]:
    try:
        return presence.clear_node(node_id)
    finally:
        connection.close()


async def _rows_on(node_id: str) -> int:
    def count() -> int:
        try:
            return presence.count_on_node(node_id)
        finally:
            connection.close()

    return await sync_to_async(count, thread_sensitive=False)()


async def test_a_node_whose_presence_was_cleared_while_it_was_cut_off_writes_it_again(
    cluster,  # noqa: F811
):
    a, b = cluster(2)
    async with http_client(a) as http_a:
        alice = await as_guest(http_a, "Alice")
        bob = await as_guest(http_a, "Bob")
        room = await create_room(http_a, alice)
        async with (
            room_client(a, room["id"], alice, "alice@a"),
            room_client(b, room["id"], bob, "bob@b") as on_b,
        ):
            await on_b.wait_for("presence", lambda frame: frame["viewer_count"] == 2)
            # What the worker's job.clear_node does to a node taken for dead (here without
            # telling the room: the test process has no cluster layer).
            cleared = await sync_to_async(_clear_node, thread_sensitive=False)(a.node_id)
            mark = on_b.mark()
            rows = await eventually(
                lambda: _rows_on(a.node_id), "A's presence row written again", RECLAIM_WITHIN
            )
            back = await on_b.wait_for(
                "presence", lambda frame: frame["viewer_count"] == 2, after=mark
            )

    assert cleared == {room["id"]}
    assert rows == 1
    assert {entry["user"]["name"] for entry in back["online"]} == {"Alice", "Bob"}


def _chat_never_published(room_id: str, user_id: int, text: str) -> int:
    """A chat line committed by a node that died before publishing it."""
    try:
        message = ChatMessage.objects.create(
            room_id=room_id, user_id=user_id, text=text, sent_at=now_ms()
        )
        return message.id
    finally:
        connection.close()


async def test_the_rooms_of_a_node_that_crashed_are_re_read_by_the_others_once_it_is_back(
    cluster,  # noqa: F811
    cluster_env,  # noqa: F811
    serve_node,  # noqa: F811
):
    a, b = cluster(2)
    async with http_client(a) as http_a:
        alice = await as_guest(http_a, "Alice")
        bob = await as_guest(http_a, "Bob")
        room = await create_room(http_a, alice)
        async with room_client(b, room["id"], bob, "bob@b") as on_b:
            async with room_client(a, room["id"], alice, "alice@a") as on_a:
                await on_b.wait_for("presence", lambda frame: frame["viewer_count"] == 2)
                alice_id = on_a.snapshot["me"]["user"]["id"]
                lost = await sync_to_async(_chat_never_published, thread_sensitive=False)(
                    room["id"], alice_id, "sent just before the crash"
                )
                a.kill()
            restarted = time.monotonic()
            await asyncio.to_thread(serve_node, node_id=a.node_id, port=a.port, env=cluster_env)
            got = await on_b.wait_for(
                "chat", lambda frame: frame["message"]["id"] == lost, within=CONVERGED_WITHIN + 5
            )
            took = time.monotonic() - restarted
    print(f"\ncrash to the lost chat on the other node: {took:.2f} s after the restart began")

    assert got["message"]["text"] == "sent just before the crash"
    assert [f["message"]["id"] for f in on_b.of_type("chat")].count(lost) == 1

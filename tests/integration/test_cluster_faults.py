"""Cluster mode under real faults: Redis killed or frozen, a node killed; real processes only."""

from __future__ import annotations

import asyncio
import time

import pytest
from asgiref.sync import sync_to_async
from django.db import connection

from rooms.models import PlaybackState, Presence
from tests.support.clients import (
    as_guest,
    create_room,
    http_client,
    metric_value,
    room_client,
)
from tests.support.cluster import cluster, cluster_env, worker_process  # noqa: F401
from tests.support.redis_servers import redis_server  # noqa: F401
from tests.support.servers import serve_node  # noqa: F401

pytestmark = pytest.mark.serve

DETECT_DEADLINE = 5.0  # a killed Redis is noticed at once, a frozen one after 3 s of silence
RECONNECT_DEADLINE = 5.0  # backoff 1 s, 2 s, ... after a short outage
PAUSE_SECS = 10.0
PAUSED_RECOVERY_DEADLINE = 12.0  # the backoff may have grown to 4-8 s during the pause
COMMAND_BOUND = 1.0  # no command waits on Redis
DEAD_NODE_DEADLINE = 30.0  # beats every 5 s, dead after 15 s, then a job clears it
ERRORS_METRIC = "synctv_redis_connection_errors_total"


def _database_version(room_id: str) -> int:
    try:
        return PlaybackState.objects.get(room_id=room_id).version
    finally:
        connection.close()  # this worker thread's connection would block dropping the test db


def _presence_rows(node_id: str) -> int:
    try:
        return Presence.objects.filter(node_id=node_id).count()
    finally:
        connection.close()


async def database_version(room_id: str) -> int:
    return await sync_to_async(_database_version, thread_sensitive=False)(room_id)


async def presence_rows(node_id: str) -> int:
    return await sync_to_async(_presence_rows, thread_sensitive=False)(node_id)


async def eventually(check, what: str, within: float, every: float = 0.1):
    """Await `check()` until it returns something true; return that (fail after `within` s)."""
    deadline = time.monotonic() + within
    while not (result := await check()):
        assert time.monotonic() < deadline, f"no {what} within {within:g}s"
        await asyncio.sleep(every)
    return result


def published(version: int):
    """Matches the `playback` frame a client's command published (a resync's has `by: null`)."""
    return lambda frame: frame["playback"]["version"] == version and frame["by"] is not None


def chat_lines(client) -> list[str]:
    """The chat lines a client keeps: each message id once (a resync repeats recent chat)."""
    seen: set[int] = set()
    lines = []
    for frame in client.of_type("chat"):
        if frame["message"]["id"] not in seen:
            seen.add(frame["message"]["id"])
            lines.append(frame["message"]["text"])
    return lines


async def redis_check(http) -> str:
    answer = await http.get("/ready")
    assert answer.status_code == 200, answer.text
    return answer.json()["checks"]["redis"]


async def connection_errors(http, node) -> float:
    page = (await http.get("/metrics")).text
    return metric_value(page, ERRORS_METRIC, f'node="{node.node_id}"')


async def test_redis_killed_keeps_local_delivery_and_other_nodes_resync_after_restart(
    cluster,  # noqa: F811
    redis_server,  # noqa: F811
):
    a, b = cluster(2)
    async with http_client(a) as http_a, http_client(b) as http_b:
        alice = await as_guest(http_a, "Alice")
        carol = await as_guest(http_a, "Carol")
        bob = await as_guest(http_a, "Bob")
        room = await create_room(http_a, alice)
        async with (
            room_client(a, room["id"], alice, "alice@a") as a1,
            room_client(a, room["id"], carol, "carol@a") as a2,
            room_client(b, room["id"], bob, "bob@b") as b1,
        ):
            await a1.wait_for("presence", lambda f: f["viewer_count"] == 3)
            before = await a1.request({"type": "seek", "position": 1.0})
            await b1.wait_for_version(before["version"])
            errors_before = await connection_errors(http_a, a)

            sent: list[str] = []
            acked: list[str] = []

            async def chat_traffic():
                for number in range(1000):
                    sent.append(f"traffic {number}")
                    answer = await a1.request({"type": "chat", "text": sent[-1]})
                    assert answer["type"] == "ack", answer
                    acked.append(sent[-1])
                    await asyncio.sleep(0.05)

            traffic = asyncio.create_task(chat_traffic())
            await a2.wait_until(lambda: len(a2.of_type("chat")) >= 5, "traffic before the crash")
            redis_server.kill()
            await eventually(
                lambda: _is(redis_check(http_a), "degraded"), "degraded A", DETECT_DEADLINE
            )
            sent_in_outage = len(sent)
            during = await a1.request({"type": "seek", "position": 99.0})
            await a2.wait_for_version(during["version"])
            await a2.wait_until(
                lambda: len(a2.of_type("chat")) >= sent_in_outage + 3, "chat during the outage"
            )
            errors_during = await eventually(
                lambda: _above(connection_errors(http_a, a), errors_before),
                "counted Redis error",
                DETECT_DEADLINE,
            )
            traffic.cancel()
            (stopped,) = await asyncio.gather(traffic, return_exceptions=True)
            assert not isinstance(stopped, Exception), stopped  # every chat was acked
            await asyncio.to_thread(redis_server.restart)
            restarted = time.monotonic()

            # B missed the outage's seek (A could not publish it): the resync brings it.
            await b1.wait_for_version(during["version"], within=RECONNECT_DEADLINE)
            for http in (http_a, http_b):
                await eventually(
                    lambda http=http: _is(redis_check(http), "ok"),
                    "Redis ok again",
                    RECONNECT_DEADLINE - (time.monotonic() - restarted),
                )
            after = await a1.request({"type": "seek", "position": 7.0})
            await b1.wait_for(
                "playback",
                published(after["version"]),
                within=max(0.5, RECONNECT_DEADLINE - (time.monotonic() - restarted)),
            )
            await a2.wait_for_version(after["version"])
            chat_in_outage = set(sent[sent_in_outage:]) & set(acked)
            await b1.wait_until(
                lambda: chat_in_outage <= set(chat_lines(b1)),
                "the outage's chat (resync)",
            )
            stored = await database_version(room["id"])

    assert errors_during > errors_before
    assert during["type"] == "ack" and after["type"] == "ack"
    assert chat_in_outage  # chat was sent and acked while Redis was down
    local_chat = chat_lines(a2)
    assert local_chat == [text for text in sent if text in set(local_chat)]  # in order
    assert set(acked) <= set(local_chat)  # every acked line reached the other client on A
    assert during["version"] in {f["playback"]["version"] for f in b1.of_type("playback")}
    assert stored == after["version"]
    assert [c.highest_version() for c in (a1, a2, b1)] == [stored] * 3


async def test_frozen_redis_blocks_no_command_and_delivery_recovers_after_it_resumes(
    cluster,  # noqa: F811
    worker_process,  # noqa: F811
    redis_server,  # noqa: F811
):
    a, b = cluster(2)
    worker_process()  # would clear B's sockets if a node took B for dead after the freeze
    async with http_client(a) as http_a:
        alice = await as_guest(http_a, "Alice")
        carol = await as_guest(http_a, "Carol")
        bob = await as_guest(http_a, "Bob")
        room = await create_room(http_a, alice)
        async with (
            room_client(a, room["id"], alice, "alice@a") as a1,
            room_client(a, room["id"], carol, "carol@a") as a2,
            room_client(b, room["id"], bob, "bob@b") as b1,
        ):
            await a1.wait_for("presence", lambda f: f["viewer_count"] == 3)
            before = await a1.request({"type": "seek", "position": 1.0})
            await b1.wait_for_version(before["version"])

            redis_server.pause()
            paused = time.monotonic()
            command_times, ready_times, redis_states = [], [], []
            number = 0
            while time.monotonic() - paused < PAUSE_SECS:
                number += 1
                seek, took = await a1.timed_request(
                    {"type": "seek", "position": float(number)}, within=COMMAND_BOUND
                )
                chat, chat_took = await a1.timed_request(
                    {"type": "chat", "text": f"frozen {number}"}, within=COMMAND_BOUND
                )
                command_times += [took, chat_took]
                assert seek["type"] == chat["type"] == "ack", (seek, chat)
                await a2.wait_for_version(seek["version"], within=COMMAND_BOUND)
                started = time.monotonic()
                async with asyncio.timeout(COMMAND_BOUND):
                    redis_states.append(await redis_check(http_a))
                ready_times.append(time.monotonic() - started)
                await asyncio.sleep(0.2)
            redis_server.resume()
            resumed = time.monotonic()

            async def reaches_b():
                ack = await a1.request({"type": "seek", "position": 500.0})
                try:
                    return await b1.wait_for("playback", published(ack["version"]), within=0.5)
                except AssertionError:
                    return None

            await eventually(reaches_b, "seek reaching B", PAUSED_RECOVERY_DEADLINE, every=0)
            recovered_after = time.monotonic() - resumed
            stored = await database_version(room["id"])
            for client in (a1, a2, b1):
                await client.wait_for_version(stored)

            # Both nodes beat again; a node that judged B dead meanwhile has had its job done.
            async def b_beat_since_resume():
                nodes = (await http_a.get("/ready")).json()["nodes"]
                beats = {node["node_id"]: node["last_seen"] for node in nodes}
                return beats.get(b.node_id, 0) / 1000 > time.time() - (time.monotonic() - resumed)

            await eventually(b_beat_since_resume, "B's beat after the freeze", 15.0, every=0.5)
            b_sockets = await presence_rows(b.node_id)
            latest_presence = a1.of_type("presence")[-1]

    assert max(command_times) < COMMAND_BOUND
    assert max(ready_times) < COMMAND_BOUND
    assert "degraded" in redis_states  # the freeze was noticed (3 s of silence)
    assert recovered_after < PAUSED_RECOVERY_DEADLINE
    assert stored == max(c.highest_version() for c in (a1, a2, b1))
    assert [c.highest_version() for c in (a1, a2, b1)] == [stored] * 3
    assert b_sockets == 1
    assert latest_presence["viewer_count"] == 3


async def test_a_killed_node_leaves_the_other_serving_and_its_sockets_are_forgotten(
    cluster,  # noqa: F811
    worker_process,  # noqa: F811
):
    a, b = cluster(2)
    worker_process()
    async with http_client(a) as http_a:
        alice = await as_guest(http_a, "Alice")
        bob = await as_guest(http_a, "Bob")
        carol = await as_guest(http_a, "Carol")
        room = await create_room(http_a, alice)
        async with (
            room_client(a, room["id"], alice, "alice@a") as a1,
            room_client(b, room["id"], bob, "bob@b") as b1,
            room_client(b, room["id"], carol, "carol@b") as c1,
        ):
            await a1.wait_for("presence", lambda f: f["viewer_count"] == 3)

            after_kill = a1.mark()
            b.kill()
            killed = time.monotonic()
            dropped = [await b1.wait_closed(), await c1.wait_closed()]
            seek = await a1.request({"type": "seek", "position": 42.0})
            async with room_client(a, room["id"], bob, "bob@a") as bob_again:
                cleared = await a1.wait_for(
                    "presence",
                    lambda f: (
                        [(e["user"]["name"], e["connections"]) for e in f["online"]]
                        == [("Alice", 1), ("Bob", 1)]
                    ),
                    after=after_kill,
                    within=DEAD_NODE_DEADLINE,
                )
                cleared_after = time.monotonic() - killed
                listed = (await http_a.get("/api/rooms")).json()
                bob_open = not bob_again.closed.is_set()

    assert dropped == [None, None]  # no close frame: the node died
    assert seek["type"] == "ack"
    assert bob_again.snapshot["node_id"] == a.node_id
    assert bob_again.snapshot["playback"]["version"] == seek["version"]
    assert bob_again.snapshot["playback"]["position"] == 42.0
    assert bob_open
    assert cleared["viewer_count"] == 2
    assert cleared_after < DEAD_NODE_DEADLINE
    assert [r["viewer_count"] for r in listed if r["id"] == room["id"]] == [2]
    assert await presence_rows(b.node_id) == 0


async def _is(answer, expected):
    return (await answer) == expected


async def _above(value, floor):
    result = await value
    return result if result > floor else None

"""Cluster mode on Redis Sentinel and on Redis Cluster: real Redis, real nodes, real faults."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid

import httpx
import pytest
import redis
from redis.cluster import RedisCluster

from cluster.layer import ClusterChannelLayer
from tests.support.clients import (
    FRAME_TIMEOUT,
    add_movie,
    as_guest,
    create_room,
    next_frame,
    open_socket,
    unique,
)
from tests.support.redis_servers import (  # noqa: F401
    redis_cluster,
    redis_sentinel,
    shared_redis_cluster,
)
from tests.support.servers import serve_node  # noqa: F401

pytestmark = pytest.mark.serve

# How long nodes may take to find Redis again after a failover or a dead cluster node.
RECOVERY_DEADLINE = 20.0
CONNECT_DEADLINE = 10.0
POLL_SECS = 0.1
# How long a second receiver is watched for a duplicate (longer than one BRPOP round).
QUIET_SECS = 1.5
QUEUE_CHANNEL = "synctv.test-queue"
# The channel layer option SyncTV sets (synctv_project/settings.py): room groups on room channels.
ROOM_ROUTING = "rooms.services.events.route_group"


def fresh_prefix() -> str:
    return f"deploy-{uuid.uuid4().hex[:8]}:"


def redis_env(url: str, prefix: str, cluster_mode: bool = False) -> dict[str, str]:
    env = {"SYNCTV__REDIS__URL": url, "SYNCTV__REDIS__KEY_PREFIX": prefix}
    if cluster_mode:
        env["SYNCTV__REDIS__CLUSTER_MODE"] = "true"
    return env


async def wait_until(condition, what: str, deadline: float = RECOVERY_DEADLINE) -> float:
    """Poll the async `condition` until true; seconds it took, or fail after `deadline` s."""
    started = time.monotonic()
    while not await condition():
        if time.monotonic() - started > deadline:
            raise AssertionError(f"no {what} within {deadline:.0f}s")
        await asyncio.sleep(POLL_SECS)
    return time.monotonic() - started


def subscribers(servers, channel: str) -> int:
    """Pub/sub subscribers of `channel` summed over the live servers."""
    total = 0
    for server in servers:
        if not server.running:
            continue
        with contextlib.suppress(redis.RedisError, OSError), server.client() as client:
            total += client.pubsub_numsub(channel)[0][1]
    return total


async def redis_check(node) -> str | None:
    """`checks.redis` of the node's /ready."""
    try:
        async with httpx.AsyncClient(base_url=node.base_url, timeout=2.0) as http:
            answer = await http.get("/ready")
    except httpx.HTTPError:
        return None
    return answer.json()["checks"]["redis"] if answer.status_code == 200 else None


async def room_with_two_guests(node) -> tuple[dict, str, str]:
    """A room with one movie made by guest Alice on `node`; Bob is another guest."""
    async with httpx.AsyncClient(base_url=node.base_url, timeout=FRAME_TIMEOUT) as http:
        token_a = await as_guest(http, "Alice")
        token_b = await as_guest(http, "Bob")
        room = await create_room(http, token_a)
        await add_movie(http, token_a, room["id"])
    return room, token_a, token_b


async def seek_seen_across(socket_a, socket_b, position: float, req_id: str) -> dict:
    """Seek on A; the playback frame B gets for it (frames of other versions are skipped)."""
    await socket_a.send(json.dumps({"type": "seek", "position": position, "req_id": req_id}))
    seen = await next_frame(
        socket_b, "playback", lambda frame: frame["playback"]["position"] == position
    )
    await next_frame(socket_a, "ack", lambda frame: frame.get("req_id") == req_id)
    return seen


@pytest.fixture
async def make_layer():
    """Build cluster-mode layers (connected, routing room groups like SyncTV); each is closed
    after the test.

    Request it after the Redis fixture, so the layers close before Redis stops.
    """
    made: list[ClusterChannelLayer] = []

    async def make(url: str, prefix: str, node_id: str, cluster_mode: bool = False):
        layer = ClusterChannelLayer(
            redis_url=url,
            redis_cluster=cluster_mode,
            key_prefix=prefix,
            node_id=node_id,
            routing=ROOM_ROUTING,
        )
        made.append(layer)
        async with asyncio.timeout(CONNECT_DEADLINE):
            await layer.bridge.wait_connected()
        return layer

    yield make
    for layer in made:
        await layer.close()


async def receive(layer: ClusterChannelLayer, channel: str) -> dict:
    async with asyncio.timeout(FRAME_TIMEOUT):
        return await layer.receive(channel)


# --- Redis Sentinel --------------------------------------------------------------------


async def test_nodes_on_sentinel_follow_a_failover_and_deliver_seeks_again(
    serve_node,  # noqa: F811
    redis_sentinel,  # noqa: F811
):
    prefix = fresh_prefix()
    env = redis_env(redis_sentinel.url, prefix)
    node_a = serve_node(node_id=unique("sentinel-a"), env=env)
    node_b = serve_node(node_id=unique("sentinel-b"), env=env)
    room, token_a, token_b = await room_with_two_guests(node_a)
    room_channel = f"{prefix}room:{room['id']}:events"
    broadcast = f"{prefix}broadcast"

    async with (
        open_socket(node_a, room["id"], token_a) as socket_a,
        open_socket(node_b, room["id"], token_b) as socket_b,
    ):
        await next_frame(socket_a, "snapshot")
        await next_frame(socket_b, "snapshot")
        old_master = redis_sentinel.master

        async def both_watch_the_room_on(server):
            return (
                subscribers([server], room_channel) == 2 and subscribers([server], broadcast) == 2
            )

        await wait_until(lambda: both_watch_the_room_on(old_master), "subscriptions", 5.0)
        before = await seek_seen_across(socket_a, socket_b, 12.5, "before-failover")

        promoted = await asyncio.to_thread(redis_sentinel.fail_over_by_killing_master)

        async def followed_the_new_master():
            checks = [await redis_check(node_a), await redis_check(node_b)]
            return checks == ["ok", "ok"] and await both_watch_the_room_on(promoted)

        took = await wait_until(followed_the_new_master, "nodes on the new master")
        after = await seek_seen_across(socket_a, socket_b, 37.5, "after-failover")

    assert promoted.address != old_master.address
    assert took < RECOVERY_DEADLINE
    assert before["by"]["name"] == "Alice"
    assert after["by"]["name"] == "Alice"
    assert after["playback"]["version"] > before["playback"]["version"]
    assert await redis_check(node_a) == "ok"
    assert await redis_check(node_b) == "ok"


async def test_layers_on_sentinel_deliver_group_sends_before_and_after_failover(
    redis_sentinel,  # noqa: F811
    make_layer,
):
    prefix = fresh_prefix()
    sender = await make_layer(redis_sentinel.url, prefix, "layer-a")
    receiver = await make_layer(redis_sentinel.url, prefix, "layer-b")
    inbox = await receiver.new_channel()
    await receiver.group_add("room.r1", inbox)
    room_channel, broadcast = f"{prefix}room:r1:events", f"{prefix}broadcast"

    async def both_on(server):
        return subscribers([server], room_channel) == 1 and subscribers([server], broadcast) == 2

    await wait_until(lambda: both_on(redis_sentinel.master), "subscriptions", 5.0)
    await sender.group_send("room.r1", {"type": "room.event", "n": 1})
    first = await receive(receiver, inbox)

    promoted = await asyncio.to_thread(redis_sentinel.fail_over_by_killing_master)

    async def followed():
        healthy = sender.redis_status() == receiver.redis_status() == "ok"
        return healthy and await both_on(promoted)

    await wait_until(followed, "layers on the new master")
    await sender.group_send("room.r1", {"type": "room.event", "n": 2})
    second = await receive(receiver, inbox)

    assert first == {"type": "room.event", "n": 1}
    assert second == {"type": "room.event", "n": 2}


async def test_layers_follow_a_failover_while_the_first_sentinel_hangs(
    redis_sentinel,  # noqa: F811
    make_layer,
):
    prefix = fresh_prefix()
    sender = await make_layer(redis_sentinel.url, prefix, "layer-a")
    receiver = await make_layer(redis_sentinel.url, prefix, "layer-b")
    inbox = await receiver.new_channel()
    await receiver.group_add("room.r1", inbox)
    hung = redis_sentinel.sentinels[0]  # the first one the URL names: asked first
    hung.pause()
    try:
        promoted = await asyncio.to_thread(redis_sentinel.fail_over_by_killing_master)

        async def followed():
            healthy = sender.redis_status() == receiver.redis_status() == "ok"
            return healthy and subscribers([promoted], f"{prefix}broadcast") == 2

        took = await wait_until(followed, "layers on the new master")
        await sender.group_send("room.r1", {"type": "room.event", "n": 1})
        delivered = await receive(receiver, inbox)
    finally:
        hung.resume()

    assert took < RECOVERY_DEADLINE
    assert delivered == {"type": "room.event", "n": 1}


# --- Redis Cluster ---------------------------------------------------------------------


async def test_cluster_nodes_carry_seek_and_chat_on_channels_under_their_prefix(
    serve_node,  # noqa: F811
    redis_cluster,  # noqa: F811
):
    prefix = fresh_prefix()
    env = redis_env(redis_cluster.url, prefix, cluster_mode=True)
    node_a = serve_node(node_id=unique("cluster-a"), env=env)
    node_b = serve_node(node_id=unique("cluster-b"), env=env)
    room, token_a, token_b = await room_with_two_guests(node_a)
    room_channel = f"{prefix}room:{room['id']}:events"

    async with (
        open_socket(node_a, room["id"], token_a) as socket_a,
        open_socket(node_b, room["id"], token_b) as socket_b,
    ):
        await next_frame(socket_a, "snapshot")
        await next_frame(socket_b, "snapshot")

        async def both_watch_the_room():
            return subscribers(redis_cluster.nodes, room_channel) == 2

        await wait_until(both_watch_the_room, "room subscriptions", 5.0)
        seek = await seek_seen_across(socket_a, socket_b, 42.5, "seek-1")
        await socket_b.send(json.dumps({"type": "chat", "text": "popcorn?", "req_id": "chat-1"}))
        chat = await next_frame(socket_a, "chat")
        await next_frame(socket_b, "ack", lambda frame: frame.get("req_id") == "chat-1")
        channels = set()
        for cluster_node in redis_cluster.nodes:
            with cluster_node.client() as client:
                channels.update(client.pubsub_channels("*"))

    assert seek["by"]["name"] == "Alice"
    assert chat["message"]["text"] == "popcorn?"
    assert chat["message"]["user"]["name"] == "Bob"
    assert {room_channel, f"{prefix}broadcast"} <= channels
    assert [name for name in channels if not name.startswith(prefix)] == []
    assert await redis_check(node_a) == "ok"
    assert await redis_check(node_b) == "ok"


async def test_cluster_queue_message_is_received_once_through_a_prefixed_list(
    redis_cluster,  # noqa: F811
    make_layer,
):
    prefix = fresh_prefix()
    sender = await make_layer(redis_cluster.url, prefix, "queue-sender", cluster_mode=True)
    workers = [
        await make_layer(redis_cluster.url, prefix, f"queue-worker-{n}", cluster_mode=True)
        for n in (1, 2)
    ]
    host, port = redis_cluster.nodes[0].address
    keys = RedisCluster(host=host, port=port, decode_responses=True, socket_timeout=2.0)

    await sender.send(QUEUE_CHANNEL, {"type": "job.test", "n": 1})
    queued = keys.llen(f"{prefix}channel:{QUEUE_CHANNEL}")
    receiving = [asyncio.create_task(worker.receive(QUEUE_CHANNEL)) for worker in workers]
    done, _ = await asyncio.wait(receiving, timeout=FRAME_TIMEOUT, return_when="FIRST_COMPLETED")
    await asyncio.wait(receiving, timeout=QUIET_SECS)
    finished = [task for task in receiving if task.done()]
    for task in receiving:
        task.cancel()
    left = keys.llen(f"{prefix}channel:{QUEUE_CHANNEL}")
    keys.close()

    assert queued == 1
    assert len(done) == 1
    assert len(finished) == 1
    assert finished[0].result() == {"type": "job.test", "n": 1}
    assert left == 0


async def test_cluster_node_bridge_resubscribes_elsewhere_when_its_redis_node_dies(
    serve_node,  # noqa: F811
    redis_cluster,  # noqa: F811
):
    prefix = fresh_prefix()
    env = redis_env(redis_cluster.url, prefix, cluster_mode=True)
    node_a = serve_node(node_id=unique("cluster-a"), env=env)
    node_b = serve_node(node_id=unique("cluster-b"), env=env)
    room, token_a, token_b = await room_with_two_guests(node_a)
    room_channel = f"{prefix}room:{room['id']}:events"
    broadcast = f"{prefix}broadcast"

    async with (
        open_socket(node_a, room["id"], token_a) as socket_a,
        open_socket(node_b, room["id"], token_b) as socket_b,
    ):
        await next_frame(socket_a, "snapshot")
        await next_frame(socket_b, "snapshot")

        async def both_subscribed():
            nodes = redis_cluster.nodes
            return subscribers(nodes, room_channel) == 2 and subscribers(nodes, broadcast) == 2

        await wait_until(both_subscribed, "room subscriptions", 5.0)
        before = await seek_seen_across(socket_a, socket_b, 5.0, "before-kill")
        # The cluster nodes holding the bridges' pub/sub connections (they subscribe the room).
        victims = [
            cluster_node
            for cluster_node in redis_cluster.nodes
            if subscribers([cluster_node], room_channel) > 0
        ]
        survivors = [node for node in redis_cluster.nodes if node not in victims]
        assert survivors, "both bridges subscribe through every cluster node"
        for victim in victims:
            victim.kill()

        async def resubscribed_on_a_survivor():
            checks = [await redis_check(node_a), await redis_check(node_b)]
            return checks == ["ok", "ok"] and await both_subscribed()

        took = await wait_until(resubscribed_on_a_survivor, "subscriptions on a live node")
        after = await seek_seen_across(socket_a, socket_b, 55.0, "after-kill")
        on_survivors = subscribers(survivors, room_channel)

    assert took < RECOVERY_DEADLINE
    assert on_survivors == 2
    assert after["playback"]["version"] > before["playback"]["version"]
    assert after["by"]["name"] == "Alice"

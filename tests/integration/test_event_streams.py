"""Room event streams in Redis: a layer cut off from Redis catches up after the heal.

Two real layers on one real redis-server; the receiving (or sending) one talks to it
through a `PartitionProxy` the test cuts and heals (issue 8, point 1).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from cluster.layer import ClusterChannelLayer
from tests.support.proxy import PartitionProxy, partition_proxy  # noqa: F401
from tests.support.redis_servers import redis_server  # noqa: F401

DEADLINE = 10.0  # a cut is noticed after 3 s of silence; reconnecting takes ≤ 2.4 s more
ROUTING = "rooms.services.events.route_group"
RECOVERY_HOOK = "tests.integration.test_event_streams.record_recovery"

recoveries: list[tuple[set[str], int]] = []


async def record_recovery(room_ids: set[str], since_ms: int) -> None:
    """The layers' `on_recovered`: which rooms they would re-read from the database."""
    recoveries.append((set(room_ids), since_ms))


@pytest.fixture
async def layers() -> AsyncIterator[Callable[..., Awaitable[ClusterChannelLayer]]]:
    """Factory of layers sharing one fresh key prefix; flushed and closed after the test."""
    prefix = f"streams-{uuid.uuid4().hex[:8]}:"
    made: list[ClusterChannelLayer] = []
    recoveries.clear()

    async def make(
        url: str, node_id: str, connected: bool = True, **options
    ) -> ClusterChannelLayer:
        """A layer connected to Redis (an event sent before would be announced as missed)."""
        layer = ClusterChannelLayer(
            redis_url=url,
            key_prefix=prefix,
            node_id=node_id,
            routing=ROUTING,
            on_recovered=RECOVERY_HOOK,
            **options,
        )
        made.append(layer)
        if connected:
            async with asyncio.timeout(DEADLINE):
                await layer.bridge.wait_connected()
        return layer

    yield make
    for layer in made:
        await layer.close()


async def until(check: Callable[[], bool], what: str, within: float = DEADLINE) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"no {what} within {within:g} s"
        await asyncio.sleep(0.05)


async def subscribed(sender: ClusterChannelLayer, receiver: ClusterChannelLayer, channel: str):
    """Send probes until one arrives: the receiver's room subscription is live."""
    async with asyncio.timeout(DEADLINE):
        while True:
            await sender.group_send("room.r", {"type": "probe"})
            try:
                async with asyncio.timeout(0.2):
                    await receiver.receive(channel)
                return
            except TimeoutError:
                continue


async def watching(sender: ClusterChannelLayer, receiver: ClusterChannelLayer) -> str:
    """A receiver's channel in room r, subscribed and with the probes drained."""
    channel = await receiver.new_channel()
    await receiver.group_add("room.r", channel)
    await subscribed(sender, receiver, channel)
    await drain(receiver, channel)
    return channel


async def drain(layer: ClusterChannelLayer, channel: str) -> None:
    while True:
        try:
            async with asyncio.timeout(0.3):
                await layer.receive(channel)
        except TimeoutError:
            return


async def test_a_cut_off_layer_reads_the_events_it_missed_from_the_room_stream(
    redis_server,  # noqa: F811
    partition_proxy,  # noqa: F811
    layers,
):
    proxy = partition_proxy(redis_server.port)
    sender = await layers(redis_server.url, "sender")
    receiver = await layers(proxy.url, "receiver")
    channel = await watching(sender, receiver)

    proxy.cut()
    await until(lambda: receiver.redis_status() == "degraded", "the receiver degraded")
    for number in range(30):
        await sender.group_send("room.r", {"type": "missed", "n": number})
    healed = time.monotonic()
    proxy.heal()
    async with asyncio.timeout(DEADLINE):
        got = [await receiver.receive(channel) for _ in range(30)]
    took = time.monotonic() - healed
    await sender.group_send("room.r", {"type": "live"})
    async with asyncio.timeout(DEADLINE):
        after = await receiver.receive(channel)

    assert [message["n"] for message in got] == list(range(30))  # all, once, in order
    assert after == {"type": "live"}
    assert recoveries == []  # nothing re-read from the database: the stream had it all
    assert took < 5.0


async def test_a_stream_trimmed_past_the_last_applied_event_makes_the_room_re_read(
    redis_server,  # noqa: F811
    partition_proxy,  # noqa: F811
    layers,
):
    proxy = partition_proxy(redis_server.port)
    sender = await layers(redis_server.url, "sender", stream_max_events=10)
    receiver = await layers(proxy.url, "receiver", stream_max_events=10)
    await watching(sender, receiver)

    proxy.cut()
    await until(lambda: receiver.redis_status() == "degraded", "the receiver degraded")
    cut_at_ms = int(time.time() * 1000)
    for number in range(500):  # `MAXLEN ~ 10` trims whole nodes of 100 entries
        await sender.group_send("room.r", {"type": "missed", "n": number})
    proxy.heal()
    await until(lambda: bool(recoveries), "a re-read from the database")

    assert recoveries[0][0] == {"r"}
    assert recoveries[0][1] <= cut_at_ms
    with redis_server.client() as client:
        assert client.xlen(f"{sender.key_prefix}room:r:stream") < 500


async def test_a_layer_back_from_a_cut_announces_the_rooms_it_changed_meanwhile(
    redis_server,  # noqa: F811
    partition_proxy,  # noqa: F811
    layers,
):
    proxy = partition_proxy(redis_server.port)
    cut_side = await layers(proxy.url, "cut-side")
    other = await layers(redis_server.url, "other")
    await other.group_add("room.quiet", await other.new_channel())
    await watching(cut_side, other)

    proxy.cut()
    await until(lambda: cut_side.redis_status() == "degraded", "the cut side degraded")
    changed_at_ms = int(time.time() * 1000)
    await cut_side.group_send("room.r", {"type": "lost", "n": 1})
    proxy.heal()
    await until(lambda: bool(recoveries), "the other layer told to re-read room r")

    assert [rooms for rooms, _ in recoveries] == [{"r"}]  # not the quiet room
    assert changed_at_ms - 1000 <= recoveries[0][1] <= changed_at_ms + 1000


async def test_a_room_first_watched_while_the_layer_connects_is_subscribed_and_re_read(
    redis_server,  # noqa: F811
    partition_proxy,  # noqa: F811
    layers,
):
    proxy = partition_proxy(redis_server.port)
    proxy.latency = 0.1  # connecting (commands, subscriptions) takes many round trips
    sender = await layers(redis_server.url, "sender")
    receiver = await layers(proxy.url, "receiver", connected=False)
    bridge = receiver.bridge  # starts connecting
    await until(lambda: bridge.client is not None, "the first connection under way")
    assert not bridge.healthy
    channel = await receiver.new_channel()
    await receiver.group_add("room.r", channel)  # a socket joins meanwhile
    async with asyncio.timeout(DEADLINE):
        await receiver.bridge.wait_connected()
    proxy.latency = 0.0
    await subscribed(sender, receiver, channel)
    await until(lambda: bool(recoveries), "a re-read of the room")

    # Its snapshot was read before the subscription: what came between is re-read.
    assert [rooms for rooms, _ in recoveries] == [{"r"}]


async def test_a_second_group_of_a_room_waits_for_the_first_ones_subscription(
    redis_server,  # noqa: F811
    partition_proxy,  # noqa: F811
    layers,
):
    """Two sockets of one room joining together on a node: the second one's group_add must
    not return before the room's subscription is live, or its snapshot could be read before
    it and an event published in between would reach neither (the soak's lost chat line)."""
    proxy = partition_proxy(redis_server.port)
    sender = await layers(redis_server.url, "sender")
    receiver = await layers(proxy.url, "receiver")
    proxy.latency = 0.3  # the SUBSCRIBE takes a while to reach Redis
    first, second = await receiver.new_channel(), await receiver.new_channel()
    joining = asyncio.create_task(receiver.group_add("room.r", first))
    await until(lambda: receiver.bridge.watched, "the first watch begun")
    async with asyncio.timeout(DEADLINE):
        await receiver.group_add("room.r", second)
    # What the second socket's snapshot would miss, published the moment its join returns.
    await sender.group_send("room.r", {"type": "after.join"})
    async with asyncio.timeout(DEADLINE):
        await joining
        message = await receiver.receive(second)
    assert message["type"] == "after.join"


async def test_rooms_first_watched_at_every_step_of_the_connection_are_all_subscribed(
    redis_server,  # noqa: F811
    partition_proxy,  # noqa: F811
    layers,
):
    """Sockets joining rooms all through a node's first connection to Redis (a restarted
    node whose clients come back at once): every room ends up subscribed, whichever step of
    the connection its first watch fell in (the soak's client stuck on its snapshot after a
    drain: a room watched while the bridge read Redis's run_id was never subscribed)."""
    proxy = partition_proxy(redis_server.port)
    proxy.latency = 0.15  # each step of the connection takes a while
    sender = await layers(redis_server.url, "sender")
    receiver = await layers(proxy.url, "receiver", connected=False)
    channels: dict[str, str] = {}
    async with asyncio.timeout(DEADLINE):
        # Joins paced a little slower than a round trip, so that some fall between the
        # connection's steps, over the ~2 s it takes.
        while not receiver.bridge.healthy and len(channels) < 30:
            room = f"room.r{len(channels)}"
            channels[room] = await receiver.new_channel()
            await receiver.group_add(room, channels[room])
            await asyncio.sleep(0.45)
        await receiver.bridge.wait_connected()
    proxy.latency = 0.0
    for room in channels:
        await sender.group_send(room, {"type": "after.connect"})
    missing = []
    for room, channel in channels.items():
        try:
            async with asyncio.timeout(2.0):
                message = await receiver.receive(channel)
            assert message["type"] == "after.connect"
        except TimeoutError:
            missing.append(room)
    assert len(channels) >= 4, "the connection was too quick to join rooms all through it"
    assert not missing, f"rooms never subscribed: {missing} of {len(channels)}"

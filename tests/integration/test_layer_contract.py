"""The channel layer contract: promises every ClusterChannelLayer configuration keeps.

Written against the public Channels layer API only, so that each factory in
LAYER_FACTORIES (local now, Redis-backed later) runs the whole suite. A factory takes
config overrides (expiry, group_expiry, channel_capacity) as keyword arguments.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from channels.exceptions import ChannelFull

from cluster.hub import OVERFLOW_MESSAGE_TYPE
from cluster.layer import ClusterChannelLayer
from tests.support.redis_servers import RedisServer

CAPACITY = 3
SHORT_EXPIRY = 0.2
# Bounds every await that could hang; generous because only a bug makes it matter.
DEADLINE = 2.0
# How long "nothing arrives" is watched for; a message due would arrive far sooner.
QUIET_PERIOD = 0.05

LayerFactory = Callable[..., ClusterChannelLayer]


def make_local_layer(**overrides: Any) -> ClusterChannelLayer:
    """The single-node layer: the local hub alone."""
    return ClusterChannelLayer(**{"capacity": CAPACITY, "expiry": 60, **overrides})


def make_redis_layer(redis_url: str, **overrides: Any) -> ClusterChannelLayer:
    """The cluster-mode layer: local hub plus the Redis bridge (a fresh key prefix per layer)."""
    options = {"capacity": CAPACITY, "expiry": 60, "redis_url": redis_url, **overrides}
    return ClusterChannelLayer(key_prefix=f"contract-{uuid.uuid4().hex[:8]}:", **options)


LAYER_FACTORIES = [
    pytest.param(make_local_layer, id="local"),
    pytest.param(make_redis_layer, id="redis"),
]


@pytest.fixture(scope="module")
def contract_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the Redis-backed runs of this module."""
    with RedisServer(tmp_path_factory.mktemp("contract-redis")).start() as server:
        yield server


@pytest.fixture(params=LAYER_FACTORIES)
def layer_factory(request: pytest.FixtureRequest) -> LayerFactory:
    """Each layer configuration the contract is checked against."""
    if request.param is make_redis_layer:
        server = request.getfixturevalue("contract_redis")
        return functools.partial(make_redis_layer, server.url)
    return request.param


@pytest.fixture
async def make_layer(layer_factory: LayerFactory) -> AsyncIterator[LayerFactory]:
    """Build layers with config overrides; flush and close each after the test."""
    made: list[ClusterChannelLayer] = []

    def make(**overrides: Any) -> ClusterChannelLayer:
        made.append(layer_factory(**overrides))
        return made[-1]

    yield make
    for layer in made:
        await layer.flush()
        await layer.close()


@pytest.fixture
def layer(make_layer: LayerFactory) -> ClusterChannelLayer:
    """A layer with the factory's defaults, flushed after the test."""
    return make_layer()


@pytest.fixture
def local_layer(layer_factory: LayerFactory, layer: ClusterChannelLayer) -> ClusterChannelLayer:
    """The layer, for promises only the in-process half can keep (others skip)."""
    if layer_factory is not make_local_layer:
        pytest.skip("local-only promise")
    return layer


async def receive(layer: ClusterChannelLayer, channel: str) -> dict[str, Any]:
    """Receive one message, failing the test if none comes within DEADLINE."""
    async with asyncio.timeout(DEADLINE):
        return await layer.receive(channel)


async def nothing_arrives(layer: ClusterChannelLayer, channel: str) -> bool:
    """True if no message arrives on the channel within QUIET_PERIOD."""
    try:
        async with asyncio.timeout(QUIET_PERIOD):
            await layer.receive(channel)
    except TimeoutError:
        return True
    return False


async def wait_until(condition: Callable[[], Awaitable[bool]]) -> None:
    """Poll condition until true, failing the test after DEADLINE."""
    async with asyncio.timeout(DEADLINE):
        while True:
            if await condition():
                return
            await asyncio.sleep(0.01)


async def fill(layer: ClusterChannelLayer, channel: str) -> None:
    """Send CAPACITY messages numbered 0.. to a channel."""
    for n in range(CAPACITY):
        await layer.send(channel, {"type": "filler", "n": n})


# Channels
async def test_send_then_receive_returns_the_message(layer: ClusterChannelLayer):
    await layer.send("test.channel", {"type": "test.message", "text": "hi"})
    assert await receive(layer, "test.channel") == {"type": "test.message", "text": "hi"}


async def test_receive_order_is_fifo_per_channel(layer: ClusterChannelLayer):
    for n in range(CAPACITY):
        await layer.send("test.a", {"type": "test.a", "n": n})
        await layer.send("test.b", {"type": "test.b", "n": n})
    assert [(await receive(layer, "test.a"))["n"] for _ in range(CAPACITY)] == [0, 1, 2]
    assert [(await receive(layer, "test.b"))["n"] for _ in range(CAPACITY)] == [0, 1, 2]


async def test_new_channel_names_are_unique_and_valid(layer: ClusterChannelLayer):
    names = {await layer.new_channel() for _ in range(100)}
    assert len(names) == 100
    assert all(name.startswith("specific.") for name in names)
    assert all(layer.require_valid_channel_name(name) for name in names)
    room_channel = await layer.new_channel(prefix="room.")
    assert room_channel.startswith("room.")
    await layer.send(room_channel, {"type": "test.message"})
    assert await receive(layer, room_channel) == {"type": "test.message"}


# Groups
async def test_group_send_reaches_every_member_and_only_members(layer: ClusterChannelLayer):
    await layer.group_add("room1", "test.one")
    await layer.group_add("room1", "test.two")
    await layer.group_add("room2", "test.other")
    await layer.group_send("room1", {"type": "test.event"})
    assert await receive(layer, "test.one") == {"type": "test.event"}
    assert await receive(layer, "test.two") == {"type": "test.event"}
    assert await nothing_arrives(layer, "test.other")


async def test_group_add_twice_delivers_once(layer: ClusterChannelLayer):
    await layer.group_add("room1", "test.one")
    await layer.group_add("room1", "test.one")
    await layer.group_send("room1", {"type": "test.event"})
    assert await receive(layer, "test.one") == {"type": "test.event"}
    assert await nothing_arrives(layer, "test.one")


async def test_group_discard_stops_delivery(layer: ClusterChannelLayer):
    await layer.group_add("room1", "test.one")
    await layer.group_add("room1", "test.two")
    await layer.group_discard("room1", "test.one")
    await layer.group_send("room1", {"type": "test.event"})
    assert await receive(layer, "test.two") == {"type": "test.event"}
    assert await nothing_arrives(layer, "test.one")


async def test_group_discard_of_non_member_is_a_no_op(layer: ClusterChannelLayer):
    await layer.group_discard("room1", "test.one")
    await layer.group_add("room1", "test.two")
    await layer.group_discard("room1", "test.one")
    await layer.group_send("room1", {"type": "test.event"})
    assert await receive(layer, "test.two") == {"type": "test.event"}


async def test_group_discard_of_last_member_then_add_again(layer: ClusterChannelLayer):
    await layer.group_add("room1", "test.one")
    await layer.group_discard("room1", "test.one")
    await layer.group_send("room1", {"type": "test.dropped"})
    await layer.group_add("room1", "test.one")
    await layer.group_send("room1", {"type": "test.event"})
    assert await receive(layer, "test.one") == {"type": "test.event"}


async def test_group_send_to_empty_group_is_a_no_op(layer: ClusterChannelLayer):
    await layer.group_send("nobody.here", {"type": "test.event"})


async def test_group_send_hands_every_member_the_same_object(local_layer: ClusterChannelLayer):
    # Local-only: zero-copy fan-out is a promise of the in-process hub. A message that
    # crossed Redis was necessarily decoded into a new dict.
    message = {"type": "test.event", "text": '{"encoded": "once"}'}
    for channel in ("test.one", "test.two", "test.three"):
        await local_layer.group_add("room1", channel)
    await local_layer.group_send("room1", message)
    for channel in ("test.one", "test.two", "test.three"):
        assert await receive(local_layer, channel) is message


# Capacity
async def test_send_to_full_channel_raises_channel_full(layer: ClusterChannelLayer):
    await fill(layer, "test.channel")
    with pytest.raises(ChannelFull):
        await layer.send("test.channel", {"type": "test.one.too.many"})
    assert [(await receive(layer, "test.channel"))["n"] for _ in range(CAPACITY)] == [0, 1, 2]


async def test_channel_capacity_overrides_capacity_by_pattern(make_layer: LayerFactory):
    layer = make_layer(channel_capacity={"tiny.*": 1})
    await layer.send("tiny.channel", {"type": "test.message"})
    with pytest.raises(ChannelFull):
        await layer.send("tiny.channel", {"type": "test.message"})
    await fill(layer, "roomy.channel")


async def test_full_member_gets_one_overflow_message_and_no_later_group_messages(
    layer: ClusterChannelLayer,
):
    await layer.group_add("room1", "test.slow")
    await layer.group_add("room1", "test.fast")
    for n in range(CAPACITY + 2):
        await layer.group_send("room1", {"type": "test.event", "n": n})
        assert await receive(layer, "test.fast") == {"type": "test.event", "n": n}
    assert await receive(layer, "test.slow") == {"type": OVERFLOW_MESSAGE_TYPE}
    assert await nothing_arrives(layer, "test.slow")


async def test_overflowed_channel_refuses_sends_until_notice_is_read(layer: ClusterChannelLayer):
    await layer.group_add("room1", "test.slow")
    for n in range(CAPACITY + 1):
        await layer.group_send("room1", {"type": "test.event", "n": n})
    with pytest.raises(ChannelFull):
        await layer.send("test.slow", {"type": "test.direct"})
    assert await receive(layer, "test.slow") == {"type": OVERFLOW_MESSAGE_TYPE}
    await layer.send("test.slow", {"type": "test.direct"})
    await layer.group_send("room1", {"type": "test.event", "n": "after"})
    assert await receive(layer, "test.slow") == {"type": "test.direct"}
    assert await receive(layer, "test.slow") == {"type": "test.event", "n": "after"}


# Expiry
async def test_expired_messages_are_dropped_not_received(make_layer: LayerFactory):
    layer = make_layer(expiry=SHORT_EXPIRY)
    await fill(layer, "test.channel")
    # Time passing is the behaviour under test: let every filler outlive its expiry.
    await asyncio.sleep(SHORT_EXPIRY * 1.5)
    await layer.send("test.channel", {"type": "test.fresh"})  # room again: no ChannelFull
    assert await receive(layer, "test.channel") == {"type": "test.fresh"}
    assert await nothing_arrives(layer, "test.channel")


async def test_a_receive_started_after_an_idle_expiry_period_still_gets_messages(
    make_layer: LayerFactory,
):
    # Regression: the periodic sweep of idle queues once orphaned a fresh receiver's queue.
    layer = make_layer(expiry=SHORT_EXPIRY)
    await layer.send("test.warmup", {"type": "test.warmup"})
    await asyncio.sleep(SHORT_EXPIRY * 1.5)  # the sweep is due on the next call: that is the point
    pending = asyncio.create_task(receive(layer, "test.channel"))
    await asyncio.sleep(0)
    await layer.send("test.channel", {"type": "test.message"})
    assert await pending == {"type": "test.message"}


async def test_group_membership_expires_after_group_expiry(make_layer: LayerFactory):
    layer = make_layer(group_expiry=SHORT_EXPIRY)
    await layer.group_add("room1", "test.old")

    async def membership_expired() -> bool:
        await layer.group_add("room1", "test.probe")
        await layer.group_send("room1", {"type": "test.event"})
        await receive(layer, "test.probe")
        return await nothing_arrives(layer, "test.old")

    await wait_until(membership_expired)


# Receiving
async def test_cancelled_receive_loses_no_message(layer: ClusterChannelLayer):
    pending = asyncio.create_task(layer.receive("test.channel"))
    await asyncio.sleep(0)
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending
    await layer.send("test.channel", {"type": "test.after.cancel"})
    assert await receive(layer, "test.channel") == {"type": "test.after.cancel"}


async def test_receive_cancelled_as_message_arrives_loses_no_message(layer: ClusterChannelLayer):
    pending = asyncio.create_task(layer.receive("test.channel"))
    await asyncio.sleep(0)
    await layer.send("test.channel", {"type": "test.racing"})
    pending.cancel()
    try:
        got = [await pending]
    except asyncio.CancelledError:
        got = [await receive(layer, "test.channel")]
    assert got == [{"type": "test.racing"}]
    assert await nothing_arrives(layer, "test.channel")


async def test_cancelled_receiver_passes_message_to_other_receiver(layer: ClusterChannelLayer):
    first = asyncio.create_task(layer.receive("test.channel"))
    await asyncio.sleep(0)
    second = asyncio.create_task(receive(layer, "test.channel"))
    await asyncio.sleep(0)
    await layer.send("test.channel", {"type": "test.message"})
    first.cancel()
    results = await asyncio.gather(first, second, return_exceptions=True)
    messages = [result for result in results if isinstance(result, dict)]
    assert messages == [{"type": "test.message"}]


async def test_concurrent_receivers_each_get_distinct_messages(layer: ClusterChannelLayer):
    receivers = [asyncio.create_task(receive(layer, "test.channel")) for _ in range(CAPACITY)]
    await asyncio.sleep(0)
    for n in range(CAPACITY):
        await layer.send("test.channel", {"type": "test.message", "n": n})
    received = await asyncio.gather(*receivers)
    assert sorted(message["n"] for message in received) == [0, 1, 2]


# Flush
async def test_flush_empties_channels_and_groups(layer: ClusterChannelLayer):
    await layer.send("test.channel", {"type": "test.message"})
    await layer.group_add("room1", "test.member")
    await layer.flush()
    await layer.group_send("room1", {"type": "test.event"})
    assert await nothing_arrives(layer, "test.channel")
    assert await nothing_arrives(layer, "test.member")


async def test_receive_pending_across_flush_still_gets_later_message(layer: ClusterChannelLayer):
    pending = asyncio.create_task(receive(layer, "test.channel"))
    await asyncio.sleep(0)
    await layer.flush()
    await layer.send("test.channel", {"type": "test.after.flush"})
    assert await pending == {"type": "test.after.flush"}


async def test_close_is_harmless(layer: ClusterChannelLayer):
    await layer.close()
    await layer.close()


# Validation
@pytest.mark.parametrize("name", ["", "has space", "ünïcode", "a" * 100, None, 42])
async def test_invalid_channel_names_are_rejected(layer: ClusterChannelLayer, name: Any):
    with pytest.raises(TypeError):
        await layer.send(name, {"type": "test.message"})
    with pytest.raises(TypeError):
        await layer.receive(name)
    with pytest.raises(TypeError):
        await layer.group_add("room1", name)


@pytest.mark.parametrize("name", ["", "has space", "no!bang", "a" * 100, None])
async def test_invalid_group_names_are_rejected(layer: ClusterChannelLayer, name: Any):
    with pytest.raises(TypeError):
        await layer.group_add(name, "test.channel")
    with pytest.raises(TypeError):
        await layer.group_discard(name, "test.channel")
    with pytest.raises(TypeError):
        await layer.group_send(name, {"type": "test.message"})


NOT_DICTS = ["text", b"bytes", ["type"], None]
DICTS_WITHOUT_STR_TYPE = [{}, {"text": "no type"}, {"type": 7}]


@pytest.mark.parametrize(
    ("message", "error"),
    [(m, TypeError) for m in NOT_DICTS] + [(m, ValueError) for m in DICTS_WITHOUT_STR_TYPE],
)
async def test_messages_that_are_not_dicts_with_str_type_are_rejected(
    layer: ClusterChannelLayer, message: Any, error: type[Exception]
):
    await layer.group_add("room1", "test.channel")
    with pytest.raises(error):
        await layer.send("test.channel", message)
    with pytest.raises(error):
        await layer.group_send("room1", message)
    assert await nothing_arrives(layer, "test.channel")


# Event loops
async def test_second_event_loop_has_its_own_state(local_layer: ClusterChannelLayer):
    # Local-only: in cluster mode another loop's group_send reaches this loop via Redis.
    await local_layer.group_add("room1", "test.first")
    await local_layer.send("test.queued", {"type": "test.first.loop"})
    seen_in_second_loop: dict[str, Any] = {}

    async def in_second_loop() -> None:
        await local_layer.group_send("room1", {"type": "test.from.second.loop"})
        await local_layer.group_add("room1", "test.second")
        await local_layer.group_send("room1", {"type": "test.second.loop"})
        seen_in_second_loop["own"] = await receive(local_layer, "test.second")
        seen_in_second_loop["queue empty"] = await nothing_arrives(local_layer, "test.queued")

    thread = threading.Thread(target=asyncio.run, args=(in_second_loop(),))
    thread.start()
    await asyncio.to_thread(thread.join, DEADLINE)
    assert not thread.is_alive()
    assert seen_in_second_loop == {"own": {"type": "test.second.loop"}, "queue empty": True}
    assert await nothing_arrives(local_layer, "test.first")
    assert await receive(local_layer, "test.queued") == {"type": "test.first.loop"}

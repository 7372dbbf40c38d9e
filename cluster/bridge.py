"""The Redis bridge of the cluster channel layer: one per node and event loop.

It publishes `{"node_id", "message_id", "timestamp", "event"}` envelopes, keeps one pub/sub
connection subscribed to `{prefix}broadcast`, `{prefix}node:{node}` and the
`{prefix}room:{id}:events` of every room with local members, and hands what other nodes
publish to the local hub. It never lets a Redis error reach a consumer: a failure marks the
bridge degraded (local delivery goes on), it reconnects with backoff, resubscribes, and then
calls `on_recovered` so the rooms it serves are resynced from the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from channels.exceptions import ChannelFull

from cluster.dedup import MessageDeduplicator
from cluster.hub import LocalHub, Message
from cluster.redis_target import RedisTarget, open_client, open_subscriber
from monitoring.metrics import (
    EVENTS_DEDUPLICATED,
    EVENTS_RECEIVED,
    REDIS_CONNECTION_ERRORS,
    REDIS_PUBSUB_MESSAGES,
)

logger = logging.getLogger(__name__)

PUBLISH_TIMEOUT_SECS = 0.5  # a publish batch that takes longer means Redis is in trouble
SUBSCRIBE_TIMEOUT_SECS = 2.0
POLL_SECS = 0.5  # how long one read of the pub/sub connection waits
PING_AFTER_SECS = 1.0  # silence after which the subscriber pings Redis
DEAD_AFTER_SECS = 3.0  # silence (no message, no pong) after which Redis counts as hung
BACKOFF_FIRST_SECS = 1.0
BACKOFF_MAX_SECS = 30.0
OUTBOX_SIZE = 10_000
BATCH_SIZE = 500
QUEUE_POP_SECS = 1
CLOSE_TIMEOUT_SECS = 1.0

# Atomically: drop expired messages at the old end, refuse a full list, else push.
PUSH_SCRIPT = """
while true do
  local oldest = redis.call('LINDEX', KEYS[1], -1)
  if not oldest or cjson.decode(oldest)['expires'] >= tonumber(ARGV[1]) then break end
  redis.call('RPOP', KEYS[1])
end
if redis.call('LLEN', KEYS[1]) >= tonumber(ARGV[2]) then return -1 end
redis.call('LPUSH', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return redis.call('LLEN', KEYS[1])
"""

Recovered = Callable[[set[str], int], Coroutine[Any, Any, None]]


class RedisBridge:
    """Cross-node delivery through Redis pub/sub, and queue channels through Redis lists."""

    def __init__(
        self,
        target: RedisTarget,
        hub: LocalHub,
        key_prefix: str,
        node_id: str,
        node_token: str,
        dedup_window_secs: float,
        on_recovered: Recovered | None = None,
    ) -> None:
        self.target = target
        self.hub = hub
        self.prefix = key_prefix
        self.node_id = node_id
        self.node_channel = f"{key_prefix}node:{node_token}"
        self.broadcast_channel = f"{key_prefix}broadcast"
        self.dedup = MessageDeduplicator(dedup_window_secs)
        self.on_recovered = on_recovered
        self.client: Any = None  # commands: lists; PUBLISH too unless a cluster
        self.publisher: Any = None  # PUBLISH and SUBSCRIBE: one node of a cluster
        self.pubsub: Any = None
        self.healthy = False
        self.degraded_since_ms: int | None = None
        self.watched: dict[str, int] = {}  # room pub/sub channel → local groups using it
        self._confirmations: dict[str, asyncio.Event] = {}
        self._outbox: asyncio.Queue[tuple[str, str]] = asyncio.Queue(OUTBOX_SIZE)
        self._failed = asyncio.Event()
        self._up = asyncio.Event()
        self._fetchers: dict[str, asyncio.Task[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._resyncs: set[asyncio.Task[None]] = set()

    # --- life cycle -----------------------------------------------------------------

    def start(self) -> None:
        """Start the subscriber (which connects) and the publisher."""
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._run_subscriber(), name="synctv-redis-subscriber"),
                asyncio.create_task(self._run_publisher(), name="synctv-redis-publisher"),
            ]

    async def close(self) -> None:
        """Stop every task and close the connections."""
        tasks = [*self._tasks, *self._fetchers.values(), *self._resyncs]
        for task in tasks:
            task.cancel()
        if tasks:
            # Bounded: a task stuck inside the Redis client must not hang the shutdown.
            await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT_SECS)
        self._tasks, self._fetchers = [], {}
        await self._drop_connections()

    def status(self) -> str:
        """`ok` while connected, `degraded` while serving local clients alone."""
        return "ok" if self.healthy else "degraded"

    async def wait_connected(self) -> None:
        """Return once connected to Redis; bound it with asyncio.timeout."""
        await self._up.wait()

    # --- publishing -----------------------------------------------------------------

    def publish_group(self, group: str, message: Message, room_id: str | None) -> None:
        """Send a group message to the other nodes: on its room's channel, or to every node.

        Never blocks; dropped while degraded. The layer's routing function names the room.
        """
        channel = (
            f"{self.prefix}room:{room_id}:events" if room_id is not None else self.broadcast_channel
        )
        self._enqueue(channel, {"group": group, "message": message})

    def publish_to_node(self, node_token: str, channel: str, message: Message) -> None:
        """Send a message to one channel of another node."""
        self._enqueue(f"{self.prefix}node:{node_token}", {"channel": channel, "message": message})

    def _enqueue(self, channel: str, event: dict[str, Any]) -> None:
        if not self.healthy:
            return  # the resync after reconnecting brings every room up to date
        envelope = {
            "node_id": self.node_id,
            "message_id": uuid.uuid4().hex,
            "timestamp": int(time.time() * 1000),
            "event": event,
        }
        try:
            self._outbox.put_nowait((channel, json.dumps(envelope, separators=(",", ":"))))
        except asyncio.QueueFull:
            self._fail(RuntimeError("publish backlog full"))

    async def _run_publisher(self) -> None:
        while True:
            batch = [await self._outbox.get()]
            while len(batch) < BATCH_SIZE and not self._outbox.empty():
                batch.append(self._outbox.get_nowait())
            if not self.healthy:
                continue
            try:
                async with asyncio.timeout(PUBLISH_TIMEOUT_SECS):
                    if len(batch) == 1:
                        await self.publisher.publish(*batch[0])
                    else:
                        pipe = self.publisher.pipeline(transaction=False)
                        for channel, data in batch:
                            pipe.publish(channel, data)
                        await pipe.execute()
            except Exception as exc:
                self._fail(exc)

    # --- subscriptions --------------------------------------------------------------

    async def watch(self, room_id: str) -> None:
        """A local group of this room exists: receive the room's events from other nodes."""
        channel = f"{self.prefix}room:{room_id}:events"
        self.watched[channel] = self.watched.get(channel, 0) + 1
        if self.watched[channel] == 1 and self.healthy:
            await self._subscribe([channel])

    async def unwatch(self, room_id: str) -> None:
        """A local group of this room is gone; unsubscribe when it was the last."""
        channel = f"{self.prefix}room:{room_id}:events"
        count = self.watched.get(channel, 0) - 1
        if count > 0:
            self.watched[channel] = count
            return
        self.watched.pop(channel, None)
        if self.healthy and self.pubsub is not None:
            try:
                async with asyncio.timeout(SUBSCRIBE_TIMEOUT_SECS):
                    await self.pubsub.unsubscribe(channel)
            except Exception as exc:
                self._fail(exc)

    async def _subscribe(self, channels: list[str], read_here: bool = False) -> None:
        """Subscribe and wait for Redis to confirm, so no event published after is missed.

        The subscriber task reads the confirmations; while it is connecting (`read_here`)
        this call reads them itself.
        """
        events = [self._confirmations.setdefault(c, asyncio.Event()) for c in channels]
        try:
            async with asyncio.timeout(SUBSCRIBE_TIMEOUT_SECS):
                await self.pubsub.subscribe(*channels)
                while read_here and not all(event.is_set() for event in events):
                    message = await self.pubsub.get_message(timeout=POLL_SECS)
                    if message is not None:
                        self._on_message(message)
                for event in events:
                    await event.wait()
        except Exception as exc:
            self._fail(exc)
            raise
        finally:
            for channel in channels:
                self._confirmations.pop(channel, None)

    def rooms(self) -> set[str]:
        """Rooms with local members (their channels are subscribed while healthy)."""
        start = len(f"{self.prefix}room:")
        return {channel[start : -len(":events")] for channel in self.watched}

    # --- the subscriber: connect, read, reconnect -----------------------------------

    async def _run_subscriber(self) -> None:
        attempt = 0
        while True:
            try:
                await self._connect()
                attempt = 0
                self._mark_healthy()
                await self._read_until_failure()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._mark_degraded(exc)
            await self._drop_connections()
            delay = min(BACKOFF_MAX_SECS, BACKOFF_FIRST_SECS * 2**attempt)
            attempt += 1
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))

    async def _connect(self) -> None:
        self._failed.clear()
        self.client = open_client(self.target)
        self.publisher = await open_subscriber(self.target, self.client)
        self.pubsub = self.publisher.pubsub()
        channels = [self.broadcast_channel, self.node_channel, *self.watched]
        await self._subscribe(channels, read_here=True)

    async def _read_until_failure(self) -> None:
        loop = asyncio.get_running_loop()
        last_heard = loop.time()
        while True:
            if self._failed.is_set():
                raise ConnectionError("a publish to Redis failed")
            # Bounded too: redis-py may reconnect inside get_message() and hang there.
            async with asyncio.timeout(DEAD_AFTER_SECS):
                message = await self.pubsub.get_message(timeout=POLL_SECS)
            now = loop.time()
            if message is not None:
                last_heard = now
                self._on_message(message)
                continue
            silence = now - last_heard
            if silence > DEAD_AFTER_SECS:
                raise TimeoutError(f"Redis answered nothing for {silence:.1f} s")
            if silence > PING_AFTER_SECS:
                await self.pubsub.ping()

    def _on_message(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        raw = message.get("channel") or b""
        channel: str = raw.decode() if isinstance(raw, bytes) else str(raw)
        if kind == "subscribe":
            event = self._confirmations.get(channel)
            if event is not None:
                event.set()
        elif kind == "message":
            self._on_envelope(channel, message["data"])

    def _on_envelope(self, channel: str, data: bytes) -> None:
        envelope = _envelope(data)
        if envelope is None:
            # Anything on Redis could publish here: a bad message must not end the
            # subscriber (that would take the node into degraded mode) nor reach a consumer.
            logger.warning("dropped a malformed message", extra={"redis_channel": channel})
            return
        event, message_id = envelope["event"], envelope["message_id"]
        if envelope.get("node_id") == self.node_id or not self.dedup.first_sighting(message_id):
            EVENTS_DEDUPLICATED.labels(node=self.node_id).inc()
            return
        EVENTS_RECEIVED.labels(node=self.node_id).inc()
        REDIS_PUBSUB_MESSAGES.labels(channel=self._channel_kind(channel)).inc()
        if "group" in event:
            self.hub.fan_out(event["group"], event["message"])
        elif "channel" in event:
            self.hub.put(event["channel"], event["message"])

    def _channel_kind(self, channel: str) -> str:
        if channel == self.broadcast_channel:
            return "broadcast"
        if channel.startswith(f"{self.prefix}node:"):
            return "node:*"
        return "room:*"

    # --- health ---------------------------------------------------------------------

    def _fail(self, exc: BaseException) -> None:
        """A command failed: degrade now, and make the subscriber reconnect."""
        if self.healthy:
            self._mark_degraded(exc)
        self._failed.set()

    def _count_error(self, exc: BaseException) -> None:
        REDIS_CONNECTION_ERRORS.labels(node=self.node_id).inc()
        logger.debug("Redis command failed", extra={"error": repr(exc)})

    def _mark_degraded(self, exc: BaseException) -> None:
        REDIS_CONNECTION_ERRORS.labels(node=self.node_id).inc()
        if self.degraded_since_ms is None:
            self.degraded_since_ms = int(time.time() * 1000)
        if self.healthy:
            logger.warning(
                "Redis unreachable: serving local clients alone", extra={"error": repr(exc)}
            )
        self.healthy = False
        self._up.clear()

    def _mark_healthy(self) -> None:
        outage_started = self.degraded_since_ms
        self.healthy = True
        self._up.set()
        self.degraded_since_ms = None
        if outage_started is None:
            return
        logger.info("Redis is back: resyncing rooms", extra={"rooms": len(self.watched)})
        if self.on_recovered is not None:
            task = asyncio.create_task(self.on_recovered(self.rooms(), outage_started))
            self._resyncs.add(task)
            task.add_done_callback(self._resyncs.discard)

    async def _drop_connections(self) -> None:
        for closing in (self.pubsub, self.publisher, self.client):
            if closing is None:
                continue
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT_SECS):
                    await closing.aclose()
        self.pubsub = self.publisher = self.client = None

    # --- queue channels (not process-specific): Redis lists -------------------------

    def _list_key(self, channel: str) -> str:
        return f"{self.prefix}channel:{channel}"

    async def push(self, channel: str, message: Message, capacity: int, expiry: float) -> None:
        """Queue a message for whichever process receives on `channel` first."""
        now = time.time()
        data = json.dumps({"expires": now + expiry, "message": message})
        try:
            async with asyncio.timeout(SUBSCRIBE_TIMEOUT_SECS):
                await self._up.wait()  # a node just starting: give it its first connection
            async with asyncio.timeout(PUBLISH_TIMEOUT_SECS):
                queued = await self.client.eval(
                    PUSH_SCRIPT, 1, self._list_key(channel), now, capacity, data, int(expiry) + 1
                )
        except Exception as exc:
            # Counted, not a reason to drop pub/sub: in a Redis Cluster one master down
            # refuses key commands while pub/sub works; a dead server the subscriber notices.
            self._count_error(exc)
            raise ChannelFull(f"{channel}: Redis unavailable") from exc
        if queued < 0:
            raise ChannelFull(channel)

    def ensure_fetcher(self, channel: str) -> None:
        """Pull the channel's next message from Redis into the local queue, in the background.

        receive() waits on the local queue, so cancelling it never loses a popped message.
        """
        task = self._fetchers.get(channel)
        if task is None or task.done():
            self._fetchers[channel] = asyncio.create_task(self._fetch_one(channel))

    async def _fetch_one(self, channel: str) -> None:
        key = self._list_key(channel)
        while True:
            await self._up.wait()
            try:
                item = await self.client.brpop([key], timeout=QUEUE_POP_SECS)
            except Exception as exc:
                self._count_error(exc)
                await asyncio.sleep(QUEUE_POP_SECS)
                continue
            if item is None:
                continue
            payload = json.loads(item[1])
            if payload["expires"] >= time.time():
                self.hub.put(channel, payload["message"])
                if not self.hub.has_waiting_receivers(channel):
                    return  # take no more than this process is waiting for

    async def flush(self) -> None:
        """Delete this prefix's queue lists (tests and tools)."""
        if self.client is None:
            return
        async for key in self.client.scan_iter(match=f"{self.prefix}channel:*"):
            await self.client.delete(key)


def _envelope(data: bytes) -> dict[str, Any] | None:
    """A received envelope, or None unless it has the shape `publish_group` and
    `publish_to_node` give it: a string message_id, and an event naming a string group or
    channel with a message that has a string type."""
    try:
        envelope = json.loads(data)
    except ValueError:
        return None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("message_id"), str):
        return None
    event = envelope.get("event")
    if not isinstance(event, dict):
        return None
    message = event.get("message")
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return None
    target = event.get("group", event.get("channel"))
    return envelope if isinstance(target, str) else None

"""The Redis bridge of the cluster channel layer: one per node and event loop.

It publishes `{"node_id", "message_id", "timestamp", "event"}` envelopes, keeps one pub/sub
connection subscribed to `{prefix}broadcast`, `{prefix}node:{node}` and the
`{prefix}room:{id}:events` of every room with local members, and hands what other nodes
publish to the local hub. Room events are also appended to the room's Redis Stream
(cluster/streams.py). It never lets a Redis error reach a consumer: a failure marks the
bridge degraded (local delivery goes on) and it reconnects with a short backoff. Back
online, it catches up (docs/cluster.md, "Convergence after an outage"):

- the events of its rooms that it missed are read back from their streams and applied in
  order; a room whose stream no longer reaches back that far is re-read from the database
  (`on_recovered`);
- every room that changed on this side while it was cut off is announced with a `refresh`
  event, on which every other node with members there re-reads it from the database.
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
from typing import Any, NamedTuple

from cluster.dedup import MessageDeduplicator
from cluster.hub import LocalHub, Message
from cluster.queues import QueueChannels
from cluster.redis_target import RedisTarget, open_client, open_subscriber
from cluster.streams import APPEND_SCRIPT, RoomStreams, StreamSettings
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
# Reconnect attempts: the first at once-ish, then at most every 2 s (plus the connect
# timeout), so a node is back within seconds of Redis; one attempt is one connection.
BACKOFF_FIRST_SECS = 0.5
BACKOFF_MAX_SECS = 2.0
OUTBOX_SIZE = 10_000
BATCH_SIZE = 500
CLOSE_TIMEOUT_SECS = 1.0

Recovered = Callable[[set[str], int], Coroutine[Any, Any, None]]


class Outgoing(NamedTuple):
    """One envelope waiting to be published; `room` names the stream it is appended to."""

    channel: str
    data: str
    room: str | None
    timestamp_ms: int


class RedisBridge:
    """Cross-node delivery through Redis pub/sub, and queue channels through Redis lists
    (`queues`, cluster/queues.py)."""

    def __init__(
        self,
        target: RedisTarget,
        hub: LocalHub,
        key_prefix: str,
        node_id: str,
        node_token: str,
        dedup_window_secs: float,
        on_recovered: Recovered | None = None,
        streams: StreamSettings | None = None,
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
        # Room channels whose first watch is still subscribing: later watchers wait for it.
        self._subscribing: dict[str, asyncio.Event] = {}
        self.streams = RoomStreams(key_prefix, streams or StreamSettings())
        # Rooms whose events were dropped while cut off → the earliest dropped event's time.
        self.changed_while_cut: dict[str, int] = {}
        self._outbox: asyncio.Queue[Outgoing] = asyncio.Queue(OUTBOX_SIZE)
        self._failed = asyncio.Event()
        self._up = asyncio.Event()
        self.queues = QueueChannels(self)
        self._tasks: list[asyncio.Task[None]] = []
        self._resyncs: set[asyncio.Task[None]] = set()
        self._refreshes: dict[str, int] = {}  # rooms announced by other nodes → since (ms)
        self._connecting_since_ms = 0

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
        tasks = [*self._tasks, *self.queues.fetchers.values(), *self._resyncs]
        for task in tasks:
            task.cancel()
        if tasks:
            # Bounded: a task stuck inside the Redis client must not hang the shutdown.
            await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT_SECS)
        self._tasks, self.queues.fetchers = [], {}
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

        Never blocks. While degraded the event is dropped and its room remembered: the room
        is announced for a refresh once Redis is back. The layer's routing names the room.
        """
        self._enqueue(self._room_channel(room_id), {"group": group, "message": message}, room_id)

    def publish_to_node(self, node_token: str, channel: str, message: Message) -> None:
        """Send a message to one channel of another node (dropped while degraded)."""
        self._enqueue(f"{self.prefix}node:{node_token}", {"channel": channel, "message": message})

    def _room_channel(self, room_id: str | None) -> str:
        if room_id is None:
            return self.broadcast_channel
        return f"{self.prefix}room:{room_id}:events"

    def _enqueue(self, channel: str, event: dict[str, Any], room_id: str | None = None) -> None:
        now_ms = int(time.time() * 1000)
        if not self.healthy:
            self._missed(room_id, now_ms)
            return
        envelope = {
            "node_id": self.node_id,
            "message_id": uuid.uuid4().hex,
            "timestamp": now_ms,
            "event": event,
        }
        data = json.dumps(envelope, separators=(",", ":"))
        try:
            self._outbox.put_nowait(Outgoing(channel, data, room_id, now_ms))
        except asyncio.QueueFull:
            self._missed(room_id, now_ms)
            self._fail(RuntimeError("publish backlog full"))

    def announce_changed(self, room_id: str, since_ms: int) -> None:
        """Tell the other nodes to re-read a room (chat since `since_ms`): now if connected,
        else with the rooms changed while cut off, once connected."""
        if self.healthy:
            self._enqueue(self._room_channel(room_id), _refresh(room_id, since_ms), room_id)
        else:
            self._missed(room_id, since_ms)

    def _missed(self, room_id: str | None, timestamp_ms: int) -> None:
        """An event of this room never reached Redis: the room is announced once back."""
        if room_id is not None:
            since = self.changed_while_cut.get(room_id, timestamp_ms)
            self.changed_while_cut[room_id] = min(since, timestamp_ms)

    async def _run_publisher(self) -> None:
        while True:
            batch = [await self._outbox.get()]
            while len(batch) < BATCH_SIZE and not self._outbox.empty():
                batch.append(self._outbox.get_nowait())
            if self.healthy:
                try:
                    async with asyncio.timeout(PUBLISH_TIMEOUT_SECS):
                        await self._send(batch)
                    continue
                except Exception as exc:
                    self._fail(exc)
            for item in batch:
                self._missed(item.room, item.timestamp_ms)

    async def _send(self, batch: list[Outgoing]) -> None:
        """Publish a batch in order; room events through the stream script.

        Not in a Redis Cluster: a room's stream would live on its slot's master, which may be
        down while pub/sub works through any node. There, a node back from a cut re-reads
        its rooms from the database (`streams.missed` trusts no id without a run_id).
        """
        pipe = self.publisher.pipeline(transaction=False)
        for item in batch:
            if item.room is None or self.target.kind == "cluster":
                pipe.publish(item.channel, item.data)
            else:
                key = self.streams.key(item.room)
                pipe.eval(APPEND_SCRIPT, 1, key, *self.streams.append_args(item.data, item.channel))
        await pipe.execute()

    # --- subscriptions --------------------------------------------------------------

    async def watch(self, room_id: str) -> None:
        """A local group of this room exists: receive the room's events from other nodes."""
        channel = self._room_channel(room_id)
        self.watched[channel] = self.watched.get(channel, 0) + 1
        if self.watched[channel] > 1:
            await self.until_subscribed(room_id)
            return
        self.streams.applied[room_id] = None  # unknown until the stream is read
        if not self.healthy:
            return
        done = self._subscribing[channel] = asyncio.Event()
        try:
            if self.target.kind != "cluster":  # (no streams in a Redis Cluster: see _send)
                # Where the room's stream stands before subscribing: after a cut, what came
                # later is read back from there.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(SUBSCRIBE_TIMEOUT_SECS):
                        await self.streams.start_watching(self.client, room_id)
            await self._subscribe([channel])
        finally:
            done.set()
            if self._subscribing.get(channel) is done:
                del self._subscribing[channel]

    async def until_subscribed(self, room_id: str) -> None:
        """Return once the room's subscription, if one is being made, is live (or failed).

        A socket joining a room whose first socket on this node is still subscribing would
        otherwise read its snapshot before the subscription is live, and an event published
        in between would reach it neither way (the soak's lost chat line)."""
        pending = self._subscribing.get(self._room_channel(room_id))
        if pending is not None:
            with contextlib.suppress(TimeoutError):
                # The first watch's two bounded steps: the stream's position, the subscribe.
                async with asyncio.timeout(2 * SUBSCRIBE_TIMEOUT_SECS):
                    await pending.wait()

    async def unwatch(self, room_id: str) -> None:
        """A local group of this room is gone; unsubscribe when it was the last."""
        channel = self._room_channel(room_id)
        count = self.watched.get(channel, 0) - 1
        if count > 0:
            self.watched[channel] = count
            return
        self.watched.pop(channel, None)
        self.streams.forget(room_id)
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
        return {room for channel in self.watched if (room := self._room_of(channel))}

    # --- the subscriber: connect, read, reconnect -----------------------------------

    async def _run_subscriber(self) -> None:
        attempt = 0
        while True:
            try:
                server_id = await self._connect()
                attempt = 0
                outage_started = self._mark_healthy()
                await self._catch_up(server_id, outage_started)
                await self._read_until_failure()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._mark_degraded(exc)
            await self._drop_connections()
            delay = min(BACKOFF_MAX_SECS, BACKOFF_FIRST_SECS * 2**attempt)
            attempt += 1
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))

    async def _connect(self) -> str | None:
        """Connect and subscribe; return the server's run_id (None for a Redis Cluster)."""
        self._failed.clear()
        self._connecting_since_ms = int(time.time() * 1000)
        self.client = open_client(self.target)
        self.publisher = await open_subscriber(self.target, self.client)
        self.pubsub = self.publisher.pubsub()
        channels = [self.broadcast_channel, self.node_channel, *self.watched]
        await self._subscribe(channels, read_here=True)
        server_id = None  # a Redis Cluster has many servers: its stream ids are not compared
        if self.target.kind != "cluster":
            async with asyncio.timeout(SUBSCRIBE_TIMEOUT_SECS):
                info = await self.client.info("server")
            server_id = str(info.get("run_id")) or None
        # Rooms first watched while this ran (watch() subscribes only once healthy). Nothing
        # may be awaited after this loop: the caller marks the bridge healthy right away,
        # and a room watched in between would never be subscribed.
        subscribed = set(channels)
        while late := [channel for channel in self.watched if channel not in subscribed]:
            await self._subscribe(late, read_here=True)
            subscribed.update(late)
        return server_id

    async def _catch_up(self, server_id: str | None, outage_started: int | None) -> None:
        """Back after a cut: apply what the rooms' streams kept, re-read the rest from the
        database, and announce the rooms that changed here meanwhile. On the first
        connection, the rooms watched before it (their sockets' snapshots came before the
        subscription) are re-read."""
        if outage_started is None:
            unknown = {room for room in self.rooms() if self.streams.applied.get(room) is None}
            if unknown:
                self._resync(unknown, self._connecting_since_ms)
        else:
            rooms = self.rooms()
            async with asyncio.timeout(SUBSCRIBE_TIMEOUT_SECS + len(rooms) / 100):
                catchup = await self.streams.missed(self.client, server_id, rooms)
            for room_id, stream_id, data in catchup.entries:
                self._on_envelope(self._room_channel(room_id), data, stream_id)
            logger.info(
                "Redis is back: caught up",
                extra={
                    "rooms": len(rooms),
                    "replayed_events": len(catchup.entries),
                    "reread_rooms": len(catchup.reread),
                },
            )
            if catchup.reread:
                self._resync(catchup.reread, outage_started)
        self.streams.server_id = server_id
        changed, self.changed_while_cut = self.changed_while_cut, {}
        if changed:
            since = min(changed.values())
            for room_id in changed:
                self._enqueue(self._room_channel(room_id), _refresh(room_id, since), room_id)

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

    def _on_envelope(self, channel: str, data: bytes | str, stream_id: str | None = None) -> None:
        envelope = _envelope(data)
        if envelope is None:
            # Anything on Redis could publish here: a bad message must not end the
            # subscriber (that would take the node into degraded mode) nor reach a consumer.
            logger.warning("dropped a malformed message", extra={"redis_channel": channel})
            return
        event, message_id = envelope["event"], envelope["message_id"]
        room_id = self._room_of(channel)
        if room_id is not None:
            self.streams.saw(room_id, stream_id or envelope.get("stream_id"))
        if envelope.get("node_id") == self.node_id or not self.dedup.first_sighting(message_id):
            EVENTS_DEDUPLICATED.labels(node=self.node_id).inc()
            return
        EVENTS_RECEIVED.labels(node=self.node_id).inc()
        REDIS_PUBSUB_MESSAGES.labels(channel=self._channel_kind(channel)).inc()
        if "refresh" in event:
            if room_id is not None and room_id == event["refresh"] and channel in self.watched:
                self._refresh_later(room_id, event["since_ms"])
        elif "group" in event:
            self.hub.fan_out(event["group"], event["message"])
        elif "channel" in event:
            self.hub.put(event["channel"], event["message"])

    def _room_of(self, channel: str) -> str | None:
        start, end = f"{self.prefix}room:", ":events"
        if channel.startswith(start) and channel.endswith(end):
            return channel[len(start) : -len(end)]
        return None

    def _refresh_later(self, room_id: str, since_ms: int) -> None:
        """Another node changed this room while cut off: re-read it from the database, with
        the other rooms announced in the same moment."""
        first = not self._refreshes
        self._refreshes[room_id] = min(since_ms, self._refreshes.get(room_id, since_ms))
        if first:
            asyncio.get_running_loop().call_soon(self._start_refreshes)

    def _start_refreshes(self) -> None:
        pending, self._refreshes = self._refreshes, {}
        self._resync(set(pending), min(pending.values()))

    def _resync(self, room_ids: set[str], since_ms: int) -> None:
        if self.on_recovered is not None and room_ids:
            task = asyncio.create_task(self.on_recovered(room_ids, since_ms))
            self._resyncs.add(task)
            task.add_done_callback(self._resyncs.discard)

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

    def count_error(self, exc: BaseException) -> None:
        """A Redis command failed without the connection being in doubt."""
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

    def _mark_healthy(self) -> int | None:
        """Connected again: return when the outage started (None if there was none)."""
        outage_started = self.degraded_since_ms
        self.healthy = True
        self._up.set()
        self.degraded_since_ms = None
        return outage_started

    async def _drop_connections(self) -> None:
        for closing in (self.pubsub, self.publisher, self.client):
            if closing is None:
                continue
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT_SECS):
                    await closing.aclose()
        self.pubsub = self.publisher = self.client = None


def _refresh(room_id: str, since_ms: int) -> dict[str, Any]:
    """The event that has other nodes re-read a room, with chat since `since_ms`."""
    return {"refresh": room_id, "since_ms": since_ms}


def _envelope(data: bytes | str) -> dict[str, Any] | None:
    """A received envelope, or None unless it has the shape the bridge gives it: a string
    message_id, and an event naming a string group or channel with a message that has a
    string type, or a `refresh` of a room with an integer `since_ms`."""
    try:
        envelope = json.loads(data)
    except ValueError:
        return None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("message_id"), str):
        return None
    event = envelope.get("event")
    if not isinstance(event, dict):
        return None
    if "refresh" in event:
        since = event.get("since_ms")
        valid = isinstance(since, int) and not isinstance(since, bool)
        return envelope if valid and isinstance(event["refresh"], str) else None
    message = event.get("message")
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return None
    target = event.get("group", event.get("channel"))
    return envelope if isinstance(target, str) else None

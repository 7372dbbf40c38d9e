"""ClusterChannelLayer: the Channels layer of SyncTV (CHANNEL_LAYERS backend).

The same class serves both modes. All local work is done by a LocalHub, one per running
event loop: that alone is single-node mode. With `redis_url` set (cluster mode) a
RedisBridge per event loop also publishes every group message to the other nodes, feeds
theirs to the local hub, carries sends to another node's channels, and keeps queue channels
(names without `!`, such as `synctv.jobs`) in Redis lists so each message is received once
across all nodes and workers.

Where a group's messages go beyond this node is decided by one routing function (the
`routing` option, a dotted path; rooms.services.events.route_group for SyncTV): never, on
one room's Redis channel (only nodes with members of that room subscribe), or to every node.
Sockets whose server offers a sink get fast-lane messages written straight to it
(cluster/fastlane.py).
"""

from __future__ import annotations

import asyncio
import time
import uuid
import weakref
from collections.abc import Callable, Collection, Iterable
from typing import Any, NamedTuple

from channels.exceptions import ChannelFull
from channels.layers import BaseChannelLayer
from django.utils.module_loading import import_string

from cluster.bridge import RedisBridge
from cluster.fastlane import Sink, text_frame
from cluster.hub import Inbox, LocalHub, Message
from cluster.redis_target import RedisTarget, parse_redis_url
from cluster.streams import StreamSettings
from monitoring.metrics import EVENT_DELIVERY_DURATION

NODE_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


class Route(NamedTuple):
    """Where one group's messages go beyond this node."""

    local_only: bool = False  # never published to other nodes
    room: str | None = None  # published on this room's channel; else to every node


BROADCAST = Route()
LOCAL_ONLY = Route(local_only=True)


def broadcast_everything(group: str) -> Route:
    """The default routing: every group's messages reach every node."""
    return BROADCAST


class ClusterChannelLayer(BaseChannelLayer):
    """Channel layer with bounded per-channel queues and zero-copy group fan-out.

    Messages are shared, not copied: the very dict passed to ``send``/``group_send`` is
    what receivers get, so a message must be treated as immutable once sent. A member too
    slow for ``group_send`` gets one ``{"type": "channel.overflow"}`` instead of a backlog.
    State is kept per event loop; two loops never share groups, queues or futures.
    """

    extensions = ["groups", "flush"]

    def __init__(
        self,
        capacity: int = 100,
        expiry: float = 60,
        group_expiry: float = 86400,
        channel_capacity: dict[Any, int] | None = None,
        redis_url: str = "",
        redis_cluster: bool = False,
        key_prefix: str = "synctv:",
        node_id: str = "",
        dedup_window_secs: float = 60,
        on_recovered: str = "",
        routing: str = "",
        fastlane_types: Iterable[str] = ("room.event",),
        stream_max_events: int = 1000,
        stream_max_age_secs: float = 600,
        **kwargs: Any,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity!r}")
        if expiry <= 0 or group_expiry <= 0:
            raise ValueError(
                f"expiry and group_expiry must be positive, got {expiry!r} and {group_expiry!r}"
            )
        super().__init__(expiry=expiry, capacity=capacity)
        self.channel_capacity = self.compile_capacities(channel_capacity or {})
        self.group_expiry = group_expiry
        self.options = kwargs
        self.target: RedisTarget | None = (
            parse_redis_url(redis_url, redis_cluster) if redis_url else None
        )
        self.key_prefix = key_prefix
        self.node_id = node_id or uuid.uuid4().hex[:12]
        # Process-specific channel names end in `!<node token>`, so a send can be routed.
        self.node_token = "".join(c if c in NODE_TOKEN_CHARS else "_" for c in self.node_id)
        self.dedup_window_secs = dedup_window_secs
        self.streams = StreamSettings(stream_max_events, stream_max_age_secs)
        self.on_recovered = on_recovered  # dotted path of `async def f(room_ids, since_ms)`
        self.route: Callable[[str], Route] = (
            import_string(routing) if routing else broadcast_everything
        )
        # Messages of these types carry their frame's JSON as `text`: the fast lane's kind.
        self.fastlane_types = frozenset(fastlane_types)
        self._hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LocalHub] = (
            weakref.WeakKeyDictionary()
        )
        self._bridges: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, RedisBridge] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def hub(self) -> LocalHub:
        """The local hub of the running event loop, created on first use."""
        loop = asyncio.get_running_loop()
        hub = self._hubs.get(loop)
        if hub is None:
            hub = self._hubs[loop] = LocalHub(
                capacity_for=self.get_capacity,
                expiry=self.expiry,
                group_expiry=self.group_expiry,
                frame_of=self._frame_of,
                on_fast_delivered=_observe_fast_delivery,
            )
        return hub

    def _frame_of(self, message: Message) -> bytes | None:
        """The WebSocket frame of a fast-lane message; None for any other message."""
        if message.get("type") not in self.fastlane_types:
            return None
        text = message.get("text")
        return text_frame(text) if isinstance(text, str) else None

    def attach_sink(self, channel: str, sink: Sink, inbox: Inbox | None = None) -> None:
        """Write this channel's fast-lane messages straight to its socket's sink; with an
        `inbox`, hand it the channel's other messages (nothing is then queued for
        `receive`)."""
        self.require_valid_channel_name(channel)
        self.hub.attach_sink(channel, sink, inbox)

    def detach_sink(self, channel: str) -> None:
        """Queue this channel's fast-lane messages again, like any other (it is closing)."""
        self.hub.detach_sink(channel)

    def started_bridge(self) -> RedisBridge | None:
        """The running event loop's Redis bridge if it was started (this never starts one)."""
        return self._bridges.get(asyncio.get_running_loop())

    @property
    def bridge(self) -> RedisBridge | None:
        """The running event loop's Redis bridge (cluster mode), started on first use."""
        if self.target is None:
            return None
        loop = asyncio.get_running_loop()
        bridge = self._bridges.get(loop)
        if bridge is None:
            bridge = self._bridges[loop] = RedisBridge(
                self.target,
                self.hub,
                key_prefix=self.key_prefix,
                node_id=self.node_id,
                node_token=self.node_token,
                dedup_window_secs=self.dedup_window_secs,
                on_recovered=import_string(self.on_recovered) if self.on_recovered else None,
                streams=self.streams,
            )
            bridge.start()
        return bridge

    def redis_status(self) -> str:
        """For /ready: `disabled` (single-node), `ok`, or `degraded` (Redis unreachable)."""
        if self.target is None:
            return "disabled"
        bridge = self.bridge
        return bridge.status() if bridge is not None else "degraded"

    def _is_local(self, channel: str) -> bool:
        """This node's process-specific channels, and members of its groups, stay local."""
        _, bang, token = channel.partition("!")
        if bang:
            return token == self.node_token
        return self.hub.is_member(channel)

    async def send(self, channel: str, message: Message) -> None:
        """Queue a message on a channel; raise ChannelFull if it is at capacity."""
        require_valid_message(message)
        self.require_valid_channel_name(channel)
        bridge = self.bridge
        if bridge is None or self._is_local(channel):
            if not self.hub.put(channel, message):
                raise ChannelFull(channel)
        elif "!" in channel:
            bridge.publish_to_node(channel.partition("!")[2], channel, message)
        else:
            await bridge.queues.push(channel, message, self.get_capacity(channel), self.expiry)

    async def receive(self, channel: str) -> Message:
        """Wait for the next message on a channel; safe to cancel, nothing is lost."""
        self.require_valid_channel_name(channel)
        bridge = self.bridge
        if bridge is not None and not self._is_local(channel):
            bridge.queues.ensure_fetcher(channel)
        return await self.hub.get(channel)

    async def new_channel(self, prefix: str = "specific.") -> str:
        """Return a fresh, unique channel name starting with prefix, owned by this node."""
        return f"{prefix}{uuid.uuid4().hex}!{self.node_token}"

    async def group_add(self, group: str, channel: str) -> None:
        """Add a channel to a group (re-adding refreshes its group_expiry)."""
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        created = self.hub.add(group, channel)
        room_id = self.route(group).room
        bridge = self.bridge
        if room_id is not None and bridge is not None:
            if created:
                await bridge.watch(room_id)
            else:
                await bridge.until_subscribed(room_id)

    async def group_discard(self, group: str, channel: str) -> None:
        """Remove a channel from a group; the last one out drops the group."""
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        dropped = self.hub.discard(group, channel)
        room_id = self.route(group).room
        bridge = self.bridge
        if dropped and room_id is not None and bridge is not None:
            await bridge.unwatch(room_id)

    async def group_send(self, group: str, message: Message) -> None:
        """Deliver to local members first, then publish to the other nodes (cluster mode).

        Never raises for a full member and never waits on Redis.
        """
        require_valid_message(message)
        self.require_valid_group_name(group)
        self.hub.fan_out(group, message)
        bridge = self.bridge
        if bridge is not None:
            route = self.route(group)
            if not route.local_only:
                bridge.publish_group(group, message, route.room)

    def receipts(self, group: str) -> Collection[Any]:
        """The `receipt` values of the latest messages this node handed to a group's members
        (a message may carry one; the resync after an outage skips what they already got)."""
        return self.hub.receipts(group)

    def announce_changed(self, room_ids: Iterable[str], since_ms: int) -> None:
        """Have every other node re-read these rooms from the database (events of theirs
        may not have reached Redis): now, or once this loop's bridge is connected."""
        bridge = self.bridge
        if bridge is not None:
            for room_id in room_ids:
                bridge.announce_changed(room_id, since_ms)

    def deliver_locally(self, group: str, message: Message) -> None:
        """Hand a message to this node's members of a group only (resync after an outage)."""
        self.hub.fan_out(group, message)

    async def flush(self) -> None:
        """Empty every queue and group of the running event loop (and its Redis lists)."""
        self.hub.clear()
        bridge = self.bridge
        if bridge is not None:
            await bridge.queues.flush()

    async def close(self) -> None:
        """Stop the running loop's Redis bridge, if any."""
        loop = asyncio.get_running_loop()
        bridge = self._bridges.pop(loop, None)
        if bridge is not None:
            await bridge.close()


def _observe_fast_delivery(message: Message, count: int) -> None:
    """One delivery-time observation per fan-out: the frame reached its sockets together."""
    published_at = message.get("published_at")
    if isinstance(published_at, int | float):
        EVENT_DELIVERY_DURATION.observe(max(0.0, time.time() - published_at))


def require_valid_message(message: Any) -> None:
    """Raise TypeError unless message is a dict, ValueError unless it has a str 'type'."""
    if not isinstance(message, dict):
        raise TypeError(f"message must be a dict, got {type(message).__name__}")
    if not isinstance(message.get("type"), str):
        raise ValueError("message must have a 'type' key with a string value")

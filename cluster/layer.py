"""ClusterChannelLayer: the Channels layer of SyncTV (CHANNEL_LAYERS backend).

All local work is done by a LocalHub, one per running event loop. The Redis bridge of
cluster mode hooks into ``group_send`` (publish besides delivering locally); until then
this is single-node mode.
"""

from __future__ import annotations

import asyncio
import uuid
import weakref
from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import BaseChannelLayer

from cluster.hub import LocalHub, Message


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
        # Options for the Redis bridge (redis_url, key_prefix, node_id, ...) land here.
        self.options = kwargs
        self._hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LocalHub] = (
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
            )
        return hub

    async def send(self, channel: str, message: Message) -> None:
        """Queue a message on a channel; raise ChannelFull if it is at capacity."""
        require_valid_message(message)
        self.require_valid_channel_name(channel)
        if not self.hub.put(channel, message):
            raise ChannelFull(channel)

    async def receive(self, channel: str) -> Message:
        """Wait for the next message on a channel; safe to cancel, nothing is lost."""
        self.require_valid_channel_name(channel)
        return await self.hub.get(channel)

    async def new_channel(self, prefix: str = "specific.") -> str:
        """Return a fresh, unique channel name starting with prefix."""
        return f"{prefix}{uuid.uuid4().hex}"

    async def group_add(self, group: str, channel: str) -> None:
        """Add a channel to a group (re-adding refreshes its group_expiry)."""
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        self.hub.add(group, channel)

    async def group_discard(self, group: str, channel: str) -> None:
        """Remove a channel from a group; the last one out drops the group."""
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        self.hub.discard(group, channel)

    async def group_send(self, group: str, message: Message) -> None:
        """Hand the same message object to every member; never raises for a full member."""
        require_valid_message(message)
        self.require_valid_group_name(group)
        # The Redis bridge publishes here too, besides this local delivery.
        self.hub.fan_out(group, message)

    async def flush(self) -> None:
        """Empty every queue and group of the running event loop."""
        self.hub.clear()

    async def close(self) -> None:
        """Nothing to release in single-node mode."""


def require_valid_message(message: Any) -> None:
    """Raise TypeError unless message is a dict, ValueError unless it has a str 'type'."""
    if not isinstance(message, dict):
        raise TypeError(f"message must be a dict, got {type(message).__name__}")
    if not isinstance(message.get("type"), str):
        raise ValueError("message must have a 'type' key with a string value")

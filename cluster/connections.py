"""The connection manager: counts this node's sockets and enforces the connection limits.

By default (`cluster.connection_limits.scope: node`) the limits are per node: no
cross-node bookkeeping on the connect path, and load spreads naturally across nodes. With
`scope: cluster` (cluster mode) the per-user, per-room and global counts are the whole
cluster's, kept in Redis (cluster/limits_redis.py), and this node's own counts serve while
Redis is away. The limits themselves can change at runtime (cluster/limits.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

from channels.layers import get_channel_layer
from django.conf import settings
from prometheus_client import Gauge

from cluster.bridge import RedisBridge
from cluster.limits import EffectiveLimits, RuntimeLimits
from cluster.limits_redis import NOT_REACHED, ClusterAdmission, Socket
from monitoring.metrics import CONNECTIONS_PER_ROOM, CONNECTIONS_PER_USER, CONNECTIONS_TOTAL


class ConnectionManager:
    """Per-node counts of open sockets by user and by room; one instance per process."""

    def __init__(
        self,
        node_id: str,
        per_user_labels: bool = True,
        per_room_labels: bool = True,
        cluster: ClusterAdmission | None = None,
    ) -> None:
        self.limits = RuntimeLimits()
        self.node_id = node_id
        self.per_user_labels = per_user_labels
        self.per_room_labels = per_room_labels
        self.cluster = cluster  # the cluster-wide counts, with scope `cluster`
        self.by_user: Counter[str] = Counter()
        self.by_room: Counter[str] = Counter()
        self.total = 0
        self.sockets: dict[str, Socket] = {}  # connection id → (user, room), scope `cluster`
        self._empty = asyncio.Event()
        self._empty.set()

    async def try_admit(self, user_id: str, room_id: str, connection_id: str) -> str | None:
        """Count a new socket, or return which limit (`per_user`, `per_room`, `global`) refuses it."""
        limits = self.limits.current()
        refusal: str | None = NOT_REACHED
        if self.cluster is not None:
            counts = (limits.global_, limits.per_user, limits.per_room)
            refusal = await self.cluster.admit(connection_id, user_id, room_id, counts)
        if refusal == NOT_REACHED:
            refusal = self._refusal_here(limits, user_id, room_id)
        if refusal is None:
            self._count(user_id, room_id, connection_id)
        return refusal

    def _refusal_here(self, limits: EffectiveLimits, user_id: str, room_id: str) -> str | None:
        """The limit this node's own counts refuse a new socket with, if any."""
        if self.total >= limits.global_:
            return "global"
        if self.by_user[user_id] >= limits.per_user:
            return "per_user"
        if self.by_room[room_id] >= limits.per_room:
            return "per_room"
        return None

    def _count(self, user_id: str, room_id: str, connection_id: str) -> None:
        self.total += 1
        self._empty.clear()
        self.by_user[user_id] += 1
        self.by_room[room_id] += 1
        if self.cluster is not None:
            self.sockets[connection_id] = (user_id, room_id)
        self._export(user_id, room_id)

    def release(self, user_id: str, room_id: str, connection_id: str) -> None:
        """Forget a socket that was admitted."""
        self.total -= 1
        if not self.total:
            self._empty.set()
        self.by_user[user_id] -= 1
        self.by_room[room_id] -= 1
        if self.by_user[user_id] <= 0:
            del self.by_user[user_id]
        if self.by_room[room_id] <= 0:
            del self.by_room[room_id]
        if self.cluster is not None:
            self.sockets.pop(connection_id, None)
            self.cluster.release(connection_id, user_id, room_id)
        self._export(user_id, room_id)

    async def wait_until_empty(self) -> None:
        """Return once no socket is open (a draining node); bound it with asyncio.timeout."""
        await self._empty.wait()

    def _export(self, user_id: str, room_id: str) -> None:
        CONNECTIONS_TOTAL.labels(node=self.node_id).set(self.total)
        if self.per_user_labels:
            self._set_or_remove(CONNECTIONS_PER_USER, user_id, self.by_user.get(user_id, 0))
        if self.per_room_labels:
            self._set_or_remove(CONNECTIONS_PER_ROOM, room_id, self.by_room.get(room_id, 0))

    def _set_or_remove(self, gauge: Gauge, key: str, value: int) -> None:
        # The series goes away when the room/user empties on this node (SPEC §5).
        if value:
            gauge.labels(key, self.node_id).set(value)
        else:
            with contextlib.suppress(KeyError):
                gauge.remove(key, self.node_id)


def _layer_bridge() -> RedisBridge | None:
    """The running event loop's Redis bridge (None outside cluster mode)."""
    return getattr(get_channel_layer(), "bridge", None)


_manager: ConnectionManager | None = None


def connection_manager() -> ConnectionManager:
    """This process's connection manager, built from the configuration on first use."""
    global _manager
    if _manager is None:
        config = settings.SYNCTV
        limits = config.cluster.connection_limits
        cluster = None
        if config.cluster_mode and limits.scope == "cluster":
            cluster = ClusterAdmission(config.redis.key_prefix, limits.lease_secs, _layer_bridge)
        _manager = ConnectionManager(
            node_id=settings.SYNCTV_NODE_ID,
            per_user_labels=config.metrics.per_user_labels,
            per_room_labels=config.metrics.per_room_labels,
            cluster=cluster,
        )
    return _manager

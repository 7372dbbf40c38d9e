"""The connection manager: counts this node's sockets and enforces per-node limits.

Limits are per node by design (see docs/cluster.md): no cross-node bookkeeping on the
connect path, and load spreads naturally across nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from dataclasses import dataclass

from django.conf import settings
from prometheus_client import Gauge

from monitoring.metrics import CONNECTIONS_PER_ROOM, CONNECTIONS_PER_USER, CONNECTIONS_TOTAL


@dataclass(frozen=True)
class ConnectionLimits:
    """How many sockets one node admits per user, per room and in all."""

    per_user: int
    per_room: int
    global_: int


class ConnectionManager:
    """Per-node counts of open sockets by user and by room; one instance per process."""

    def __init__(
        self,
        limits: ConnectionLimits,
        node_id: str,
        per_user_labels: bool = True,
        per_room_labels: bool = True,
    ) -> None:
        self.limits = limits
        self.node_id = node_id
        self.per_user_labels = per_user_labels
        self.per_room_labels = per_room_labels
        self.by_user: Counter[str] = Counter()
        self.by_room: Counter[str] = Counter()
        self.total = 0
        self._empty = asyncio.Event()
        self._empty.set()

    def try_admit(self, user_id: str, room_id: str) -> str | None:
        """Count a new socket, or return which limit (`per_user`, `per_room`, `global`) refuses it."""
        if self.total >= self.limits.global_:
            return "global"
        if self.by_user[user_id] >= self.limits.per_user:
            return "per_user"
        if self.by_room[room_id] >= self.limits.per_room:
            return "per_room"
        self.total += 1
        self._empty.clear()
        self.by_user[user_id] += 1
        self.by_room[room_id] += 1
        self._export(user_id, room_id)
        return None

    def release(self, user_id: str, room_id: str) -> None:
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


_manager: ConnectionManager | None = None


def connection_manager() -> ConnectionManager:
    """This process's connection manager, built from the configuration on first use."""
    global _manager
    if _manager is None:
        config = settings.SYNCTV
        limits = config.cluster.connection_limits
        _manager = ConnectionManager(
            ConnectionLimits(limits.per_user, limits.per_room, limits.global_),
            node_id=settings.SYNCTV_NODE_ID,
            per_user_labels=config.metrics.per_user_labels,
            per_room_labels=config.metrics.per_room_labels,
        )
    return _manager

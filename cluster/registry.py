"""The node registry: each node's heartbeat in Redis, and the sockets of dead nodes cleared.

Every node writes `{prefix}nodes` (a hash: node id → JSON with its address and last beat)
every HEARTBEAT_SECS. A node whose beat is older than NODE_TTL_SECS is dead; any live node
that sees sockets (presence rows) of a dead node asks for them to be cleared, once per
node (a Redis `SET NX` claim), so viewers elsewhere stop seeing ghosts within ~30 s.
Beats stop while Redis is unreachable, so a node judges a stale entry only once its own
rounds have succeeded for NODE_TTL_SECS; and a node missing from the registry (it may have
just started and not beaten yet) is dead only after NODE_TTL_SECS of being seen missing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from cluster.bridge import RedisBridge

logger = logging.getLogger(__name__)

HEARTBEAT_SECS = 5.0
NODE_TTL_SECS = 15.0
FORGET_AFTER_SECS = 3600.0  # a dead node leaves the registry after this long
CLAIM_SECS = 30


class NodeRegistry:
    """Heartbeats for this node; the list of nodes; dead nodes' presence handed to a callback."""

    def __init__(
        self,
        bridge: RedisBridge,
        node_id: str,
        info: dict[str, Any],
        present_nodes: Callable[[], Awaitable[set[str]]],
        on_dead_node: Callable[..., Awaitable[None]],
        after_beat: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.bridge = bridge
        self.node_id = node_id
        self.info = info
        self.present_nodes = present_nodes
        self.on_dead_node = on_dead_node
        self.after_beat = after_beat  # e.g. checking this node's own presence rows
        self.key = f"{bridge.prefix}nodes"
        self.started_at = int(time.time() * 1000)
        self.known: list[dict[str, Any]] = []  # the last registry read, for /ready and tools
        self.beating_since: float | None = None  # monotonic start of this node's good rounds
        self.missing_since: dict[str, float] = {}  # nodes with sockets but no registry entry

    async def run(self) -> None:
        """Beat, look for dead nodes, sleep; forever (cancel to stop)."""
        while True:
            if self.bridge.healthy:
                try:
                    await self.beat()
                    if self.beating_since is None:
                        self.beating_since = time.monotonic()
                    await self.clear_dead_nodes()
                    if self.after_beat is not None:
                        await self.after_beat()
                except Exception as exc:  # Redis trouble: the bridge degrades and recovers
                    logger.warning("node registry round failed", extra={"error": repr(exc)})
            if not self.bridge.healthy:
                # Nobody could beat meanwhile: judge others afresh once back.
                self.beating_since = None
                self.missing_since = {}
            await asyncio.sleep(HEARTBEAT_SECS)

    async def beat(self) -> None:
        """Write this node's entry and read everyone's."""
        now = int(time.time() * 1000)
        entry = {
            **self.info,
            "node_id": self.node_id,
            "started_at": self.started_at,
            "last_seen": now,
        }
        client = self.bridge.client
        await client.hset(self.key, self.node_id, json.dumps(entry))
        raw = await client.hgetall(self.key)
        nodes = []
        for field, value in raw.items():
            node = json.loads(value)
            age = (now - node.get("last_seen", 0)) / 1000
            if age > FORGET_AFTER_SECS:
                await client.hdel(self.key, field)
                continue
            node["alive"] = age <= NODE_TTL_SECS
            nodes.append(node)
        self.known = sorted(nodes, key=lambda node: node["node_id"])

    async def clear_dead_nodes(self) -> None:
        """Presence of nodes that stopped beating (or never did) is handed to on_dead_node."""
        now = time.monotonic()
        registered = {node["node_id"] for node in self.known}
        alive = {node["node_id"] for node in self.known if node["alive"]}
        suspects = await self.present_nodes() - alive - {self.node_id}
        self.missing_since = {
            node_id: self.missing_since.get(node_id, now) for node_id in suspects - registered
        }
        trusted = self.beating_since is not None and now - self.beating_since >= NODE_TTL_SECS
        for node_id in suspects:
            if node_id in self.missing_since:
                if now - self.missing_since[node_id] < NODE_TTL_SECS:
                    continue  # not registered yet: it may be starting
            elif not trusted:
                continue  # its beats may have stopped only because Redis was unreachable
            claim = f"{self.bridge.prefix}clearing:{node_id}"
            if await self.bridge.client.set(claim, self.node_id, nx=True, ex=CLAIM_SECS):
                logger.warning("clearing the sockets of a dead node", extra={"dead_node": node_id})
                await self.on_dead_node(node_id=node_id)

    async def leave(self) -> None:
        """Remove this node from the registry (graceful shutdown)."""
        if self.bridge.healthy:
            await self.bridge.client.hdel(self.key, self.node_id)


current: NodeRegistry | None = None  # this process's registry, once `serve` started it


def known_nodes() -> list[dict[str, Any]]:
    """The nodes of the cluster as last read (empty in single-node mode)."""
    return current.known if current is not None else []

"""Cluster-wide connection limits (`cluster.connection_limits.scope: cluster`) in Redis.

Three kinds of sorted set hold the open sockets of the whole cluster: one for all of them,
one per user, one per room; a member is a connection id, its score the moment (Redis
server time, ms) its lease ends. One script admits a socket: it drops expired members,
checks the three counts (global, then per user, then per room, as the per-node check does)
and either records the socket in all three or names the limit that refuses it, in one
round trip. The owning node renews the leases of its open sockets every third of
`lease_secs`, so the sockets of a node that died leave the counts within a lease. Every
key carries the hash tag `{<prefix>limits}`: in a Redis Cluster they share one slot, as a
script's keys must.

While Redis cannot be reached, admission falls back to the per-node counts (logged once per
outage); once it can again, the next renewal records this node's open sockets anew (even
into a Redis that restarted empty) and admission is cluster-wide again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from cluster.bridge import RedisBridge

logger = logging.getLogger(__name__)

# A connect waits at most this for Redis before it is admitted on this node's counts alone.
ADMIT_TIMEOUT_SECS = 1.0
RENEW_TIMEOUT_SECS = 5.0
RENEW_BATCH = 1000  # sockets per renewal script: bounds how long one script blocks Redis
NOT_REACHED = "not_reached"  # what `admit` says when Redis gave no answer

# KEYS: the global, user and room sets. ARGV: connection id, lease (ms), then the global,
# per-user and per-room limits. Returns the limit that refuses the socket, or nil.
ADMIT_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local names = {'global', 'per_user', 'per_room'}
for i = 1, 3 do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  if redis.call('ZCARD', KEYS[i]) >= tonumber(ARGV[2 + i]) then
    return names[i]
  end
end
for i = 1, 3 do
  redis.call('ZADD', KEYS[i], now + tonumber(ARGV[2]), ARGV[1])
  redis.call('PEXPIRE', KEYS[i], ARGV[2])
end
return false
"""

# KEYS: three per socket (global, user, room). ARGV: lease (ms), then one connection id per
# socket. Records (again) or renews each socket; returns how many.
RENEW_SCRIPT = """
local clock = redis.call('TIME')
local expiry = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000) + tonumber(ARGV[1])
for i = 2, #ARGV do
  for j = 1, 3 do
    local key = KEYS[3 * (i - 2) + j]
    redis.call('ZADD', key, expiry, ARGV[i])
    redis.call('PEXPIRE', key, ARGV[1])
  end
end
return #ARGV - 1
"""

# KEYS: the global, user and room sets. ARGV: the connection id.
RELEASE_SCRIPT = """
for i = 1, 3 do
  redis.call('ZREM', KEYS[i], ARGV[1])
end
return 0
"""

Socket = tuple[str, str]  # (user id, room id) of an open socket


class ClusterAdmission:
    """This node's side of the cluster-wide counts: admit, renew, release."""

    def __init__(
        self, prefix: str, lease_secs: float, bridge: Callable[[], RedisBridge | None]
    ) -> None:
        self.tag = "{" + prefix + "limits}"
        self.lease_ms = int(lease_secs * 1000)
        self.renew_every = lease_secs / 3
        self.bridge = bridge  # the running loop's Redis bridge
        self.reached = True  # False from a failure until the next successful renewal
        self._releases: set[asyncio.Task[None]] = set()

    def keys(self, user_id: str, room_id: str) -> list[str]:
        """The global, user and room sets of a socket."""
        return [f"{self.tag}:global", f"{self.tag}:user:{user_id}", f"{self.tag}:room:{room_id}"]

    async def admit(
        self, connection_id: str, user_id: str, room_id: str, limits: tuple[int, int, int]
    ) -> str | None:
        """Record the socket, or name the limit refusing it; NOT_REACHED when Redis cannot
        answer (the caller counts on this node alone). `limits`: global, per user, per room."""
        client = self._client()
        if client is None:
            self._unreachable(ConnectionError("Redis not connected"))
        if client is None or not self.reached:
            return NOT_REACHED
        keys = self.keys(user_id, room_id)
        try:
            async with asyncio.timeout(ADMIT_TIMEOUT_SECS):
                refusal = await client.eval(
                    ADMIT_SCRIPT, 3, *keys, connection_id, self.lease_ms, *limits
                )
        except Exception as exc:
            self._unreachable(exc)
            return NOT_REACHED
        return _text(refusal) if refusal else None

    def release(self, connection_id: str, user_id: str, room_id: str) -> None:
        """Forget a socket in Redis, without waiting (failing that, its lease runs out)."""
        client = self._client()
        if client is None or not self.reached:
            return
        task = asyncio.get_running_loop().create_task(
            self._release(client, connection_id, self.keys(user_id, room_id))
        )
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    async def _release(self, client: Any, connection_id: str, keys: list[str]) -> None:
        try:
            async with asyncio.timeout(ADMIT_TIMEOUT_SECS):
                await client.eval(RELEASE_SCRIPT, 3, *keys, connection_id)
        except Exception as exc:
            self._unreachable(exc)

    async def keep_leases(self, sockets: Mapping[str, Socket]) -> None:
        """Renew the leases of this node's open sockets (connection id → user, room) every
        third of a lease; forever (cancel to stop)."""
        bridge = self.bridge()
        if bridge is not None:
            await bridge.wait_connected()  # not connected yet at start: no outage to report
        while True:
            await self.renew(sockets)
            await asyncio.sleep(self.renew_every)

    async def renew(self, sockets: Mapping[str, Socket]) -> bool:
        """Record every open socket of this node with a fresh lease; False if Redis failed."""
        client = self._client()
        if client is None:
            self._unreachable(ConnectionError("Redis not connected"))
            return False
        open_now = list(sockets.items())
        try:
            async with asyncio.timeout(RENEW_TIMEOUT_SECS):
                for start in range(0, len(open_now), RENEW_BATCH):
                    # Sockets closed while an earlier batch was on its way are left out.
                    batch = [
                        item for item in open_now[start : start + RENEW_BATCH] if item[0] in sockets
                    ]
                    if not batch:
                        continue
                    keys = [key for _, (user, room) in batch for key in self.keys(user, room)]
                    ids = [connection_id for connection_id, _ in batch]
                    await client.eval(RENEW_SCRIPT, len(keys), *keys, self.lease_ms, *ids)
        except Exception as exc:
            self._unreachable(exc)
            return False
        if not self.reached:
            self.reached = True
            logger.warning(
                "Redis reachable again: connection limits are cluster-wide again",
                extra={"sockets": len(open_now)},
            )
        return True

    def _client(self) -> Any:
        bridge = self.bridge()
        if bridge is None or not bridge.healthy:
            return None
        return bridge.client

    def _unreachable(self, exc: BaseException) -> None:
        """Count on this node alone until the next renewal succeeds; say so once per outage."""
        if self.reached:
            self.reached = False
            logger.warning(
                "Redis unreachable: connection limits are enforced per node until it returns",
                extra={"error": repr(exc)},
            )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

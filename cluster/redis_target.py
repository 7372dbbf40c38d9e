"""Which Redis deployment `redis.url` names, and how to open clients to it.

- `redis://host:port/db` (or `rediss://`): one server;
- `redis+sentinel://host:26379,host2:26379/mastername[/db]`: the master that the Sentinels
  name, followed across failovers (channels-redis's Sentinel-aware pool does the following);
- `redis.cluster_mode: true` with `redis://any-node:port`: a Redis Cluster; classic pub/sub is
  broadcast to every node of a cluster, so messages go over a connection to any one node,
  while keys (the jobs queue) go through redis-py's cluster client, which routes by slot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from channels_redis.utils import create_pool
from redis import asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

# Short socket timeouts: a hung Redis must turn into an error quickly, never a stall.
SOCKET_TIMEOUT_SECS = 2.0
CONNECT_TIMEOUT_SECS = 2.0


@dataclass(frozen=True)
class RedisTarget:
    """A parsed `redis.url`."""

    kind: str  # "single" | "sentinel" | "cluster"
    url: str
    sentinels: tuple[tuple[str, int], ...] = ()
    master_name: str = ""
    db: int = 0
    password: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


def parse_redis_url(url: str, cluster_mode: bool) -> RedisTarget:
    """Tell a single server, a Sentinel set or a Cluster apart; ValueError for a bad URL."""
    parts = urlsplit(url)
    if parts.scheme in ("redis+sentinel", "sentinel"):
        if cluster_mode:
            raise ValueError("redis.cluster_mode cannot be combined with a Sentinel URL")
        hosts = []
        for item in parts.netloc.rsplit("@", 1)[-1].split(","):
            host, _, port = item.partition(":")
            if not host:
                raise ValueError(f"no Sentinel host in {url!r}")
            hosts.append((host, int(port or 26379)))
        path = [piece for piece in parts.path.split("/") if piece]
        if not path:
            raise ValueError(f"no master name in {url!r}: redis+sentinel://host:26379/mymaster")
        db = int(path[1]) if len(path) > 1 else 0
        password = unquote(parts.password) if parts.password else None
        return RedisTarget("sentinel", url, tuple(hosts), path[0], db, password)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"unsupported Redis URL scheme {parts.scheme!r} in {url!r}")
    return RedisTarget("cluster" if cluster_mode else "single", url)


def _timeouts() -> dict[str, Any]:
    return {
        "socket_timeout": SOCKET_TIMEOUT_SECS,
        "socket_connect_timeout": CONNECT_TIMEOUT_SECS,
        "health_check_interval": 0,
    }


def open_client(target: RedisTarget) -> Any:
    """A client for commands (PUBLISH, list operations) on the deployment."""
    if target.kind == "cluster":
        return RedisCluster.from_url(target.url, **_timeouts())
    if target.kind == "sentinel":
        host: dict[str, Any] = {
            "sentinels": list(target.sentinels),
            "master_name": target.master_name,
            "db": target.db,
            **_timeouts(),
        }
        if target.password:
            host["password"] = target.password
        return aioredis.Redis(connection_pool=create_pool(host))
    return aioredis.Redis(connection_pool=create_pool({"address": target.url, **_timeouts()}))


async def open_subscriber(target: RedisTarget, client: Any) -> Any:
    """A client whose pub/sub connection receives every published message of the deployment."""
    if target.kind != "cluster":
        return client
    # Any node of a cluster sees every classic PUBLISH: use the first one that answers.
    await client.initialize()
    last_error: Exception | None = None
    for node in client.get_nodes():
        candidate = aioredis.Redis(host=node.host, port=node.port, **_timeouts())
        try:
            await candidate.ping()
            return candidate
        except Exception as exc:  # any node that does not answer: try the next
            last_error = exc
            await candidate.aclose()
    raise ConnectionError(f"no node of the Redis Cluster answered: {last_error}")

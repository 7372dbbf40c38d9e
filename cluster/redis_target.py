"""Which Redis deployment `redis.url` names, and how to open clients to it.

- `redis://host:port/db` (or `rediss://`): one server;
- `redis+sentinel://host:26379,host2:26379/mastername[/db]`: the master that the Sentinels
  name, followed across failovers (channels-redis's Sentinel-aware pool does the following);
- `redis.cluster_mode: true` with `redis://any-node:port`: a Redis Cluster; classic pub/sub is
  broadcast to every node of a cluster, so messages go over a connection to any one node,
  while keys (the jobs queue) go through redis-py's cluster client, which routes by slot.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from channels_redis.utils import create_pool
from redis import asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

logger = logging.getLogger(__name__)

# Short socket timeouts: a hung Redis must turn into an error quickly, never a stall.
SOCKET_TIMEOUT_SECS = 2.0
CONNECT_TIMEOUT_SECS = 2.0
# A Sentinel answers from memory: one that takes longer is skipped for the next one.
SENTINEL_TIMEOUT_SECS = 0.5

# The nodes of each Redis Cluster (by URL) that the last discovery found: a client opened
# after the node named in the URL died still finds the cluster through the others.
_cluster_nodes: dict[str, tuple[tuple[str, int], ...]] = {}


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
        known = [ClusterNode(host, port) for host, port in _cluster_nodes.get(target.url, ())]
        return RedisCluster.from_url(target.url, startup_nodes=known or None, **_timeouts())
    if target.kind == "sentinel":
        host: dict[str, Any] = {
            "sentinels": list(target.sentinels),
            "master_name": target.master_name,
            # By default a Sentinel client has no timeouts and retries with backoff: one hung
            # Sentinel would stall every master lookup (and a pub/sub read, which redis-py
            # reconnects inside) for good, or past the bridge's subscribe deadline.
            "sentinel_kwargs": {
                "socket_timeout": SENTINEL_TIMEOUT_SECS,
                "socket_connect_timeout": SENTINEL_TIMEOUT_SECS,
                "retry": Retry(NoBackoff(), 0),
            },
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
    try:
        await client.initialize()
        _cluster_nodes[target.url] = tuple((node.host, node.port) for node in client.get_nodes())
    except Exception:
        # redis-py cannot initialize while the node it asks first (the owner of slot 0) is
        # down; keys on that node's slots fail anyway, and pub/sub needs only one live node.
        logger.info("Redis Cluster discovery failed: trying the nodes known from before")
    # Any node of a cluster sees every classic PUBLISH: use the first one that answers.
    last_error: Exception | None = None
    for host, port in _subscriber_candidates(target):
        candidate = aioredis.Redis.from_url(_node_url(target.url, host, port), **_timeouts())
        try:
            await candidate.ping()
            return candidate
        except Exception as exc:  # any node that does not answer: try the next
            last_error = exc
            await candidate.aclose()
    raise ConnectionError(f"no node of the Redis Cluster answered: {last_error}")


def _subscriber_candidates(target: RedisTarget) -> list[tuple[str, int]]:
    """The cluster's nodes as last discovered, then the node the URL names."""
    parts = urlsplit(target.url)
    named = (parts.hostname or "localhost", parts.port or 6379)
    known = list(_cluster_nodes.get(target.url, ()))
    return known + ([named] if named not in known else [])


def _node_url(url: str, host: str, port: int) -> str:
    """`url` with its host and port replaced (credentials and TLS kept)."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    netloc = f"{userinfo}@{address}" if userinfo else address
    return urlunsplit(parts._replace(netloc=netloc))

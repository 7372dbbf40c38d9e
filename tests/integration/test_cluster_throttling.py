"""Sign-in throttles counted across the cluster (docs/api.md, "Throttling"): two real nodes
sharing one real Redis count one client's tries together, and count them each alone while
Redis is down (cluster/throttle_redis.py)."""

from __future__ import annotations

import pytest

from rooms.codes import ErrorCode
from tests.support.clients import http_client
from tests.support.cluster import cluster, cluster_env, wait_for_redis  # noqa: F401
from tests.support.redis_servers import RedisServer, redis_server  # noqa: F401
from tests.support.servers import serve_node  # noqa: F401

pytestmark = [pytest.mark.serve, pytest.mark.timeout(90)]

OUTAGE_DEADLINE = 10.0  # a node notices a killed Redis within ~3 s
CONNECT_DEADLINE = 10.0  # a node answers /health before its Redis connection is up
THROTTLED = {
    "SYNCTV__AUTH__THROTTLE__ENABLED": "true",
    "SYNCTV__AUTH__THROTTLE__GUEST_PER_IP": "3/min",
    "SYNCTV__AUTH__THROTTLE__LOGIN_PER_USERNAME": "2/min",
}


async def post(node, path: str, body: dict) -> tuple[int, dict, str | None]:
    async with http_client(node) as http:
        response = await http.post(path, json=body)
    return response.status_code, response.json(), response.headers.get("Retry-After")


async def throttled_cluster(cluster) -> list:  # noqa: F811
    """Two nodes with low sign-in limits, both connected to Redis (before that, a node
    counts its tries alone)."""
    nodes = cluster(2, env=THROTTLED)
    for node in nodes:
        await wait_for_redis(node, "ok", CONNECT_DEADLINE)
    return nodes


async def guest(node) -> int:
    """Ask `node` for a guest account: 200, or 429 in the SPEC's shape with Retry-After."""
    status, body, retry_after = await post(node, "/api/auth/guest", {"name": "Viewer"})
    assert status in (200, 429), body
    if status == 429:
        assert body["error"]["code"] == ErrorCode.RATE_LIMITED, body
        assert retry_after is not None and 1 <= int(retry_after) <= 60, retry_after
    return status


async def test_one_address_s_tries_are_counted_on_every_node_together(cluster):  # noqa: F811
    a, b = await throttled_cluster(cluster)

    answers = [await guest(node) for node in (a, b, a, b, a)]

    # 3/min from this address in all: the fourth try is refused, on whichever node.
    assert answers == [200, 200, 200, 429, 429]


async def test_login_tries_of_one_username_are_counted_on_every_node_together(cluster):  # noqa: F811
    a, b = await throttled_cluster(cluster)
    status, body, _ = await post(a, "/api/auth/signup", {"username": "alice", "password": "x" * 12})
    assert status == 201, body
    wrong = {"username": "alice", "password": "wrong-password"}

    answers = [(await post(node, "/api/auth/login", wrong))[0] for node in (a, b, a)]

    assert answers == [401, 401, 429]


async def test_without_redis_each_node_counts_its_own_tries(
    cluster,  # noqa: F811
    redis_server: RedisServer,  # noqa: F811
):
    a, b = await throttled_cluster(cluster)
    assert [await guest(node) for node in (a, b, a)] == [200, 200, 200]

    redis_server.kill()
    for node in (a, b):
        await wait_for_redis(node, "degraded", OUTAGE_DEADLINE)

    # No 500 and still a limit: each node's memory counts from its first try without Redis.
    assert [await guest(a) for _ in range(4)] == [200, 200, 200, 429]
    assert [await guest(b) for _ in range(4)] == [200, 200, 200, 429]

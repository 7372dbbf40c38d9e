"""Connection limits across the cluster (`cluster.connection_limits.scope: cluster`): two real
nodes sharing one real Redis; the per-node fallback while Redis is down."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis
from websockets.asyncio.client import connect

from cluster.limits_redis import ClusterAdmission
from rooms.codes import CloseCode, ErrorCode
from tests.support.clients import FRAME_TIMEOUT, RoomClient, as_guest, create_room, http_client
from tests.support.cluster import cluster, cluster_env, wait_for_redis  # noqa: F401
from tests.support.redis_servers import (  # noqa: F401
    RedisServer,
    redis_cluster,
    redis_server,
    shared_redis_cluster,
)
from tests.support.servers import serve_node  # noqa: F401

pytestmark = pytest.mark.serve

LEASE_SECS = 2  # renewed every ~0.7 s; a dead node's sockets leave the counts within 2 s
SLOT_DEADLINE = 5.0  # a closed socket's slot is given back at once (one script), bounded here
EXPIRY_DEADLINE = 10.0  # a lease of 2 s, plus a loaded machine
OUTAGE_DEADLINE = 10.0  # a node notices a killed Redis at once and is back within ~2 s
CLUSTER_SCOPE = {
    "SYNCTV__CLUSTER__CONNECTION_LIMITS__SCOPE": "cluster",
    "SYNCTV__CLUSTER__CONNECTION_LIMITS__LEASE_SECS": str(LEASE_SECS),
}
PER_NODE_LOG_LINE = "connection limits are enforced per node"


class Attempts:
    """The sockets a test opens: each one admitted (kept open) or refused by a limit."""

    def __init__(self) -> None:
        self.clients: list[RoomClient] = []

    async def attempt(self, node, room_id: str, token: str) -> tuple[RoomClient, str | None]:
        """Open a socket; it and None once admitted, or it and the limit that refused it
        (checked as SPEC §4 says: an `error` first, then close 4029 naming the limit)."""
        socket = await connect(
            node.room_socket_url(room_id, token), open_timeout=FRAME_TIMEOUT, close_timeout=2
        )
        client = RoomClient(socket, f"socket@{node.node_id}")
        self.clients.append(client)
        await client.wait_until(lambda: client.frames or client.closed.is_set(), "a first frame")
        first = client.frames[0] if client.frames else None
        if first is not None and first["type"] == "snapshot":
            return client, None
        assert first is not None and first["type"] == "error", client.frames
        assert first["code"] == ErrorCode.CONNECTION_LIMIT, first
        assert await client.wait_closed() == CloseCode.CONNECTION_LIMIT
        reason = socket.close_reason
        assert reason in ("per_user", "per_room", "global") and reason in first["message"]
        await client.close()
        return client, reason

    async def admitted(self, node, room_id: str, token: str) -> RoomClient:
        """A socket that must be admitted."""
        client, refusal = await self.attempt(node, room_id, token)
        assert refusal is None, f"refused by {refusal} on {node.node_id}"
        return client

    async def refusal(self, node, room_id: str, token: str) -> str | None:
        """The limit refusing a new socket (None: it was admitted and is kept open)."""
        return (await self.attempt(node, room_id, token))[1]

    async def admitted_within(self, node, room_id: str, token: str, within: float) -> float:
        """Try again until a socket is admitted; how long that took."""
        started = time.monotonic()
        while (refusal := await self.refusal(node, room_id, token)) is not None:
            assert time.monotonic() - started < within, f"still refused by {refusal}"
            await asyncio.sleep(0.05)
        return time.monotonic() - started

    async def close_all(self) -> None:
        for client in self.clients:
            await client.close()


@pytest.fixture
async def attempts():
    opened = Attempts()
    yield opened
    await opened.close_all()


async def guests_and_rooms(node, users: int, rooms: int) -> tuple[list[str], list[str]]:
    """`users` guest tokens and `rooms` room ids (the first guest creates the rooms)."""
    async with http_client(node) as http:
        tokens = [await as_guest(http, f"Guest {number}") for number in range(users)]
        made = [await create_room(http, tokens[0], f"Room {n}") for n in range(rooms)]
    return tokens, [room["id"] for room in made]


def global_set_size(server: RedisServer) -> int | None:
    """How many sockets the cluster-wide set of every socket holds (None: Redis is down)."""
    key = ClusterAdmission("synctv:", LEASE_SECS, lambda: None).keys("-", "-")[0]
    try:
        with server.client() as client:
            return client.zcard(key)
    except (redis.RedisError, OSError):
        return None


async def wait_for(check, what: str, within: float) -> None:
    """Poll `check()` (plain function) until true; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"no {what} within {within:g}s"
        await asyncio.sleep(0.1)


# --- node scope (the default) ----------------------------------------------------------------


async def test_node_scope_admits_one_socket_per_user_on_each_node(cluster, attempts):  # noqa: F811
    a, b = cluster(2, env={"SYNCTV__CLUSTER__CONNECTION_LIMITS__PER_USER": "1"})
    (alice,), (room,) = await guests_and_rooms(a, users=1, rooms=1)

    await attempts.admitted(a, room, alice)
    await attempts.admitted(b, room, alice)

    assert await attempts.refusal(a, room, alice) == "per_user"
    assert await attempts.refusal(b, room, alice) == "per_user"


# --- cluster scope ---------------------------------------------------------------------------


async def test_cluster_scope_counts_the_sockets_of_every_node(cluster, attempts):  # noqa: F811
    limits = {
        "SYNCTV__CLUSTER__CONNECTION_LIMITS__PER_USER": "1",
        "SYNCTV__CLUSTER__CONNECTION_LIMITS__PER_ROOM": "2",
        "SYNCTV__CLUSTER__CONNECTION_LIMITS__GLOBAL": "3",
    }
    a, b = cluster(2, env={**CLUSTER_SCOPE, **limits})
    (u1, u2, u3, u4), (r1, r2) = await guests_and_rooms(a, users=4, rooms=2)

    first = await attempts.admitted(a, r1, u1)
    assert await attempts.refusal(b, r2, u1) == "per_user"
    await attempts.admitted(b, r1, u2)
    assert await attempts.refusal(a, r1, u3) == "per_room"  # A itself holds one socket of r1
    await attempts.admitted(a, r2, u3)
    assert await attempts.refusal(b, r2, u4) == "global"  # B itself holds one socket

    # A socket closed on A gives its slot back to the whole cluster.
    await first.close()
    await attempts.admitted_within(b, r2, u1, SLOT_DEADLINE)

    # A killed node's sockets stay counted until their leases run out, then leave.
    a.kill()
    assert await attempts.refusal(b, r1, u4) == "global"
    waited = await attempts.admitted_within(b, r1, u4, EXPIRY_DEADLINE)
    print(f"a killed node's socket left the counts after {waited:.2f}s (lease {LEASE_SECS}s)")


async def test_without_redis_limits_fall_back_to_each_node_then_the_cluster_again(
    cluster,  # noqa: F811
    redis_server: RedisServer,  # noqa: F811
    attempts,
):
    a, b = cluster(2, env={**CLUSTER_SCOPE, "SYNCTV__CLUSTER__CONNECTION_LIMITS__PER_USER": "1"})
    (alice, bob), (room,) = await guests_and_rooms(a, users=2, rooms=1)
    await attempts.admitted(a, room, alice)
    assert await attempts.refusal(b, room, alice) == "per_user"

    redis_server.kill()
    for node in (a, b):
        await wait_for_redis(node, "degraded", OUTAGE_DEADLINE)

    # Each node counts its own sockets: B admits Alice's first socket there, not a second.
    await attempts.admitted(b, room, alice)
    assert await attempts.refusal(b, room, alice) == "per_user"
    assert await attempts.refusal(a, room, alice) == "per_user"
    for node in (a, b):
        assert node.log_tail(200).count(PER_NODE_LOG_LINE) == 1, node.log_tail(200)

    # Redis back, empty: each node records its open sockets again, and counts are shared.
    redis_server.restart()
    await wait_for(
        lambda: global_set_size(redis_server) == 2, "re-registered sockets", OUTAGE_DEADLINE
    )
    await attempts.admitted(a, room, bob)
    assert await attempts.refusal(b, room, bob) == "per_user"


async def test_cluster_scope_works_on_a_redis_cluster(
    serve_node,  # noqa: F811
    redis_cluster,  # noqa: F811
    attempts,
):
    env = {
        **CLUSTER_SCOPE,
        "SYNCTV__REDIS__URL": redis_cluster.url,
        "SYNCTV__REDIS__CLUSTER_MODE": "true",
        "SYNCTV__CLUSTER__CONNECTION_LIMITS__PER_USER": "1",
    }
    a, b = serve_node(env=env), serve_node(env=env)
    (alice,), (room,) = await guests_and_rooms(a, users=1, rooms=1)

    first = await attempts.admitted(a, room, alice)
    # The script's three keys share one slot (their hash tag): no CROSSSLOT refusal, and
    # no fallback to per-node counts, which would admit this one.
    assert await attempts.refusal(b, room, alice) == "per_user"
    await first.close()
    await attempts.admitted_within(b, room, alice, SLOT_DEADLINE)
    assert PER_NODE_LOG_LINE not in a.log_tail(200) + b.log_tail(200)

"""A real SyncTV cluster for tests: N `manage.py serve` nodes and `runworker` processes
sharing one `redis_server` and the test database.

    from tests.support.cluster import cluster, cluster_env, worker_process  # noqa: F401
    from tests.support.redis_servers import redis_server  # noqa: F401
    from tests.support.servers import serve_node  # noqa: F401

`cluster(count)` starts `count` nodes (ids `a-…`, `b-…`, …) with the common environment
`cluster_env`; `worker_process()` starts `manage.py runworker synctv.jobs` with the same
environment and returns once it waits on the jobs list in Redis. Everything is stopped by
pid in the fixture finalizers (the nodes by `serve_node`'s).
"""

from __future__ import annotations

import asyncio
import string
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from tests.support.clients import http_client
from tests.support.redis_servers import RedisServer
from tests.support.servers import ManagedProcess, ServeProcess, database_url, node_env

WORKER_START_TIMEOUT = 30.0
JOBS_CHANNEL = "synctv.jobs"


@pytest.fixture
def cluster_env(redis_server: RedisServer, transactional_db: None) -> dict[str, str]:
    """The SYNCTV__ variables every process of the test cluster shares."""
    from django.conf import settings

    return {
        "SYNCTV__DATABASE__URL": database_url(),
        "SYNCTV__SERVER__SECRET_KEY": settings.SECRET_KEY,
        "SYNCTV__REDIS__URL": redis_server.url,
        "SYNCTV__CLUSTER__SHUTDOWN_GRACE_SECS": "1",
        # Tests send bursts from one socket; flood control has tests of its own.
        "SYNCTV__WEBSOCKET__RATE_LIMIT_PER_SEC": "1000",
        "SYNCTV__WEBSOCKET__RATE_LIMIT_BURST": "1000",
        # The tests' media servers listen on loopback, which the probe refuses by default.
        "SYNCTV__JOBS__PROBE_ALLOWED_NETWORKS": '["127.0.0.1/32"]',
    }


@pytest.fixture
def cluster(
    cluster_env: dict[str, str], serve_node: Callable[..., ServeProcess]
) -> Callable[..., list[ServeProcess]]:
    """Factory: `cluster(count=2, env=None)` starts `count` nodes against the test's Redis.

    `cluster_env` (hence Redis) is set up before `serve_node`, so the nodes stop first.
    """
    suffix = uuid.uuid4().hex[:6]
    started: list[ServeProcess] = []

    def start(count: int = 2, env: dict[str, str] | None = None) -> list[ServeProcess]:
        nodes = []
        for _ in range(count):
            letter = string.ascii_lowercase[len(started)]
            node = serve_node(node_id=f"{letter}-{suffix}", env={**cluster_env, **(env or {})})
            started.append(node)
            nodes.append(node)
        return nodes

    return start


def waiting_workers(server: RedisServer) -> int:
    """How many clients of `server` last ran BRPOP (job workers waiting for work)."""
    try:
        with server.client() as client:
            return sum(1 for entry in client.client_list() if entry.get("cmd") == "brpop")
    except (redis.RedisError, OSError):
        return 0


@pytest.fixture
def worker_process(
    cluster_env: dict[str, str], redis_server: RedisServer, tmp_path: Path
) -> Iterator[Callable[[], ManagedProcess]]:
    """Factory: `worker_process()` starts `manage.py runworker synctv.jobs` for the cluster.

    It returns once one more client of Redis waits on the jobs list. Workers are stopped
    (SIGTERM, then SIGKILL) after the test and their log tails printed.
    """
    workers: list[ManagedProcess] = []

    def start() -> ManagedProcess:
        waiting_before = waiting_workers(redis_server)
        number = len(workers) + 1
        env = {**cluster_env, "SYNCTV__CLUSTER__NODE_ID": f"worker-{number}-{uuid.uuid4().hex[:6]}"}
        worker = ManagedProcess(
            [sys.executable, "manage.py", "runworker", JOBS_CHANNEL],
            tmp_path / f"worker-{number}.log",
            env=node_env(env),
        )
        workers.append(worker.start())
        worker.wait_until(
            lambda: waiting_workers(redis_server) > waiting_before,
            WORKER_START_TIMEOUT,
            "BRPOP on the jobs list",
        )
        return worker

    try:
        yield start
    finally:
        for worker in reversed(workers):
            worker.stop()
        for worker in workers:
            print(f"--- {worker.describe()} (last lines of {worker.log_path}) ---")
            print(worker.log_tail(30))


async def wait_for_redis(node, expected: str, within: float) -> None:
    """Wait until `node`'s /ready reports Redis as `expected`: `ok` once connected,
    `degraded` while it serves without Redis."""
    deadline = time.monotonic() + within
    async with http_client(node) as http:
        while (await http.get("/ready")).json()["checks"]["redis"] != expected:
            assert time.monotonic() < deadline, (
                f"{node.node_id}: Redis not {expected} in {within:g}s"
            )
            await asyncio.sleep(0.1)

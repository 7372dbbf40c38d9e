"""The soak's cluster: PostgreSQL, one redis-server, three `manage.py serve` nodes (the last
one reaching Redis through a PartitionProxy), one `runworker synctv.jobs`, and the faults
the chaos loop does to them. Every process is started from the main thread (so the kernel
kills it if the soak dies) and stopped by its pid in `stop()`.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.common import UNLIMITED, ensure_postgres_database, run_manage
from bench.procs import rss_bytes
from tests.support.proxy import PartitionProxy
from tests.support.redis_servers import RedisServer
from tests.support.servers import (
    HOST,
    ManagedProcess,
    ProcessFailed,
    ServeProcess,
    free_port,
    node_env,
)

NODE_START_TIMEOUT = 40.0
DRAIN_TIMEOUT = 15.0
HEALTH_TIMEOUT = 1.0


def monotonic() -> float:
    """The soak's clock (seconds)."""
    return time.monotonic()


@dataclass
class Incarnation:
    """One run of one node's process: its pid and its RSS samples `(t, bytes)`."""

    slot: int
    pid: int
    started_at: float
    healthy_at: float | None = None  # RSS is sampled from then on, not while importing
    ended_at: float | None = None
    how_ended: str = ""
    rss: list[tuple[float, int]] = field(default_factory=list)


@dataclass
class NodeSlot:
    """A node's place in the cluster: a fixed port, a name, and its current process."""

    index: int
    port: int
    name: str
    behind_proxy: bool
    process: ServeProcess | None = None
    incarnations: list[Incarnation] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT` (whether or not the node runs right now)."""
        return f"http://{HOST}:{self.port}"

    @property
    def ws_url(self) -> str:
        """`ws://127.0.0.1:PORT`."""
        return f"ws://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        """True while the current process has not exited."""
        return self.process is not None and self.process.running


class SoakCluster:
    """The processes of one soak run and the faults done to them."""

    def __init__(self, workdir: Path, database_url: str, node_count: int = 3) -> None:
        self.workdir = workdir
        self.database_url = database_url
        self.tag = secrets.token_hex(3)
        self.secret = secrets.token_urlsafe(32)
        self.redis = RedisServer(workdir / "redis")
        self.proxy: PartitionProxy | None = None
        self.worker: ManagedProcess | None = None
        self.worker_starts = 0
        self.node_count = node_count
        self.nodes: list[NodeSlot] = []

    # -- set-up ---------------------------------------------------------------------------

    def prepare_database(self) -> None:
        """Create the database when missing and migrate it."""
        ensure_postgres_database(self.database_url)
        run_manage(["migrate", "--no-input", "-v", "0"], self.base_env(""))

    def base_env(self, redis_url: str) -> dict[str, str]:
        """The SYNCTV__ variables every process of this soak shares."""
        return {
            "SYNCTV__DATABASE__URL": self.database_url,
            "SYNCTV__SERVER__SECRET_KEY": self.secret,
            "SYNCTV__REDIS__URL": redis_url,
            "SYNCTV__REDIS__KEY_PREFIX": f"synctv-soak-{self.tag}:",
            "SYNCTV__LOGGING__LEVEL": "WARNING",
            "SYNCTV__LOGGING__FORMAT": "json",
            "SYNCTV__CLUSTER__SHUTDOWN_GRACE_SECS": "3",
            **UNLIMITED,  # no flood limit, no sign-in throttle (one address signs in everyone)
        }

    async def start(self) -> None:
        """Redis, the proxy, the nodes and the worker; returns once every node is healthy."""
        self.redis.start()
        self.proxy = PartitionProxy(self.redis.port).start()
        for index in range(self.node_count):
            behind_proxy = index == self.node_count - 1
            slot = NodeSlot(index, free_port(), f"soak{index + 1}", behind_proxy)
            self.nodes.append(slot)
        await asyncio.gather(*(self.start_node(slot) for slot in self.nodes))
        self.start_worker()

    def env_of(self, slot: NodeSlot) -> dict[str, str]:
        """One node's environment: the shared one, its Redis address, its name."""
        assert self.proxy is not None
        url = self.proxy.url if slot.behind_proxy else self.redis.url
        return {**self.base_env(url), "NODE_NAME": slot.name}

    async def start_node(self, slot: NodeSlot) -> None:
        """(Re)start a node on its port and wait until GET /health answers."""
        node = ServeProcess(self.env_of(slot), self.workdir, port=slot.port)
        ManagedProcess.start(node)  # from this (the main) thread; health is awaited below
        slot.process = node
        incarnation = Incarnation(slot.index, node.pid, monotonic())
        slot.incarnations.append(incarnation)
        deadline = monotonic() + NODE_START_TIMEOUT
        async with httpx.AsyncClient(timeout=HEALTH_TIMEOUT) as http:
            while not await _healthy(http, slot):
                if not node.running or monotonic() > deadline:
                    node.kill()
                    self._ended(slot, "failed to start")
                    raise ProcessFailed(f"{slot.name} did not start:\n{node.log_tail()}")
                await asyncio.sleep(0.1)  # the process is starting: nothing to wait on but it
        incarnation.healthy_at = monotonic()

    def start_worker(self) -> None:
        """`manage.py runworker synctv.jobs`, reaching Redis directly."""
        env = {**self.base_env(self.redis.url), "NODE_NAME": "soak-worker"}
        self.worker_starts += 1
        self.worker = ManagedProcess(
            [sys.executable, "manage.py", "runworker", "synctv.jobs"],
            self.workdir / f"worker-{self.worker_starts}.log",
            env=node_env(env),
        ).start()

    def live_nodes(self) -> list[NodeSlot]:
        """Nodes whose process runs."""
        return [slot for slot in self.nodes if slot.running]

    # -- faults ---------------------------------------------------------------------------

    def kill_redis(self) -> None:
        """kill -9 the redis-server."""
        self.redis.kill()

    def restart_redis(self) -> None:
        """Start Redis again, empty, on the same port."""
        self.redis.restart()

    def pause_redis(self) -> None:
        """SIGSTOP the redis-server."""
        self.redis.pause()

    def resume_redis(self) -> None:
        """SIGCONT the redis-server."""
        self.redis.resume()

    def cut(self) -> None:
        """Partition the proxied node from Redis."""
        assert self.proxy is not None
        self.proxy.cut()

    def heal(self) -> None:
        """End the partition."""
        assert self.proxy is not None
        self.proxy.heal()

    def kill_node(self, slot: NodeSlot) -> None:
        """kill -9 a node (a crash)."""
        if slot.process is not None:
            slot.process.kill()
            self._ended(slot, "killed")

    async def drain_node(self, slot: NodeSlot) -> int | None:
        """SIGTERM a node and wait until it has drained and exited; its exit code."""
        process = slot.process
        if process is None or process.process is None:
            return None
        process.process.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.to_thread(process.process.wait, DRAIN_TIMEOUT)
        except Exception:
            code = None
        process.kill()  # reaps it (SIGKILL only if the drain overran)
        self._ended(slot, "drained")
        return code

    def _ended(self, slot: NodeSlot, how: str) -> None:
        if slot.incarnations and slot.incarnations[-1].ended_at is None:
            slot.incarnations[-1].ended_at = monotonic()
            slot.incarnations[-1].how_ended = how

    def heal_everything(self) -> None:
        """Whatever a fault left broken: Redis resumed or restarted, the proxy healed, the
        worker restarted (nodes are restarted by the caller, asynchronously)."""
        if self.redis.paused and self.redis.running:
            self.redis.resume()
        if not self.redis.running:
            self.redis.restart()
        if self.proxy is not None and self.proxy.cut_off:
            self.proxy.heal()
        if self.worker is not None and not self.worker.running:
            self.start_worker()

    # -- memory ---------------------------------------------------------------------------

    def sample_rss(self) -> None:
        """One VmRSS sample of every running node's process."""
        now = monotonic()
        for slot in self.nodes:
            if slot.running and slot.incarnations and slot.incarnations[-1].healthy_at:
                value = rss_bytes(slot.incarnations[-1].pid)
                if value:
                    slot.incarnations[-1].rss.append((now, value))

    # -- tear-down ------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop every process by pid (nodes first, then the worker, the proxy and Redis)."""
        for slot in self.nodes:
            if slot.process is not None:
                if self.redis.paused and self.redis.running:
                    self.redis.resume()
                slot.process.stop(timeout=DRAIN_TIMEOUT)
                self._ended(slot, "stopped")
        if self.worker is not None:
            self.worker.stop()
        if self.proxy is not None:
            self.proxy.close()
        self.redis.stop()

    def log_tails(self, lines: int = 15) -> str:
        """The last lines of every node's log, for a failed run."""
        parts = []
        for slot in self.nodes:
            if slot.process is not None:
                parts.append(f"--- {slot.name} ---\n{slot.process.log_tail(lines)}")
        return "\n".join(parts)


async def _healthy(http: httpx.AsyncClient, slot: NodeSlot) -> bool:
    try:
        answer = await http.get(f"{slot.base_url}/health")
    except httpx.HTTPError:
        return False
    if answer.status_code == 200 and slot.process is not None:
        slot.process.node_id = answer.json().get("node_id")
        return True
    return False

"""Real Redis processes for the cluster-mode tests: one server, a Sentinel group, a Cluster.

Each process is a `ManagedProcess` (tests/support/servers.py): 127.0.0.1 only, a free
port, no persistence, its own directory holding its config file and its log, stopped by
pid in the fixture finalizers, by the atexit hook and by the kernel if the test process
dies. The setup classes are context managers too, for tests needing more than a fixture.

Fixtures, and what a test may break:

* `redis_server` — one standalone server for this test: kill, pause, restart it freely.
* `redis_sentinel` — master, replica and three sentinels for this test: fail it over or
  kill anything in it.
* `redis_cluster` — three masters shared by the tests of a module (import it together
  with `shared_redis_cluster`, which holds it). A test may kill or pause nodes: after the
  test every node is brought back and `cluster_state:ok` awaited (the cluster is rebuilt
  when that fails). A test must not reshard it or change its configuration.

    from tests.support.redis_servers import (  # noqa: F401
        redis_cluster, redis_sentinel, redis_server, shared_redis_cluster,
    )
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.support.servers import HOST, ManagedProcess, ProcessFailed, free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
# Debian ships the sentinel binary in its own package; redis-server runs one just as well.
REDIS_SENTINEL = shutil.which("redis-sentinel")

MASTER_NAME = "mymaster"
START_TIMEOUT = 10.0
SIGNAL_TIMEOUT = 5.0
FAILOVER_TIMEOUT = 20.0
PROBE_TIMEOUT = 1.0
START_ATTEMPTS = 3

Address = tuple[str, int]


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `condition` until it is true; raise ProcessFailed after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise ProcessFailed(f"no {what} within {timeout:.0f}s")
        time.sleep(0.05)


def _process_state(pid: int) -> str:
    """The one-letter state of a Linux process (`T` when stopped), `?` when unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "?"
    return stat.rsplit(")", 1)[1].split()[0]


class RedisServer:
    """One redis-server on 127.0.0.1 in `workdir`, with fault injection by signal.

    The port is picked on the first `start()` and kept for good, so `restart()` after
    `kill()` or `stop()` comes back at the same address. `replica_of=(host, port)` makes
    it a replica from the start.
    """

    role = "redis"

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        replica_of: Address | None = None,
        extra_config: Sequence[str] = (),
        host: str = HOST,
    ) -> None:
        self.workdir = Path(workdir)
        self.host = host
        self._port = port
        self._port_is_fixed = port is not None
        self.replica_of = replica_of
        self.extra_config = list(extra_config)
        self.config_path = self.workdir / f"{self.role}.conf"
        self.log_path = self.workdir / f"{self.role}.log"
        self.process: ManagedProcess | None = None
        self.paused = False
        self.pid_history: list[int] = []

    # -- addresses -------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port (only once started, or when given)."""
        if self._port is None:
            raise ProcessFailed(f"{self.role} in {self.workdir} was never started")
        return self._port

    @property
    def address(self) -> Address:
        """`(host, port)`."""
        return (self.host, self.port)

    @property
    def url(self) -> str:
        """`redis://127.0.0.1:PORT/0`."""
        return f"redis://{self.host}:{self.port}/0"

    @property
    def pid(self) -> int:
        """The process id of the current run."""
        if self.process is None:
            raise ProcessFailed(f"{self.role} in {self.workdir} was never started")
        return self.process.pid

    @property
    def running(self) -> bool:
        """True while the current run has not exited (a paused process is running)."""
        return self.process is not None and self.process.running

    def client(self, **options: Any) -> redis.Redis:
        """A redis-py client of this server: decoded strings, 1 s timeouts and no retries
        unless `options` say otherwise (a fault shows at once, not after redis-py's retries)."""
        settings: dict[str, Any] = {
            "socket_timeout": PROBE_TIMEOUT,
            "socket_connect_timeout": PROBE_TIMEOUT,
            "decode_responses": True,
            "retry": Retry(NoBackoff(), 0),
        }
        settings.update(options)
        return redis.Redis(host=self.host, port=self.port, **settings)

    # -- lifecycle -------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT) -> RedisServer:
        """Start on a free port (retried when someone took it first) and wait until it answers."""
        if self.running:
            raise ProcessFailed(f"{self.describe()} is already running")
        attempts = 1 if self._port_is_fixed else START_ATTEMPTS
        for attempt in range(attempts):
            if not self._port_is_fixed:
                self._port = free_port(self.host)
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.config_path.write_text("\n".join(self.config_lines()) + "\n")
            try:
                self._launch(timeout)
            except ProcessFailed:
                if (
                    attempt == attempts - 1
                    or "address already in use" not in self.log_tail().lower()
                ):
                    raise
            else:
                self._port_is_fixed = True  # from now on restart() keeps this port
                return self
        raise AssertionError("unreachable")

    def restart(self, timeout: float = START_TIMEOUT) -> RedisServer:
        """Start again on the same port (stopping the current run first) and wait until it answers.

        The config file is kept as it is, including what the server rewrote itself
        (a sentinel-driven `REPLICAOF`, a cluster's node table).
        """
        if self.process is None:
            return self.start(timeout)
        self.stop()
        self._launch(timeout)
        return self

    def kill(self) -> None:
        """SIGKILL (a crash) and wait until the process is gone."""
        if self.process is not None:
            self.process.kill()
        self.paused = False

    def stop(self) -> None:
        """SIGTERM, SIGKILL after a deadline; a paused process is resumed first."""
        if self.process is None:
            return
        if self.paused and self.running:
            os.kill(self.pid, signal.SIGCONT)
        self.paused = False
        self.process.stop(timeout=SIGNAL_TIMEOUT)

    def pause(self) -> None:
        """SIGSTOP: the process keeps its sockets but answers nothing until `resume()`."""
        self._signal(signal.SIGSTOP, lambda: _process_state(self.pid) == "T", "stopped")
        self.paused = True

    def resume(self) -> None:
        """SIGCONT after `pause()`."""
        self._signal(signal.SIGCONT, lambda: _process_state(self.pid) != "T", "continued")
        self.paused = False

    # -- configuration, readiness ----------------------------------------------------

    def config_lines(self) -> list[str]:
        """The config file: loopback only, no persistence, logs to stdout (the log file)."""
        lines = [
            f"bind {self.host}",
            f"port {self.port}",
            f'dir "{self.workdir.resolve()}"',
            'logfile ""',
            "daemonize no",
            'save ""',
            "appendonly no",
            # A replica's first sync starts at once instead of after the default 5 s.
            "repl-diskless-sync-delay 0",
        ]
        if self.replica_of is not None:
            lines.append(f"replicaof {self.replica_of[0]} {self.replica_of[1]}")
        return lines + self.extra_config

    def argv(self) -> list[str]:
        """The command line starting this process."""
        return [REDIS_SERVER, str(self.config_path)]

    def is_ready(self) -> bool:
        """True when this very process answers PING (not another one that holds the port)."""

        def ask(client: redis.Redis) -> bool:
            return client.ping() is True and client.info("server")["process_id"] == self.pid

        return self._ask(ask) is True

    def describe(self) -> str:
        """What and where, for error messages."""
        return f"{self.role} on {self.host}:{self._port} ({self.workdir})"

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the log (every run appends to the same file)."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _ask(self, question: Callable[[redis.Redis], Any]) -> Any:
        """The answer to one request with short timeouts, or None when there was none."""
        try:
            with self.client() as client:
                return question(client)
        except (redis.RedisError, OSError):
            return None

    def _launch(self, timeout: float) -> None:
        self.process = ManagedProcess(self.argv(), self.log_path, cwd=self.workdir).start()
        self.pid_history.append(self.process.pid)
        self.process.wait_until(self.is_ready, timeout, f"{self.role} answering")

    def _signal(self, signum: signal.Signals, done: Callable[[], bool], what: str) -> None:
        if not self.running:
            raise ProcessFailed(f"{self.describe()} is not running")
        os.kill(self.pid, signum)
        _wait_for(done, SIGNAL_TIMEOUT, f"{self.describe()} {what}")

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


class RedisSentinel(RedisServer):
    """One Sentinel monitoring `MASTER_NAME` at `master` (quorum 2, fast failure detection)."""

    role = "sentinel"

    def __init__(self, workdir: Path, master: Address, quorum: int = 2) -> None:
        super().__init__(workdir)
        self.master = master
        self.quorum = quorum

    def config_lines(self) -> list[str]:
        """The sentinel config file (Sentinel rewrites it as it learns the group)."""
        host, port = self.master
        return [
            f"bind {self.host}",
            f"port {self.port}",
            f'dir "{self.workdir.resolve()}"',
            'logfile ""',
            "daemonize no",
            f"sentinel announce-ip {self.host}",
            "sentinel resolve-hostnames no",
            f"sentinel monitor {MASTER_NAME} {host} {port} {self.quorum}",
            f"sentinel down-after-milliseconds {MASTER_NAME} 1000",
            f"sentinel failover-timeout {MASTER_NAME} 3000",
            f"sentinel parallel-syncs {MASTER_NAME} 1",
        ]

    def argv(self) -> list[str]:
        """`redis-sentinel CONF`, or `redis-server CONF --sentinel` without that binary."""
        if REDIS_SENTINEL:
            return [REDIS_SENTINEL, str(self.config_path)]
        return [REDIS_SERVER, str(self.config_path), "--sentinel"]

    def master_address(self) -> Address | None:
        """What this sentinel reports as the master (`SENTINEL get-master-addr-by-name`)."""
        answer = self._ask(
            lambda client: client.execute_command(
                "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME
            )
        )
        if not answer:
            return None
        return (answer[0], int(answer[1]))

    def knows_the_whole_group(self, replica: Address, sentinels: int) -> bool:
        """True once this sentinel sees the master up, `replica` linked, and the other sentinels."""

        def ask(client: redis.Redis) -> bool:
            master = _pairs(client.execute_command("SENTINEL", "MASTER", MASTER_NAME))
            replicas = [
                _pairs(entry)
                for entry in client.execute_command("SENTINEL", "REPLICAS", MASTER_NAME)
            ]
            linked = any(
                (entry["ip"], int(entry["port"])) == replica
                and entry["flags"] == "slave"
                and entry.get("master-link-status") == "ok"
                for entry in replicas
            )
            return (
                master["flags"] == "master"
                and int(master["num-other-sentinels"]) == sentinels - 1
                and linked
            )

        return self._ask(ask) is True


def _pairs(reply: Any) -> dict[str, str]:
    """A Sentinel reply as a dict: a RESP3 map already is one, RESP2 gives `[key, value, ...]`."""
    if isinstance(reply, dict):
        return reply
    return dict(zip(reply[::2], reply[1::2], strict=True))


class RedisSentinelSetup:
    """A master, one replica of it, and three sentinels (quorum 2) watching `mymaster`.

    `master` and `replica` name the current roles: `fail_over_by_killing_master()` swaps
    them (the dead old master becomes `replica`).
    """

    def __init__(self, workdir: Path, sentinels: int = 3) -> None:
        self.workdir = Path(workdir)
        self.master = RedisServer(self.workdir / "master")
        self.replica: RedisServer | None = None
        self.sentinels: list[RedisSentinel] = []
        self.sentinel_count = sentinels

    @property
    def url(self) -> str:
        """`redis+sentinel://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3/mymaster`."""
        hosts = ",".join(f"{host}:{port}" for host, port in self.sentinel_addresses)
        return f"redis+sentinel://{hosts}/{MASTER_NAME}"

    @property
    def sentinel_addresses(self) -> list[Address]:
        """`[(host, port), ...]` of the sentinels."""
        return [sentinel.address for sentinel in self.sentinels]

    @property
    def servers(self) -> list[RedisServer]:
        """Every process of the setup."""
        data = [self.master] + ([self.replica] if self.replica is not None else [])
        return data + list(self.sentinels)

    def start(self, timeout: float = START_TIMEOUT) -> RedisSentinelSetup:
        """Start everything and wait until every sentinel knows the whole group."""
        try:
            self.master.start()
            self.replica = RedisServer(
                self.workdir / "replica", replica_of=self.master.address
            ).start()
            for number in range(1, self.sentinel_count + 1):
                sentinel = RedisSentinel(self.workdir / f"sentinel-{number}", self.master.address)
                self.sentinels.append(sentinel.start())
            _wait_for(self._replica_is_linked, timeout, "replica in sync with the master")
            _wait_for(self._group_is_known, timeout, "sentinels agreeing on the group")
        except BaseException as error:
            self.stop()
            if isinstance(error, ProcessFailed):
                raise ProcessFailed(f"{error}\n{self._log_tails()}") from error
            raise
        return self

    def current_master(self) -> Address:
        """The master's `(host, port)` as the first sentinel that answers reports it."""
        for sentinel in self.sentinels:
            if sentinel.running and not sentinel.paused:
                address = sentinel.master_address()
                if address is not None:
                    return address
        raise ProcessFailed("no sentinel answered get-master-addr-by-name")

    def fail_over_by_killing_master(self, timeout: float = FAILOVER_TIMEOUT) -> RedisServer:
        """SIGKILL the master; return the replica once every sentinel reports it as master."""
        assert self.replica is not None, "the setup was not started"
        old_master, promoted = self.master, self.replica
        old_master.kill()

        def promoted_everywhere() -> bool:
            live = [s for s in self.sentinels if s.running and not s.paused]
            return bool(live) and all(s.master_address() == promoted.address for s in live)

        def promoted_itself() -> bool:
            return promoted._ask(lambda client: client.info("replication")["role"]) == "master"

        try:
            _wait_for(promoted_everywhere, timeout, "sentinels reporting the replica as master")
            _wait_for(promoted_itself, timeout, "the replica taking the master role")
        except ProcessFailed as error:
            raise ProcessFailed(f"{error}\n{self._log_tails()}") from error
        self.master, self.replica = promoted, old_master
        return promoted

    def stop(self) -> None:
        """Stop the sentinels first (so they fail nothing over), then the data servers."""
        for server in reversed(self.servers):
            server.stop()

    def _replica_is_linked(self) -> bool:
        assert self.replica is not None
        info = self.replica._ask(lambda client: client.info("replication"))
        return bool(info) and info.get("master_link_status") == "up"

    def _group_is_known(self) -> bool:
        assert self.replica is not None
        return all(
            sentinel.knows_the_whole_group(self.replica.address, len(self.sentinels))
            for sentinel in self.sentinels
        )

    def _log_tails(self) -> str:
        return "\n".join(
            f"--- {server.describe()} ---\n{server.log_tail(15)}" for server in self.servers
        )

    def __enter__(self) -> RedisSentinelSetup:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


class RedisClusterNode(RedisServer):
    """One master of a Redis Cluster; once joined, ready means `cluster_state:ok` here."""

    role = "cluster-node"

    def __init__(self, workdir: Path, node_timeout_ms: int = 2000) -> None:
        super().__init__(workdir)
        self.node_timeout_ms = node_timeout_ms
        self.bus_port: int | None = None
        self.joined = False

    def config_lines(self) -> list[str]:
        """A standalone config plus cluster mode, its own bus port and node table file."""
        # An explicit bus port: the default (port + 10000) may be taken or past 65535.
        self.bus_port = free_port(self.host)
        return super().config_lines() + [
            "cluster-enabled yes",
            "cluster-config-file nodes.conf",
            f"cluster-node-timeout {self.node_timeout_ms}",
            f"cluster-port {self.bus_port}",
        ]

    def cluster_state(self) -> str | None:
        """`cluster_state` from CLUSTER INFO (`ok` or `fail`), None when it does not answer."""
        info = self._ask(lambda client: client.execute_command("CLUSTER INFO"))
        return None if not info else str(info.get("cluster_state"))

    def is_ready(self) -> bool:
        """Answering PING, and once the cluster was created, `cluster_state:ok` here."""
        return super().is_ready() and (not self.joined or self.cluster_state() == "ok")


class RedisClusterSetup:
    """Three cluster-enabled masters joined by `redis-cli --cluster create` (no replicas)."""

    def __init__(self, workdir: Path, masters: int = 3) -> None:
        self.workdir = Path(workdir)
        self.nodes = [RedisClusterNode(self.workdir / f"node-{n}") for n in range(1, masters + 1)]

    @property
    def url(self) -> str:
        """`redis://127.0.0.1:P1/0`: any one node names the cluster."""
        return self.nodes[0].url

    @property
    def servers(self) -> list[RedisServer]:
        """Every process of the setup."""
        return list(self.nodes)

    def start(self, timeout: float = START_TIMEOUT) -> RedisClusterSetup:
        """Start the nodes, create the cluster, and wait for `cluster_state:ok` on every node."""
        try:
            for node in self.nodes:
                node.start()
            self._create(timeout)
            for node in self.nodes:
                node.joined = True
            self.wait_until_healthy(timeout)
        except BaseException as error:
            self.stop()
            if isinstance(error, ProcessFailed):
                raise ProcessFailed(f"{error}\n{self._log_tails()}") from error
            raise
        return self

    def is_healthy(self) -> bool:
        """True when every node runs, is not paused, and says `cluster_state:ok`."""
        return all(
            node.running and not node.paused and node.cluster_state() == "ok" for node in self.nodes
        )

    def wait_until_healthy(self, timeout: float = START_TIMEOUT) -> None:
        """Wait for `cluster_state:ok` on every node."""
        _wait_for(self.is_healthy, timeout, "cluster_state:ok on every node")

    def heal(self, timeout: float = START_TIMEOUT) -> None:
        """Resume paused nodes, restart dead ones, and wait until the cluster is ok again."""
        for node in self.nodes:
            if node.paused and node.running:
                node.resume()
        for node in self.nodes:
            if not node.running:
                node.restart(timeout)
        self.wait_until_healthy(timeout)

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.stop()

    def _create(self, timeout: float) -> None:
        argv = [
            REDIS_CLI,
            "--cluster",
            "create",
            *(f"{node.host}:{node.port}" for node in self.nodes),
            "--cluster-replicas",
            "0",
            "--cluster-yes",
        ]
        creator = ManagedProcess(argv, self.workdir / "cluster-create.log", cwd=self.workdir)
        creator.start()
        assert creator.process is not None
        try:
            code = creator.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired as error:
            creator.kill()
            raise ProcessFailed(
                f"{creator.describe()} did not finish within {timeout:.0f}s; log:\n"
                f"{creator.log_tail()}"
            ) from error
        finally:
            creator.stop()
        if code != 0:
            raise ProcessFailed(
                f"{creator.describe()} exited with {code}; log:\n{creator.log_tail()}"
            )

    def _log_tails(self) -> str:
        return "\n".join(f"--- {node.describe()} ---\n{node.log_tail(15)}" for node in self.nodes)

    def __enter__(self) -> RedisClusterSetup:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """One running standalone Redis, stopped after the test; kill/pause/restart it freely."""
    with RedisServer(tmp_path / "redis").start() as server:
        yield server


@pytest.fixture
def redis_sentinel(tmp_path: Path) -> Iterator[RedisSentinelSetup]:
    """A fresh master + replica + three sentinels for this test alone; break it freely."""
    with RedisSentinelSetup(tmp_path / "sentinel").start() as setup:
        yield setup


class SharedRedisCluster:
    """One cluster for the tests of a module, handed out healthy: healed, else rebuilt."""

    def __init__(self, factory: pytest.TempPathFactory) -> None:
        self.factory = factory
        self.cluster: RedisClusterSetup | None = None

    def healthy(self) -> RedisClusterSetup:
        """The cluster with every node up and `cluster_state:ok` (started on first use)."""
        if self.cluster is not None:
            if self.cluster.is_healthy():
                return self.cluster
            try:
                self.cluster.heal()
                return self.cluster
            except ProcessFailed:
                self.cluster.stop()
        self.cluster = RedisClusterSetup(self.factory.mktemp("redis-cluster")).start()
        return self.cluster

    def stop(self) -> None:
        """Stop the cluster, if one was started."""
        if self.cluster is not None:
            self.cluster.stop()


@pytest.fixture(scope="module")
def shared_redis_cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SharedRedisCluster]:
    """The module's cluster behind `redis_cluster` (import both); stopped after the module."""
    shared = SharedRedisCluster(tmp_path_factory)
    try:
        yield shared
    finally:
        shared.stop()


@pytest.fixture
def redis_cluster(shared_redis_cluster: SharedRedisCluster) -> Iterator[RedisClusterSetup]:
    """A healthy three-master cluster shared by the module's tests; a test may kill or pause
    nodes, and they are brought back (or the cluster rebuilt) before the next test."""
    yield shared_redis_cluster.healthy()
    shared_redis_cluster.healthy()

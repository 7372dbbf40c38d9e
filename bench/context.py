"""What every scenario of a harness run shares: sizes, the load generator, the guests, and
how a SyncTV node of this run is configured and started."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import UNLIMITED
from bench.driver import LoadGen
from bench.fixtures import People
from bench.procs import Target, start_reference, start_synctv

SERVER_CPU = "0"
LOADGEN_CPU = "1"


@dataclass(frozen=True)
class Sizes:
    """How big each scenario is: `FULL` for `make bench`, `SMOKE` for `make bench-smoke`."""

    a_members: int
    a_rates: tuple[float, ...]  # chat sends/s per step; offered deliveries/s = rate x members
    step_secs: float
    b_rooms: int = 1000
    b_members: int = 10
    b_seek_rates: tuple[float, ...] = (50, 100, 200, 500, 1000, 2000)  # seeks/s in all
    b_chat_share: float = 0.25  # chat sends/s = seeks/s x this
    b_step_secs: float = 4.0
    c_sockets: int = 10_000
    d_guests: int = 2000
    d_batch: int = 100
    d_back_secs: float = 90.0  # at most this long for everyone to be back after the restart
    e_members: int = 500
    open_deadline_secs: float = 150.0  # no new wave of sockets after this (slow servers)


FULL = Sizes(a_members=500, a_rates=(2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048), step_secs=4.0)
SMOKE = Sizes(a_members=200, a_rates=(2.5, 5, 10, 20, 40, 80, 160, 320, 640), step_secs=2.0)


@dataclass
class Run:
    """One harness run."""

    sizes: Sizes
    workdir: Path
    loadgen: LoadGen
    synctv_env: dict[str, str]
    synctv_servers: list[str]
    reference_servers: list[str]
    people: People = field(default_factory=People)
    # Figures one scenario measures for another: (b)'s sockets, idle, are (c)'s on SyncTV.
    shared: dict[str, Any] = field(default_factory=dict)

    @property
    def synctv_server(self) -> str:
        """The server the scenarios other than (a) run SyncTV on: the first one asked for."""
        return self.synctv_servers[0]

    def node(self, server: str | None = None, cpus: str = SERVER_CPU, **options: Any) -> Target:
        """Start a SyncTV node of this run (single-node mode unless `env` says otherwise)."""
        env = {**self.synctv_env, **options.pop("env", {})}
        return start_synctv(env, self.workdir, server or self.synctv_server, cpus=cpus, **options)

    @contextlib.asynccontextmanager
    async def serving(self, target: Target) -> AsyncIterator[Target]:
        """Stop `target` by pid when the block ends, whatever happens."""
        try:
            yield target
        finally:
            target.stop()

    def reference(self, name: str, server: str = "daphne") -> Target:
        """Start a reference server on the server core."""
        return start_reference(name, self.workdir, server, cpus=SERVER_CPU)


def say(text: str) -> None:
    """A progress line while a scenario runs."""
    print(f"  {text}", flush=True)


def synctv_env(database_url: str, secret_key: str) -> dict[str, str]:
    """SYNCTV__ overrides of every node a run starts: no flood limit, connection limits far
    above the scenarios' sizes, quiet logs, a short drain on restart."""
    return {
        "SYNCTV__DATABASE__URL": database_url,
        "SYNCTV__SERVER__SECRET_KEY": secret_key,
        "SYNCTV__LOGGING__LEVEL": "WARNING",
        "SYNCTV__CLUSTER__CONNECTION_LIMITS__PER_ROOM": "50000",
        "SYNCTV__CLUSTER__CONNECTION_LIMITS__PER_USER": "1000",
        "SYNCTV__CLUSTER__CONNECTION_LIMITS__GLOBAL": "100000",
        "SYNCTV__CLUSTER__SHUTDOWN_GRACE_SECS": "3",
        **UNLIMITED,
    }

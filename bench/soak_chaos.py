"""The soak's chaos loop: a shuffled schedule of faults, spread over the chaos window, each
logged with its start and end (seconds from the run's start).

| kind | what |
|---|---|
| `redis_kill` | kill -9 the redis-server, restart it empty on the same port 1-3 s later |
| `redis_pause` | SIGSTOP it for 2-5 s (over 3 s: the nodes' silence detector fires), SIGCONT |
| `partition` | cut the proxied node from Redis for 3-8 s, heal |
| `node_kill` | kill -9 a node, restart it on the same port 1-2 s later |
| `node_drain` | SIGTERM a node (graceful drain), restart it once it has exited |

Node faults take turns between every node but the first, which is never restarted (its
memory slope is the one that tells a leak).
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any

from bench.soak_cluster import NodeSlot, SoakCluster, monotonic

FAULT_KINDS = ("redis_kill", "redis_pause", "partition", "node_kill", "node_drain")
# About how long each kind lasts (a node's restart included), to spread them over the window.
EXPECTED_SECONDS = {
    "redis_kill": 2.0,
    "redis_pause": 3.5,
    "partition": 5.5,
    "node_kill": 5.0,
    "node_drain": 7.0,
}
MIN_GAP = 1.0


@dataclass
class FaultCounts:
    """How many faults of each kind one run does."""

    redis_kill: int
    redis_pause: int
    partition: int
    node_kill: int
    node_drain: int

    @classmethod
    def for_duration(cls, seconds: float) -> FaultCounts:
        """20 Redis kills and 5 of each other kind in 10 minutes, in proportion (at least 1)."""
        scale = seconds / 600

        def count(full: int) -> int:
            return max(1, round(full * scale))

        return cls(count(20), count(5), count(5), count(5), count(5))

    def schedule(self, rng: random.Random) -> list[str]:
        """Every fault once, shuffled."""
        kinds = [kind for kind in FAULT_KINDS for _ in range(getattr(self, kind))]
        rng.shuffle(kinds)
        return kinds


@dataclass
class FaultRecord:
    """One fault as it happened."""

    kind: str
    target: str
    started_s: float
    ended_s: float | None = None
    detail: str = ""
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        """For the JSON report."""
        return {key: value for key, value in self.__dict__.items() if value not in ("", None)}


@dataclass
class ChaosLog:
    """Every fault and incident of the run, in order."""

    run_started: float
    faults: list[FaultRecord] = field(default_factory=list)

    def now(self) -> float:
        """Seconds since the run started."""
        return round(monotonic() - self.run_started, 2)

    def begin(self, kind: str, target: str) -> FaultRecord:
        """Log a fault as it starts (printed with its time)."""
        record = FaultRecord(kind, target, self.now())
        self.faults.append(record)
        print(f"[{record.started_s:7.1f}s] fault {kind} {target}", flush=True)
        return record

    def end(self, record: FaultRecord, detail: str = "") -> None:
        """Log a fault as it ends."""
        record.ended_s = self.now()
        record.detail = detail
        print(f"[{record.ended_s:7.1f}s]   end {record.kind} {record.target} {detail}", flush=True)

    def last_before(self, at_s: float) -> FaultRecord | None:
        """The latest fault that started before `at_s`."""
        earlier = [record for record in self.faults if record.started_s <= at_s]
        return earlier[-1] if earlier else None

    def survived(self) -> dict[str, int]:
        """Faults that ended with everything back, by kind."""
        counts: dict[str, int] = {}
        for record in self.faults:
            if record.ended_s is not None and not record.error:
                counts[record.kind] = counts.get(record.kind, 0) + 1
        return counts


class ChaosLoop:
    """Does the scheduled faults one after another with pauses in between."""

    def __init__(
        self, cluster: SoakCluster, log: ChaosLog, rng: random.Random, kinds: list[str]
    ) -> None:
        self.cluster = cluster
        self.log = log
        self.rng = rng
        self.kinds = kinds
        self._node_turn = 0

    async def run(self, window: float) -> None:
        """The faults spread evenly over `window` seconds (each pause ±30 %)."""
        busy = sum(EXPECTED_SECONDS[kind] for kind in self.kinds)
        gap = max(MIN_GAP, (window - busy) / (len(self.kinds) + 1))
        for kind in self.kinds:
            await asyncio.sleep(gap * self.rng.uniform(0.7, 1.3))  # the pause between faults
            record = self.log.begin(kind, self._target(kind))
            try:
                detail = await getattr(self, f"_{kind}")(record)
            except Exception as error:  # the run goes on; the report shows it
                record.error = repr(error)
                detail = f"FAILED: {error!r}"
                await self.restore()
            self.log.end(record, detail)

    async def restore(self) -> None:
        """Everything running again: Redis, the proxy, the worker, every node."""
        self.cluster.heal_everything()
        for slot in self.cluster.nodes:
            if not slot.running:
                await self.cluster.start_node(slot)

    def _target(self, kind: str) -> str:
        if kind.startswith("redis"):
            return "redis"
        if kind == "partition":
            return next(slot.name for slot in self.cluster.nodes if slot.behind_proxy)
        restartable = self.cluster.nodes[1:]
        slot = restartable[self._node_turn % len(restartable)]
        self._node_turn += 1
        return slot.name

    def _slot(self, record: FaultRecord) -> NodeSlot:
        return next(slot for slot in self.cluster.nodes if slot.name == record.target)

    async def _redis_kill(self, record: FaultRecord) -> str:
        self.cluster.kill_redis()
        down = self.rng.uniform(1.0, 3.0)
        await asyncio.sleep(down)  # the outage
        self.cluster.restart_redis()
        return f"down {down:.1f}s"

    async def _redis_pause(self, record: FaultRecord) -> str:
        self.cluster.pause_redis()
        frozen = self.rng.uniform(2.0, 5.0)
        await asyncio.sleep(frozen)  # the freeze
        self.cluster.resume_redis()
        return f"frozen {frozen:.1f}s"

    async def _partition(self, record: FaultRecord) -> str:
        self.cluster.cut()
        cut = self.rng.uniform(3.0, 8.0)
        await asyncio.sleep(cut)  # the partition
        self.cluster.heal()
        return f"cut {cut:.1f}s"

    async def _node_kill(self, record: FaultRecord) -> str:
        slot = self._slot(record)
        self.cluster.kill_node(slot)
        down = self.rng.uniform(1.0, 2.0)
        await asyncio.sleep(down)  # the crash
        started = monotonic()
        await self.cluster.start_node(slot)
        return f"down {down:.1f}s, restart took {monotonic() - started:.1f}s"

    async def _node_drain(self, record: FaultRecord) -> str:
        slot = self._slot(record)
        began = monotonic()
        code = await self.cluster.drain_node(slot)
        drained = monotonic() - began
        await self.cluster.start_node(slot)
        return f"drained in {drained:.1f}s (exit {code}), back after {monotonic() - began:.1f}s"

#!/usr/bin/env python
"""Cross-node benchmark: seek latency and fan-out between SyncTV nodes in cluster mode.

Starts a redis-server (or uses --redis-url) and --nodes `manage.py serve` nodes (2) on free
ports against one PostgreSQL database (created and migrated), with the per-socket rate
limit lifted and a fresh Redis key prefix, then measures:

a) latency: client A on node 1 sends seeks one at a time, client B on node 2 receives them
   (p50/p90/p99/max ms); then the same with A and B both on node 1, for comparison;
b) fan-out: a room of --members guests (500), spread evenly over the nodes, then all on
   node 1; a sender on node 1 issues --fanout-seeks seeks; deliveries/s (playback frames
   received by all members / elapsed) and the delivery latency (send -> each receipt).

The clients run in this process on one asyncio loop, sharing the machine with the servers.
Every process it starts is stopped by pid at the end, also on errors and Ctrl-C. Prints a
table; the last line is a JSON summary. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import httpx  # noqa: E402
from websockets.asyncio.client import ClientConnection, connect  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402

from bench.common import (  # noqa: E402
    FRAME_TIMEOUT,
    UNLIMITED,
    BenchmarkError,
    Client,
    ensure_postgres_database,
    latency_figures,
    make_room,
    open_client,
    room_socket_url,
    run_manage,
    sign_up,
    time_seeks,
)
from tests.support.redis_servers import RedisServer  # noqa: E402
from tests.support.servers import ProcessFailed, ServeProcess, start_node  # noqa: E402

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/synctv_bench_cluster"
TARGET_CROSS_NODE_P50_MS = 10.0
READY_TIMEOUT = 30.0
SETTLE_TIMEOUT = 300.0  # the join storm of a big room (every join sends everyone presence)
QUIET_SECS = 0.5
IDLE_TIMEOUT = 300.0  # the leave storm of a big room, like its join storm
STUCK_SECS = 15.0
# Each concurrent HTTP request holds a PostgreSQL connection of its own on the node until it
# is garbage-collected (CONN_MAX_AGE under ASGI): few at a time keeps far from max_connections.
GUEST_CONCURRENCY = 4
FRAME_TYPE = re.compile(rb'\{"type":"([a-z_]+)"')
VIEWER_COUNT = re.compile(rb'"viewer_count":(\d+)')
CONNECTIONS_LINE = re.compile(r'^synctv_connections_total\{node="([^"]*)"\} ([0-9.e+]+)$', re.M)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        default=DEFAULT_DATABASE_URL,
        help=f"PostgreSQL database of the nodes, created and migrated if needed "
        f"(default {DEFAULT_DATABASE_URL})",
    )
    parser.add_argument(
        "--redis-url", help="use this Redis instead of starting a redis-server on a free port"
    )
    parser.add_argument("--nodes", type=int, default=2, help="nodes to start (default 2)")
    parser.add_argument(
        "--scenarios",
        nargs="+",
        choices=("latency", "fanout"),
        default=["latency", "fanout"],
        help="what to run (default both)",
    )
    parser.add_argument("--seeks", type=int, default=500, help="latency: measured seeks (500)")
    parser.add_argument("--warmup", type=int, default=20, help="latency: seeks not counted (20)")
    parser.add_argument("--members", type=int, default=500, help="fan-out: room members (500)")
    parser.add_argument("--fanout-seeks", type=int, default=200, help="fan-out: seeks (200)")
    parser.add_argument(
        "--fanout-warmup", type=int, default=10, help="fan-out: seeks not counted (10)"
    )
    parser.add_argument(
        "--fanout-pace-ms",
        type=float,
        default=20.0,
        help="fan-out: at least this long between two seeks (default 20, i.e. at most 50/s)",
    )
    parser.add_argument(
        "--fanout-window",
        type=int,
        default=1,
        help="fan-out: at most this many seeks not yet received by every member (default 1: "
        "each seek waits until every member got the previous one); keeps the sockets' send "
        "queues from overflowing",
    )
    parser.add_argument(
        "--open-concurrency",
        type=int,
        default=20,
        help="fan-out: member sockets opened at once; the next ones once the room has "
        "settled (default 20)",
    )
    parser.add_argument("--keep-temp", action="store_true", help="keep the logs folder")
    args = parser.parse_args(argv)
    if args.nodes < 2:
        parser.error("--nodes must be at least 2")
    numbers = (args.seeks, args.members, args.fanout_seeks, args.fanout_window)
    if min(numbers) < 1 or min(args.warmup, args.fanout_warmup, args.fanout_pace_ms) < 0:
        parser.error("counts must be at least 1; warm-ups and the pace at least 0")
    if args.open_concurrency < 1:
        parser.error("--open-concurrency must be at least 1")
    return args


# --- the cluster under test --------------------------------------------------------------


class BenchCluster:
    """A redis-server (unless one is given) and N cluster-mode nodes on one PostgreSQL database."""

    def __init__(
        self, database_url: str, redis_url: str | None, node_count: int, workdir: Path
    ) -> None:
        self.database_url = database_url
        self.redis_url = redis_url
        self.node_count = node_count
        self.workdir = workdir
        self.tag = secrets.token_hex(3)
        self.redis: RedisServer | None = None
        self.nodes: list[ServeProcess] = []

    def start(self, room_limit: int) -> BenchCluster:
        """Migrate, start Redis and the nodes, and wait until every node is connected to Redis."""
        secret = secrets.token_urlsafe(32)
        database = {
            "SYNCTV__DATABASE__URL": self.database_url,
            "SYNCTV__SERVER__SECRET_KEY": secret,
        }
        ensure_postgres_database(self.database_url)
        run_manage(["migrate", "--no-input", "-v", "0"], database)
        if self.redis_url is None:
            self.redis = RedisServer(self.workdir / "redis").start()
            self.redis_url = self.redis.url
        env = {
            **database,
            "SYNCTV__REDIS__URL": self.redis_url,
            "SYNCTV__REDIS__KEY_PREFIX": f"synctv-bench-{self.tag}:",
            "SYNCTV__LOGGING__LEVEL": "WARNING",
            "SYNCTV__CLUSTER__SHUTDOWN_GRACE_SECS": "2",
            "SYNCTV__CLUSTER__CONNECTION_LIMITS__PER_ROOM": str(room_limit),
            **UNLIMITED,
        }
        for number in range(1, self.node_count + 1):
            node_id = f"bench{number}-{self.tag}"
            self.nodes.append(start_node(env, self.workdir, node_id=node_id))
        for node in self.nodes:
            node.wait_until(lambda n=node: redis_is_ok(n), READY_TIMEOUT, "/ready with Redis ok")
        return self

    def stop(self) -> None:
        """Stop the nodes, then Redis (each by pid: SIGTERM, SIGKILL after a deadline)."""
        for node in reversed(self.nodes):
            node.stop()
        if self.redis is not None:
            self.redis.stop()

    def log_tails(self) -> str:
        """The last lines of every node's log, for a failed run."""
        return "\n".join(
            f"--- {n.node_id} ({n.log_path}) ---\n{n.log_tail(15)}" for n in self.nodes
        )

    def __enter__(self) -> BenchCluster:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


def redis_is_ok(node: ServeProcess) -> bool:
    """True when the node's /ready says ready with `checks.redis` ok."""
    try:
        answer = httpx.get(f"{node.base_url}/ready", timeout=2.0)
        body = answer.json()
    except (httpx.HTTPError, ValueError):
        return False
    return answer.status_code == 200 and body.get("checks", {}).get("redis") == "ok"


async def open_connections(http: httpx.AsyncClient, node: ServeProcess) -> int:
    """The node's `synctv_connections_total` from /metrics."""
    answer = await http.get(f"{node.base_url}/metrics")
    return sum(int(float(value)) for _, value in CONNECTIONS_LINE.findall(answer.text))


async def viewer_count(http: httpx.AsyncClient, node: ServeProcess, room_id: str) -> int:
    """The room's viewer count (its presence rows in the database) from GET /api/rooms/{id}."""
    answer = await http.get(f"{node.base_url}/api/rooms/{room_id}")
    return int(answer.json()["room"]["viewer_count"])


async def wait_until_idle(nodes: list[ServeProcess], room_id: str | None = None) -> int:
    """Wait until no node has a socket open and `room_id` has no viewer left: the previous
    scenario's closes, and the presence updates they cause, are through.

    Returns what is still counted (0 when idle). Gives up with a warning when the count has
    not moved for STUCK_SECS, or after IDLE_TIMEOUT.
    """
    busy, changed = -1, time.perf_counter()
    async with httpx.AsyncClient(timeout=5.0) as http:
        try:
            async with asyncio.timeout(IDLE_TIMEOUT):
                while True:
                    now = sum([await open_connections(http, node) for node in nodes])
                    if room_id is not None and not now:
                        now = await viewer_count(http, nodes[0], room_id)
                    if now != busy:
                        busy, changed = now, time.perf_counter()
                    if not busy or time.perf_counter() - changed > STUCK_SECS:
                        break
                    await asyncio.sleep(0.2)
        except TimeoutError:
            pass
    if busy:
        print(
            f"warning: {busy} sockets or viewers still counted after the clients closed "
            "theirs (the server did not run their disconnect); going on",
            file=sys.stderr,
        )
    return busy


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc; 0.0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_sample(cluster: BenchCluster) -> dict[str, float]:
    """CPU seconds used so far by each node, Redis (when started here) and this process."""
    sample = {
        f"node{number}": cpu_seconds(node.pid) for number, node in enumerate(cluster.nodes, 1)
    }
    if cluster.redis is not None:
        sample["redis"] = cpu_seconds(cluster.redis.pid)
    sample["clients"] = time.process_time()
    return sample


# --- a) seek latency between two clients --------------------------------------------------


async def seek_latency(
    http_url: str, ws_a: str, ws_b: str, seeks: int, warmup: int
) -> dict[str, Any]:
    """Two new users in a new room, A on `ws_a` and B on `ws_b`; A's seeks timed until B sees them."""
    tag = secrets.token_hex(4)
    async with httpx.AsyncClient(base_url=http_url, timeout=30.0) as http:
        token_a = await sign_up(http, f"bench-a-{tag}")
        token_b = await sign_up(http, f"bench-b-{tag}")
        room_id = await make_room(http, token_a, "cross-node latency")
    a = await open_client(ws_a, room_id, token_a, "A")
    b = await open_client(ws_b, room_id, token_b, "B")
    try:
        return await time_seeks(a, b, seeks, warmup, pace_ms=0.0)
    finally:
        await a.close()
        await b.close()


# --- b) fan-out to a big room -------------------------------------------------------------


class Deliveries:
    """Every receipt of a timed seek by a member, and which seeks every member has seen."""

    def __init__(self, members: int) -> None:
        self.members = members
        self.sent: dict[float, float] = {}  # position -> perf_counter at send
        self.receipts: list[tuple[float, float]] = []  # (position, perf_counter at receipt)
        self.counts: dict[float, int] = {}
        self.everyone: dict[float, asyncio.Event] = {}

    def expect(self, position: float) -> None:
        """A seek to `position` is about to be sent."""
        self.counts[position] = 0
        self.everyone[position] = asyncio.Event()
        self.sent[position] = time.perf_counter()

    def received(self, position: float, at: float) -> None:
        """One member got the playback frame of `position`."""
        count = self.counts.get(position)
        if count is None:
            return  # not a seek of this run
        self.receipts.append((position, at))
        self.counts[position] = count + 1
        if count + 1 == self.members:
            self.everyone[position].set()


class Member:
    """One receiving socket: counts frames, timestamps playback frames; JSON parsed only there.

    Presence frames of a big room are large and frequent while it fills (each join sends
    everyone the whole list), so they are not parsed: only their viewer count is read.
    """

    def __init__(self, socket: ClientConnection, deliveries: Deliveries, activity: list[float]):
        self.socket = socket
        self.deliveries = deliveries
        self.activity = activity  # [perf_counter of the last frame any member got]
        self.viewers = 0
        self.frames = 0
        self.bytes = 0
        self.closed: str | None = None
        self.reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Read the snapshot, then keep reading in the background."""
        async with asyncio.timeout(FRAME_TIMEOUT):
            first = await self.socket.recv(decode=False)
        snapshot = json.loads(first)
        if snapshot.get("type") != "snapshot":
            raise BenchmarkError(f"a member got {first[:200]!r} instead of a snapshot")
        self.viewers = snapshot["viewer_count"]
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            while True:
                data = await self.socket.recv(decode=False)
                now = time.perf_counter()
                self.activity[0] = now
                self.frames += 1
                self.bytes += len(data)
                match = FRAME_TYPE.match(data)
                kind = match.group(1) if match else json.loads(data).get("type", "").encode()
                if kind == b"playback":
                    self.deliveries.received(json.loads(data)["playback"]["position"], now)
                elif kind == b"presence":
                    counted = VIEWER_COUNT.findall(data[-40:]) or VIEWER_COUNT.findall(data)
                    self.viewers = max(self.viewers, int(counted[-1]))
                elif kind == b"error":
                    self.closed = f"error frame {data[:200]!r}"
        except ConnectionClosed as exc:
            self.closed = f"closed: {exc}"

    async def close(self) -> None:
        """Close the socket (bounded by the connection's close_timeout) and stop reading."""
        try:
            await self.socket.close()
        finally:
            if self.reader is not None:
                self.reader.cancel()


async def create_guests(http_url: str, count: int) -> list[str]:
    """`count` guest accounts' tokens (POST /api/auth/guest)."""
    limit = asyncio.Semaphore(GUEST_CONCURRENCY)

    async def guest(http: httpx.AsyncClient, number: int) -> str:
        async with limit:
            answer = await http.post("/api/auth/guest", json={"name": f"member {number}"})
        if answer.status_code not in (200, 201):
            raise BenchmarkError(f"guest {number}: {answer.status_code} {answer.text}")
        return answer.json()["token"]

    async with httpx.AsyncClient(base_url=http_url, timeout=30.0) as http:
        return list(await asyncio.gather(*(guest(http, n) for n in range(count))))


async def fill_room(
    room_id: str,
    placement: list[ServeProcess],
    tokens: list[str],
    deliveries: Deliveries,
    batch: int,
    members: list[Member],
) -> None:
    """Open a member socket per token on `placement[i]`, adding each to `members`.

    The sockets are opened `batch` at a time, and the next batch waits until every member
    has seen the presence of the last one: each join sends the whole presence list to every
    member, so opening them all at once overflows the sockets' send queues (close 1013).
    """
    activity = [time.perf_counter()]

    async def join(node: ServeProcess, token: str) -> None:
        socket = await connect(
            room_socket_url(node.ws_url, room_id, token),
            open_timeout=FRAME_TIMEOUT,
            close_timeout=2,
            ping_interval=None,  # one busy loop for 500 sockets: no keepalive timeouts
            compression=None,
        )
        member = Member(socket, deliveries, activity)
        members.append(member)
        await member.start()

    pairs = list(zip(placement, tokens, strict=True))
    for start in range(0, len(pairs), batch):
        results = await asyncio.gather(
            *(join(node, token) for node, token in pairs[start : start + batch]),
            return_exceptions=True,
        )
        failures = [result for result in results if isinstance(result, BaseException)]
        if failures:
            raise BenchmarkError(
                f"{len(failures)} member sockets failed to open: {failures[0]!r}"
            ) from failures[0]
        # The sender is a viewer too.
        quiet = QUIET_SECS if start + batch >= len(pairs) else 0.0
        await wait_settled(members, len(members) + 1, activity, quiet)


async def close_members(members: list[Member], concurrency: int) -> None:
    """Close every member socket, `concurrency` at a time."""
    limit = asyncio.Semaphore(concurrency)

    async def close(member: Member) -> None:
        async with limit:
            await member.close()

    await asyncio.gather(*(close(member) for member in members), return_exceptions=True)


async def wait_settled(
    members: list[Member], viewers: int, activity: list[float], quiet: float
) -> None:
    """Wait until every member has seen `viewers` online, then until frames stopped for `quiet`."""
    try:
        async with asyncio.timeout(SETTLE_TIMEOUT):
            while True:
                closed = [member.closed for member in members if member.closed]
                if closed:
                    raise BenchmarkError(f"{len(closed)} members lost their socket: {closed[0]}")
                everyone_seen = all(member.viewers >= viewers for member in members)
                if everyone_seen and time.perf_counter() - activity[0] >= quiet:
                    return
                await asyncio.sleep(0.05)
    except TimeoutError:
        behind = sum(1 for member in members if member.viewers < viewers)
        raise BenchmarkError(
            f"{behind} of {len(members)} members did not see {viewers} viewers online within "
            f"{SETTLE_TIMEOUT:.0f} s"
        ) from None


async def wait_everyone(
    deliveries: Deliveries, position: float, members: list[Member], sender: Client
) -> None:
    """Wait until every member saw the seek to `position`; fail with what went wrong."""
    try:
        async with asyncio.timeout(FRAME_TIMEOUT):
            await deliveries.everyone[position].wait()
    except TimeoutError:
        closed = [member.closed for member in members if member.closed]
        problem = sender.problem.result() if sender.problem.done() else None
        raise BenchmarkError(
            f"seek {position}: {deliveries.counts[position]} of {deliveries.members} members "
            f"got it within {FRAME_TIMEOUT}s; {len(closed)} sockets closed "
            f"({closed[0] if closed else 'none'}); sender: {problem or 'ok'}"
        ) from None


async def fanout(
    cluster: BenchCluster,
    spread: int,
    tokens: list[str],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Members over the first `spread` nodes (round robin), sender on node 1; the figures."""
    nodes = cluster.nodes
    first = nodes[0]
    placement = [nodes[number % spread] for number in range(len(tokens))]
    deliveries = Deliveries(len(tokens))
    tag = secrets.token_hex(4)
    async with httpx.AsyncClient(base_url=first.base_url, timeout=30.0) as http:
        owner = await sign_up(http, f"bench-sender-{tag}")
        room_id = await make_room(http, owner, "fan-out")
    sender = await open_client(first.ws_url, room_id, owner, "sender")
    members: list[Member] = []
    try:
        await sender.start()
        opening = time.perf_counter()
        await fill_room(room_id, placement, tokens, deliveries, args.open_concurrency, members)
        join_secs = time.perf_counter() - opening
        join_bytes = sum(member.bytes for member in members)

        total = args.fanout_warmup + args.fanout_seeks
        positions = [10_000 + number + 0.5 for number in range(total)]
        next_send = time.perf_counter()
        for number, position in enumerate(positions):
            if number >= args.fanout_window:
                await wait_everyone(
                    deliveries, positions[number - args.fanout_window], members, sender
                )
            await asyncio.sleep(max(0.0, next_send - time.perf_counter()))
            if number == args.fanout_warmup:
                cpu_before = cpu_sample(cluster)
            deliveries.expect(position)
            await sender.socket.send(
                json.dumps({"type": "seek", "position": position, "req_id": number})
            )
            next_send = deliveries.sent[position] + args.fanout_pace_ms / 1000
        for position in positions[-args.fanout_window :]:
            await wait_everyone(deliveries, position, members, sender)
        cpu_after = cpu_sample(cluster)
        try:
            async with asyncio.timeout(FRAME_TIMEOUT):
                await sender.ack(total - 1)
        except TimeoutError:
            raise BenchmarkError(f"the sender got {len(sender.acks)} of {total} acks") from None
        member_errors = sum(1 for member in members if member.closed)
    finally:
        leaving = time.perf_counter()
        await close_members(members, args.open_concurrency)
        await sender.close()
    leftover = await wait_until_idle(nodes, room_id)
    leave_secs = time.perf_counter() - leaving - (STUCK_SECS if leftover else 0.0)

    counted = set(positions[args.fanout_warmup :])
    receipts = [(position, at) for position, at in deliveries.receipts if position in counted]
    latencies = [(at - deliveries.sent[position]) * 1000 for position, at in receipts]
    last_member: dict[float, float] = {}
    for position, at in receipts:
        last_member[position] = max(last_member.get(position, 0.0), at)
    everyone_ms = [(at - deliveries.sent[position]) * 1000 for position, at in last_member.items()]
    started = deliveries.sent[positions[args.fanout_warmup]]
    finished = max(last_member.values())
    received = len(receipts)
    figures = latency_figures(latencies)
    return {
        "members": len(tokens),
        "placement": [sum(1 for node in placement if node is n) for n in nodes[:spread]],
        "seeks": args.fanout_seeks,
        "deliveries": received,
        "expected": args.fanout_seeks * len(tokens),
        "elapsed_s": round(finished - started, 3),
        "deliveries_per_s": round(received / (finished - started)),
        "seeks_per_s": round(args.fanout_seeks / (finished - started), 1),
        "p50_ms": figures["p50_ms"],
        "p99_ms": figures["p99_ms"],
        "max_ms": figures["max_ms"],
        "everyone_p50_ms": latency_figures(everyone_ms)["p50_ms"],
        "everyone_p99_ms": latency_figures(everyone_ms)["p99_ms"],
        "join_s": round(join_secs, 1),
        "join_mb": round(join_bytes / 1e6, 1),
        "leave_s": round(leave_secs, 1),
        "leftover_viewers": leftover,
        "pace_ms": args.fanout_pace_ms,
        "window": args.fanout_window,
        "member_errors": member_errors,
        "cpu_s": {key: round(cpu_after[key] - cpu_before[key], 1) for key in cpu_after},
    }


# --- the run -------------------------------------------------------------------------------


async def run(cluster: BenchCluster, args: argparse.Namespace) -> dict[str, Any]:
    """Every scenario asked for, in order; their figures."""
    first, second = cluster.nodes[0], cluster.nodes[1]
    results: dict[str, Any] = {}
    if "latency" in args.scenarios:
        results["latency"] = {
            "cross_node": await seek_latency(
                first.base_url, first.ws_url, second.ws_url, args.seeks, args.warmup
            ),
            "same_node": await seek_latency(
                first.base_url, first.ws_url, first.ws_url, args.seeks, args.warmup
            ),
        }
        await wait_until_idle(cluster.nodes)
    if "fanout" in args.scenarios:
        tokens = await create_guests(first.base_url, args.members)
        spread = len(cluster.nodes)
        results["fanout"] = {"spread": await fanout(cluster, spread, tokens, args)}
        results["fanout"]["one_node"] = await fanout(cluster, 1, tokens, args)
    return results


def report(results: dict[str, Any], node_count: int) -> None:
    """The table."""
    if "latency" in results:
        latency = results["latency"]
        seeks, warmup = latency["cross_node"]["seeks"], latency["cross_node"]["warmup"]
        print(f"\nseek latency, {seeks} sequential seeks after {warmup} warm-up (ms)")
        print(f"{'clients':<28}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}{'seeks/s':>9}")
        for label, key in (
            ("A node 1 -> B node 2", "cross_node"),
            ("A node 1 -> B node 1", "same_node"),
        ):
            row = latency[key]
            print(
                f"{label:<28}{row['p50_ms']:>8.2f}{row['p90_ms']:>8.2f}{row['p99_ms']:>8.2f}"
                f"{row['max_ms']:>8.2f}{row['throughput_per_s']:>9.0f}"
            )
        verdict = "met" if latency["cross_node"]["p50_ms"] < TARGET_CROSS_NODE_P50_MS else "MISSED"
        print(f"target: cross-node p50 under {TARGET_CROSS_NODE_P50_MS:.0f} ms: {verdict}")
    if "fanout" in results:
        fan = results["fanout"]
        spread = fan["spread"]
        print(
            f"\nfan-out: {spread['members']} members, {spread['seeks']} seeks "
            f"(pace {spread['pace_ms']:g} ms, window {spread['window']}), sender on node 1"
        )
        print(
            f"{'members':<24}{'deliv/s':>9}{'seeks/s':>9}{'p50 ms':>8}{'p99 ms':>8}"
            f"{'max ms':>8}{'all p50':>9}{'all p99':>9}{'join s':>8}{'leave s':>9}"
        )
        for key in ("spread", "one_node"):
            row = fan[key]
            label = (
                "/".join(str(n) for n in row["placement"]) + f" over {node_count} nodes"
                if key == "spread"
                else f"{row['members']} on node 1"
            )
            print(
                f"{label:<24}{row['deliveries_per_s']:>9}{row['seeks_per_s']:>9.1f}"
                f"{row['p50_ms']:>8.1f}{row['p99_ms']:>8.1f}{row['max_ms']:>8.1f}"
                f"{row['everyone_p50_ms']:>9.1f}{row['everyone_p99_ms']:>9.1f}{row['join_s']:>8.1f}"
                f"{row['leave_s']:>9.1f}"
            )
        cores = os.cpu_count() or 1
        for key in ("spread", "one_node"):
            row = fan[key]
            used = ", ".join(f"{name} {seconds:.1f}" for name, seconds in row["cpu_s"].items())
            print(
                f"CPU seconds during the {row['elapsed_s']:.1f} s of seeks ({key}; "
                f"{cores} cores): {used}"
            )
            if row["leftover_viewers"]:
                print(f"  {row['leftover_viewers']} viewers still counted after everyone left")


def without_password(url: str) -> str:
    """A URL safe to print."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")).geturl()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 on success, 1 when it could not measure."""
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="synctv-bench-cluster-"))
    cluster = BenchCluster(args.database_url, args.redis_url, args.nodes, workdir)
    try:
        with cluster:
            cluster.start(room_limit=max(1000, args.members + 10))
            for node in cluster.nodes:
                print(f"started node {node.node_id} at {node.base_url} (pid {node.pid})")
            redis = f"redis-server pid {cluster.redis.pid}" if cluster.redis else "given"
            print(f"Redis {cluster.redis_url} ({redis}); logs in {workdir}")
            results = asyncio.run(run(cluster, args))
    except (BenchmarkError, ProcessFailed, OSError, httpx.HTTPError, TimeoutError) as exc:
        print(f"cross_node: {str(exc) or type(exc).__name__}", file=sys.stderr)
        print(cluster.log_tails(), file=sys.stderr)
        return 1
    finally:
        if not args.keep_temp:
            shutil.rmtree(workdir, ignore_errors=True)
    report(results, args.nodes)
    summary = {
        "benchmark": "cross_node",
        "nodes": args.nodes,
        "database": without_password(args.database_url),
        "redis": "started" if args.redis_url is None else without_password(args.redis_url),
        **results,
    }
    if "latency" in results:
        summary["target_cross_node_p50_ms"] = TARGET_CROSS_NODE_P50_MS
        summary["target_met"] = (
            results["latency"]["cross_node"]["p50_ms"] < TARGET_CROSS_NODE_P50_MS
        )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())

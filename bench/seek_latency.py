#!/usr/bin/env python
"""Seek latency: how long a `seek` sent by client A takes to reach client B as `playback`.

Starts its own `manage.py serve` on a free port (embedded SQLite in a temporary folder, or
--database-url), or measures a running server (--url). Signs up two users, creates a room,
connects A and B, sends the seeks one at a time (each waits until B has seen it) and reports
p50/p90/p99/max in milliseconds and the throughput; the last line is a JSON summary.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import httpx  # noqa: E402
from websockets.asyncio.client import ClientConnection, connect  # noqa: E402

from rooms.codes import ErrorCode  # noqa: E402
from tests.support.servers import ProcessFailed, ServeProcess, node_env  # noqa: E402

PASSWORD = "bench-password-123"
FRAME_TIMEOUT = 10.0
# The server this script starts must not rate-limit the benchmark's own client.
UNLIMITED = {
    "SYNCTV__WEBSOCKET__RATE_LIMIT_PER_SEC": "1000000",
    "SYNCTV__WEBSOCKET__RATE_LIMIT_BURST": "1000000",
}


class BenchmarkError(RuntimeError):
    """The benchmark could not run or measure (server refused, frames missing, errors)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--url", help="measure a running server (http://host:port)")
    target.add_argument(
        "--database-url",
        help="start a server on this database (postgresql://...; created and migrated if "
        "needed); default: embedded SQLite in a temporary folder",
    )
    parser.add_argument("--seeks", type=int, default=500, help="measured seeks (default 500)")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured seeks first (20)")
    parser.add_argument(
        "--pace-ms",
        type=float,
        default=0.0,
        help="pause between seeks; a --url server limits each socket to "
        "websocket.rate_limit_per_sec (20/s by default), so use about 60 there",
    )
    parser.add_argument("--keep-temp", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    if args.seeks < 1 or args.warmup < 0 or args.pace_ms < 0:
        parser.error("--seeks must be at least 1; --warmup and --pace-ms at least 0")
    return args


# --- the server under test ------------------------------------------------------------


def run_manage(arguments: list[str], env: dict[str, str]) -> None:
    """`manage.py <arguments>` with the server's environment; fails with its output."""
    result = subprocess.run(
        [sys.executable, "manage.py", *arguments],
        cwd=REPO_ROOT,
        env=node_env(env),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise BenchmarkError(f"manage.py {' '.join(arguments)} failed:\n{result.stderr}")


def ensure_postgres_database(url: str) -> None:
    """Create the database of a postgresql:// URL when it does not exist yet."""
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not name:
        raise BenchmarkError(f"{url}: no database name")
    # libpq knows postgresql:// and postgres://; SyncTV also accepts pgsql://.
    maintenance = parts._replace(scheme="postgresql", path="/postgres").geturl()
    with psycopg.connect(maintenance, autocommit=True, connect_timeout=5) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def start_server(database_url: str | None, workdir: Path) -> tuple[ServeProcess, str]:
    """Migrate the database, then start `manage.py serve` on a free port; (node, database kind)."""
    if database_url is None:
        database_url = f"sqlite:///{workdir / 'synctv.sqlite3'}"
    kind = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    if kind == "postgresql":
        ensure_postgres_database(database_url)
    env = {
        "SYNCTV__DATABASE__URL": database_url,
        "SYNCTV__SERVER__SECRET_KEY": secrets.token_urlsafe(32),
        "SYNCTV__LOGGING__LEVEL": "WARNING",
        **UNLIMITED,
    }
    run_manage(["migrate", "--no-input", "-v", "0"], env)
    node = ServeProcess(env, workdir, node_id=f"bench-{secrets.token_hex(3)}")
    return node.start(), kind


# --- clients -----------------------------------------------------------------------------


async def sign_up(http: httpx.AsyncClient, username: str) -> str:
    """A new account's bearer token."""
    answer = await http.post("/api/auth/signup", json={"username": username, "password": PASSWORD})
    if answer.status_code != 201:
        raise BenchmarkError(f"signup {username}: {answer.status_code} {answer.text}")
    return answer.json()["token"]


async def make_room(http: httpx.AsyncClient, token: str) -> str:
    """A new room with one movie; its id."""
    auth = {"Authorization": f"Bearer {token}"}
    answer = await http.post("/api/rooms", json={"name": "seek latency"}, headers=auth)
    if answer.status_code != 201:
        raise BenchmarkError(f"create room: {answer.status_code} {answer.text}")
    room_id = answer.json()["room"]["id"]
    movie = {"url": "https://example.com/bench.mp4", "title": "bench"}
    answer = await http.post(f"/api/rooms/{room_id}/movies", json=movie, headers=auth)
    if answer.status_code != 201:
        raise BenchmarkError(f"add movie: {answer.status_code} {answer.text}")
    return room_id


class Client:
    """One room socket whose frames a reader task sorts: playback (timestamped), acks, errors."""

    def __init__(self, socket: ClientConnection, name: str) -> None:
        self.socket = socket
        self.name = name
        self.playback: asyncio.Queue[tuple[float, dict[str, Any]]] = asyncio.Queue()
        self.acks: dict[Any, dict[str, Any]] = {}
        self.problem: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.ack_waiters: dict[Any, asyncio.Future[dict[str, Any]]] = {}
        self.reader: asyncio.Task[None] | None = None

    async def start(self) -> dict[str, Any]:
        """Read the snapshot, then keep reading in the background; returns the snapshot."""
        async with asyncio.timeout(FRAME_TIMEOUT):
            snapshot = json.loads(await self.socket.recv())
        if snapshot.get("type") != "snapshot":
            raise BenchmarkError(f"{self.name}: expected a snapshot first, got {snapshot}")
        self.reader = asyncio.create_task(self._read())
        return snapshot

    async def _read(self) -> None:
        try:
            async for text in self.socket:
                received = time.perf_counter()
                frame = json.loads(text)
                if frame["type"] == "playback":
                    self.playback.put_nowait((received, frame))
                elif frame["type"] == "ack":
                    self.acks[frame.get("req_id")] = frame
                    waiter = self.ack_waiters.pop(frame.get("req_id"), None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(frame)
                elif frame["type"] == "error" and not self.problem.done():
                    hint = ""
                    if frame.get("code") == ErrorCode.RATE_LIMITED:
                        hint = " (the server rate-limits each socket: pass --pace-ms)"
                    self.problem.set_result(f"{self.name} got an error: {frame}{hint}")
        except Exception as exc:  # a closed socket ends the benchmark with its reason
            if not self.problem.done():
                self.problem.set_result(f"{self.name}'s socket failed: {exc!r}")
        if not self.problem.done():
            self.problem.set_result(f"{self.name}'s socket was closed by the server")

    async def ack(self, req_id: Any) -> dict[str, Any]:
        """The `ack` of the request `req_id`, once it arrives."""
        if req_id in self.acks:
            return self.acks[req_id]
        waiter = self.ack_waiters.setdefault(req_id, asyncio.get_running_loop().create_future())
        return await waiter

    async def close(self) -> None:
        """Close the socket and stop reading."""
        await self.socket.close()
        if self.reader is not None:
            self.reader.cancel()


async def open_client(ws_url: str, room_id: str, token: str, name: str) -> Client:
    """A connected, reading client of the room."""
    socket = await connect(
        f"{ws_url}/ws/rooms/{room_id}/?token={quote(token, safe='')}", open_timeout=FRAME_TIMEOUT
    )
    return Client(socket, name)


async def seen_by(receiver: Client, sender: Client, position: float) -> tuple[float, dict]:
    """When `receiver` got the playback frame of the seek to `position` (errors end the run)."""
    while True:
        getting = asyncio.ensure_future(receiver.playback.get())
        done, _ = await asyncio.wait(
            {getting, receiver.problem, sender.problem},
            timeout=FRAME_TIMEOUT,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if getting not in done:
            getting.cancel()
            for problem in (sender.problem, receiver.problem):
                if problem.done():
                    raise BenchmarkError(problem.result())
            raise BenchmarkError(f"no playback frame at {position} within {FRAME_TIMEOUT}s")
        received, frame = getting.result()
        if frame["playback"]["position"] == position:
            return received, frame


# --- measuring ---------------------------------------------------------------------------


def percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


async def measure(base_url: str, seeks: int, warmup: int, pace_ms: float) -> dict[str, Any]:
    """Run the seeks and return the figures."""
    ws_url = "ws" + base_url.removeprefix("http")
    tag = secrets.token_hex(4)
    async with httpx.AsyncClient(base_url=base_url, timeout=30.0) as http:
        token_a = await sign_up(http, f"bench-a-{tag}")
        token_b = await sign_up(http, f"bench-b-{tag}")
        room_id = await make_room(http, token_a)
    a = await open_client(ws_url, room_id, token_a, "A")
    b = await open_client(ws_url, room_id, token_b, "B")
    try:
        version = (await a.start())["playback"]["version"]
        await b.start()
        latencies: list[float] = []
        version_gaps = 0
        started = 0.0
        for number in range(warmup + seeks):
            if number == warmup:
                started = time.perf_counter()
            position = number + 0.5  # unique, exact in JSON
            sent = time.perf_counter()
            await a.socket.send(
                json.dumps({"type": "seek", "position": position, "req_id": number})
            )
            received, frame = await seen_by(b, a, position)
            if frame["playback"]["version"] != version + 1:
                version_gaps += 1
            version = frame["playback"]["version"]
            if number >= warmup:
                latencies.append((received - sent) * 1000)
            if pace_ms:
                await asyncio.sleep(pace_ms / 1000)
        elapsed = time.perf_counter() - started
        async with asyncio.timeout(FRAME_TIMEOUT):
            await a.ack(warmup + seeks - 1)  # acks come in order: the last one means all
        if a.problem.done() or b.problem.done():
            raise BenchmarkError((a.problem if a.problem.done() else b.problem).result())
    finally:
        await a.close()
        await b.close()
    ordered = sorted(latencies)
    return {
        "seeks": seeks,
        "warmup": warmup,
        "p50_ms": round(percentile(ordered, 0.50), 3),
        "p90_ms": round(percentile(ordered, 0.90), 3),
        "p99_ms": round(percentile(ordered, 0.99), 3),
        "max_ms": round(ordered[-1], 3),
        "mean_ms": round(sum(ordered) / len(ordered), 3),
        "throughput_per_s": round(seeks / elapsed, 1),
        "acks": len(a.acks),
        "version_gaps": version_gaps,
        "pace_ms": pace_ms,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 on success, 1 when it could not measure."""
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="synctv-bench-"))
    node: ServeProcess | None = None
    try:
        if args.url:
            base_url, database = args.url.rstrip("/"), "external"
        else:
            node, database = start_server(args.database_url, workdir)
            base_url = node.base_url
            print(f"started {node.describe()} (pid {node.pid}, {database}); log {node.log_path}")
        figures = asyncio.run(measure(base_url, args.seeks, args.warmup, args.pace_ms))
    except (BenchmarkError, ProcessFailed, OSError, httpx.HTTPError, TimeoutError) as exc:
        print(f"seek_latency: {exc or type(exc).__name__}", file=sys.stderr)
        if node is not None:
            print(node.log_tail(20), file=sys.stderr)
        return 1
    finally:
        if node is not None:
            node.stop()
        if not args.keep_temp:
            shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"{figures['seeks']} seeks A -> B ({database}, after {figures['warmup']} warm-up): "
        f"p50 {figures['p50_ms']:.2f} ms, p90 {figures['p90_ms']:.2f} ms, "
        f"p99 {figures['p99_ms']:.2f} ms, max {figures['max_ms']:.2f} ms; "
        f"{figures['throughput_per_s']:.0f} seeks/s one at a time"
    )
    print(
        json.dumps(
            {"benchmark": "seek_latency", "target": base_url, "database": database, **figures}
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

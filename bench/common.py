"""What the benchmarks share: the bench database, accounts and rooms over HTTP, room sockets
read in the background, timing seeks from one client to another, and percentiles.

Imported by bench/seek_latency.py and bench/cross_node.py (run from the repository root).
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from websockets.asyncio.client import ClientConnection, connect

from rooms.codes import ErrorCode
from tests.support.servers import node_env

REPO_ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench-password-123"
FRAME_TIMEOUT = 10.0
# The servers a benchmark starts must not rate-limit the benchmark's own clients (frames,
# nor the thousands of guests it signs up from one address).
UNLIMITED = {
    "SYNCTV__WEBSOCKET__RATE_LIMIT_PER_SEC": "1000000",
    "SYNCTV__WEBSOCKET__RATE_LIMIT_BURST": "1000000",
    "SYNCTV__AUTH__THROTTLE__ENABLED": "false",
}


class BenchmarkError(RuntimeError):
    """The benchmark could not run or measure (server refused, frames missing, errors)."""


# --- the database ------------------------------------------------------------------------


def run_manage(arguments: list[str], env: dict[str, str]) -> None:
    """`manage.py <arguments>` with a server's environment; fails with its output."""
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


# --- accounts and rooms ------------------------------------------------------------------


async def sign_up(http: httpx.AsyncClient, username: str) -> str:
    """A new account's bearer token."""
    answer = await http.post("/api/auth/signup", json={"username": username, "password": PASSWORD})
    if answer.status_code != 201:
        raise BenchmarkError(f"signup {username}: {answer.status_code} {answer.text}")
    return answer.json()["token"]


async def make_room(http: httpx.AsyncClient, token: str, name: str = "seek latency") -> str:
    """A new room with one movie; its id."""
    auth = {"Authorization": f"Bearer {token}"}
    answer = await http.post("/api/rooms", json={"name": name}, headers=auth)
    if answer.status_code != 201:
        raise BenchmarkError(f"create room: {answer.status_code} {answer.text}")
    room_id = answer.json()["room"]["id"]
    movie = {"url": "https://example.com/bench.mp4", "title": "bench"}
    answer = await http.post(f"/api/rooms/{room_id}/movies", json=movie, headers=auth)
    if answer.status_code != 201:
        raise BenchmarkError(f"add movie: {answer.status_code} {answer.text}")
    return room_id


def room_socket_url(ws_url: str, room_id: str, token: str) -> str:
    """`ws://host:port/ws/rooms/{id}/?token=...`."""
    return f"{ws_url}/ws/rooms/{room_id}/?token={quote(token, safe='')}"


# --- room sockets ------------------------------------------------------------------------


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
    """A connected client of the room (call `start()` to read its snapshot)."""
    socket = await connect(room_socket_url(ws_url, room_id, token), open_timeout=FRAME_TIMEOUT)
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


def latency_figures(latencies_ms: list[float]) -> dict[str, float]:
    """p50, p90, p99, max and mean of some latencies in milliseconds, rounded to 3 places."""
    ordered = sorted(latencies_ms)
    return {
        "p50_ms": round(percentile(ordered, 0.50), 3),
        "p90_ms": round(percentile(ordered, 0.90), 3),
        "p99_ms": round(percentile(ordered, 0.99), 3),
        "max_ms": round(ordered[-1], 3),
        "mean_ms": round(sum(ordered) / len(ordered), 3),
    }


async def time_seeks(
    a: Client, b: Client, seeks: int, warmup: int, pace_ms: float
) -> dict[str, Any]:
    """A sends `warmup + seeks` seeks one at a time, each once B saw the previous one.

    Returns the latencies (send by A → receipt by B) of the last `seeks`, the throughput of
    those round trips, the acks A got and the version gaps B saw (should be 0).
    """
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
        await a.socket.send(json.dumps({"type": "seek", "position": position, "req_id": number}))
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
    return {
        "seeks": seeks,
        "warmup": warmup,
        **latency_figures(latencies),
        "throughput_per_s": round(seeks / elapsed, 1),
        "acks": len(a.acks),
        "version_gaps": version_gaps,
        "pace_ms": pace_ms,
    }

"""The people and rooms of a harness run, made over SyncTV's HTTP API (SPEC §3).

Guests (POST /api/auth/guest) are made once per run in the bench database and reused by
every scenario and every SyncTV server of the run; rooms are made by guests, so each room
has a creator among its members. A room without a password is joined by opening its socket
(SPEC §4), so members need no join call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from bench.common import BenchmarkError, make_room

# Each concurrent request holds a PostgreSQL connection on the node for a while (CONN_MAX_AGE
# under ASGI): a few at a time keeps far from max_connections.
HTTP_CONCURRENCY = 6
RETRIES = 5
RETRY_SECS = 1.0


async def retried(
    limit: asyncio.Semaphore, request: Callable[[], Awaitable[httpx.Response]]
) -> httpx.Response:
    """`request()` under `limit`, again after a pause when the server answers 5xx (a node
    short of database connections recovers once the ones it holds are released)."""
    for attempt in range(RETRIES):
        async with limit:
            answer = await request()
        if answer.status_code < 500 or attempt == RETRIES - 1:
            return answer
        await asyncio.sleep(RETRY_SECS * (attempt + 1))
    raise AssertionError("unreachable")


@dataclass
class People:
    """Guest tokens in order of creation, and rooms already made (by layout name)."""

    tokens: list[str] = field(default_factory=list)
    rooms: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0

    async def ensure_guests(self, base_url: str, count: int) -> None:
        """At least `count` guests."""
        missing = count - len(self.tokens)
        if missing <= 0:
            return
        started = time.perf_counter()
        limit = asyncio.Semaphore(HTTP_CONCURRENCY)
        first = len(self.tokens)

        async def guest(http: httpx.AsyncClient, number: int) -> str:
            body = {"name": f"guest {number}"}
            answer = await retried(limit, lambda: http.post("/api/auth/guest", json=body))
            if answer.status_code not in (200, 201):
                raise BenchmarkError(f"guest {number}: {answer.status_code} {answer.text[:300]}")
            return answer.json()["token"]

        async with httpx.AsyncClient(base_url=base_url, timeout=60.0) as http:
            made = await asyncio.gather(*(guest(http, first + n) for n in range(missing)))
        self.tokens.extend(made)
        elapsed = time.perf_counter() - started
        self.seconds += elapsed
        print(f"  made {missing:,} guests in {elapsed:.1f} s", flush=True)

    async def ensure_rooms(self, base_url: str, layout: str, creators: list[int]) -> list[str]:
        """The rooms of `layout`, one made by each guest index in `creators` (with a movie)."""
        if layout in self.rooms:
            return self.rooms[layout]
        limit = asyncio.Semaphore(HTTP_CONCURRENCY)

        async def room(http: httpx.AsyncClient, creator: int) -> str:
            for attempt in range(RETRIES):
                try:
                    async with limit:
                        return await make_room(http, self.tokens[creator], f"bench {layout}")
                except BenchmarkError:
                    if attempt == RETRIES - 1:
                        raise
                    await asyncio.sleep(RETRY_SECS * (attempt + 1))
            raise AssertionError("unreachable")

        async with httpx.AsyncClient(base_url=base_url, timeout=60.0) as http:
            made = await asyncio.gather(*(room(http, creator) for creator in creators))
        self.rooms[layout] = list(made)
        if len(made) > 1:
            print(f"  made {len(made):,} rooms for ({layout[0]})", flush=True)
        return self.rooms[layout]

"""Real clients of real nodes: httpx for the HTTP API, websockets for room sockets.

The plain helpers (`as_guest`, `create_room`, `open_socket`, `next_frame`, ...) drive one
socket frame by frame. `room_client()` opens a `RoomClient`, which reads every frame in
the background and keeps them all, in order, so a test can wait for one frame and later
count every frame of a kind (exactly once, in order) or find the close code. Every wait
is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

FRAME_TIMEOUT = 5.0
Frame = dict[str, Any]
_req_ids = itertools.count(1)


def unique(prefix: str) -> str:
    """`prefix-` and eight random hex digits."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def http_client(node) -> httpx.AsyncClient:
    """An httpx client of `node` (an async context manager), every request bounded."""
    return httpx.AsyncClient(base_url=node.base_url, timeout=FRAME_TIMEOUT)


def metric_value(text: str, name: str, labels: str) -> float:
    """The value of one series of a Prometheus text page (`labels` as written: `node="a"`);
    0 when the series is absent (a counter that never counted)."""
    match = re.search(rf"^{name}\{{{re.escape(labels)}\}} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def bearer(token: str) -> dict[str, str]:
    """The Authorization header of a token."""
    return {"Authorization": f"Bearer {token}"}


async def as_guest(http: httpx.AsyncClient, name: str) -> str:
    """Sign in as a new guest over HTTP; the token."""
    answer = await http.post("/api/auth/guest", json={"name": name})
    assert answer.status_code == 200, answer.text
    return answer.json()["token"]


async def create_room(http: httpx.AsyncClient, token: str, name: str = "Movie night") -> dict:
    """Create a room over HTTP; the room."""
    answer = await http.post("/api/rooms", json={"name": name}, headers=bearer(token))
    assert answer.status_code == 201, answer.text
    return answer.json()["room"]


async def add_movie(
    http: httpx.AsyncClient,
    token: str,
    room_id: str,
    url: str = "https://example.com/film.mp4",
    title: str = "Film",
) -> dict:
    """Add a movie to a room's playlist over HTTP; the movie."""
    answer = await http.post(
        f"/api/rooms/{room_id}/movies", json={"url": url, "title": title}, headers=bearer(token)
    )
    assert answer.status_code == 201, answer.text
    return answer.json()["movie"]


def open_socket(node, room_id: str, token: str, **options):
    """A websockets connection (async context manager) to a room on `node`."""
    return connect(node.room_socket_url(room_id, token), open_timeout=FRAME_TIMEOUT, **options)


async def next_frame(socket, kind: str, matches=lambda frame: True) -> dict:
    """The next frame of type `kind` that `matches`, skipping others (presence, ...)."""
    async with asyncio.timeout(FRAME_TIMEOUT):
        while True:
            frame = json.loads(await socket.recv())
            if frame["type"] == kind and matches(frame):
                return frame


async def close_code_of(socket) -> int:
    """Read until the server closes the socket; its close code."""
    async with asyncio.timeout(FRAME_TIMEOUT):
        try:
            while True:
                await socket.recv()
        except ConnectionClosed as closed:
            assert closed.rcvd is not None, "the server closed without a close frame"
            return closed.rcvd.code


def playback_version(frame: Frame) -> int | None:
    """The playback version a frame tells (snapshot, playback, ack of a command), if any."""
    if frame["type"] in ("snapshot", "playback"):
        return frame["playback"]["version"]
    if frame["type"] == "ack":
        return frame.get("version")
    return None


class RoomClient:
    """One open room socket whose frames a background task reads and keeps in `frames`."""

    def __init__(self, socket: ClientConnection, label: str) -> None:
        self.socket = socket
        self.label = label
        self.frames: list[Frame] = []
        self.close_code: int | None = None
        self.closed = asyncio.Event()
        self._arrived = asyncio.Event()
        self._reader = asyncio.create_task(self._read(), name=f"room-client-{label}")

    async def _read(self) -> None:
        try:
            while True:
                self.frames.append(json.loads(await self.socket.recv()))
                self._arrived.set()
        except ConnectionClosed as closed:
            self.close_code = closed.rcvd.code if closed.rcvd is not None else None
        finally:
            self.closed.set()
            self._arrived.set()

    @property
    def snapshot(self) -> Frame:
        """The first frame, the snapshot."""
        assert self.frames and self.frames[0]["type"] == "snapshot", self.frames[:1]
        return self.frames[0]

    def mark(self) -> int:
        """Where the frames received so far end: pass it as `after` to wait for newer ones."""
        return len(self.frames)

    def of_type(self, kind: str, after: int = 0) -> list[Frame]:
        """Every frame of type `kind` received so far (from index `after`), in order."""
        return [frame for frame in self.frames[after:] if frame["type"] == kind]

    def highest_version(self) -> int:
        """The highest playback version this client has seen (what it keeps: last write wins)."""
        versions = [playback_version(frame) for frame in self.frames]
        return max((version for version in versions if version is not None), default=-1)

    async def wait_until(
        self, condition: Callable[[], Any], what: str, within: float = FRAME_TIMEOUT
    ) -> Any:
        """Wait until `condition()` is true (checked after each frame); return its value."""
        try:
            async with asyncio.timeout(within):
                while True:
                    self._arrived.clear()
                    result = condition()
                    if result:
                        return result
                    if self.closed.is_set():
                        raise AssertionError(
                            f"{self.label}: closed ({self.close_code}) before {what}; "
                            f"last frames: {self.frames[-5:]}"
                        )
                    await self._arrived.wait()
        except TimeoutError:
            raise AssertionError(
                f"{self.label}: no {what} within {within:g}s; last frames: {self.frames[-5:]}"
            ) from None

    async def wait_for(
        self,
        kind: str,
        matches: Callable[[Frame], Any] = lambda frame: True,
        after: int = 0,
        within: float = FRAME_TIMEOUT,
    ) -> Frame:
        """The first frame of type `kind` from index `after` that `matches` (waiting for it)."""

        def found() -> Frame | None:
            return next((f for f in self.of_type(kind, after) if matches(f)), None)

        return await self.wait_until(found, f"{kind} frame", within)

    async def wait_for_version(self, version: int, within: float = FRAME_TIMEOUT) -> int:
        """Wait until this client has seen playback `version` or a higher one."""
        return await self.wait_until(
            lambda: self.highest_version() >= version and self.highest_version(),
            f"playback version {version}",
            within,
        )

    async def send(self, frame: Frame) -> None:
        """Send one frame."""
        async with asyncio.timeout(FRAME_TIMEOUT):
            await self.socket.send(json.dumps(frame))

    async def request(self, frame: Frame, within: float = FRAME_TIMEOUT) -> Frame:
        """Send a command with a fresh req_id; the frame that answers it (ack, error, ...)."""
        req_id = f"{self.label}-{next(_req_ids)}"
        after = self.mark()
        await self.send({**frame, "req_id": req_id})

        def answered() -> Frame | None:
            return next(
                (f for f in self.frames[after:] if f.get("req_id") == req_id),
                None,
            )

        return await self.wait_until(answered, f"answer to {frame['type']}", within)

    async def timed_request(
        self, frame: Frame, within: float = FRAME_TIMEOUT
    ) -> tuple[Frame, float]:
        """`request`, and how many seconds the answer took."""
        started = time.monotonic()
        answer = await self.request(frame, within)
        return answer, time.monotonic() - started

    async def wait_closed(self, within: float = FRAME_TIMEOUT) -> int | None:
        """Wait until the socket is closed; the server's close code (None: no close frame)."""
        try:
            async with asyncio.timeout(within):
                await self.closed.wait()
        except TimeoutError:
            raise AssertionError(f"{self.label}: still open after {within:g}s") from None
        return self.close_code

    async def close(self) -> None:
        """Close the socket (bounded) and stop reading."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(FRAME_TIMEOUT):
                await self.socket.close()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)


@contextlib.asynccontextmanager
async def room_client(node, room_id: str, token: str, label: str = "") -> AsyncIterator[RoomClient]:
    """A RoomClient of a room on `node`, once its snapshot arrived; closed on exit."""
    socket = await connect(
        node.room_socket_url(room_id, token), open_timeout=FRAME_TIMEOUT, close_timeout=2
    )
    client = RoomClient(socket, label or f"client@{node.node_id}")
    try:
        await client.wait_until(lambda: client.frames, "snapshot")
        assert client.frames[0]["type"] == "snapshot", client.frames[0]
        yield client
    finally:
        await client.close()

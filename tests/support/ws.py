"""Room sockets for in-process tests: Channels' WebsocketCommunicator with a frame buffer.

Every wait is bounded by a deadline. Frames that arrive while a test waits for another
type are kept, in order, so a test may ask for them afterwards whatever order the
consumer sent them in. A test module uses the fixtures by importing them:
`from tests.support.ws import socket_pool  # noqa: F401`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.db import connections
from django.test import Client

from synctv_project.asgi import application

# Bounds every wait; generous because only a bug makes it matter.
DEADLINE = 3.0
# How long "nothing more arrives" is watched for; a frame that is due comes far sooner.
QUIET = 0.1
HOST = "testserver"

Frame = dict[str, Any]
_req_ids = itertools.count(1)


def next_req_id() -> str:
    """A req_id no other request of the test run uses."""
    return f"r{next(_req_ids)}"


def session_cookie(user: Any) -> str:
    """A `Cookie` header value that signs `user` in through a Django session (sync code)."""
    client = Client()
    client.force_login(user)
    name = django_settings.SESSION_COOKIE_NAME
    return f"{name}={client.cookies[name].value}"


class RoomSocket:
    """One WebSocket to `/ws/rooms/{room_id}/`, run in-process by a WebsocketCommunicator."""

    def __init__(
        self,
        room_id: str,
        token: str | None = None,
        origin: str | None = None,
        cookie: str | None = None,
        host: str = HOST,
    ) -> None:
        path = f"/ws/rooms/{room_id}/" + (f"?token={token}" if token else "")
        headers = [(b"host", host.encode())]
        if origin is not None:
            headers.append((b"origin", origin.encode()))
        if cookie is not None:
            headers.append((b"cookie", cookie.encode()))
        self.communicator = WebsocketCommunicator(application, path, headers=headers)
        self.frames: list[Frame] = []  # received and not yet asked for, oldest first
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.snapshot: Frame | None = None
        self._ended = False

    @property
    def closed(self) -> bool:
        """Whether the server closed (or refused) this socket."""
        return self.close_code is not None

    async def connect(self) -> bool:
        """Open the handshake; False when the server refused it (close_code says how)."""
        accepted, detail = await self.communicator.connect(timeout=DEADLINE)
        if not accepted:
            self.close_code = detail
        return accepted

    # --- what the server sends -------------------------------------------------------

    async def _next_output(self, within: float) -> dict[str, Any] | None:
        """The next ASGI message the app sent, or None after `within` seconds.

        Reads the communicator's queue directly: its receive_output() cancels the app on a
        timeout, which would make "nothing arrived" checks kill the socket under test.
        """
        queue = self.communicator.output_queue
        app = self.communicator.future
        if queue.empty() and app.done():
            app.result()
            raise AssertionError(f"the socket's consumer stopped; frames so far: {self.frames}")
        getter = asyncio.ensure_future(queue.get())
        try:
            await asyncio.wait({getter, app}, timeout=within, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not getter.done():
                getter.cancel()
        if getter.done() and not getter.cancelled():
            return getter.result()
        if app.done():
            app.result()
            raise AssertionError(f"the socket's consumer stopped; frames so far: {self.frames}")
        return None

    async def _read_one(self, within: float) -> Frame | None:
        """Read one message: a text frame is returned; a close is recorded (None)."""
        if self.closed:
            return None
        message = await self._next_output(within)
        if message is None:
            return None
        if message["type"] == "websocket.close":
            self.close_code = message.get("code", 1000)
            self.close_reason = message.get("reason")
            return None
        assert message["type"] == "websocket.send", message
        assert "text" in message, f"the server sent a binary frame: {message!r}"
        frame = json.loads(message["text"])
        assert isinstance(frame, dict) and "type" in frame, frame
        return frame

    async def _first(self, matches: Callable[[Frame], bool], what: str, within: float) -> Frame:
        """The first frame (buffered or new) that `matches`, in `within` seconds."""
        for index, frame in enumerate(self.frames):
            if matches(frame):
                return self.frames.pop(index)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not self.closed and (left := deadline - loop.time()) > 0:
            frame = await self._read_one(left)
            if frame is None:
                continue
            if matches(frame):
                return frame
            self.frames.append(frame)
        state = f"closed {self.close_code}" if self.closed else f"nothing within {within}s"
        raise AssertionError(f"no {what} ({state}); other frames: {self.frames}")

    async def expect(
        self,
        kind: str,
        where: Callable[[Frame], bool] | None = None,
        within: float = DEADLINE,
    ) -> Frame:
        """The first frame of type `kind` (matching `where`), waiting up to `within` seconds."""
        return await self._first(
            lambda frame: frame["type"] == kind and (where is None or where(frame)),
            f"{kind!r} frame",
            within,
        )

    async def answer(self, req_id: Any, within: float = DEADLINE) -> Frame:
        """The frame (ack, error, pong, playback) that echoes request `req_id`."""
        return await self._first(
            lambda frame: frame.get("req_id") == req_id, f"answer to {req_id!r}", within
        )

    async def expect_error(self, code: str, req_id: Any = None, within: float = DEADLINE) -> Frame:
        """The first `error` frame, checked to carry `code` (and `req_id` when given)."""
        frame = await self.expect("error", within=within)
        assert frame["code"] == code, frame
        assert isinstance(frame.get("message"), str) and frame["message"], frame
        if req_id is not None:
            assert frame.get("req_id") == req_id, frame
        return frame

    async def expect_close(self, within: float = DEADLINE) -> int:
        """Wait for the server to close the socket; return the close code."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not self.closed and (left := deadline - loop.time()) > 0:
            frame = await self._read_one(left)
            if frame is not None:
                self.frames.append(frame)
        assert self.closed, f"still open after {within}s; frames: {self.frames}"
        return self.close_code  # type: ignore[return-value]

    async def drain(self, quiet: float = QUIET) -> list[Frame]:
        """Every frame not yet asked for, reading until nothing arrives for `quiet` seconds."""
        while not self.closed:
            frame = await self._read_one(quiet)
            if frame is None:
                break
            self.frames.append(frame)
        frames, self.frames = self.frames, []
        return frames

    # --- what the client sends -------------------------------------------------------

    async def send_text(self, text: str) -> None:
        """One text frame, as it is (even empty, which the communicator's send_to refuses)."""
        await self.communicator.send_input({"type": "websocket.receive", "text": text})

    async def send_bytes(self, data: bytes) -> None:
        """One binary frame."""
        await self.communicator.send_input({"type": "websocket.receive", "bytes": data})

    async def send(self, frame: Any) -> None:
        """One JSON text frame."""
        await self.send_text(json.dumps(frame))

    async def request(self, frame: Frame, reply: str = "ack") -> Frame:
        """Send `frame` with a fresh req_id; the frame echoing it must be of type `reply`."""
        req_id = next_req_id()
        await self.send({**frame, "req_id": req_id})
        answer = await self.answer(req_id)
        assert answer["type"] == reply, answer
        return answer

    async def ping(self) -> Frame:
        """A ping that must be answered by its pong: proves the socket still works."""
        pong = await self.request({"type": "ping", "client_time": 1}, reply="pong")
        assert pong["client_time"] == 1, pong
        return pong

    async def close(self) -> None:
        """Disconnect (the client side), letting the consumer clean up; safe to call twice."""
        if self._ended:
            return
        self._ended = True
        app = self.communicator.future
        if app.done():
            if not app.cancelled():
                app.result()  # a consumer that crashed fails the test here
            return
        await self.communicator.disconnect(timeout=DEADLINE)


class SocketPool:
    """Opens room sockets for one test and disconnects all of them at its end."""

    def __init__(self) -> None:
        self.sockets: list[RoomSocket] = []

    async def open(self, room_id: str, **options: Any) -> RoomSocket:
        """A socket whose handshake was attempted (accepted or not)."""
        socket = RoomSocket(room_id, **options)
        self.sockets.append(socket)
        await socket.connect()
        return socket

    async def join(self, room_id: str, **options: Any) -> RoomSocket:
        """A socket that was accepted and got its `snapshot` (kept as .snapshot)."""
        socket = await self.open(room_id, **options)
        assert not socket.closed, f"handshake refused with {socket.close_code}"
        socket.snapshot = await socket.expect("snapshot")
        return socket

    async def close_all(self) -> None:
        """Disconnect every socket, so presence rows and connection counts are released.

        All are closed even when one consumer crashed; the first crash is raised after.
        """
        failures = []
        for socket in self.sockets:
            try:
                await socket.close()
            except Exception as exc:
                failures.append(exc)
        if failures:
            raise failures[0]


@pytest.fixture(name="sockets")
async def socket_pool(transactional_db: None) -> Any:
    """A SocketPool whose sockets are all disconnected after the test."""
    pool = SocketPool()
    yield pool
    await pool.close_all()
    # The consumers' database work ran in asgiref's thread; its connection would otherwise
    # stay open (CONN_MAX_AGE) and keep the test database from being dropped at the end.
    await sync_to_async(connections.close_all)()


def override_websocket(settings: Any, **changes: Any) -> None:
    """Change `websocket:` keys (rate limits, abuse threshold) for one test."""
    config = settings.SYNCTV
    settings.SYNCTV = config.model_copy(
        update={"websocket": config.websocket.model_copy(update=changes)}
    )


def override_connection_limits(settings: Any, **changes: Any) -> None:
    """Change `cluster.connection_limits:` keys for one test (`global_` for `global`)."""
    config = settings.SYNCTV
    limits = config.cluster.connection_limits.model_copy(update=changes)
    cluster = config.cluster.model_copy(update={"connection_limits": limits})
    settings.SYNCTV = config.model_copy(update={"cluster": cluster})


def override_server(settings: Any, **changes: Any) -> None:
    """Change `server:` keys (allowed_origins) for one test."""
    config = settings.SYNCTV
    settings.SYNCTV = config.model_copy(update={"server": config.server.model_copy(update=changes)})

"""The soak's clients: one room socket each, commands at human rates, every answer kept.

A client connects to a node chosen round robin and, after a close with 1006, 1011, 1012 or
1013 or a failed connect, to the next node, with backoff (the `shutdown` frame's delay after
a drain). Each connection keeps what the client holds: the snapshot, then the playback and
playlist of the highest version seen, and every `chat` id that arrived (a second arrival of
one id on one connection is a duplicate). Every command carries a `req_id`; the `Ledger`
keeps each one with its answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from bench.soak_cluster import NodeSlot, monotonic

OPEN_TIMEOUT = 5.0
SNAPSHOT_TIMEOUT = 10.0
HTTP_TIMEOUT = 10.0
RECONNECT_CODES = {1006, 1011, 1012, 1013}
BACKOFF_FIRST = 0.25
BACKOFF_CAP = 3.0
MAX_PLAYLIST = 6
Frame = dict[str, Any]


@dataclass
class Command:
    """One command a client sent (over its socket, or a playlist edit over HTTP)."""

    req_id: str
    kind: str
    client: str
    room_id: str
    user_id: int
    sent_at: float
    text: str | None = None  # a chat line
    movie_id: str | None = None  # a playlist edit's movie
    answer: str = ""  # "ack", "error:<code>", or "" (no answer: the connection dropped)
    version: int | None = None


class Ledger:
    """Every command of the run by req_id, and when each room's playback version was first
    known to exist (from acks), for the staleness figures."""

    def __init__(self) -> None:
        self.commands: dict[str, Command] = {}
        self.version_seen_at: dict[str, dict[int, float]] = {}
        self._numbers = itertools.count(1)

    def new_req_id(self, client: str) -> str:
        """A req_id unique in the run."""
        return f"{client}-{next(self._numbers)}"

    def sent(self, command: Command) -> None:
        """Keep a command as it goes out."""
        self.commands[command.req_id] = command

    def answered(self, frame: Frame, at: float) -> None:
        """An `ack` or `error` carrying a req_id of ours."""
        command = self.commands.get(str(frame.get("req_id")))
        if command is None or command.answer:
            return
        if frame["type"] == "ack":
            command.answer = "ack"
            command.version = frame.get("version")
            if command.version is not None:
                self.version_known(command.room_id, command.version, at)
        else:
            command.answer = f"error:{frame.get('code')}"

    def version_known(self, room_id: str, version: int, at: float) -> None:
        """Playback `version` of a room existed in the database by `at`."""
        seen = self.version_seen_at.setdefault(room_id, {})
        if version not in seen or at < seen[version]:
            seen[version] = at


@dataclass
class Connection:
    """One socket of one client, from its snapshot to its close."""

    number: int
    node: str
    opened_at: float
    snapshot: Frame
    playback: Frame
    playlist: Frame
    chat_counts: Counter[int] = field(default_factory=Counter)
    duplicates: list[tuple[int, float]] = field(default_factory=list)
    version_changes: list[tuple[float, int]] = field(default_factory=list)
    closed_at: float | None = None
    close_code: int | None = None
    left: bool = False  # the client closed it: its viewer left, and comes back at once

    def snapshot_chat_ids(self) -> set[int]:
        """The ids of the chat lines the snapshot carried."""
        return {message["id"] for message in self.snapshot.get("chat", [])}

    def take(self, frame: Frame, at: float) -> None:
        """What the client keeps from one frame (the highest version wins)."""
        kind = frame.get("type")
        if kind == "playback":
            state = frame["playback"]
            if state["version"] > self.playback["version"]:
                self.playback = state
                self.version_changes.append((at, state["version"]))
        elif kind == "playlist":
            if frame["playlist"]["version"] > self.playlist["version"]:
                self.playlist = frame["playlist"]
        elif kind == "chat":
            message = frame["message"]
            self.chat_counts[message["id"]] += 1
            if self.chat_counts[message["id"]] > 1:
                self.duplicates.append((message["id"], at))


@dataclass
class Identity:
    """A guest of the soak: its label, user id, token and room."""

    label: str
    user_id: int
    token: str
    room_id: str
    is_creator: bool


class Switches:
    """What every client does right now: act (send commands) and stop (close for good); and
    the round robin over the nodes that every reconnecting client takes its next node from
    (a load balancer's, so the clients of a dead node spread over the others)."""

    def __init__(self) -> None:
        self.acting = asyncio.Event()
        self.stopping = asyncio.Event()
        self.connections_changed = asyncio.Condition()
        self._rotation = itertools.count()

    def next_node(self) -> int:
        """The index of the node the next (re)connection goes to."""
        return next(self._rotation)

    async def notify(self) -> None:
        """A client connected or lost its connection."""
        async with self.connections_changed:
            self.connections_changed.notify_all()


class SoakClient:
    """One guest's life in its room: connect, act, reconnect, until told to stop."""

    def __init__(
        self,
        identity: Identity,
        nodes: list[NodeSlot],
        first_node: int,
        ledger: Ledger,
        switches: Switches,
        think: tuple[float, float],
        session: tuple[float, float],
        rng: random.Random,
    ) -> None:
        self.identity = identity
        self.nodes = nodes
        self.node_index = first_node
        self.ledger = ledger
        self.switches = switches
        self.think = think
        self.session = session
        self.rng = rng
        self.connections: list[Connection] = []
        self.current: Connection | None = None
        self.failed_connects = 0
        self.unexpected_closes: list[tuple[float, int | None]] = []
        self._chat_numbers = itertools.count(1)

    @property
    def label(self) -> str:
        """The client's name in the report."""
        return self.identity.label

    async def run(self) -> None:
        """Connect and reconnect until `switches.stopping`."""
        failures = 0
        while not self.switches.stopping.is_set():
            slot = self.nodes[self.node_index % len(self.nodes)]
            delay = await self._one_connection(slot)
            if delay is None:  # connected and then closed: start the backoff over
                failures = 0
                delay = BACKOFF_FIRST
            else:
                failures += 1
                delay = max(delay, min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** (failures - 1)))
            self.node_index = self.switches.next_node()
            jitter = delay * self.rng.uniform(0.8, 1.2)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(jitter):
                    await self.switches.stopping.wait()

    async def _one_connection(self, slot: NodeSlot) -> float | None:
        """One socket on `slot`: None after a session that had its snapshot, else the
        backoff floor (0 if none is asked for)."""
        url = f"{slot.ws_url}/ws/rooms/{self.identity.room_id}/?token={quote(self.identity.token)}"
        try:
            socket = await connect(url, open_timeout=OPEN_TIMEOUT, close_timeout=2)
        except (OSError, TimeoutError, InvalidHandshake):
            self.failed_connects += 1
            return 0.0
        try:
            async with asyncio.timeout(SNAPSHOT_TIMEOUT):
                snapshot = json.loads(await socket.recv())
        except (ConnectionClosed, TimeoutError, OSError) as error:
            await socket.close()
            self.failed_connects += 1
            self._note_close(error)
            return 0.0
        if snapshot.get("type") != "snapshot":
            await socket.close()
            self.unexpected_closes.append((monotonic(), None))
            return 0.0
        connection = Connection(
            number=len(self.connections) + 1,
            node=slot.name,
            opened_at=monotonic(),
            snapshot=snapshot,
            playback=snapshot["playback"],
            playlist=snapshot["playlist"],
        )
        connection.version_changes.append((connection.opened_at, snapshot["playback"]["version"]))
        self.ledger.version_known(
            self.identity.room_id, snapshot["playback"]["version"], connection.opened_at
        )
        self.connections.append(connection)
        self.current = connection
        await self.switches.notify()
        delay = await self._session(socket, connection, slot)
        self.current = None
        await self.switches.notify()
        return delay

    async def _session(
        self, socket: ClientConnection, connection: Connection, slot: NodeSlot
    ) -> float | None:
        actor = asyncio.create_task(self._act(socket, connection, slot))
        shutdown_delay = 0.0
        try:
            async for text in socket:
                now = monotonic()
                frame = json.loads(text)
                kind = frame.get("type")
                if kind in ("ack", "error") and frame.get("req_id") is not None:
                    self.ledger.answered(frame, now)
                elif kind == "shutdown":
                    shutdown_delay = frame.get("reconnect_after_ms", 0) / 1000
                else:
                    connection.take(frame, now)
        except (ConnectionClosed, OSError):
            pass  # the close code says why
        finally:
            actor.cancel()
            await asyncio.gather(actor, return_exceptions=True)
        code = socket.close_code if socket.close_code is not None else 1006
        connection.closed_at = monotonic()
        connection.close_code = code
        expected = code in RECONNECT_CODES or connection.left or self.switches.stopping.is_set()
        if not expected:
            self.unexpected_closes.append((connection.closed_at, code))
        return shutdown_delay or None

    def _note_close(self, error: BaseException) -> None:
        code = error.rcvd.code if isinstance(error, ConnectionClosed) and error.rcvd else None
        if code is not None and code not in RECONNECT_CODES:
            self.unexpected_closes.append((monotonic(), code))

    async def _act(self, socket: ClientConnection, connection: Connection, slot: NodeSlot) -> None:
        """Send a command every few seconds while the switches say so; close the socket when
        the viewer's session is over (then it comes back, on the next node) or on stop."""
        leave_at = monotonic() + self.rng.uniform(*self.session)
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.rng.uniform(*self.think)):
                    await self.switches.stopping.wait()
            if self.switches.stopping.is_set():
                await socket.close()
                return
            if not self.switches.acting.is_set():
                continue
            if monotonic() >= leave_at:
                connection.left = True
                await socket.close()
                return
            if self.identity.is_creator and self.rng.random() < 0.3:
                await self._edit_playlist(connection, slot)
            else:
                await self._send_command(socket, connection)

    async def _send_command(self, socket: ClientConnection, connection: Connection) -> None:
        kind = self.rng.choices(
            ["seek", "chat", "play", "pause", "rate", "set_movie"], [30, 30, 8, 8, 12, 12]
        )[0]
        frame: Frame = {"type": kind}
        text = None
        if kind == "seek":
            frame["position"] = round(self.rng.uniform(0, 3600), 3)
        elif kind == "rate":
            frame["rate"] = self.rng.choice([0.5, 1.0, 1.25, 1.5, 2.0])
        elif kind == "chat":
            text = f"{self.label} line {next(self._chat_numbers)}"
            frame["text"] = text
        elif kind == "set_movie":
            movies = connection.playlist.get("movies") or []
            if not movies:
                return
            frame["movie_id"] = self.rng.choice(movies)["id"]
        command = self._command(kind, text=text, movie_id=frame.get("movie_id"))
        frame["req_id"] = command.req_id
        self.ledger.sent(command)
        with contextlib.suppress(ConnectionClosed, OSError):
            await socket.send(json.dumps(frame))

    def _command(self, kind: str, **fields: Any) -> Command:
        return Command(
            req_id=self.ledger.new_req_id(self.label),
            kind=kind,
            client=self.label,
            room_id=self.identity.room_id,
            user_id=self.identity.user_id,
            sent_at=monotonic(),
            **fields,
        )

    async def _edit_playlist(self, connection: Connection, slot: NodeSlot) -> None:
        """The room's creator adds, reorders or deletes a movie over HTTP (on its node)."""
        room = self.identity.room_id
        movies = [movie["id"] for movie in connection.playlist.get("movies") or []]
        request: tuple[str, str, Any]
        if len(movies) >= MAX_PLAYLIST or (len(movies) > 2 and self.rng.random() < 0.3):
            victim = self.rng.choice(movies)
            command = self._command("delete_movie", movie_id=victim)
            request = ("DELETE", f"/api/rooms/{room}/movies/{victim}", None)
        elif len(movies) > 1 and self.rng.random() < 0.5:
            self.rng.shuffle(movies)
            command = self._command("reorder")
            request = ("POST", f"/api/rooms/{room}/movies/reorder", {"order": movies})
        else:
            number = next(self._chat_numbers)
            url = f"https://example.invalid/{self.label}-{number}.mp4"
            command = self._command("add_movie")
            request = ("POST", f"/api/rooms/{room}/movies", {"url": url, "title": url[-20:]})
        self.ledger.sent(command)
        method, path, body = request
        headers = {"Authorization": f"Bearer {self.identity.token}"}
        try:
            async with httpx.AsyncClient(base_url=slot.base_url, timeout=HTTP_TIMEOUT) as http:
                answer = await http.request(method, path, json=body, headers=headers)
        except httpx.HTTPError:
            return
        if answer.status_code < 300:
            command.answer = "ack"
            if command.kind == "add_movie":
                command.movie_id = answer.json()["movie"]["id"]
        else:
            command.answer = f"error:{answer.status_code}"

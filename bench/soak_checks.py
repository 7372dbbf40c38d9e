"""What the soak checks against PostgreSQL, the source of truth: each client's playback,
playlist and chat at the end, every acknowledged command, chat ids delivered twice on one
connection, how long clients held a playback older than the database's, and node memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import psycopg

from bench.common import percentile
from bench.soak_clients import Connection, Ledger, SoakClient
from bench.soak_cluster import NodeSlot

PLAYBACK_CHANGES = {"seek", "play", "pause", "rate", "set_movie"}
POSITION_TOLERANCE = 1e-6
MIB = 1024 * 1024


@dataclass
class RoomTruth:
    """One room as PostgreSQL holds it."""

    playback: dict[str, Any]
    playlist_version: int
    movie_ids: list[str]
    chat: dict[int, tuple[int | None, str]]  # message id -> (user id, text)


async def playback_versions(db: psycopg.AsyncConnection, room_ids: list[str]) -> dict[str, int]:
    """Each room's current playback version."""
    rows = await (
        await db.execute(
            "SELECT room_id, version FROM rooms_playbackstate WHERE room_id = ANY(%s)", (room_ids,)
        )
    ).fetchall()
    return {room: int(version) for room, version in rows}


async def read_truth(db: psycopg.AsyncConnection, room_ids: list[str]) -> dict[str, RoomTruth]:
    """Playback, playlist and chat of every room, read in one transaction."""
    async with db.transaction():
        playback = await (
            await db.execute(
                "SELECT room_id, movie_id, position, playing, rate, version, updated_at "
                "FROM rooms_playbackstate WHERE room_id = ANY(%s)",
                (room_ids,),
            )
        ).fetchall()
        rooms = await (
            await db.execute(
                "SELECT id, playlist_version FROM rooms_room WHERE id = ANY(%s)", (room_ids,)
            )
        ).fetchall()
        movies = await (
            await db.execute(
                "SELECT room_id, id FROM rooms_movie WHERE room_id = ANY(%s) "
                "ORDER BY room_id, position, created_at",
                (room_ids,),
            )
        ).fetchall()
        chat = await (
            await db.execute(
                "SELECT room_id, id, user_id, text FROM rooms_chatmessage WHERE room_id = ANY(%s)",
                (room_ids,),
            )
        ).fetchall()
    truth = {room: RoomTruth({}, int(version), [], {}) for room, version in rooms}
    for room, movie, position, playing, rate, version, updated_at in playback:
        truth[room].playback = {
            "movie_id": movie,
            "position": position,
            "playing": playing,
            "rate": rate,
            "version": int(version),
            "updated_at": int(updated_at),
        }
    for room, movie in movies:
        truth[room].movie_ids.append(movie)
    for room, message, user, text in chat:
        truth[room].chat[int(message)] = (user, text)
    return truth


def client_mismatches(client: SoakClient, truth: RoomTruth) -> list[str]:
    """How a connected client's state differs from its room's in the database ([] = equal)."""
    connection = client.current
    if connection is None:
        return ["not connected"]
    problems = []
    held = connection.playback
    for key, stored in truth.playback.items():
        value = held.get(key)
        if key == "position":
            equal = value is not None and abs(value - stored) <= POSITION_TOLERANCE
        else:
            equal = value == stored
        if not equal:
            problems.append(f"playback.{key} {value!r} != database {stored!r}")
    held_ids = [movie["id"] for movie in connection.playlist.get("movies") or []]
    if connection.playlist.get("version") != truth.playlist_version or held_ids != truth.movie_ids:
        problems.append(
            f"playlist v{connection.playlist.get('version')} {held_ids} != database "
            f"v{truth.playlist_version} {truth.movie_ids}"
        )
    missing = missing_chat(connection, truth)
    if missing:
        problems.append(f"{len(missing)} chat messages missing, e.g. ids {sorted(missing)[:5]}")
    if problems:
        problems.append(f"(connection {connection.number}, on {connection.node})")
    return problems


def missing_chat(connection: Connection, truth: RoomTruth) -> set[int]:
    """Database chat ids newer than the snapshot's newest that this connection lacks."""
    snapshot_ids = connection.snapshot_chat_ids()
    newest = max(snapshot_ids, default=0)
    expected = {message for message in truth.chat if message > newest}
    return expected - snapshot_ids - set(connection.chat_counts)


@dataclass
class CommandTally:
    """Commands sent, how they were answered, and acknowledged ones not in the database."""

    sent: int = 0
    acknowledged: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    unanswered: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)


def tally_commands(ledger: Ledger, truth: dict[str, RoomTruth]) -> CommandTally:
    """Check every acknowledged command against the database."""
    tally = CommandTally()
    chat_by_text = {
        (room, text): user for room, state in truth.items() for user, text in state.chat.values()
    }
    # A movie leaves a playlist only by a delete of ours (answered or not: a delete whose
    # answer was lost may have happened).
    deleted = {
        command.movie_id
        for command in ledger.commands.values()
        if command.kind == "delete_movie" and command.movie_id
    }
    for command in ledger.commands.values():
        tally.sent += 1
        tally.by_kind[command.kind] = tally.by_kind.get(command.kind, 0) + 1
        if not command.answer:
            tally.unanswered += 1
            continue
        if command.answer != "ack":
            tally.errors[command.answer] = tally.errors.get(command.answer, 0) + 1
            continue
        tally.acknowledged += 1
        problem = _lost(command, truth[command.room_id], chat_by_text, deleted)
        if problem:
            tally.lost.append(f"{command.req_id} {command.kind}: {problem}")
    return tally


def _lost(command, room: RoomTruth, chat_by_text, deleted: set[str]) -> str | None:
    if command.kind == "chat":
        user = chat_by_text.get((command.room_id, command.text), "absent")
        if user != command.user_id:
            return f"no ChatMessage {command.text!r} by user {command.user_id} (found: {user})"
    elif command.kind in PLAYBACK_CHANGES:
        if command.version is None or command.version > room.playback["version"]:
            return f"acked version {command.version} > database {room.playback['version']}"
    elif command.kind == "add_movie":
        if command.movie_id not in room.movie_ids and command.movie_id not in deleted:
            return f"movie {command.movie_id} neither in the playlist nor deleted"
    elif command.kind == "delete_movie" and command.movie_id in room.movie_ids:
        return f"deleted movie {command.movie_id} still in the playlist"
    return None


@dataclass
class StaleEpisode:
    """A client holding a playback version older than the database's."""

    client: str
    room_id: str
    connection: int
    started_at: float
    target: int
    ended_at: float | None = None

    @property
    def duration(self) -> float:
        """Seconds from the database moving past the held version to the client catching up."""
        return (self.ended_at or self.started_at) - self.started_at


class StalenessMonitor:
    """Sampled every second: which connected clients hold an older playback than the database."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.open: dict[str, StaleEpisode] = {}
        self.closed: list[StaleEpisode] = []
        self.samples = 0

    def sample(self, now: float, versions: dict[str, int], clients: list[SoakClient]) -> None:
        """Compare every connected client's held version with its room's."""
        self.samples += 1
        for room, version in versions.items():
            self.ledger.version_known(room, version, now)
        for client in clients:
            room = client.identity.room_id
            episode = self.open.get(client.label)
            connection = client.current
            if connection is None:
                if episode is not None:
                    self._close(episode, now)
                continue
            stored = versions.get(room, -1)
            held = connection.playback["version"]
            if held < stored:
                if episode is None:
                    started = self._moved_past(room, held, now)
                    self.open[client.label] = StaleEpisode(
                        client.label, room, connection.number, started, stored
                    )
                else:
                    episode.target = stored
            elif episode is not None:
                self._close(episode, _caught_up_at(connection, episode, now))

    def finish(self, now: float) -> None:
        """Close the episodes still open (a client never caught up)."""
        for episode in list(self.open.values()):
            self._close(episode, now)

    def _close(self, episode: StaleEpisode, at: float) -> None:
        episode.ended_at = at
        self.closed.append(episode)
        self.open.pop(episode.client, None)

    def _moved_past(self, room: str, held: int, now: float) -> float:
        seen = self.ledger.version_seen_at.get(room, {})
        return min((at for version, at in seen.items() if version > held), default=now)

    def figures(self, run_started: float) -> dict[str, Any]:
        """Max and p99 of the episodes' durations, and where the longest one was."""
        if not self.closed:
            return {"episodes": 0, "max_s": 0.0, "p99_s": 0.0, "samples": self.samples}
        ordered = sorted(self.closed, key=lambda episode: episode.duration)
        worst = ordered[-1]
        durations = [episode.duration for episode in ordered]
        return {
            "episodes": len(ordered),
            "samples": self.samples,
            "max_s": round(worst.duration, 3),
            "p99_s": round(percentile(durations, 0.99), 3),
            "p50_s": round(percentile(durations, 0.50), 3),
            "longest": {
                "client": worst.client,
                "room": worst.room_id,
                "from_s": round(worst.started_at - run_started, 1),
                "to_s": round((worst.ended_at or worst.started_at) - run_started, 1),
            },
        }


def _caught_up_at(connection: Connection, episode: StaleEpisode, now: float) -> float:
    if connection.number != episode.connection:
        return connection.opened_at  # a fresh snapshot ended it
    for at, version in connection.version_changes:
        if version >= episode.target:
            return at
    return now


def memory_figures(nodes: list[NodeSlot], run_started: float) -> list[dict[str, Any]]:
    """Per incarnation of each node: RSS at start, end and max (MiB); the slope (MiB/min) of
    the nodes never restarted, over the whole run and over its second half."""
    rows = []
    for slot in nodes:
        for number, incarnation in enumerate(slot.incarnations, 1):
            if not incarnation.rss:
                continue
            values = [value for _, value in incarnation.rss]
            row: dict[str, Any] = {
                "node": slot.name,
                "incarnation": number,
                "pid": incarnation.pid,
                "from_s": round(incarnation.started_at - run_started, 1),
                "ended": incarnation.how_ended or "running",
                "samples": len(values),
                "start_mib": round(values[0] / MIB, 1),
                "end_mib": round(values[-1] / MIB, 1),
                "max_mib": round(max(values) / MIB, 1),
            }
            if len(slot.incarnations) == 1:
                half = incarnation.rss[len(incarnation.rss) // 2 :]
                row["slope_mib_per_min"] = _slope(incarnation.rss)
                row["slope_second_half_mib_per_min"] = _slope(half)
            rows.append(row)
    return rows


def _slope(samples: list[tuple[float, int]]) -> float | None:
    """Least-squares slope of RSS over time, in MiB per minute."""
    if len(samples) < 3:
        return None
    times = [at for at, _ in samples]
    values = [value / MIB for _, value in samples]
    mean_t = sum(times) / len(times)
    mean_v = sum(values) / len(values)
    spread = sum((at - mean_t) ** 2 for at in times)
    if math.isclose(spread, 0.0):
        return None
    covariance = sum((at - mean_t) * (v - mean_v) for at, v in zip(times, values, strict=True))
    return round(covariance / spread * 60, 3)

"""Per-room Redis Streams: every room event that crosses nodes is kept for a while, so a node
whose link to Redis was cut reads back what it missed.

One script appends the envelope to the room's stream (`{prefix}room:{id}:stream`, capped by
count and by age, expiring when idle) and publishes it, with its stream id, on the room's
pub/sub channel, so a subscriber always knows the id of the last event it applied. After a
reconnect, `missed()` says per room either which entries came after that id or that the
stream no longer reaches back to it (trimmed, expired, or Redis restarted empty): then the
room is re-read from PostgreSQL instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

# The stream id before every real one: "nothing applied yet, and the stream was empty".
ORIGIN = "0-0"
INSPECT_BATCH = 100  # rooms inspected per round trip after a reconnect

# KEYS[1] the stream; ARGV: max entries, max age (ms), envelope JSON, pub/sub channel.
# The published copy is the envelope with `"stream_id"` put first.
APPEND_SCRIPT = """
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'e', ARGV[3])
local now = redis.call('TIME')
local oldest = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[2])
redis.call('XTRIM', KEYS[1], 'MINID', '~', string.format('%d', oldest))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PUBLISH', ARGV[4], '{"stream_id":"' .. id .. '",' .. string.sub(ARGV[3], 2))
return id
"""


def stream_key(prefix: str, room_id: str) -> str:
    """The Redis key of a room's event stream."""
    return f"{prefix}room:{room_id}:stream"


def parse_id(stream_id: str) -> tuple[int, int]:
    """`"1700000000000-3"` as a comparable pair; ValueError for anything else."""
    millis, _, sequence = stream_id.partition("-")
    return int(millis), int(sequence or 0)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass
class Catchup:
    """What a reconnected node must do for its rooms: entries to apply, rooms to re-read."""

    entries: list[tuple[str, str, str]] = field(default_factory=list)  # (room, id, envelope)
    reread: set[str] = field(default_factory=set)


@dataclass
class StreamSettings:
    """How much of each room's history Redis keeps."""

    max_events: int = 1000
    max_age_secs: float = 600


class RoomStreams:
    """The last stream id applied per room of this node, and the catch-up after a cut."""

    def __init__(self, prefix: str, settings: StreamSettings) -> None:
        self.prefix = prefix
        self.settings = settings
        self.applied: dict[str, str | None] = {}  # room → last id; None: unknown, re-read
        self.server_id: str | None = None  # the Redis run_id the ids above belong to

    def append_args(self, envelope: str, channel: str) -> list[Any]:
        """ARGV of APPEND_SCRIPT for one envelope published on `channel`."""
        max_age_ms = int(self.settings.max_age_secs * 1000)
        return [self.settings.max_events, max_age_ms, envelope, channel]

    def key(self, room_id: str) -> str:
        """The stream of a room."""
        return stream_key(self.prefix, room_id)

    def saw(self, room_id: str, stream_id: Any) -> None:
        """A live event of the room arrived; without a (valid) id the stream is not trusted."""
        if isinstance(stream_id, str):
            try:
                parse_id(stream_id)
            except ValueError:
                stream_id = None
        else:
            stream_id = None
        if room_id in self.applied:
            self.applied[room_id] = stream_id

    def forget(self, room_id: str) -> None:
        """No local member of the room is left."""
        self.applied.pop(room_id, None)

    async def start_watching(self, client: Any, room_id: str) -> None:
        """Before subscribing to a room: remember where its stream stands now."""
        try:
            info = await client.xinfo_stream(self.key(room_id))
        except Exception as exc:  # any other failure leaves it unknown: re-read after a cut
            if "no such key" in str(exc).lower():
                self.applied[room_id] = ORIGIN
            return
        self.applied[room_id] = _text(info["last-generated-id"])

    async def missed(self, client: Any, server_id: str | None, rooms: Iterable[str]) -> Catchup:
        """What each room's stream holds after the id last applied, or that it must be re-read.

        `server_id` is the run_id of the Redis now connected: another server (restarted,
        failed over) or an unknown one means the ids cannot be trusted.
        """
        catchup = Catchup()
        rooms = list(rooms)
        if server_id is None or server_id != self.server_id:
            catchup.reread.update(rooms)
            return catchup
        to_read: list[tuple[str, str]] = []
        for start in range(0, len(rooms), INSPECT_BATCH):
            batch = rooms[start : start + INSPECT_BATCH]
            pipe = client.pipeline(transaction=False)
            for room_id in batch:
                pipe.xinfo_stream(self.key(room_id))
            answers = await pipe.execute(raise_on_error=False)
            for room_id, info in zip(batch, answers, strict=True):
                last = self.applied.get(room_id)
                verdict = _verdict(last, info)
                if verdict == "reread":
                    catchup.reread.add(room_id)
                elif verdict == "read" and last is not None:
                    to_read.append((room_id, last))
        for room_id, last in to_read:
            entries = await client.xrange(self.key(room_id), min=f"({last}", max="+")
            for entry_id, fields in entries:
                data = fields.get(b"e", fields.get("e"))
                if data is not None:
                    catchup.entries.append((room_id, _text(entry_id), _text(data)))
        return catchup


def _verdict(last: str | None, info: Any) -> str:
    """`read` (the stream reaches back to `last`), `none` (nothing to read) or `reread`."""
    if isinstance(info, Exception):
        missing = "no such key" in str(info).lower()
        return "none" if missing and last == ORIGIN else "reread"
    if last is None:
        return "reread"
    if _text(info["last-generated-id"]) == last:
        return "none"
    if last == ORIGIN:  # empty when watched: every entry added since must still be there
        return "read" if int(info.get("entries-added", -1)) == int(info["length"]) else "reread"
    first = info.get("first-entry")
    if not first:
        return "reread"
    return "read" if parse_id(_text(first[0])) <= parse_id(last) else "reread"

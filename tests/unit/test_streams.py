"""When a reconnected node may replay a room's stream, and when it must re-read the room."""

import pytest
from redis.exceptions import ResponseError

from cluster.streams import ORIGIN, RoomStreams, StreamSettings, _verdict, parse_id


def info(first: str, last: str, length: int = 5, added: int = 5) -> dict:
    return {
        "first-entry": (first.encode(), {b"e": b"{}"}),
        "last-generated-id": last.encode(),
        "length": length,
        "entries-added": added,
    }


def test_stream_ids_compare_by_time_then_sequence():
    assert parse_id("1700000000000-2") < parse_id("1700000000000-10") < parse_id("1700000000001-0")
    with pytest.raises(ValueError):
        parse_id("not-an-id")


def test_a_stream_still_holding_the_last_applied_entry_is_replayed():
    assert _verdict("100-0", info(first="90-0", last="120-0")) == "read"
    assert _verdict("100-0", info(first="100-0", last="120-0")) == "read"


def test_a_stream_trimmed_past_the_last_applied_entry_is_re_read():
    assert _verdict("100-0", info(first="101-0", last="120-0")) == "reread"


def test_nothing_to_read_when_nothing_was_added_since():
    assert _verdict("120-0", info(first="90-0", last="120-0")) == "none"


def test_an_unknown_position_is_re_read():
    assert _verdict(None, info(first="90-0", last="120-0")) == "reread"


def test_a_stream_empty_when_watched_is_replayed_only_while_nothing_was_trimmed():
    assert _verdict(ORIGIN, info(first="90-0", last="120-0", length=5, added=5)) == "read"
    assert _verdict(ORIGIN, info(first="90-0", last="120-0", length=100, added=900)) == "reread"


def test_a_missing_stream_is_fine_only_if_it_was_missing_when_watched():
    missing = ResponseError("no such key")
    assert _verdict(ORIGIN, missing) == "none"
    assert _verdict("100-0", missing) == "reread"  # expired or lost with a restart
    assert _verdict(ORIGIN, ResponseError("WRONGTYPE")) == "reread"


def test_a_live_event_without_a_valid_stream_id_makes_the_position_unknown():
    streams = RoomStreams("p:", StreamSettings())
    streams.applied["r"] = "100-0"
    streams.saw("r", "120-0")
    assert streams.applied["r"] == "120-0"
    streams.saw("r", None)
    assert streams.applied["r"] is None
    streams.saw("r", "garbage")
    assert streams.applied["r"] is None
    streams.saw("unwatched", "130-0")
    assert "unwatched" not in streams.applied


async def test_another_redis_server_means_every_room_is_re_read():
    streams = RoomStreams("p:", StreamSettings())
    streams.server_id = "run-1"
    streams.applied = {"r1": "100-0", "r2": ORIGIN}
    catchup = await streams.missed(client=None, server_id="run-2", rooms=["r1", "r2"])
    assert catchup.reread == {"r1", "r2"} and catchup.entries == []
    catchup = await streams.missed(client=None, server_id=None, rooms=["r1"])
    assert catchup.reread == {"r1"}

"""The fast lane's pieces without a server: framing, the hub's sinks, the routing function."""

from __future__ import annotations

import pytest

from cluster.fastlane import OPCODE_BINARY, text_frame, websocket_frame
from cluster.hub import RECEIPTS_PER_GROUP, LocalHub
from cluster.layer import BROADCAST, LOCAL_ONLY, ClusterChannelLayer, Route
from rooms.services.events import NODE_SOCKETS_GROUP, member_group, room_group, route_group


class RecordingSink:
    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def write_frame(self, frame: bytes) -> None:
        self.frames.append(frame)

    def release(self) -> None:
        pass


@pytest.mark.parametrize(
    ("size", "header"),
    [
        (0, b"\x81\x00"),
        (125, b"\x81\x7d"),
        (126, b"\x81\x7e\x00\x7e"),
        (65535, b"\x81\x7e\xff\xff"),
    ],
)
def test_text_frames_are_final_unmasked_with_the_shortest_length(size, header):
    frame = text_frame("a" * size)

    assert frame[: len(header)] == header
    assert frame[len(header) :] == b"a" * size


def test_a_payload_of_64_kib_or_more_has_an_eight_byte_length():
    frame = websocket_frame(b"\x00" * 65536, OPCODE_BINARY)

    assert frame[:10] == b"\x82\x7f" + (65536).to_bytes(8, "big")
    assert len(frame) == 10 + 65536


def make_hub() -> LocalHub:
    layer = ClusterChannelLayer()
    return LocalHub(
        capacity_for=lambda channel: 10,
        expiry=60,
        group_expiry=86400,
        frame_of=layer._frame_of,
    )


def test_a_member_with_a_sink_gets_the_frame_made_once_and_nothing_queued():
    hub = make_hub()
    first, second = RecordingSink(), RecordingSink()
    for name, sink in (("a!x", first), ("b!x", second)):
        hub.add("room.r", name)
        hub.attach_sink(name, sink)
    hub.add("room.r", "c!x")  # no sink: the Channels path

    delivered = hub.fan_out("room.r", {"type": "room.event", "text": '{"type":"chat"}'})

    assert delivered == 3
    assert first.frames == [text_frame('{"type":"chat"}')]
    assert first.frames[0] is second.frames[0]  # one frame object for every socket
    assert hub.has_waiting_receivers("a!x") is False
    assert hub._queues.get("a!x") is None or not hub._queues["a!x"].entries
    assert len(hub._queues["c!x"].entries) == 1


def test_control_messages_still_take_the_queue_and_a_detached_sink_gets_nothing():
    hub = make_hub()
    sink = RecordingSink()
    hub.add("room.r", "a!x")
    hub.attach_sink("a!x", sink)

    hub.fan_out("room.r", {"type": "room.close", "texts": [], "code": 4004})
    hub.detach_sink("a!x")
    hub.fan_out("room.r", {"type": "room.event", "text": "{}"})

    assert sink.frames == []
    assert [entry[1]["type"] for entry in hub._queues["a!x"].entries] == [
        "room.close",
        "room.event",
    ]


def test_a_sink_with_an_inbox_gets_control_messages_there_and_nothing_is_queued():
    hub = make_hub()
    sink, inbox = RecordingSink(), []
    hub.add("room.r", "a!x")
    hub.attach_sink("a!x", sink, inbox.append)

    hub.fan_out("room.r", {"type": "room.event", "text": "{}"})
    hub.fan_out("room.r", {"type": "room.close", "texts": [], "code": 4004})
    hub.put("a!x", {"type": "server.shutdown"})

    assert sink.frames == [text_frame("{}")]
    assert [message["type"] for message in inbox] == ["room.close", "server.shutdown"]
    assert "a!x" not in hub._queues


def test_a_detached_inbox_gets_nothing_more():
    hub = make_hub()
    inbox: list[dict] = []
    hub.add("room.r", "a!x")
    hub.attach_sink("a!x", RecordingSink(), inbox.append)
    hub.detach_sink("a!x")

    hub.put("a!x", {"type": "server.shutdown"})

    assert inbox == []
    assert [entry[1]["type"] for entry in hub._queues["a!x"].entries] == ["server.shutdown"]


@pytest.mark.parametrize(
    ("group", "route"),
    [
        (room_group("r1"), Route(room="r1")),
        (member_group("r1", 7), Route(room="r1")),
        (NODE_SOCKETS_GROUP, LOCAL_ONLY),
        ("staff.everyone", BROADCAST),
        ("room.", BROADCAST),
    ],
)
def test_the_routing_function_names_the_room_of_room_and_member_groups(group, route):
    assert route_group(group) == route


def test_a_group_remembers_the_receipts_of_what_its_members_were_handed():
    hub = make_hub()
    assert hub.fan_out("room.r", {"type": "t", "receipt": "chat:0"}) == 0  # nobody: no receipt
    hub.add("room.r", "c1")
    hub.fan_out("room.r", {"type": "t", "receipt": "chat:1"})
    hub.fan_out("room.r", {"type": "t"})
    for number in range(2, RECEIPTS_PER_GROUP + 5):
        hub.fan_out("room.r", {"type": "t", "receipt": f"chat:{number}"})
    kept = hub.receipts("room.r")
    hub.discard("room.r", "c1")

    assert len(kept) == RECEIPTS_PER_GROUP  # the latest ones
    assert "chat:0" not in kept and "chat:1" not in kept
    assert f"chat:{RECEIPTS_PER_GROUP + 4}" in kept
    assert hub.receipts("room.r") == ()  # forgotten with the group


def test_a_message_whose_receipt_the_group_already_has_is_not_handed_out_again():
    hub = make_hub()
    sink = RecordingSink()
    hub.add("room.r", "a!x")
    hub.attach_sink("a!x", sink)
    chat = {"type": "room.event", "text": '{"type":"chat"}', "receipt": "chat:7"}

    first = hub.fan_out("room.r", chat)
    again = hub.fan_out("room.r", dict(chat))  # the same chat from a re-read

    assert (first, again) == (1, 0)
    assert len(sink.frames) == 1

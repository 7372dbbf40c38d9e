"""The Redis bridge drops malformed messages and keeps delivering (issue 8, point 4)."""

import asyncio
import json
import uuid

from cluster.layer import ClusterChannelLayer
from tests.support.redis_servers import RedisServer

DEADLINE = 10.0

MALFORMED = [
    b"not json",
    b"[]",
    b'"a string"',
    json.dumps({"node_id": "x", "message_id": "m1"}).encode(),
    json.dumps({"node_id": "x", "message_id": "m2", "event": 5}).encode(),
    json.dumps({"node_id": "x", "message_id": ["m3"], "event": {}}).encode(),
    json.dumps({"node_id": "x", "message_id": "m4", "event": {"group": 5, "message": {}}}).encode(),
    json.dumps(
        {"node_id": "x", "message_id": "m5", "event": {"group": "room.r", "message": "text"}}
    ).encode(),
    json.dumps(
        {"node_id": "x", "message_id": "m6", "event": {"group": "room.r", "message": {"a": 1}}}
    ).encode(),
    json.dumps(
        {"node_id": "x", "message_id": "m7", "event": {"channel": 7, "message": {"type": "t"}}}
    ).encode(),
]


async def test_malformed_messages_on_redis_are_dropped_and_delivery_goes_on(tmp_path):
    with RedisServer(tmp_path).start() as server:
        prefix = f"malformed-{uuid.uuid4().hex[:8]}:"
        sender = ClusterChannelLayer(redis_url=server.url, key_prefix=prefix, node_id="sender")
        receiver = ClusterChannelLayer(redis_url=server.url, key_prefix=prefix, node_id="receiver")
        channel = await receiver.new_channel()
        await receiver.group_add("room.r", channel)
        try:
            async with asyncio.timeout(DEADLINE):
                while True:  # until the receiver's subscription is live
                    await sender.group_send("room.r", {"type": "probe"})
                    try:
                        async with asyncio.timeout(0.2):
                            await receiver.receive(channel)
                        break
                    except TimeoutError:
                        continue
            client = server.client()
            for data in MALFORMED:
                client.publish(f"{prefix}broadcast", data)
            await sender.group_send("room.r", {"type": "after"})

            async with asyncio.timeout(DEADLINE):
                while (message := await receiver.receive(channel))["type"] == "probe":
                    pass

            assert message == {"type": "after"}
            assert receiver.redis_status() == "ok"
        finally:
            for layer in (sender, receiver):
                await layer.flush()
                await layer.close()


MALFORMED_QUEUE_ITEMS = [
    b"not json",
    b"[]",
    json.dumps({"message": {"type": "t"}}).encode(),  # no expiry
    json.dumps({"expires": "soon", "message": {"type": "t"}}).encode(),
    json.dumps({"expires": True, "message": {"type": "t"}}).encode(),
    json.dumps({"expires": 9e12, "message": "text"}).encode(),
    json.dumps({"expires": 9e12, "message": {"no": "type"}}).encode(),
]


async def test_malformed_items_in_a_queue_list_are_dropped_and_the_queue_goes_on(tmp_path):
    with RedisServer(tmp_path).start() as server:
        prefix = f"malformed-{uuid.uuid4().hex[:8]}:"
        sender = ClusterChannelLayer(redis_url=server.url, key_prefix=prefix, node_id="sender")
        worker = ClusterChannelLayer(redis_url=server.url, key_prefix=prefix, node_id="worker")
        client = server.client()
        try:
            # At the old end, where both the push script and the fetcher look first.
            client.rpush(f"{prefix}channel:synctv.test", *MALFORMED_QUEUE_ITEMS)
            await sender.send("synctv.test", {"type": "job.first"})
            client.rpush(f"{prefix}channel:synctv.test", *MALFORMED_QUEUE_ITEMS)
            async with asyncio.timeout(DEADLINE):
                first = await worker.receive("synctv.test")
            await sender.send("synctv.test", {"type": "job.second"})
            async with asyncio.timeout(DEADLINE):
                second = await worker.receive("synctv.test")

            assert first == {"type": "job.first"}
            assert second == {"type": "job.second"}
            assert client.llen(f"{prefix}channel:synctv.test") == 0
        finally:
            for layer in (sender, worker):
                await layer.flush()
                await layer.close()

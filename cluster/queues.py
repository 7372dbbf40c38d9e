"""Queue channels of the cluster layer (names without `!`, such as `synctv.jobs`): Redis
lists, so each message is received once across every node and worker.

An item is `{"expires": <epoch s>, "message": {...}}`. Anything else found in a list (another
program's data, a hand-made LPUSH) is dropped with a warning, by the push script and by the
fetcher alike, and never stops the queue.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from channels.exceptions import ChannelFull

from cluster.hub import Message

if TYPE_CHECKING:
    from cluster.bridge import RedisBridge

logger = logging.getLogger(__name__)

PUSH_TIMEOUT_SECS = 0.5
FIRST_CONNECTION_SECS = 2.0  # a node just starting: how long a push waits for Redis
POP_SECS = 1

# Atomically: drop expired (or malformed) items at the old end, refuse a full list, else push.
PUSH_SCRIPT = """
while true do
  local oldest = redis.call('LINDEX', KEYS[1], -1)
  if not oldest then break end
  local ok, item = pcall(cjson.decode, oldest)
  if ok and type(item) == 'table' and type(item['expires']) == 'number'
     and item['expires'] >= tonumber(ARGV[1]) then break end
  redis.call('RPOP', KEYS[1])
end
if redis.call('LLEN', KEYS[1]) >= tonumber(ARGV[2]) then return -1 end
redis.call('LPUSH', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return redis.call('LLEN', KEYS[1])
"""


class QueueChannels:
    """Push to and pull from the queue channels' lists, over a bridge's connection."""

    def __init__(self, bridge: RedisBridge) -> None:
        self.bridge = bridge
        self.fetchers: dict[str, asyncio.Task[None]] = {}

    def _key(self, channel: str) -> str:
        return f"{self.bridge.prefix}channel:{channel}"

    async def push(self, channel: str, message: Message, capacity: int, expiry: float) -> None:
        """Queue a message for whichever process receives on `channel` first."""
        now = time.time()
        data = json.dumps({"expires": now + expiry, "message": message})
        try:
            async with asyncio.timeout(FIRST_CONNECTION_SECS):
                await self.bridge.wait_connected()
            async with asyncio.timeout(PUSH_TIMEOUT_SECS):
                queued = await self.bridge.client.eval(
                    PUSH_SCRIPT, 1, self._key(channel), now, capacity, data, int(expiry) + 1
                )
        except Exception as exc:
            # Counted, not a reason to drop pub/sub: in a Redis Cluster one master down
            # refuses key commands while pub/sub works; a dead server the subscriber notices.
            self.bridge.count_error(exc)
            raise ChannelFull(f"{channel}: Redis unavailable") from exc
        if queued < 0:
            raise ChannelFull(channel)

    def ensure_fetcher(self, channel: str) -> None:
        """Pull the channel's next message from Redis into the local queue, in the background.

        receive() waits on the local queue, so cancelling it never loses a popped message.
        """
        task = self.fetchers.get(channel)
        if task is None or task.done():
            self.fetchers[channel] = asyncio.create_task(self._fetch_one(channel))

    async def _fetch_one(self, channel: str) -> None:
        key, hub = self._key(channel), self.bridge.hub
        while True:
            await self.bridge.wait_connected()
            try:
                item = await self.bridge.client.brpop([key], timeout=POP_SECS)
            except Exception as exc:
                self.bridge.count_error(exc)
                await asyncio.sleep(POP_SECS)
                continue
            if item is None:
                continue
            queued = _queued(item[1])
            if queued is None:
                logger.warning("dropped a malformed queue item", extra={"queue": channel})
                continue
            expires, message = queued
            if expires >= time.time():
                hub.put(channel, message)
                if not hub.has_waiting_receivers(channel):
                    return  # take no more than this process is waiting for

    async def flush(self) -> None:
        """Delete this prefix's queue lists (tests and tools)."""
        client = self.bridge.client
        if client is None:
            return
        async for key in client.scan_iter(match=f"{self.bridge.prefix}channel:*"):
            await client.delete(key)


def _queued(data: Any) -> tuple[float, Message] | None:
    """(expires, message) of a list item, or None unless it has the shape `push` gives it."""
    try:
        item = json.loads(data)
    except (TypeError, ValueError):
        return None
    if not isinstance(item, dict):
        return None
    expires, message = item.get("expires"), item.get("message")
    if isinstance(expires, bool) or not isinstance(expires, int | float):
        return None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return None
    return float(expires), message

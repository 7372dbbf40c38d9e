"""Sign-in throttles counted across the cluster, in Redis (docs/api.md, "Throttling").

Each throttle key (an endpoint and a client address or username) is a sorted set of the
tries in its window, scored by Redis server time (ms). One script drops the tries that left
the window, then either records this one or answers how long until one more fits, in one
round trip: two nodes counting the same key at once cannot both take its last slot.

The synchronous throttles (rooms/throttling.py) call `count_try` through async_to_sync,
which runs it on the event loop of the node's Redis bridge. It answers NOT_REACHED where
there is no started bridge (single-node mode, a management command), while the bridge is
degraded, and when the script gets no answer in time: the caller then counts in this
node's memory alone, as every node does in single-node mode.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Final

from channels.layers import get_channel_layer

TRY_TIMEOUT_SECS = 0.5  # a sign-in waits at most this for Redis, then counts locally
NOT_REACHED: Final = "not_reached"

# KEYS: the key. ARGV: tries allowed in the window, the window (ms), a unique member.
# Returns -1 when the try is recorded, else the ms until the oldest try that must leave
# for one more to fit does leave.
TRY_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local allowed, window = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count >= allowed then
  local oldest = redis.call('ZRANGE', KEYS[1], count - allowed, count - allowed, 'WITHSCORES')
  return window - (now - tonumber(oldest[2]))
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return -1
"""


async def count_try(key: str, allowed: int, window_secs: float) -> float | None | str:
    """Count one try of `key` cluster-wide: None if it is within the limit, else the
    seconds until one more fits; NOT_REACHED if Redis gave no answer."""
    layer = get_channel_layer()
    started = getattr(layer, "started_bridge", None)
    bridge = started() if started is not None else None
    if bridge is None or not bridge.healthy or bridge.client is None:
        return NOT_REACHED
    try:
        async with asyncio.timeout(TRY_TIMEOUT_SECS):
            answer = await bridge.client.eval(
                TRY_SCRIPT,
                1,
                f"{bridge.prefix}throttle:{key}",
                allowed,
                int(window_secs * 1000),
                uuid.uuid4().hex,
            )
    except Exception as exc:
        bridge.count_error(exc)
        return NOT_REACHED
    answer = int(answer)
    return None if answer < 0 else answer / 1000

"""The local hub: groups of channels and one bounded queue per channel, for one event loop.

Pure asyncio and standard library, so it can be reasoned about (and reused by the Redis
bridge) without Django. Not thread-safe: one hub belongs to one event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Collection
from typing import Any

from cluster.fastlane import Sink

OVERFLOW_MESSAGE_TYPE = "channel.overflow"
# How many `receipt` values a group remembers (a re-read after an outage skips those).
RECEIPTS_PER_GROUP = 1000

Message = dict[str, Any]
# A fast-lane message's ready WebSocket frame, or None for a message that takes the queue.
FrameOf = Callable[[Message], bytes | None]
# Takes a channel's messages as they come, instead of the hub's queue: the consumer's own
# input (its server's, under manage.py serve), so that one task reads both.
Inbox = Callable[[Message], None]
# Told how many sockets of one fan-out got the frame through the fast lane.
FastDelivered = Callable[[Message, int], None]


class _ChannelQueue:
    """One channel's pending messages (as (deadline, message)) and its waiting receivers."""

    __slots__ = ("capacity", "entries", "overflowed", "waiters")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        # Lists, not deques: a queue holds a few entries at most while its consumer keeps up,
        # and an empty deque is 600 bytes for each of 10,000 idle sockets.
        self.entries: list[tuple[float, Message]] = []
        self.waiters: list[asyncio.Future[None]] = []
        # While set, the only entry is the overflow notice and group messages are dropped.
        self.overflowed = False

    def drop_expired(self, now: float) -> None:
        # Deadlines only grow along the list, so expired entries are all at its head. The
        # overflow notice never expires: the receiver must learn that it fell behind.
        if self.overflowed:
            return
        entries = self.entries
        expired = 0
        while expired < len(entries) and entries[expired][0] <= now:
            expired += 1
        if expired:
            del entries[:expired]

    def push(self, deadline: float, message: Message) -> None:
        self.entries.append((deadline, message))
        self.wake_one()

    def wake_one(self) -> None:
        while self.waiters:
            waiter = self.waiters.pop(0)
            if not waiter.done():
                waiter.set_result(None)
                return

    def is_idle(self) -> bool:
        return not self.entries and not self.waiters


class _ReceiptLog:
    """The last `size` receipts of a group, in order, with constant-time lookups."""

    def __init__(self, size: int) -> None:
        self.order: deque[Any] = deque()
        self.seen: set[Any] = set()
        self.size = size

    def add(self, receipt: Any) -> bool:
        """Remember a receipt; False if it was already there."""
        if receipt in self.seen:
            return False
        if len(self.order) >= self.size:
            self.seen.discard(self.order.popleft())
        self.order.append(receipt)
        self.seen.add(receipt)
        return True


class LocalHub:
    """Groups → channel names, channel → bounded FIFO queue; all state of one event loop.

    Messages are handed over by reference, never copied: a message is immutable once sent.
    A channel with a sink attached gets fast-lane messages (those `frame_of` frames) written
    to the sink as one frame made once per fan-out, instead of queued (cluster/fastlane.py).
    """

    def __init__(
        self,
        capacity_for: Callable[[str], int],
        expiry: float,
        group_expiry: float,
        clock: Callable[[], float] = time.monotonic,
        frame_of: FrameOf | None = None,
        on_fast_delivered: FastDelivered | None = None,
    ) -> None:
        self._capacity_for = capacity_for
        self._expiry = expiry
        self._group_expiry = group_expiry
        self._clock = clock
        self._queues: dict[str, _ChannelQueue] = {}
        self._groups: dict[str, dict[str, float]] = {}  # group → {channel: joined at}
        self._memberships: dict[str, set[str]] = {}  # channel → groups
        self._sinks: dict[str, Sink] = {}  # channel → its socket's fast lane
        self._inboxes: dict[str, Inbox] = {}  # channel → its consumer's own input queue
        self._frame_of = frame_of
        self._on_fast_delivered = on_fast_delivered
        self._next_sweep = clock() + expiry
        # group → the `receipt` values of the last messages it was handed (see fan_out).
        self._receipts: dict[str, _ReceiptLog] = {}

    def put(self, channel: str, message: Message) -> bool:
        """Queue a message for one channel; False if the channel is full (nothing queued)."""
        inbox = self._inboxes.get(channel)
        if inbox is not None:
            inbox(message)
            return True
        now = self._tick()
        queue = self._queue(channel)
        queue.drop_expired(now)
        if queue.overflowed or len(queue.entries) >= queue.capacity:
            return False
        queue.push(now + self._expiry, message)
        return True

    def fan_out(self, group: str, message: Message) -> int:
        """Hand the same message to every member; return how many got it.

        Members with a sink get a fast-lane message as one frame, made once for all of them;
        the others get the message object queued. A full member is not an error: its
        backlog is replaced by one overflow notice and it gets no group messages until it
        has received that notice. A message with a `receipt` the group was already handed
        (the same chat, live and from a re-read after an outage) is not handed again.
        """
        members = self._groups.get(group)
        if not members:
            return 0
        receipt = message.get("receipt")
        if receipt is not None and not self._receipt_log(group).add(receipt):
            return 0  # its members already have it (live and a re-read crossed)
        now = self._tick()
        joined_before = now - self._group_expiry
        deadline = now + self._expiry
        sinks = self._sinks
        inboxes = self._inboxes
        frame: bytes | None = None
        if sinks and self._frame_of is not None:
            frame = self._frame_of(message)
        stale: list[str] = []
        delivered = 0
        fast = 0
        for channel, joined_at in members.items():
            if joined_at < joined_before:
                stale.append(channel)
                continue
            if frame is not None:
                sink = sinks.get(channel)
                if sink is not None:
                    sink.write_frame(frame)
                    fast += 1
                    continue
            inbox = inboxes.get(channel)
            if inbox is not None:
                inbox(message)
                delivered += 1
                continue
            queue = self._queue(channel)
            if queue.overflowed:
                continue
            queue.drop_expired(now)
            if len(queue.entries) >= queue.capacity:
                queue.entries.clear()
                queue.overflowed = True
                queue.push(deadline, {"type": OVERFLOW_MESSAGE_TYPE})
                continue
            queue.push(deadline, message)
            delivered += 1
        for channel in stale:
            self.discard(group, channel)
        if fast and self._on_fast_delivered is not None:
            self._on_fast_delivered(message, fast)
        return delivered + fast

    def attach_sink(self, channel: str, sink: Sink, inbox: Inbox | None = None) -> None:
        """From now on, fast-lane messages for `channel` are written to `sink`, and, with an
        `inbox`, every other message is handed to it rather than queued here."""
        self._sinks[channel] = sink
        if inbox is not None:
            self._inboxes[channel] = inbox

    def detach_sink(self, channel: str) -> None:
        """Back to queueing every message for `channel` (it is closing)."""
        self._sinks.pop(channel, None)
        self._inboxes.pop(channel, None)

    async def get(self, channel: str) -> Message:
        """Wait for the next unexpired message on a channel; cancelling it loses nothing."""
        while True:
            # Tick first: a sweep may drop this channel's idle queue, and a waiter must never
            # be parked on a queue that is no longer the channel's.
            now = self._tick()
            queue = self._queue(channel)
            queue.drop_expired(now)
            if queue.entries:
                _, message = queue.entries.pop(0)
                # While overflowed the notice is the only entry, so it has now been read.
                queue.overflowed = False
                return message
            # The message stays queued until a receiver takes it synchronously above, so a
            # cancelled wait can never swallow one.
            waiter = asyncio.get_running_loop().create_future()
            queue.waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    # Woken for a message but leaving: hand the wake-up to another receiver.
                    queue.wake_one()
                raise
            finally:
                if waiter in queue.waiters:
                    queue.waiters.remove(waiter)

    def _receipt_log(self, group: str) -> _ReceiptLog:
        log = self._receipts.get(group)
        if log is None:
            log = self._receipts[group] = _ReceiptLog(RECEIPTS_PER_GROUP)
        return log

    def receipts(self, group: str) -> Collection[Any]:
        """The `receipt` values of the latest messages fanned out to this group (at most
        RECEIPTS_PER_GROUP, while the group exists): what its members were already given."""
        log = self._receipts.get(group)
        return tuple(log.order) if log is not None else ()

    def add(self, group: str, channel: str) -> bool:
        """Add (or refresh) a channel's membership; True if this created the group."""
        members = self._groups.get(group)
        created = members is None
        if members is None:
            members = self._groups[group] = {}
        members[channel] = self._clock()
        self._memberships.setdefault(channel, set()).add(group)
        return created

    def discard(self, group: str, channel: str) -> bool:
        """Remove a channel from a group; True if that emptied and dropped the group."""
        members = self._groups.get(group)
        if members is None or channel not in members:
            return False
        del members[channel]
        groups = self._memberships.get(channel)
        if groups is not None:
            groups.discard(group)
            if not groups:
                del self._memberships[channel]
                queue = self._queues.get(channel)
                if queue is not None and queue.is_idle():
                    del self._queues[channel]
        if members:
            return False
        del self._groups[group]
        self._receipts.pop(group, None)
        return True

    def is_member(self, channel: str) -> bool:
        """Whether the channel belongs to any group of this loop (so it is consumed here)."""
        return channel in self._memberships

    def has_waiting_receivers(self, channel: str) -> bool:
        """Whether a receive() on the channel is waiting with no message to take yet."""
        queue = self._queues.get(channel)
        return queue is not None and any(not waiter.done() for waiter in queue.waiters)

    def clear(self) -> None:
        """Drop every queue and group; pending receivers keep waiting on fresh queues."""
        queues = list(self._queues.values())
        self._queues.clear()
        self._groups.clear()
        self._receipts.clear()
        self._memberships.clear()
        self._sinks.clear()
        self._inboxes.clear()
        for queue in queues:
            # Each woken receiver finds nothing and re-waits on the channel's new queue.
            for waiter in queue.waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def _queue(self, channel: str) -> _ChannelQueue:
        queue = self._queues.get(channel)
        if queue is None:
            queue = self._queues[channel] = _ChannelQueue(self._capacity_for(channel))
        return queue

    def _tick(self) -> float:
        now = self._clock()
        if now >= self._next_sweep:
            self._sweep(now)
        return now

    def _sweep(self, now: float) -> None:
        # Channels whose consumer went away without receiving would otherwise keep their
        # queue forever; once per expiry period, drop queues that are empty or stale.
        self._next_sweep = now + self._expiry
        for channel, queue in list(self._queues.items()):
            queue.drop_expired(now)
            if queue.waiters:
                continue
            if queue.overflowed:
                # An unread overflow notice matters only while the channel is still a member,
                # or for one expiry period after it left (its receiver may still be draining).
                if channel in self._memberships or queue.entries[0][0] > now:
                    continue
            elif queue.entries:
                continue
            del self._queues[channel]

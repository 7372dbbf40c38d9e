"""Idle timeout and maximum duration of room sockets: one timer per event loop for all of them.

A sleeping task per socket cost about a kilobyte for each of 10,000 idle sockets
(docs/performance.md, memory per socket). Here each socket has one entry in a heap, keyed
by the earliest moment it could time out; when that moment comes the socket is asked again
(activity since then moves its idle deadline) and either times out or goes back in.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import weakref
from typing import Protocol

from rooms.loops import per_loop, start_task


class Watched(Protocol):
    """A socket the sweeper watches."""

    def timeout_due(self) -> float | None:
        """When it times out (time.monotonic()), unless active before; None: it has ended."""

    async def time_out(self) -> None:
        """Close it: its deadline has passed."""


class TimeoutSweeper:
    """Closes the sockets of one event loop whose deadline has passed."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.heap: list[tuple[float, int, weakref.ref[Watched]]] = []
        self.order = itertools.count()  # ties never compare the weak references
        self.timer: asyncio.TimerHandle | None = None

    def watch(self, socket: Watched) -> None:
        """Start watching a socket (a closed one drops out by itself: only a weak reference
        is kept)."""
        due = socket.timeout_due()
        if due is not None:
            self._push(due, weakref.ref(socket))

    def reschedule(self) -> None:
        """Ask every socket its deadline again: the idle timeout or maximum duration changed
        (cluster/limits.py), and a lowered one may already have passed."""
        entries = []
        for _, _, ref in self.heap:
            socket = ref()
            due = socket.timeout_due() if socket is not None else None
            if due is not None:
                entries.append((due, next(self.order), ref))
        heapq.heapify(entries)
        self.heap = entries
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_at(entries[0][0], self._sweep) if entries else None

    def _push(self, due: float, ref: weakref.ref[Watched]) -> None:
        heapq.heappush(self.heap, (due, next(self.order), ref))
        if self.timer is None or due < self.timer.when():
            if self.timer is not None:
                self.timer.cancel()
            # The loop's clock is time.monotonic(), the clock of the deadlines.
            self.timer = self.loop.call_at(due, self._sweep)

    def _sweep(self) -> None:
        self.timer = None
        now = self.loop.time()
        heap = self.heap
        while heap and heap[0][0] <= now:
            _, _, ref = heapq.heappop(heap)
            socket = ref()
            due = socket.timeout_due() if socket is not None else None
            if socket is None or due is None:
                continue
            if due > now:
                heapq.heappush(heap, (due, next(self.order), ref))
                continue
            start_task(self.loop, socket.time_out())
        if heap:
            self.timer = self.loop.call_at(heap[0][0], self._sweep)


_sweepers: dict[asyncio.AbstractEventLoop, TimeoutSweeper] = {}


def sweeper() -> TimeoutSweeper:
    """The running event loop's sweeper."""
    return per_loop(_sweepers, TimeoutSweeper)


def reschedule_everywhere() -> None:
    """Have every event loop's sweeper ask its sockets' deadlines again (from any thread)."""
    for loop, found in list(_sweepers.items()):
        if not loop.is_closed():
            loop.call_soon_threadsafe(found.reschedule)

"""The timeout sweeper: one timer per loop closes every socket whose deadline has passed."""

import asyncio
import gc
import time

from rooms.timeouts import TimeoutSweeper


class FakeSocket:
    """A socket with a deadline of its own; `time_out` records when it was called."""

    def __init__(self, idle_secs: float) -> None:
        self.idle_secs = idle_secs
        self.last_activity = time.monotonic()
        self.timed_out = asyncio.Event()
        self.ended = False

    def timeout_due(self) -> float | None:
        return None if self.ended else self.last_activity + self.idle_secs

    async def time_out(self) -> None:
        self.timed_out.set()


async def test_a_socket_times_out_once_its_deadline_passes():
    sweeper = TimeoutSweeper(asyncio.get_running_loop())
    socket = FakeSocket(idle_secs=0.1)
    sweeper.watch(socket)

    await asyncio.wait_for(socket.timed_out.wait(), 2)

    assert time.monotonic() >= socket.last_activity + 0.1


async def test_activity_moves_the_deadline():
    sweeper = TimeoutSweeper(asyncio.get_running_loop())
    busy, idle = FakeSocket(idle_secs=0.3), FakeSocket(idle_secs=0.3)
    sweeper.watch(busy)
    sweeper.watch(idle)

    async def keep_busy() -> None:
        while not idle.timed_out.is_set():
            busy.last_activity = time.monotonic()
            await asyncio.sleep(0.05)

    await asyncio.wait_for(asyncio.gather(keep_busy(), idle.timed_out.wait()), 3)

    assert not busy.timed_out.is_set()


async def test_an_earlier_deadline_is_swept_first():
    sweeper = TimeoutSweeper(asyncio.get_running_loop())
    late, early = FakeSocket(idle_secs=30), FakeSocket(idle_secs=0.1)
    sweeper.watch(late)
    sweeper.watch(early)

    await asyncio.wait_for(early.timed_out.wait(), 2)

    assert not late.timed_out.is_set()


async def test_ended_and_collected_sockets_drop_out():
    sweeper = TimeoutSweeper(asyncio.get_running_loop())
    ended, gone = FakeSocket(idle_secs=0.05), FakeSocket(idle_secs=0.05)
    sweeper.watch(ended)
    sweeper.watch(gone)
    ended.ended = True
    del gone
    gc.collect()

    await asyncio.sleep(0.2)

    assert sweeper.heap == [] and not ended.timed_out.is_set()


async def test_reschedule_applies_a_shorter_deadline_to_sockets_already_watched():
    sweeper = TimeoutSweeper(asyncio.get_running_loop())
    socket = FakeSocket(idle_secs=30)
    sweeper.watch(socket)

    socket.idle_secs = 0.1  # the idle timeout lowered at runtime
    sweeper.reschedule()

    await asyncio.wait_for(socket.timed_out.wait(), 2)


async def test_without_reschedule_a_shorter_deadline_waits_for_the_old_one():
    sweeper = TimeoutSweeper(asyncio.get_running_loop())
    socket = FakeSocket(idle_secs=30)
    sweeper.watch(socket)

    socket.idle_secs = 0.1
    await asyncio.sleep(0.3)

    assert not socket.timed_out.is_set()

"""State kept per event loop: each loop (daphne's, or a test's) gets its own, made on first use."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

State = TypeVar("State")

# Tasks started with `start_task`, kept from the garbage collector until they finish (the
# loop itself keeps only weak references to its tasks).
_running: set[asyncio.Task[Any]] = set()


def per_loop(
    registry: dict[asyncio.AbstractEventLoop, State],
    make: Callable[[asyncio.AbstractEventLoop], State],
) -> State:
    """The running loop's entry of `registry`, made by `make` the first time; entries of
    closed loops are dropped then."""
    loop = asyncio.get_running_loop()
    found = registry.get(loop)
    if found is None:
        for old in [old for old in registry if old.is_closed()]:
            del registry[old]
        found = registry[loop] = make(loop)
    return found


def start_task(loop: asyncio.AbstractEventLoop, work: Coroutine[Any, Any, Any]) -> None:
    """Run `work` as a task of `loop` that nobody awaits, kept alive until it is done."""
    task = loop.create_task(work)
    _running.add(task)
    task.add_done_callback(_running.discard)

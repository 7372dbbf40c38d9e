"""State kept per event loop: each loop (daphne's, or a test's) gets its own, made on first use."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

State = TypeVar("State")


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

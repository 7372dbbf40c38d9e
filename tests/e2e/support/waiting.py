"""Bounded waits: poll a condition until it holds or a deadline passes (no bare sleeps)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
POLL_INTERVAL = 0.05


def wait_for(
    condition: Callable[[], T],
    timeout: float = 10.0,
    what: str = "the condition",
    interval: float = POLL_INTERVAL,
) -> T:
    """Call `condition` until it returns something truthy and return that; fail after `timeout`
    seconds with `what` and the last value (or the last exception) in the message."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = condition()
        except AssertionError:
            raise
        except Exception as exc:  # a page mid-navigation, a socket mid-reconnect: try again
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise AssertionError(f"no {what} within {timeout:g}s; last: {last!r}")
        time.sleep(interval)

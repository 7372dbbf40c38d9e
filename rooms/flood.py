"""Flood protection for one socket: a token bucket for commands and a window of recent errors."""

from __future__ import annotations

import time


class TokenBucket:
    """Allows `rate` commands a second on average, in bursts of up to `burst`."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def take(self) -> bool:
        """Spend one token; False when the bucket is empty (the command is refused)."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class ErrorWindow:
    """Counts refused frames in a sliding window; too many means abuse (close 1008)."""

    def __init__(self, max_errors: int, window_secs: float) -> None:
        self.max_errors = max_errors
        self.window_secs = window_secs
        self.stamps: list[float] = []  # a list: an empty deque is 600 bytes per socket

    def record(self) -> bool:
        """Note one refused frame; True when the socket has now gone over the limit."""
        now = time.monotonic()
        cutoff = now - self.window_secs
        self.stamps = [stamp for stamp in self.stamps if stamp >= cutoff]
        self.stamps.append(now)
        return len(self.stamps) > self.max_errors

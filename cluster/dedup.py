"""The message deduplicator: drop a message id seen within the dedup window (bounded LRU)."""

from __future__ import annotations

import time
from collections import OrderedDict


class MessageDeduplicator:
    """Remembers message ids for `window_secs`, at most `max_entries` of them."""

    def __init__(self, window_secs: float, max_entries: int = 100_000) -> None:
        self.window_secs = window_secs
        self.max_entries = max_entries
        self._seen: OrderedDict[str, float] = OrderedDict()

    def first_sighting(self, message_id: str) -> bool:
        """True the first time an id is seen within the window; False for a duplicate."""
        now = time.monotonic()
        seen = self._seen
        while seen:
            oldest_id, stamp = next(iter(seen.items()))
            if stamp > now - self.window_secs and len(seen) < self.max_entries:
                break
            del seen[oldest_id]
        if message_id in seen:
            return False
        seen[message_id] = now
        return True

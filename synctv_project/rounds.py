"""Daphne's periodic passes over every connection, a slice at a time.

Daphne's server looks at each of its connections every second (`application_checker`:
reap finished applications) and every two (`timeout_checker`: connect timeouts and the
keep-alive pings). With 10,000 sockets open each pass held the event loop for 5–20 ms and
10–110 ms, which every frame waiting behind it paid (docs/performance.md, scenario b).
Here each pass covers a slice of the connections, often enough that every connection is
still looked at once per period.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

logger = logging.getLogger("synctv.server")

SLICES = 20  # slices per round: a round of 10,000 connections is 500 at a time


class Rounds:
    """Hands out the connections in slices, a full round every SLICES slices; connections
    made during a round wait for the next one."""

    def __init__(self, slices: int = SLICES) -> None:
        self.slices = slices
        self.pending: list[Any] = []
        self.size = 1

    def next_slice(self, connections: Iterable[Any]) -> list[Any]:
        """The next few connections to look at (a new round starts when one ends)."""
        if not self.pending:
            self.pending = list(connections)
            self.size = max(1, -(-len(self.pending) // self.slices))
        chunk = self.pending[-self.size :]
        del self.pending[-self.size :]
        return chunk


def check_application(server: Any, protocol: Any) -> None:
    """Daphne's application check for one connection: an application that outlives its
    disconnected socket by `application_close_timeout` is cancelled, a finished one is
    reaped (its error logged), and the connection is forgotten once both are gone."""
    details = server.connections.get(protocol)
    if details is None:
        return
    disconnected = details.get("disconnected")
    instance = details.get("application_instance")
    overdue = disconnected and time.time() - disconnected > server.application_close_timeout
    if overdue and instance is not None and not instance.done():
        logger.warning("an application outlived its socket and was cancelled: %r", protocol)
        instance.cancel()
    if instance is not None and instance.done():
        error = None if instance.cancelled() else instance.exception()
        if isinstance(error, KeyboardInterrupt):
            server.stop()  # how a protocol asks the server to exit
        elif error is not None:
            logger.error("Exception inside application: %s", error, exc_info=error)
            if not disconnected:
                protocol.handle_exception(error)
        del details["application_instance"]
        instance = None
    if instance is None and disconnected:
        del server.connections[protocol]

"""Database calls of the room sockets, on a small pool of threads (docs/performance.md).

Channels' `database_sync_to_async` is thread-sensitive: every ORM call of every socket of
the node runs on one thread, one after another, so a command waits behind every other
socket's round trips and commits. Here the calls run on DATABASE_THREADS threads instead
(each with its own connection from the pool, synctv_project/settings.py). Measured with 40
rooms each sending seeks back to back: 132 commands/s on one thread, 177 on four (p50 302
→ 218 ms); 8 and 16 threads gave no more, the node's core being busy by then. Each call is
one whole unit (a transaction opens and commits inside it), so nothing relies on two calls
sharing a thread; commands of one socket still run one after another (the consumer awaits
each). The connections are closed or handed back around every call, as Channels does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from channels.db import DatabaseSyncToAsync

DATABASE_THREADS = 4

Result = TypeVar("Result")

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None


def executor() -> ThreadPoolExecutor:
    """The threads of the database calls, made on first use."""
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(DATABASE_THREADS, thread_name_prefix="synctv-db")
        return _executor


def database_call(func: Callable[..., Result]) -> Callable[..., Any]:
    """`func` as a coroutine function run on one of the database threads."""
    return DatabaseSyncToAsync(func, thread_sensitive=False, executor=executor())


def shutdown(wait: bool = True) -> None:
    """Stop the threads once the calls already handed to them are done."""
    global _executor
    with _lock:
        pool, _executor = _executor, None
    if pool is not None:
        pool.shutdown(wait=wait)

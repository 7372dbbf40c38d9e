"""django-prometheus's database backends, without a new cursor class for every connection.

django-prometheus builds its counting cursor class afresh (`ExportingCursorWrapper`, a
class statement) each time a connection is made (PostgreSQL) or a cursor opened (SQLite).
The room sockets' database calls hand their connection back to the pool after every call,
so that was a new class, and a reference cycle for the garbage collector, for nearly every
query (docs/performance.md, garbage collection). Here the class is made once per cursor
class, alias and vendor; the metrics are the same.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from django_prometheus.db.common import ExportingCursorWrapper


@cache
def counting_cursor_class(cursor_class: type, alias: str, vendor: str) -> Any:
    """django-prometheus's counting subclass of `cursor_class`, made once."""
    return ExportingCursorWrapper(cursor_class, alias, vendor)

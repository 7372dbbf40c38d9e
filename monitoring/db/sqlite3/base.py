"""SQLite with django-prometheus's metrics (monitoring/db/__init__.py)."""

from __future__ import annotations

from typing import Any

from django_prometheus.db.backends.sqlite3 import base as prometheus_base

from monitoring.db import counting_cursor_class

DatabaseFeatures = prometheus_base.DatabaseFeatures


class DatabaseWrapper(prometheus_base.DatabaseWrapper):
    """django-prometheus's wrapper, its cursor class made once."""

    def create_cursor(self, name: str | None = None) -> Any:
        """A cursor of the counting class."""
        return self.connection.cursor(
            factory=counting_cursor_class(self.CURSOR_CLASS, self.alias, self.vendor)
        )

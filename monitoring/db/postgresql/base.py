"""PostgreSQL with django-prometheus's metrics (monitoring/db/__init__.py)."""

from __future__ import annotations

from typing import Any

from django.db.backends.postgresql import base
from django_prometheus.db.backends.postgresql import base as prometheus_base

from monitoring.db import counting_cursor_class


class DatabaseWrapper(prometheus_base.DatabaseWrapper):
    """django-prometheus's wrapper, its cursor class made once."""

    def get_connection_params(self) -> dict[str, Any]:
        """Django's parameters, with the counting cursor class as psycopg's cursor factory."""
        params = base.DatabaseWrapper.get_connection_params(self)
        params["cursor_factory"] = counting_cursor_class(
            params["cursor_factory"], self.alias, self.vendor
        )
        return params

"""The monitoring app: metrics, health views, logging context."""

import time

from django.apps import AppConfig

STARTED_AT = time.monotonic()


class MonitoringConfig(AppConfig):
    """Exports this node's alerting counters at 0 once settings are loaded."""

    name = "monitoring"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Counters that alerts read with `increase()` start at 0 (monitoring/metrics.py)."""
        from monitoring.metrics import initialise_node_series

        initialise_node_series()

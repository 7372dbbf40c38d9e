"""The monitoring app: metrics, health views, logging context."""

import time

from django.apps import AppConfig

STARTED_AT = time.monotonic()


class MonitoringConfig(AppConfig):
    """Registers nothing at start beyond importing the metrics module."""

    name = "monitoring"
    default_auto_field = "django.db.models.BigAutoField"

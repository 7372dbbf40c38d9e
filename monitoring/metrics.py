"""Every SyncTV Prometheus metric, defined once (SPEC §5). Import from here, never redefine.

django-prometheus adds its request and database metrics to the same default registry.
"""

from __future__ import annotations

from django.conf import settings
from prometheus_client import Counter, Gauge, Histogram

CONNECTIONS_TOTAL = Gauge(
    "synctv_connections_total", "Open WebSocket connections on this node", ["node"]
)
CONNECTIONS_PER_ROOM = Gauge(
    "synctv_connections_per_room",
    "Open WebSocket connections per room on this node",
    ["room", "node"],
)
CONNECTIONS_PER_USER = Gauge(
    "synctv_connections_per_user",
    "Open WebSocket connections per user on this node",
    ["user", "node"],
)
EVENTS_PUBLISHED = Counter(
    "synctv_events_published_total", "Room events published", ["room", "type"]
)
EVENTS_RECEIVED = Counter(
    "synctv_events_received_total", "Room events received from other nodes", ["node"]
)
EVENTS_DEDUPLICATED = Counter(
    "synctv_events_deduplicated_total", "Events dropped as own or already seen", ["node"]
)
REDIS_PUBSUB_MESSAGES = Counter(
    "synctv_redis_pubsub_messages_total", "Redis pub/sub messages by channel kind", ["channel"]
)
REDIS_CONNECTION_ERRORS = Counter(
    "synctv_redis_connection_errors_total", "Redis connection errors", ["node"]
)
EVENT_PUBLISH_DURATION = Histogram(
    "synctv_event_publish_duration_seconds",
    "Time to publish one event",
    buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
EVENT_DELIVERY_DURATION = Histogram(
    "synctv_event_delivery_duration_seconds",
    "From publish on any node to hand-off to a socket",
    buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)

ALL_ROOMS = "*"


def room_label(room_id: str) -> str:
    """The `room` label value: the id, or `*` when per-room series are switched off."""
    return room_id if settings.SYNCTV.metrics.per_room_labels else ALL_ROOMS


def count_published(room_id: str, event_type: str) -> None:
    """Count one published room event."""
    EVENTS_PUBLISHED.labels(room=room_label(room_id), type=event_type).inc()

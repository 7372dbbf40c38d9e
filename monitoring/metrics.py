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
# Beyond SPEC §5 (docs/monitoring.md): what the alerts on refusals and slow clients read.
CONNECTION_REFUSALS = Counter(
    "synctv_connection_refusals_total",
    "Sockets refused by a connection limit (close 4029), by limit",
    ["node", "reason"],
)
CONNECTION_CLOSES = Counter(
    "synctv_connection_closes_total",
    "Sockets the server closed, by close code",
    ["node", "code"],
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
# What ConnectionManager.try_admit names a refusal (SPEC §4, the 4029 reason text).
LIMIT_REASONS = ("per_user", "per_room", "global")
SLOW_CLIENT_CLOSE_CODE = "1013"


def room_label(room_id: str) -> str:
    """The `room` label value: the id, or `*` when per-room series are switched off."""
    return room_id if settings.SYNCTV.metrics.per_room_labels else ALL_ROOMS


def count_published(room_id: str, event_type: str) -> None:
    """Count one published room event."""
    EVENTS_PUBLISHED.labels(room=room_label(room_id), type=event_type).inc()


def count_refusal(reason: str) -> None:
    """Count one socket refused by the limit `reason` (`per_user`, `per_room`, `global`)."""
    CONNECTION_REFUSALS.labels(node=settings.SYNCTV_NODE_ID, reason=reason).inc()


def count_close(code: int) -> None:
    """Count one socket the server closed with `code`."""
    CONNECTION_CLOSES.labels(node=settings.SYNCTV_NODE_ID, code=str(int(code))).inc()


def initialise_node_series() -> None:
    """Export this node's alerting counters at 0 from the start, so that `increase()` sees
    their first step (a counter first scraped at 1 counts as no increase)."""
    node = settings.SYNCTV_NODE_ID
    for reason in LIMIT_REASONS:
        CONNECTION_REFUSALS.labels(node=node, reason=reason)
    CONNECTION_CLOSES.labels(node=node, code=SLOW_CLIENT_CLOSE_CODE)
    REDIS_CONNECTION_ERRORS.labels(node=node)

"""Liveness (`/health`) and readiness (`/ready`) views, SPEC §5.

What a node's registry entry says of its host (`address`, `pid`) is for staff only: anyone
may ask /ready, so others get the nodes' ids and liveness, not where they run.
"""

from __future__ import annotations

import time
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse

from cluster.registry import known_nodes
from monitoring.apps import STARTED_AT

draining = False
# Registry fields shown to staff only (a node's host and process).
STAFF_ONLY_NODE_FIELDS = frozenset({"address", "pid"})


def mark_draining() -> None:
    """From now on /ready answers 503: the node is shutting down."""
    global draining
    draining = True


async def health(request: HttpRequest) -> JsonResponse:
    """The process and its event loop answer; nothing else is checked."""
    return JsonResponse(
        {
            "status": "ok",
            "node_id": settings.SYNCTV_NODE_ID,
            "uptime_seconds": int(time.monotonic() - STARTED_AT),
        }
    )


def _database_ok() -> bool:
    # Runs on a pool thread of its own, so a hung database never blocks the ORM thread;
    # the connection is closed after each probe instead of lingering per thread.
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except Exception:
        return False
    finally:
        connection.close()


def redis_status() -> str:
    """`disabled` in single-node mode; the cluster layer reports ok/degraded otherwise."""
    if not settings.SYNCTV.cluster_mode:
        return "disabled"
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    status = getattr(layer, "redis_status", None)
    return status() if callable(status) else "degraded"


def _is_staff(request: HttpRequest) -> bool:
    # Sync, in a thread: the session's user is loaded through the sync backend path.
    user = request.user
    return bool(user.is_active and user.is_staff)


def nodes_for(staff: bool) -> list[dict[str, Any]]:
    """The registry's nodes; without their addresses and pids unless `staff`."""
    nodes = known_nodes()
    if staff:
        return nodes
    return [{k: v for k, v in node.items() if k not in STAFF_ONLY_NODE_FIELDS} for node in nodes]


async def ready(request: HttpRequest) -> JsonResponse:
    """200 when this node can serve rooms; 503 when the database is down or it is draining."""
    database_ok = await sync_to_async(_database_ok, thread_sensitive=False)()
    checks = {
        "database": "ok" if database_ok else "down",
        "redis": redis_status(),
        "cluster_mode": settings.SYNCTV.cluster_mode,
    }
    is_ready = database_ok and not draining
    body: dict = {"status": "ready" if is_ready else "not_ready", "checks": checks}
    if settings.SYNCTV.cluster_mode:
        body["node_id"] = settings.SYNCTV_NODE_ID
        body["nodes"] = nodes_for(staff=await sync_to_async(_is_staff)(request))
    if draining:
        body["draining"] = True
    return JsonResponse(body, status=200 if is_ready else 503)


def nodes_view(request: HttpRequest) -> JsonResponse:
    """`/admin/nodes/` (staff only): the cluster's nodes as this node's registry last read them."""
    return JsonResponse(
        {
            "node_id": settings.SYNCTV_NODE_ID,
            "cluster_mode": settings.SYNCTV.cluster_mode,
            "nodes": known_nodes(),
        }
    )

"""The staff live view: the cluster's nodes and, per node, its rooms with their sockets.

Nodes come from the node registry (cluster/registry.py: its Redis hash, as this node last
read it, every HEARTBEAT_SECS) in cluster mode, or are this node alone in single-node mode.
Connection counts come from the presence rows, one per open socket. The page
(`/admin/rooms/presence/live/`) renders once on the server and `static/synctv/staff_live.js`
refreshes it from `live.json`; both are for staff only.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.cache import never_cache

from cluster.registry import known_nodes
from monitoring.apps import STARTED_AT
from rooms.models import Presence

PAGE_URL_NAME = "rooms_presence_live"
JSON_URL_NAME = "rooms_presence_live_json"
REFRESH_MS = 3000
NODE_FIELDS = ("node_id", "alive", "started_at", "last_seen")


def _now_ms() -> int:
    return int(time.time() * 1000)


def _this_node() -> dict[str, Any]:
    """This node as the registry would list it (single-node mode, or before its first beat)."""
    now = _now_ms()
    started = now - int((time.monotonic() - STARTED_AT) * 1000)
    return {
        "node_id": settings.SYNCTV_NODE_ID,
        "alive": True,
        "started_at": started,
        "last_seen": now,
    }


def _nodes() -> list[dict[str, Any]]:
    """The nodes to show: the registry's, with this node always among them."""
    if not settings.SYNCTV.cluster_mode:
        return [_this_node()]
    nodes = [{field: node.get(field) for field in NODE_FIELDS} for node in known_nodes()]
    if not any(node["node_id"] == settings.SYNCTV_NODE_ID for node in nodes):
        nodes.append(_this_node())
    return nodes


def live_state() -> dict[str, Any]:
    """Every node (alive, started_at, last_seen: epoch ms) with its rooms and socket counts.

    A node that holds presence rows but is missing from the registry is listed as not alive
    (its rows are cleared once it counts as dead: cluster/registry.py).
    """
    by_node: dict[str, dict[str, Any]] = {node["node_id"]: node for node in _nodes()}
    for node in by_node.values():
        node.update(rooms=[], connections=0)
    counts = (
        Presence.objects.values("node_id", "room_id", "room__name")
        .annotate(connections=Count("connection_id"))
        .order_by("node_id", "-connections", "room_id")
    )
    for row in counts:
        node = by_node.setdefault(
            row["node_id"],
            {"node_id": row["node_id"], "alive": False, "started_at": None, "last_seen": None}
            | {"rooms": [], "connections": 0},
        )
        node["rooms"].append(
            {
                "room_id": row["room_id"],
                "name": row["room__name"],
                "connections": row["connections"],
            }
        )
        node["connections"] += row["connections"]
    return {
        "node_id": settings.SYNCTV_NODE_ID,
        "cluster_mode": settings.SYNCTV.cluster_mode,
        "generated_at": _now_ms(),
        "nodes": sorted(by_node.values(), key=lambda node: node["node_id"]),
    }


def when(epoch_ms: int | None) -> str:
    """An epoch-ms time as people read it (UTC), or an em dash when unknown."""
    if epoch_ms is None:
        return "\u2014"
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _for_page(state: dict[str, Any]) -> list[dict[str, Any]]:
    """The nodes with their times as text, for the server-rendered page."""
    return [
        {
            **node,
            "started_text": when(node["started_at"]),
            "last_seen_text": when(node["last_seen"]),
        }
        for node in state["nodes"]
    ]


@never_cache
@staff_member_required
def live_json(request: HttpRequest) -> JsonResponse:
    """`live.json`: live_state() for the page to poll."""
    return JsonResponse(live_state())


@never_cache
@staff_member_required
def live_page(request: HttpRequest) -> HttpResponse:
    """The page: nodes and rooms, refreshed every REFRESH_MS by staff_live.js."""
    context = {
        **admin.site.each_context(request),
        "title": "Nodes and rooms, live",
        "nodes": _for_page(live_state()),
        "json_url": reverse(f"admin:{JSON_URL_NAME}"),
        "refresh_ms": REFRESH_MS,
    }
    return TemplateResponse(request, "admin/rooms/live.html", context)

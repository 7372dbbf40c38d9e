"""`manage.py serve [--host H] [--port P]`: run one SyncTV node with daphne."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from rooms.codes import MAX_FRAME_BYTES

logger = logging.getLogger("synctv.serve")


class Command(BaseCommand):
    """Serve HTTP and WebSocket on one address, configured by SPEC §2 (server.host/port)."""

    help = "Run one SyncTV node (HTTP + WebSocket) with daphne."

    def add_arguments(self, parser: Any) -> None:
        """--host and --port override server.host and server.port."""
        parser.add_argument("--host", default=None, help="address to listen on")
        parser.add_argument("--port", type=int, default=None, help="port to listen on")

    def handle(self, *args: Any, **options: Any) -> None:
        """Start daphne; returns when the server stops (SIGINT/SIGTERM)."""
        from daphne.endpoints import build_endpoint_description_strings
        from daphne.server import Server

        from rooms.services import presence
        from synctv_project.asgi import application

        config = settings.SYNCTV
        host = options["host"] or config.server.host
        port = options["port"] or config.server.port
        # Sockets this node had before a crash are gone: forget their presence.
        presence.clear_node(settings.SYNCTV_NODE_ID)
        logger.info(
            "serving", extra={"host": host, "port": port, "cluster_mode": config.cluster_mode}
        )
        Server(
            application=application,
            endpoints=build_endpoint_description_strings(host=host, port=port),
            websocket_timeout=-1,  # max duration is enforced by the consumer (close 4010)
            websocket_max_message_size=MAX_FRAME_BYTES,
            websocket_max_frame_size=MAX_FRAME_BYTES,
            application_close_timeout=10,
            verbosity=0,
        ).run()

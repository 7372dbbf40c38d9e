"""`manage.py serve [--host H] [--port P]`: run one SyncTV node with daphne."""

from __future__ import annotations

import logging
import os
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

logger = logging.getLogger("synctv.serve")


class Command(BaseCommand):
    """Serve HTTP and WebSocket on one address, configured by SPEC §2 (server.host/port)."""

    help = "Run one SyncTV node (HTTP + WebSocket) with daphne."

    def add_arguments(self, parser: Any) -> None:
        """--host and --port override server.host and server.port."""
        parser.add_argument("--host", default=None, help="address to listen on")
        parser.add_argument("--port", type=int, default=None, help="port to listen on")

    def handle(self, *args: Any, **options: Any) -> None:
        """Start the node; returns when it has drained and stopped (SIGTERM/SIGINT)."""
        from rooms.services import presence
        from synctv_project.asgi import application
        from synctv_project.server import SyncTVServer

        config = settings.SYNCTV
        host = options["host"] or config.server.host
        port = options["port"] or config.server.port
        # Sockets this node had before a crash are gone: forget their presence (and have the
        # other nodes re-read their rooms, once connected: see SyncTVServer).
        crashed_in = presence.clear_node(settings.SYNCTV_NODE_ID)
        logger.info(
            "serving", extra={"host": host, "port": port, "cluster_mode": config.cluster_mode}
        )
        server = SyncTVServer(
            application, host, port, config.cluster.shutdown_grace_secs, crashed_in=crashed_in
        )
        clean = server.serve()
        # Sockets whose consumers daphne cancelled never ran their disconnect: forget them.
        try:
            presence.clear_node(settings.SYNCTV_NODE_ID)
        except DatabaseError:
            logger.warning("could not forget this node's sockets", exc_info=True)
        if not server.listening_addresses:  # daphne logs the listen failure and just stops
            raise CommandError(f"could not listen on {host}:{port}")
        if not clean:
            logging.shutdown()
            os._exit(1)

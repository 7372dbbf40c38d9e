"""The SyncTV node the browser tests talk to: a real `manage.py serve` that can be restarted
on the same port (SIGTERM, start again), as an operator's restart looks to a browser."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx

from tests.e2e.support.api import Api
from tests.support.servers import HOST, ServeProcess, start_node


class RestartableNode:
    """One node address (127.0.0.1:port) whose process may be stopped and started again."""

    def __init__(self, env: Mapping[str, str], log_dir: Path) -> None:
        self.env = dict(env)
        self.log_dir = log_dir
        self.process: ServeProcess = start_node(self.env, log_dir)
        self.port = self.process.port
        self.restarts = 0

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT` (the same across restarts)."""
        return f"http://{HOST}:{self.port}"

    @property
    def ws_url(self) -> str:
        """`ws://127.0.0.1:PORT`."""
        return f"ws://{HOST}:{self.port}"

    @property
    def node_id(self) -> str | None:
        """The node id the running process reports (a new one after each restart)."""
        return self.process.node_id

    @property
    def running(self) -> bool:
        """True while the process is up."""
        return self.process.running

    @property
    def api(self) -> Api:
        """The HTTP API helpers for this node."""
        return Api(self.base_url)

    def url(self, path: str) -> str:
        """An address on the node: `node.url("/r/" + room_id)`."""
        return f"{self.base_url}{path}"

    def room_url(self, room_id: str) -> str:
        """The shareable room page `/r/{room_id}`."""
        return self.url(f"/r/{room_id}")

    def room_socket_url(self, room_id: str, token: str | None = None) -> str:
        """The room's WebSocket address, with `?token=` when given."""
        return self.process.room_socket_url(room_id, token)

    def stop(self) -> int | None:
        """SIGTERM (the node drains: `shutdown` to every socket, close 1012) and wait."""
        return self.process.stop()

    def start(self) -> None:
        """Start a new process on the same port (after `stop`)."""
        if self.process.running:
            raise RuntimeError(f"node on port {self.port} is still running")
        self.process = start_node(self.env, self.log_dir, port=self.port)
        self.restarts += 1

    def restart(self) -> None:
        """Stop and start again on the same port."""
        self.stop()
        self.start()

    @contextlib.contextmanager
    def down(self) -> Iterator[None]:
        """`with node.down(): ...` runs the block while the node is stopped, then restarts it."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    def connections(self) -> float:
        """Open WebSocket connections on this node (`synctv_connections_total`, 0 if none)."""
        text = httpx.get(f"{self.base_url}/metrics", timeout=5.0).text
        for line in text.splitlines():
            if line.startswith("synctv_connections_total{"):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def log_tail(self, lines: int = 40) -> str:
        """The last lines the current process logged."""
        return self.process.log_tail(lines)

"""The servers a harness run measures, pinned to their cores, and what /proc says of them.

SyncTV (`manage.py serve` = daphne, or uvicorn, or granian on `synctv_project.asgi`), the
stock Channels reference (daphne or uvicorn) and the plain `websockets` server, each on a
free port of 127.0.0.1 under `taskset`, with the fd limit raised. Every process is a
`ManagedProcess` of tests/support/servers.py: stopped by pid, killed with the harness.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from tests.support.servers import (
    HOST,
    START_TIMEOUT,
    ManagedProcess,
    ServeProcess,
    free_port,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
SYNCTV_SERVERS = ("daphne", "uvicorn", "granian")
REFERENCE_SERVERS = ("daphne", "uvicorn")
STOCK_SETTINGS = "bench.reference.stock_channels.settings"
STOCK_APP = "bench.reference.stock_channels.asgi:application"
SYNCTV_APP = "synctv_project.asgi:application"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def raise_fd_limit() -> tuple[int, int]:
    """The soft fd limit up to the hard one (children inherit it); (soft, hard) in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def pinned(argv: list[str], cpus: str) -> list[str]:
    """`argv` run on the CPUs `cpus` ("0", "1", "0,1"); taskset execs, so the pid is argv's."""
    return ["taskset", "-c", cpus, *argv]


def process_tree(pid: int) -> list[int]:
    """`pid` and every descendant (granian runs its workers as child processes)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by `pid` and its descendants."""
    total = 0.0
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


def rss_bytes(pid: int) -> int:
    """Resident memory of `pid` and its descendants."""
    total = 0
    for member in process_tree(pid):
        try:
            total += int(Path(f"/proc/{member}/statm").read_text().split()[1]) * PAGE_BYTES
        except OSError:
            continue
    return total


def tcp_open(host: str, port: int) -> bool:
    """True when something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class Target:
    """One server under test: its process, its address, and how its rooms are reached."""

    name: str  # "synctv", "stock_channels", "ws_broadcast"
    label: str  # e.g. "SyncTV (daphne)", for tables and plots
    process: ManagedProcess
    port: int
    host: str = HOST

    @property
    def is_synctv(self) -> bool:
        """SyncTV speaks SPEC §4; the references echo frames as they are."""
        return self.name == "synctv"

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT`."""
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        """The server's pid (with taskset it is the server's own)."""
        return self.process.pid

    def room_url(self, room: str, token: str | None = None) -> str:
        """The WebSocket address of a room, with `?token=` for SyncTV."""
        url = f"ws://{self.host}:{self.port}/ws/rooms/{room}/"
        return f"{url}?token={quote(token, safe='')}" if token else url

    def stop(self) -> None:
        """Stop the server by pid (SIGTERM, SIGKILL after a deadline), then any child it
        left behind (granian's worker can outlive its parent), by pid."""
        children = process_tree(self.pid)[1:] if self.process.running else []
        self.process.stop()
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)


def synctv_argv(server: str, host: str, port: int) -> list[str]:
    """The command line of one SyncTV node on `server`."""
    python = sys.executable
    if server == "daphne":
        return [python, "manage.py", "serve", "--host", host, "--port", str(port)]
    if server == "uvicorn":
        return [
            *(python, "-m", "uvicorn", SYNCTV_APP, "--host", host, "--port", str(port)),
            *("--lifespan", "off", "--no-access-log", "--log-level", "warning"),
        ]
    if server == "granian":
        return [
            *(python, "-m", "granian", "--interface", "asginl", "--workers", "1"),
            *("--host", host, "--port", str(port), "--log-level", "warning", SYNCTV_APP),
        ]
    raise ValueError(f"unknown SyncTV server {server!r}: one of {', '.join(SYNCTV_SERVERS)}")


def start_synctv(
    env: dict[str, str],
    workdir: Path,
    server: str = "daphne",
    cpus: str = "0",
    port: int | None = None,
    node_id: str | None = None,
) -> Target:
    """A SyncTV node with the SYNCTV__ overrides `env`, pinned; returns once /health is 200."""
    node = ServeProcess(
        env,
        workdir,
        port=port,
        node_id=node_id,
        launcher=lambda host, free: pinned(synctv_argv(server, host, free), cpus),
    )
    node.start()
    return Target("synctv", f"SyncTV ({server})", node, node.port)


def reference_env() -> dict[str, str]:
    """The environment of a reference server: the harness's, Django pointed at the reference."""
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = STOCK_SETTINGS
    env["PYTHONPATH"] = str(REPO_ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_reference(name: str, workdir: Path, server: str = "daphne", cpus: str = "0") -> Target:
    """The stock Channels app (on daphne or uvicorn) or the plain websockets server, pinned."""
    port = free_port()
    python = sys.executable
    if name == "stock_channels" and server == "daphne":
        argv = [python, "-m", "daphne", "-b", HOST, "-p", str(port), STOCK_APP]
        label = "stock Channels (daphne)"
    elif name == "stock_channels" and server == "uvicorn":
        argv = [
            *(python, "-m", "uvicorn", STOCK_APP, "--host", HOST, "--port", str(port)),
            *("--lifespan", "off", "--no-access-log", "--log-level", "warning"),
        ]
        label = "stock Channels (uvicorn)"
    elif name == "ws_broadcast":
        argv = [python, str(REPO_ROOT / "bench/reference/ws_broadcast.py"), "--port", str(port)]
        label = "websockets.broadcast"
    else:
        raise ValueError(f"unknown reference server {name!r} on {server!r}")
    process = ManagedProcess(
        pinned(argv, cpus), workdir / f"{name}-{port}.log", env=reference_env()
    ).start()
    process.wait_until(lambda: tcp_open(HOST, port), START_TIMEOUT, f"port {port} accepting")
    return Target(name, label, process, port)

"""A real nginx in front of test nodes, configured from deploy/nginx.conf itself.

`nginx_config()` is a template step, not a second config: it takes deploy/nginx.conf as
it is and replaces only what differs on a test machine (the upstream servers, the listen
port, the pid, temporary files and the access log, pointed into the test's directory), so the
failover behaviour under test (least_conn, max_fails, proxy_next_upstream, timeouts) is
the deployed one. Each replacement must match exactly once: a changed deploy/nginx.conf
fails loudly here instead of silently testing something else.

    from tests.support.nginx import nginx_proxy  # noqa: F401

`nginx_proxy(nodes)` starts Debian's nginx in the foreground (one process, no daemon, no
master) on a free port and stops it by pid after the test. Its access log records, per
request, each node tried and what it answered (`NginxProcess.routed()`).
"""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.support.servers import (
    HOST,
    REPO_ROOT,
    START_TIMEOUT,
    ManagedProcess,
    ServeProcess,
    free_port,
)

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
NGINX_CONF = REPO_ROOT / "deploy" / "nginx.conf"
ACCESS_LOG = "access.log"
# deploy/nginx.conf's `synctv` format: client [time] "method path" status seconds
# "upstreams" "their statuses" correlation id.
_ACCESS_LINE = re.compile(r'^\S+ \[\S+\] "(\S+) (\S+)" (\d+) \S+ "([^"]*)" "([^"]*)" \S+$')


class TemplateMismatch(AssertionError):
    """deploy/nginx.conf no longer has a line the template step replaces."""


def _replace_once(text: str, pattern: str, replacement: Callable[[re.Match[str]], str]) -> str:
    found = list(re.finditer(pattern, text, flags=re.M))
    if len(found) != 1:
        raise TemplateMismatch(f"{NGINX_CONF}: {len(found)} matches of {pattern!r}, expected 1")
    return text[: found[0].start()] + replacement(found[0]) + text[found[0].end() :]


def _replace_upstream_servers(text: str, addresses: Sequence[str]) -> str:
    """The `server` lines of `upstream synctv`, one per address, with the same parameters."""

    def servers(block: re.Match[str]) -> str:
        lines = re.findall(r"^(\s*)server \S+((?: [^;\s]+)*);$", block.group(0), flags=re.M)
        if not lines:
            raise TemplateMismatch(f"{NGINX_CONF}: no server line in upstream synctv")
        indent, parameters = lines[0]
        body = re.sub(r"^\s*server \S+(?: [^;\s]+)*;\n", "", block.group(0), flags=re.M)
        ours = "".join(f"{indent}server {address}{parameters};\n" for address in addresses)
        return body.replace("least_conn;\n", f"least_conn;\n{ours}", 1)

    return _replace_once(text, r"^\s*upstream synctv \{\n(?:.*\n)*?\s*\}\n", servers)


def nginx_config(addresses: Sequence[str], port: int, run_dir: Path) -> str:
    """deploy/nginx.conf for nginx on 127.0.0.1:`port` in front of `addresses` (host:port),
    with its pid, temporary files and access log in `run_dir`."""
    text = NGINX_CONF.read_text(encoding="utf-8")
    text = _replace_upstream_servers(text, addresses)
    text = _replace_once(
        text, r"^(\s*)listen \d+;$", lambda m: f"{m.group(1)}listen {HOST}:{port};"
    )
    text = _replace_once(text, r"^pid \S+;$", lambda m: f"pid {run_dir / 'nginx.pid'};")
    text = re.sub(
        r"^(\s*)(\w+_temp_path) /tmp/synctv-nginx-(\w+);$",
        lambda m: f"{m.group(1)}{m.group(2)} {run_dir / m.group(3)};",
        text,
        flags=re.M,
    )
    if re.search(r"^[^#\n]*/tmp/synctv-", text, flags=re.M):
        raise TemplateMismatch(f"{NGINX_CONF}: a /tmp path the template step does not move")
    return _replace_once(
        text,
        r"^(\s*)access_log /dev/stdout synctv;$",
        lambda m: f"{m.group(1)}access_log {run_dir / ACCESS_LOG} synctv;",
    )


@dataclass(frozen=True)
class Routed:
    """One request as nginx's access log tells it: each node tried, and what it answered."""

    method: str
    path: str
    status: int
    upstreams: tuple[str, ...]
    upstream_statuses: tuple[str, ...]


def _split(field: str) -> tuple[str, ...]:
    # nginx separates the servers of one request with ", " (and ` : ` across internal redirects).
    return tuple(part.strip() for part in re.split(r"[,:] ", field) if part.strip())


class NginxProcess(ManagedProcess):
    """Debian's nginx with a config made by `nginx_config`, in the foreground, on 127.0.0.1."""

    def __init__(self, addresses: Sequence[str], run_dir: Path) -> None:
        self.port = free_port()
        self.run_dir = run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        self.config_path = run_dir / "nginx.conf"
        self.config_path.write_text(nginx_config(addresses, self.port, run_dir), encoding="utf-8")
        super().__init__(
            [
                NGINX,
                *("-e", "stderr", "-p", str(run_dir), "-c", str(self.config_path)),
                *("-g", "daemon off; master_process off;"),
            ],
            run_dir / "nginx.log",
        )

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT`."""
        return f"http://{HOST}:{self.port}"

    def room_socket_url(self, room_id: str, token: str) -> str:
        """A room's WebSocket address through nginx (what RoomClient helpers call)."""
        return f"ws://{HOST}:{self.port}/ws/rooms/{room_id}/?token={quote(token, safe='')}"

    def start(self, timeout: float = START_TIMEOUT) -> NginxProcess:
        """Launch nginx and wait until its port accepts connections."""
        super().start()
        self.wait_until(self._listening, timeout, f"nginx listening on {HOST}:{self.port}")
        return self

    def _listening(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), 0.5):
            return True
        return False

    def access_log_text(self) -> str:
        """The access log so far (empty before the first request ends)."""
        path = self.run_dir / ACCESS_LOG
        return path.read_text(encoding="utf-8") if path.exists() else ""

    def routed(self) -> list[Routed]:
        """Every request nginx finished so far (a WebSocket once closed), oldest first."""
        found = [_ACCESS_LINE.match(line) for line in self.access_log_text().splitlines()]
        return [Routed(m[1], m[2], int(m[3]), _split(m[4]), _split(m[5])) for m in found if m]


@pytest.fixture
def nginx_proxy(tmp_path: Path) -> Iterator[Callable[[Sequence[ServeProcess]], NginxProcess]]:
    """Factory: `nginx_proxy(nodes)` starts nginx in front of `nodes`; stopped after the test
    (request it after the nodes' fixtures, so it stops first), its log tail printed."""
    started: list[NginxProcess] = []

    def start(nodes: Sequence[ServeProcess]) -> NginxProcess:
        addresses = [f"{node.host}:{node.port}" for node in nodes]
        proxy = NginxProcess(addresses, tmp_path / f"nginx-{len(started) + 1}")
        started.append(proxy)
        return proxy.start()

    try:
        yield start
    finally:
        for proxy in started:
            proxy.stop()
            print(f"--- {proxy.describe()} (last lines of {proxy.log_path}) ---")
            print(proxy.log_tail(30))

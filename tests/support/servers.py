"""Real server processes for tests: `manage.py serve` (or plain daphne) on 127.0.0.1.

`ManagedProcess` is any child process with its output in a log file, stopped by pid
(SIGTERM, then SIGKILL after a deadline) and never left behind: the `serve_node` fixture
stops what it started in a finalizer, an atexit hook stops anything still running, and a
child started from the main thread is killed by the kernel if the test process dies.
`ServeProcess` adds the SyncTV node on top: free port, SYNCTV__ environment, wait for
`GET /health`. Multi-node and Redis tests build on the same two classes.

Use the fixture in a test module with `from tests.support.servers import serve_node  # noqa: F401`.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
SERVE_SETTINGS_MODULE = "synctv_project.settings"

_PR_SET_PDEATHSIG = 1
_live: set[ManagedProcess] = set()
_live_lock = threading.Lock()


class ProcessFailed(RuntimeError):
    """A child process exited, or did not become ready before its deadline."""


def free_port(host: str = HOST) -> int:
    """A TCP port that nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _die_with_parent_hook() -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGKILL the child when its parent dies (None elsewhere)."""
    if not sys.platform.startswith("linux"):
        return None
    # PDEATHSIG fires when the forking *thread* ends, so only the main thread may use it.
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def die_with_parent() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return die_with_parent


class ManagedProcess:
    """One child process whose stdout and stderr go to `log_path`; stopped by its pid."""

    def __init__(
        self,
        argv: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path = REPO_ROOT,
    ) -> None:
        self.argv = list(argv)
        self.log_path = Path(log_path)
        self.env = dict(os.environ if env is None else env)
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """The child's process id (only once started)."""
        if self.process is None:
            raise ProcessFailed(f"{self.argv[0]} was never started")
        return self.process.pid

    @property
    def running(self) -> bool:
        """True while the child has not exited."""
        return self.process is not None and self.process.poll() is None

    def start(self) -> ManagedProcess:
        """Launch the child; returns at once (see `wait_until` for readiness)."""
        if self.process is not None:
            raise ProcessFailed(f"{self.describe()} was already started")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent_hook(),
            )
        with _live_lock:
            _live.add(self)
        return self

    def describe(self) -> str:
        """The command line, for error messages."""
        return " ".join(self.argv)

    def log_tail(self, lines: int = 40) -> str:
        """The last lines the child wrote."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def wait_until(self, probe: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll `probe` until it is true; fail with the log tail if the child exits or time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.running:
                code = self.process.returncode if self.process is not None else None
                raise ProcessFailed(
                    f"{self.describe()} exited with {code} before {what}; log:\n{self.log_tail()}"
                )
            if probe():
                return
            if time.monotonic() >= deadline:
                self.stop()
                raise ProcessFailed(
                    f"{self.describe()}: no {what} within {timeout:.0f}s; log:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, wait up to `timeout`, then SIGKILL; returns the exit code (None if never started)."""
        if self.process is None:
            return None
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=timeout)
            return self.process.returncode
        finally:
            self._forget()

    def kill(self) -> int | None:
        """SIGKILL at once (a crash, for fault tests) and reap the child."""
        if self.process is None:
            return None
        try:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT)
            return self.process.returncode
        finally:
            self._forget()

    def _forget(self) -> None:
        with _live_lock:
            _live.discard(self)

    def __enter__(self) -> ManagedProcess:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


@atexit.register
def _stop_leftovers() -> None:
    """Last line of defence: nothing a test started outlives the test process."""
    with _live_lock:
        leftovers = list(_live)
    for process in leftovers:
        process.kill()


def database_url(database: Mapping[str, Any] | None = None) -> str:
    """The SYNCTV__DATABASE__URL of a Django DATABASES entry (default: this process's, i.e.
    pytest-django's test database once it is set up), so a server shares the test's data."""
    if database is None:
        from django.conf import settings

        database = settings.DATABASES["default"]
    engine = database["ENGINE"]
    name = str(database["NAME"])
    if "sqlite" in engine:
        if name == ":memory:" or "mode=memory" in name:
            raise ProcessFailed("an in-memory SQLite database cannot be shared with a server")
        return f"sqlite:///{Path(name).resolve()}"
    if "postgresql" in engine:
        user = quote(database.get("USER") or "", safe="")
        password = quote(database.get("PASSWORD") or "", safe="")
        credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
        host = database.get("HOST") or "127.0.0.1"
        port = database.get("PORT") or 5432
        return f"postgresql://{credentials}{host}:{port}/{quote(name, safe='')}"
    raise ProcessFailed(f"no SYNCTV database URL for the engine {engine!r}")


def serve_argv(host: str, port: int) -> list[str]:
    """`python manage.py serve --host H --port P`."""
    return [sys.executable, "manage.py", "serve", "--host", host, "--port", str(port)]


def daphne_argv(host: str, port: int) -> list[str]:
    """Plain `daphne synctv_project.asgi:application` (SPEC §1)."""
    return [
        sys.executable,
        *("-m", "daphne", "-b", host, "-p", str(port)),
        "synctv_project.asgi:application",
    ]


def node_env(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment for a child node: the real settings module plus `overrides`."""
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = SERVE_SETTINGS_MODULE
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides or {})
    return env


class ServeProcess(ManagedProcess):
    """One SyncTV node on 127.0.0.1: `manage.py serve` by default, or any `launcher(host, port)`.

    `env` holds SYNCTV__ overrides (at least SYNCTV__DATABASE__URL and
    SYNCTV__SERVER__SECRET_KEY); `node_id` sets SYNCTV__CLUSTER__NODE_ID. Once `start()`
    returns, GET /health answered 200 and `node_id` is what the node reports.
    """

    def __init__(
        self,
        env: Mapping[str, str],
        log_dir: Path,
        port: int | None = None,
        node_id: str | None = None,
        launcher: Callable[[str, int], list[str]] = serve_argv,
        host: str = HOST,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        overrides = dict(env)
        if node_id:
            overrides["SYNCTV__CLUSTER__NODE_ID"] = node_id
        self.node_id = node_id
        label = node_id or "node"
        super().__init__(
            launcher(host, self.port),
            Path(log_dir) / f"{label}-{self.port}.log",
            env=node_env(overrides),
        )

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT`."""
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """`ws://127.0.0.1:PORT`."""
        return f"ws://{self.host}:{self.port}"

    def room_socket_url(self, room_id: str, token: str | None = None) -> str:
        """The WebSocket address of a room, signed in with `token` when given."""
        url = f"{self.ws_url}/ws/rooms/{room_id}/"
        return f"{url}?token={quote(token, safe='')}" if token else url

    def start(self, timeout: float = START_TIMEOUT) -> ServeProcess:
        """Launch the node and wait until GET /health answers 200."""
        super().start()
        self.wait_until(self._healthy, timeout, "GET /health answering 200")
        return self

    def _healthy(self) -> bool:
        try:
            answer = httpx.get(f"{self.base_url}/health", timeout=1.0)
        except httpx.HTTPError:
            return False
        if answer.status_code != 200:
            return False
        self.node_id = answer.json().get("node_id", self.node_id)
        return True

    def address_was_taken(self) -> bool:
        """True when the node exited because its port was already in use."""
        return not self.running and "address already in use" in self.log_tail().lower()


def start_node(
    env: Mapping[str, str],
    log_dir: Path,
    port: int | None = None,
    attempts: int = 3,
    **options: Any,
) -> ServeProcess:
    """Start a node; a free port taken by someone else in the meantime is retried with another."""
    for attempt in range(attempts):
        node = ServeProcess(env, log_dir, port=port, **options)
        try:
            return node.start()
        except ProcessFailed:
            node.stop()
            if port is not None or attempt == attempts - 1 or not node.address_was_taken():
                raise
    raise AssertionError("unreachable")


@pytest.fixture
def serve_node(transactional_db: None, tmp_path: Path) -> Iterator[Callable[..., ServeProcess]]:
    """Factory: `serve_node(node_id=None, env=None, port=None, launcher=serve_argv)` starts a node.

    Nodes use pytest-django's test database (committed rows, hence `transactional_db`) and
    the test settings' secret key; `env` adds or replaces SYNCTV__ variables. Every node is
    stopped before the database is flushed, and its log tail is printed at teardown (pytest
    shows it when the test failed).
    """
    from django.conf import settings

    nodes: list[ServeProcess] = []
    base_env = {
        "SYNCTV__DATABASE__URL": database_url(),
        "SYNCTV__SERVER__SECRET_KEY": settings.SECRET_KEY,
        "SYNCTV__CLUSTER__SHUTDOWN_GRACE_SECS": "1",
    }

    def start(env: Mapping[str, str] | None = None, **options: Any) -> ServeProcess:
        node = start_node({**base_env, **(env or {})}, tmp_path, **options)
        nodes.append(node)
        return node

    try:
        yield start
    finally:
        for node in reversed(nodes):
            node.stop()
        for node in nodes:
            with contextlib.suppress(OSError):
                print(f"--- {node.describe()} (last lines of {node.log_path}) ---")
                print(node.log_tail(30))

"""Fixtures of the browser end-to-end tests: media, a media server, a SyncTV node, chromium.

Every test here is marked `e2e` (added at collection) and is a plain sync function:
Playwright's sync API cannot run inside an asyncio loop.

Scopes: the media, the media server and the browser are made once for the whole e2e
package (and stopped before the rest of the suite runs); the SyncTV node once per test
module; browser contexts and the database rows once per test. The node uses pytest-django's
test database, so each test runs as a `transactional_db` test: its rows are committed (the
node sees them) and flushed after it, once the node holds no more sockets for it.

While Playwright runs, this thread looks to asyncio as if it were inside Playwright's event
loop (Playwright marks its loop as running between sync calls), and Django would refuse ORM
calls from the tests and the flush. Nothing runs in that loop while a test talks to the
database, so the `playwright` fixture sets DJANGO_ALLOW_ASYNC_UNSAFE for its lifetime; the
nodes it starts are given an empty value, so Django's check stays on inside the server.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Playwright, sync_playwright

from tests.e2e.support import (
    DriftRecorder,
    DriftStats,
    MediaServer,
    MediaSet,
    PageFactory,
    RestartableNode,
    RoomObserver,
    generate_media,
    launch_chromium,
    wait_for,
)
from tests.support.servers import database_url

E2E_DIR = Path(__file__).resolve().parent
ARTIFACTS = E2E_DIR / "artifacts"
DRIFT_REPORT = ARTIFACTS / "drift.json"
QUIET_TIMEOUT = 10.0
ASYNC_UNSAFE = "DJANGO_ALLOW_ASYNC_UNSAFE"
REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()

drift_samples = DriftStats()
_nodes: list[RestartableNode] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under tests/e2e/ with `e2e`."""
    for item in items:
        if item.path.is_relative_to(E2E_DIR):
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """Keep each phase's report on the item, so fixtures know at teardown whether it failed."""
    report = yield
    item.stash.setdefault(REPORTS, {})[report.when] = report
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    reports = request.node.stash.get(REPORTS, {})
    return any(report.failed for report in reports.values())


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Write artifacts/drift.json when any drift was measured."""
    drift_samples.write(DRIFT_REPORT)


def pytest_terminal_summary(terminalreporter) -> None:
    """Print the drift table (median and worst |drift| per test case)."""
    if not drift_samples.samples:
        return
    terminalreporter.section("drift: video.currentTime against the server's playback state")
    for line in drift_samples.table():
        terminalreporter.write_line(line)
    terminalreporter.write_line(f"(written to {DRIFT_REPORT.relative_to(E2E_DIR.parents[1])})")


@pytest.fixture(scope="package")
def e2e_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A temporary directory for the whole e2e run."""
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="package")
def media(e2e_tmp: Path) -> MediaSet:
    """The test media (see tests/e2e/support/media.py), made once with ffmpeg."""
    directory = e2e_tmp / "media"
    directory.mkdir()
    return generate_media(directory)


@pytest.fixture(scope="package")
def media_process(media: MediaSet, e2e_tmp: Path) -> Iterator[MediaServer]:
    """The media server process (Range, CORS, content types) serving `media.directory`."""
    server = MediaServer(media.directory, e2e_tmp).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="package")
def media_server(media_process: MediaServer) -> str:
    """The media server's base URL, `http://127.0.0.1:PORT`: `f"{media_server}/{media.clip}"`."""
    return media_process.base_url


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    """Playwright's driver (sync API), for the whole e2e run."""
    previous = os.environ.get(ASYNC_UNSAFE)
    os.environ[ASYNC_UNSAFE] = "true"
    driver = sync_playwright().start()
    try:
        yield driver
    finally:
        driver.stop()
        if previous is None:
            os.environ.pop(ASYNC_UNSAFE, None)
        else:
            os.environ[ASYNC_UNSAFE] = previous


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Debian's chromium, headless, autoplay allowed without a gesture."""
    launched = launch_chromium(playwright)
    try:
        yield launched
    finally:
        launched.close()


@pytest.fixture
def new_page(
    playwright: Playwright, browser: Browser, request: pytest.FixtureRequest
) -> Iterator[PageFactory]:
    """Factory: `new_page(clock_offset_ms=0, viewport=None, autoplay_policy=AUTOPLAY_ALLOWED,
    allow_errors=(), label=None, **context_options)` opens a page in a new context (one user).

    At teardown every context closes; a failed test leaves screenshots of its pages in
    artifacts/failures/, and any console error or uncaught exception not allowed (nor taken
    with `new_page.take_errors(page)`) fails the test, listing the messages.
    """
    factory = PageFactory(playwright, browser)
    try:
        yield factory
    finally:
        if _failed(request):
            name = re.sub(r"[^\w.-]+", "_", request.node.name)
            factory.screenshot_all(ARTIFACTS / "failures", name)
        unexpected = factory.close()
    if unexpected:
        pytest.fail("the browser reported errors:\n" + "\n".join(unexpected), pytrace=False)


@pytest.fixture(scope="module")
def synctv(
    django_db_setup: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RestartableNode]:
    """A real `manage.py serve` node on the test database, shared by the tests of a module.

    `synctv.api` arranges state over HTTP; `synctv.restart()` or `with synctv.down(): ...`
    stops it with SIGTERM and starts it again on the same port. A node a test left stopped
    is started again before the next test.
    """
    from django.conf import settings

    env = {
        "SYNCTV__DATABASE__URL": database_url(),
        "SYNCTV__SERVER__SECRET_KEY": settings.SECRET_KEY,
        "SYNCTV__CLUSTER__SHUTDOWN_GRACE_SECS": "1",
        ASYNC_UNSAFE: "",  # Django's async-safety check stays on in the server
    }
    node = RestartableNode(env, tmp_path_factory.mktemp("synctv-node"))
    _nodes.append(node)
    try:
        yield node
    finally:
        _nodes.remove(node)
        node.stop()


def _wait_until_quiet(node: RestartableNode) -> None:
    """Wait until the node holds no socket and has forgotten their presence rows."""
    from rooms.models import Presence

    wait_for(
        lambda: (
            node.connections() == 0 and not Presence.objects.filter(node_id=node.node_id).exists()
        ),
        QUIET_TIMEOUT,
        f"quiet node {node.node_id} (no sockets, no presence rows) before the flush",
    )


@pytest.fixture(autouse=True)
def e2e_database(transactional_db: None, request: pytest.FixtureRequest) -> Iterator[None]:
    """Committed rows the nodes can see, flushed after the test once the nodes are quiet.

    Prints what the nodes logged during a failed test (pytest shows it with the failure).
    """
    for node in _nodes:
        if not node.running:
            node.start()
    offsets = {node: _log_size(node) for node in _nodes}
    yield
    for node in list(_nodes):
        if node.running:
            _wait_until_quiet(node)
    if _failed(request):
        for node, offset in offsets.items():
            print(f"--- what node {node.node_id} logged during the test ---")
            print(_log_since(node, offset))


def _log_size(node: RestartableNode) -> int:
    try:
        return node.process.log_path.stat().st_size
    except OSError:
        return 0


def _log_since(node: RestartableNode, offset: int, lines: int = 60) -> str:
    try:
        with open(node.process.log_path, "rb") as log:
            log.seek(offset)
            text = log.read().decode("utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


@pytest.fixture
def drift_stats(request: pytest.FixtureRequest) -> DriftRecorder:
    """`drift_stats.measure(page, observer)`: `drift(...)`, recorded under this test's name
    for artifacts/drift.json and the table printed at the end of the run."""
    return DriftRecorder(drift_samples, request.node.name)


@pytest.fixture
def room_observer(synctv: RestartableNode) -> Iterator[Callable[..., RoomObserver]]:
    """Factory: `room_observer(room_id, account=None, password=None, reconnect=True)` is a
    `RoomObserver` on the module's node, closed at teardown."""
    observers: list[RoomObserver] = []

    def observe(room_id: str, **options: Any) -> RoomObserver:
        observer = RoomObserver(synctv, room_id, **options)
        observers.append(observer)
        return observer

    try:
        yield observe
    finally:
        for observer in observers:
            observer.close()

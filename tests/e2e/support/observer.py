"""The room as the server tells it, and how far a browser's <video> is from it.

`RoomObserver` is an extra account in the room holding its own WebSocket (the `websockets`
sync client, read in a background thread). It keeps the newest `playback` state (highest
version; the snapshot's first), so a test knows where every player should be. `drift()`
compares a page's `video.currentTime` with that expectation on this machine's clock (the
nodes run here too, so server epoch ms and `time.time()` are the same clock).
`DriftStats` keeps every measured drift per test and writes `artifacts/drift.json`.
"""

from __future__ import annotations

import itertools
import json
import statistics
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from playwright.sync_api import Page
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.e2e.support.api import Account
from tests.e2e.support.nodes import RestartableNode
from tests.e2e.support.waiting import wait_for

Frame = dict[str, Any]
OPEN_TIMEOUT = 5.0
# Clients reconnect after these close codes (SPEC §4); the observer does too.
RECONNECT_CODES = {1006, 1011, 1012, 1013}
RECONNECT_DELAY = 0.2
RECONNECT_DEADLINE = 30.0
VIDEO_TIME_SCRIPT = "() => document.querySelector('video').currentTime"


def expected_position(playback: Frame, now_ms: float) -> float:
    """Where playback is at `now_ms` (epoch ms): `position`, plus the time since `updated_at`
    times `rate` while playing (SPEC §4)."""
    position = float(playback["position"])
    if playback.get("playing"):
        position += (now_ms - playback["updated_at"]) / 1000 * float(playback.get("rate", 1.0))
    return position


class RoomObserver:
    """An account in a room with a socket of its own: every frame kept, newest playback tracked.

    `node.api.guest()` makes the account unless one is given; the room is joined over HTTP
    (with `password` where it has one), then the socket opens and the snapshot arrives before
    the constructor returns. After a close the server asks clients to retry (1006, 1011,
    1012, 1013: a node restart), it reconnects and reads the new snapshot.
    """

    def __init__(
        self,
        node: RestartableNode,
        room_id: str,
        account: Account | None = None,
        password: str | None = None,
        reconnect: bool = True,
    ) -> None:
        self.node = node
        self.room_id = room_id
        self.account = account or node.api.guest()
        self.reconnect = reconnect
        self.frames: list[Frame] = []
        self.close_codes: list[int | None] = []
        self.snapshots = 0
        self.playback: Frame | None = None
        self.server_time: int | None = None
        self.node_id: str | None = None
        self._lock = threading.Lock()
        self._req_ids = itertools.count(1)
        self._closing = False
        self._socket: ClientConnection | None = None
        node.api.join(self.account, room_id, password)
        self._socket = self._connect()
        self._reader = threading.Thread(
            target=self._read_all, name=f"observer-{room_id}", daemon=True
        )
        self._reader.start()
        self.wait_until(self._has_snapshot, "the snapshot")

    def _has_snapshot(self) -> bool:
        if self.snapshots == 0 and not self._reader.is_alive():
            raise AssertionError(
                f"observer's socket closed ({self.close_codes}) before the snapshot: {self.frames}"
            )
        return self.snapshots >= 1

    def _connect(self) -> ClientConnection:
        url = self.node.room_socket_url(self.room_id, self.account.token)
        # legacy=True: a connection that outlives this call (the reader thread owns it).
        return connect(url, open_timeout=OPEN_TIMEOUT, max_size=2**22, legacy=True)

    def _read_all(self) -> None:
        while not self._closing:
            socket = self._socket
            assert socket is not None
            try:
                for text in socket:
                    self._keep(json.loads(text))
            except ConnectionClosed:
                pass
            code = socket.close_code
            with self._lock:
                self.close_codes.append(code)
            if self._closing or not self.reconnect or code not in RECONNECT_CODES:
                return
            self._socket = self._reconnect()
            if self._socket is None:
                return

    def _reconnect(self) -> ClientConnection | None:
        deadline = time.monotonic() + RECONNECT_DEADLINE
        while not self._closing and time.monotonic() < deadline:
            try:
                return self._connect()
            except Exception:  # refused while the node is down or draining: try again
                time.sleep(RECONNECT_DELAY)
        return None

    def _keep(self, frame: Frame) -> None:
        with self._lock:
            self.frames.append(frame)
            kind = frame.get("type")
            if kind == "snapshot":
                self.snapshots += 1
                self.server_time = frame.get("server_time")
                self.node_id = frame.get("node_id")
            if kind in ("snapshot", "playback"):
                state = frame.get("playback")
                if state and (
                    self.playback is None or state["version"] >= self.playback["version"]
                ):
                    self.playback = state

    @property
    def version(self) -> int:
        """The highest playback version seen (-1 before the snapshot)."""
        return self.playback["version"] if self.playback else -1

    def of_type(self, kind: str) -> list[Frame]:
        """Every frame of type `kind` so far, in order."""
        with self._lock:
            return [frame for frame in self.frames if frame.get("type") == kind]

    def expected_position(self, now_ms: float | None = None) -> float:
        """Where the room's playback is now (or at `now_ms`), from the newest state."""
        assert self.playback is not None, "no playback state yet"
        return expected_position(self.playback, time.time() * 1000 if now_ms is None else now_ms)

    def wait_until(self, condition: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
        """Poll `condition` until it is truthy (see `wait_for`)."""
        return wait_for(condition, timeout, f"{what} (observer of room {self.room_id})")

    def wait_for_version(self, version: int, timeout: float = 10.0) -> Frame:
        """Wait until playback `version` (or a newer one) has arrived; the state."""
        self.wait_until(lambda: self.version >= version, f"playback version {version}", timeout)
        assert self.playback is not None
        return self.playback

    def wait_for_playback(self, matches: Callable[[Frame], Any], timeout: float = 10.0) -> Frame:
        """Wait until the newest playback state `matches` (e.g. `lambda p: p["playing"]`)."""
        self.wait_until(
            lambda: self.playback and matches(self.playback), "matching playback", timeout
        )
        assert self.playback is not None
        return self.playback

    def send(self, frame: Frame) -> None:
        """Send one frame as is."""
        assert self._socket is not None
        self._socket.send(json.dumps(frame))

    def command(self, kind: str, timeout: float = 5.0, **fields: Any) -> Frame:
        """Send a command with a fresh `req_id` (`observer.command("seek", position=30)`) and
        return the `ack` or `error` it causes."""
        req_id = f"observer-{next(self._req_ids)}"
        self.send({"type": kind, "req_id": req_id, **fields})

        def answer() -> Frame | None:
            with self._lock:
                return next(
                    (
                        frame
                        for frame in reversed(self.frames)
                        if frame.get("req_id") == req_id and frame.get("type") in ("ack", "error")
                    ),
                    None,
                )

        return self.wait_until(answer, f"the answer to {kind} ({req_id})", timeout)

    def close(self) -> None:
        """Close the socket and stop the reader."""
        self._closing = True
        if self._socket is not None:
            self._socket.close()
        self._reader.join(timeout=5.0)

    def __enter__(self) -> RoomObserver:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def drift(page: Page, observer: RoomObserver) -> float:
    """`video.currentTime` of `page` minus where the observer says playback is, in seconds
    (positive: the page is ahead). The expectation is taken at the midpoint of the read."""
    before = time.time()
    current = page.evaluate(VIDEO_TIME_SCRIPT)
    after = time.time()
    return float(current) - observer.expected_position((before + after) / 2 * 1000)


class DriftStats:
    """Every drift measured in the run, per test case; summarised at the end of the session."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = defaultdict(list)

    def record(self, case: str, value: float) -> None:
        """Keep one measured drift (seconds) for `case`."""
        self.samples[case].append(value)

    def summary(self) -> dict[str, dict[str, float | int]]:
        """Per case: samples, median and worst |drift| in milliseconds."""
        result: dict[str, dict[str, float | int]] = {}
        for case, values in sorted(self.samples.items()):
            magnitudes = [abs(value) * 1000 for value in values]
            result[case] = {
                "samples": len(values),
                "median_abs_ms": round(statistics.median(magnitudes), 1),
                "worst_abs_ms": round(max(magnitudes), 1),
            }
        return result

    def write(self, path: Path) -> None:
        """Write the summary as JSON (nothing when no drift was measured)."""
        if not self.samples:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.summary(), indent=2) + "\n", "utf-8")

    def table(self) -> list[str]:
        """The summary as aligned text lines."""
        rows = self.summary()
        width = max((len(case) for case in rows), default=4)
        lines = [f"{'case':<{width}}  samples  median |drift|  worst |drift|"]
        for case, row in rows.items():
            lines.append(
                f"{case:<{width}}  {row['samples']:>7}  {row['median_abs_ms']:>11.1f} ms"
                f"  {row['worst_abs_ms']:>10.1f} ms"
            )
        return lines


class DriftRecorder:
    """`drift_stats` in a test: measure a page's drift and keep it under the test's name."""

    def __init__(self, stats: DriftStats, case: str) -> None:
        self.stats = stats
        self.case = case

    def measure(self, page: Page, observer: RoomObserver) -> float:
        """`drift(page, observer)`, recorded."""
        value = drift(page, observer)
        self.record(value)
        return value

    def record(self, value: float) -> None:
        """Keep a drift measured some other way."""
        self.stats.record(self.case, value)

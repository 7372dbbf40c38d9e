"""What the room-page tests share: open a room as a user, read the player, check sync.

Drift is measured the way the issue asks: the page's real `video.currentTime` against the
position the server's newest playback state gives at the moment of reading, on this
machine's clock (`RoomObserver` + `drift`).
"""

from __future__ import annotations

import time
from typing import Any

from playwright.sync_api import Page

from tests.e2e.support import (
    Account,
    DriftRecorder,
    PageFactory,
    RoomObserver,
    drift,
    sign_in_context,
    wait_for,
)
from tests.e2e.support.nodes import RestartableNode

SYNC_LIMIT_S = 0.15  # both players within 150 ms of the expected position ...
CONVERGE_S = 2.0  # ... within 2 s of each change
HOLD_S = 15.0  # ... and over 15 s of playing
SAMPLE_EVERY_S = 0.5
_last_change: dict[int, float] = {}  # recorder -> when its last change was seen (monotonic)
CONNECTED = "#conn-state[data-state=connected]"
VIDEO = "document.querySelector('video')"


def open_room(
    new_page: PageFactory,
    node: RestartableNode,
    room_id: str,
    account: Account,
    **page_options: Any,
) -> Page:
    """A page signed in as `account` on the room, once its socket is connected."""
    page = new_page(label=account.name, **page_options)
    sign_in_context(page.context, node.base_url, account)
    page.goto(node.room_url(room_id))
    page.wait_for_selector(CONNECTED)
    return page


def video(page: Page) -> dict[str, Any]:
    """The player's state as the page has it."""
    return page.evaluate(
        f"""() => {{ const v = {VIDEO}; return {{
            currentTime: v.currentTime, paused: v.paused, rate: v.playbackRate,
            readyState: v.readyState, src: v.currentSrc, muted: v.muted }}; }}"""
    )


def wait_until_playing(page: Page, timeout: float = 10.0) -> None:
    """The page's video is playing with data (not paused, readyState >= 3)."""
    wait_for(
        lambda: (lambda v: not v["paused"] and v["readyState"] >= 3)(video(page)),
        timeout,
        "playing video",
    )


def assert_converges(
    pages: list[Page], observer: RoomObserver, recorder: DriftRecorder, within: float = CONVERGE_S
) -> list[float]:
    """Every page within SYNC_LIMIT_S of the room within `within` seconds; returns the drift
    of each page at that moment, and records each page's drift when `within` is up."""
    started = time.monotonic()
    deadline = started + within
    while True:
        drifts = [drift(page, observer) for page in pages]
        if all(abs(value) <= SYNC_LIMIT_S for value in drifts):
            break
        if time.monotonic() > deadline:
            raise AssertionError(
                f"players not within {SYNC_LIMIT_S * 1000:.0f} ms after {within:g} s: "
                + ", ".join(f"{value * 1000:+.0f} ms" for value in drifts)
            )
        time.sleep(0.05)
    # Reported (not asserted again): where each player is once `within` is up.
    while time.monotonic() < deadline:
        time.sleep(0.05)
    at_deadline = DriftRecorder(recorder.stats, f"{recorder.case} · {within:g} s after a change")
    for page in pages:
        at_deadline.measure(page, observer)
    _last_change[id(recorder)] = started
    return drifts


def assert_stays_in_sync(
    pages: list[Page], observer: RoomObserver, recorder: DriftRecorder, seconds: float = HOLD_S
) -> float:
    """Sample every page every SAMPLE_EVERY_S for `seconds`; each sample within the limit.
    The hold starts once the last change's CONVERGE_S window is over (a player may still be
    landing its last seek inside it). Returns the worst |drift| seen."""
    hold_from = _last_change.get(id(recorder), 0.0) + CONVERGE_S
    while time.monotonic() < hold_from:
        time.sleep(0.05)
    playing = DriftRecorder(recorder.stats, f"{recorder.case} · while playing")
    worst = 0.0
    started = time.monotonic()
    deadline = started + seconds
    while time.monotonic() < deadline:
        for page in pages:
            value = playing.measure(page, observer)
            worst = max(worst, abs(value))
            assert abs(value) <= SYNC_LIMIT_S, (
                f"page {pages.index(page) + 1} drifted {value * 1000:+.0f} ms while playing, "
                f"{time.monotonic() - started:.1f} s into the hold"
            )
        time.sleep(SAMPLE_EVERY_S)
    return worst


def set_seek_bar(page: Page, seconds: float) -> None:
    """Drag the seek bar to `seconds` (as the range input's own events report it)."""
    page.eval_on_selector(
        "#seek-bar",
        "(bar, s) => { bar.value = String(s); bar.dispatchEvent(new Event('input', {bubbles: true})); }",
        seconds,
    )

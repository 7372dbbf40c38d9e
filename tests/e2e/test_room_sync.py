"""Two people in one room stay together: every change of playback, in real Chromium.

Each case drives the page as a person would (the play button, the keyboard, the seek bar,
the speed menu, the playlist) or as another member would (the observer's own commands), and
measures both players against the server's state.
"""

from __future__ import annotations

import pytest

from tests.e2e.room import (
    assert_converges,
    assert_stays_in_sync,
    open_room,
    set_seek_bar,
    video,
    wait_until_playing,
)
from tests.e2e.support import wait_for

SHIFTED_CLOCK_MS = 7000
# A browser logs a refused WebSocket as a console error while the node is down.
RECONNECT_ERRORS = (r"WebSocket connection to .* failed",)


@pytest.fixture
def watch_party(synctv, media, media_server, room_observer, new_page):
    """A room with two movies, its observer, and a factory for the two viewers' pages."""
    api = synctv.api
    owner = api.signup()
    room = api.create_room(owner)
    first = api.add_movie(owner, room["id"], f"{media_server}/{media.clip}", "Test pattern")
    second = api.add_movie(owner, room["id"], f"{media_server}/{media.clip2}", "Second clip")
    observer = room_observer(room["id"], account=owner)

    def viewers(*clock_offsets_ms, **page_options):
        return [
            open_room(
                new_page,
                synctv,
                room["id"],
                api.guest(name),
                clock_offset_ms=offset,
                **page_options,
            )
            for name, offset in zip(("ann", "bob"), clock_offsets_ms, strict=False)
        ]

    return {"room": room, "movies": (first, second), "observer": observer, "viewers": viewers}


def run_every_change(pages, observer, drift_stats, movies):
    """Play, pause, seek, rate 1.5, change movie, then 15 s of playing: in sync after each."""
    ann, bob = pages
    wait_for(
        lambda: video(ann)["readyState"] >= 1 and video(bob)["readyState"] >= 1, 10, "metadata"
    )

    ann.click("#play-toggle")
    observer.wait_for_playback(lambda p: p["playing"])
    wait_until_playing(ann), wait_until_playing(bob)
    assert_converges(pages, observer, drift_stats)

    bob.keyboard.press("Space")  # pause from the other page, by keyboard
    observer.wait_for_playback(lambda p: not p["playing"])
    assert_converges(pages, observer, drift_stats)
    wait_for(lambda: video(ann)["paused"] and video(bob)["paused"], 3, "both paused")

    ann.click("#play-toggle")
    observer.wait_for_playback(lambda p: p["playing"])
    set_seek_bar(ann, 30)  # a seek by dragging, debounced
    observer.wait_for_playback(lambda p: p["playing"] and 29 <= p["position"] <= 31)
    assert_converges(pages, observer, drift_stats)

    bob.select_option("#rate-select", "1.5")
    observer.wait_for_playback(lambda p: p["rate"] == 1.5)
    assert_converges(pages, observer, drift_stats)
    assert abs(video(ann)["rate"] - 1.5) <= 1.5 * 0.08 + 1e-9

    second = movies[1]
    ann.click(f"li.movie[data-movie-id='{second['id']}'] .movie-play")
    observer.wait_for_playback(lambda p: p["movie_id"] == second["id"])
    wait_for(lambda: all("clip2" in video(page)["src"] for page in pages), 5, "the second clip")
    assert_converges(pages, observer, drift_stats)
    observer.command("play")
    observer.wait_for_playback(lambda p: p["playing"] and p["movie_id"] == second["id"])
    assert_converges(pages, observer, drift_stats)

    assert_stays_in_sync(pages, observer, drift_stats)


def test_two_viewers_stay_within_150ms_through_every_change(watch_party, drift_stats):
    pages = watch_party["viewers"](0, 0)
    run_every_change(pages, watch_party["observer"], drift_stats, watch_party["movies"])


def test_a_viewer_whose_clock_is_7s_ahead_stays_in_sync(watch_party, drift_stats):
    pages = watch_party["viewers"](0, SHIFTED_CLOCK_MS)
    shifted = pages[1].evaluate("Date.now()") - pages[0].evaluate("Date.now()")
    assert shifted > SHIFTED_CLOCK_MS - 1000, "the init script did not shift the clock"
    run_every_change(pages, watch_party["observer"], drift_stats, watch_party["movies"])


def test_an_hls_movie_plays_and_stays_in_sync(
    synctv, media, media_server, room_observer, new_page, drift_stats
):
    api = synctv.api
    owner = api.signup()
    room = api.create_room(owner)
    movie = api.add_movie(owner, room["id"], f"{media_server}/{media.hls}", "HLS stream")
    assert movie["type"] == "hls"
    observer = room_observer(room["id"], account=owner)
    pages = [open_room(new_page, synctv, room["id"], api.guest(name)) for name in ("ann", "bob")]
    wait_for(lambda: all(video(page)["readyState"] >= 1 for page in pages), 15, "HLS metadata")
    assert all(video(page)["src"].startswith("blob:") for page in pages), "not played by hls.js"

    pages[0].click("#play-toggle")
    observer.wait_for_playback(lambda p: p["playing"])
    for page in pages:
        wait_until_playing(page)
    assert_converges(pages, observer, drift_stats)
    observer.command("seek", position=24)
    observer.wait_for_playback(lambda p: p["position"] == 24)
    assert_converges(pages, observer, drift_stats, within=3.0)
    assert_stays_in_sync(pages, observer, drift_stats, seconds=8)


def test_after_a_server_restart_both_viewers_resume_in_sync_without_a_click(
    watch_party, synctv, drift_stats
):
    pages = watch_party["viewers"](0, 0, allow_errors=RECONNECT_ERRORS)
    observer = watch_party["observer"]
    wait_for(lambda: all(video(page)["readyState"] >= 1 for page in pages), 10, "metadata")
    observer.command("seek", position=10)
    observer.command("play")
    for page in pages:
        wait_until_playing(page)
    old_node = synctv.node_id

    synctv.restart()  # SIGTERM: shutdown + 1012, then a new process on the same port

    for page in pages:
        page.wait_for_selector("#conn-state[data-state=connected]", timeout=30_000)
        assert synctv.node_id in page.get_attribute("#conn-state", "title")
    assert synctv.node_id != old_node
    observer.wait_until(lambda: observer.snapshots >= 2, "the observer's new snapshot", 30)
    for page in pages:
        wait_until_playing(page)
    assert_converges(pages, observer, drift_stats, within=3.0)
    assert_stays_in_sync(pages, observer, drift_stats, seconds=5)


def test_a_member_without_control_playback_cannot_change_playback_from_the_page(
    synctv, media, media_server, room_observer, new_page
):
    api = synctv.api
    owner = api.signup()
    room = api.create_room(owner, settings={"member_permissions": ["send_chat"]})
    api.add_movie(owner, room["id"], f"{media_server}/{media.clip}")
    observer = room_observer(room["id"], account=owner)
    page = open_room(new_page, synctv, room["id"], api.guest("viewer"))
    version = observer.version

    for control in ("#play-toggle", "#seek-bar", "#rate-select"):
        assert page.is_disabled(control), f"{control} is usable"
        assert "may not control playback" in page.get_attribute(control, "title")
    assert page.is_disabled("li.movie .movie-play")
    page.click("#player")
    for key in ("Space", "ArrowRight", "k"):
        page.keyboard.press(key)
    page.wait_for_timeout(1000)  # what a debounced seek would have waited

    assert observer.version == version, "the page changed playback"
    assert video(page)["paused"]

"""The e2e infrastructure itself: chromium, the media and its server, hls.js from the node,
the clock offset, the console-error check, the observer, drift and node restarts."""

from __future__ import annotations

import time

import httpx

from tests.e2e.support import (
    AUTOPLAY_NEEDS_GESTURE,
    PHONE_VIEWPORT,
    open_html,
    sign_in_context,
    sign_in_page,
    wait_for,
)

HLS_JS_PATH = "/static/vendor/hls.js/hls.mjs"
VIDEO_STATE = "() => { const v = document.querySelector('video'); return v && {ready: v.readyState, time: v.currentTime, paused: v.paused, error: v.error && v.error.message}; }"


def video_state(page) -> dict:
    """readyState, currentTime, paused and error of the page's <video>."""
    return page.evaluate(VIDEO_STATE)


def open_video(page, src: str, *attributes: str) -> None:
    """Put one <video> playing `src` into the current page, and call play()."""
    page.evaluate(
        """([src, attributes]) => {
            const video = document.createElement('video');
            for (const name of attributes) video.setAttribute(name, '');
            video.src = src;
            document.body.append(video);
            video.play();
        }""",
        [src, list(attributes)],
    )


def test_chromium_is_debians_and_runs_pages(browser, new_page):
    page = new_page()
    page.set_content("<p id=greeting>hello</p>")

    assert browser.version.split(".")[0].isdigit()
    assert page.text_content("#greeting") == "hello"
    assert "HeadlessChrome" in page.evaluate("navigator.userAgent")


def test_media_server_answers_a_range_request_with_206_and_those_bytes(media, media_server):
    whole = media.path(media.clip).read_bytes()

    answer = httpx.get(f"{media_server}/{media.clip}", headers={"Range": "bytes=1000-1999"})

    assert answer.status_code == 206
    assert answer.content == whole[1000:2000]
    assert answer.headers["content-range"] == f"bytes 1000-1999/{len(whole)}"
    assert answer.headers["accept-ranges"] == "bytes"
    assert answer.headers["access-control-allow-origin"] == "*"


def test_media_server_sends_the_content_types_browsers_expect(media, media_server):
    expected = {
        media.clip: "video/webm",
        media.clip2: "video/webm",
        media.hls: "application/vnd.apple.mpegurl",
        "hls/seg00.ts": "video/mp2t",
        media.subs: "text/vtt",
    }
    for name, content_type in expected.items():
        answer = httpx.head(f"{media_server}/{name}")
        assert answer.status_code == 200, name
        assert answer.headers["content-type"].startswith(content_type), name
    assert httpx.get(f"{media_server}/missing.webm").status_code == 404


def test_node_serves_hls_js_as_an_es_module(synctv):
    answer = httpx.get(synctv.url(HLS_JS_PATH))

    assert answer.status_code == 200
    assert "javascript" in answer.headers["content-type"]
    assert "Hls as default" in answer.text


def signed_in_user(page, synctv) -> dict:
    """`GET /api/me` from the page, with its cookies."""
    return page.evaluate(
        "(url) => fetch(url, {credentials: 'same-origin'}).then((r) => r.json())",
        synctv.url("/api/me"),
    )["user"]


def test_pages_sign_in_from_the_page_or_with_the_session_cookie(new_page, synctv):
    by_fetch, by_cookie = new_page(), new_page()
    account = synctv.api.guest("cookie guest")

    answer = sign_in_page(by_fetch, synctv.base_url, "fetch guest")
    sign_in_context(by_cookie.context, synctv.base_url, account)
    by_cookie.goto(synctv.url("/health"))

    assert signed_in_user(by_fetch, synctv)["id"] == answer["user"]["id"]
    assert signed_in_user(by_cookie, synctv)["id"] == account.id


def test_video_plays_the_webm_clip_from_the_media_server(new_page, media, media_server):
    page = new_page()
    page.goto(f"{media_server}/{media.blank}")

    open_video(page, media.clip)

    wait_for(lambda: video_state(page)["ready"] >= 3, 10, "readyState >= 3")
    first = video_state(page)["time"]
    playing = wait_for(
        lambda: (state := video_state(page))["time"] > first + 0.5 and state, 10, "time advancing"
    )
    assert not playing["paused"] and playing["error"] is None


def test_subtitles_load_from_the_media_origin_into_a_page_of_the_node(
    new_page, synctv, media, media_server
):
    page = new_page()
    page.goto(synctv.url("/health"))
    page.set_content(
        f'<video crossorigin="anonymous" src="{media_server}/{media.clip}">'
        f'<track default kind="subtitles" srclang="en" src="{media_server}/{media.subs}"></video>'
    )

    cues = wait_for(
        lambda: page.evaluate("document.querySelector('video').textTracks[0].cues?.length"),
        10,
        "the WebVTT cues",
    )

    assert cues == media.cue_count
    assert page.evaluate("document.querySelector('video').textTracks[0].cues[1].text") == "Cue 2"


def test_hls_stream_plays_through_hls_js_loaded_from_the_node(
    new_page, synctv, media, media_server
):
    page = new_page()
    page.goto(synctv.url("/health"))
    page.set_content("<video muted></video>")

    page.evaluate(
        """async ([module, source]) => {
            const {default: Hls} = await import(module);
            if (!Hls.isSupported()) throw new Error('hls.js: MediaSource unsupported');
            const hls = new Hls();
            hls.on(Hls.Events.ERROR, (_, data) => { if (data.fatal) console.error('hls.js', data.details); });
            const video = document.querySelector('video');
            hls.loadSource(source);
            hls.attachMedia(video);
            video.play();
        }""",
        [HLS_JS_PATH, f"{media_server}/{media.hls}"],
    )

    wait_for(lambda: video_state(page)["time"] > 1.0, 15, "HLS playback past 1 s")
    page.evaluate("document.querySelector('video').currentTime = 40")
    wait_for(lambda: video_state(page)["time"] > 40.5, 15, "HLS playback after a seek to 40 s")


def test_clock_offset_shifts_date_but_not_performance_now(new_page):
    offset_ms = -90_000
    page = new_page(clock_offset_ms=offset_ms)
    page.set_content("<p>clock</p>")

    before = time.time() * 1000
    clocks = page.evaluate(
        """() => ({now: Date.now(), created: new Date().getTime(), called: Date(),
                   real: performance.timeOrigin + performance.now(),
                   parsed: new Date(0).getTime(), isDate: new Date() instanceof Date})"""
    )
    after = time.time() * 1000

    for shifted in (clocks["now"], clocks["created"]):
        assert before + offset_ms - 50 <= shifted <= after + offset_ms + 50
    assert before - 50 <= clocks["real"] <= after + 50
    assert clocks["parsed"] == 0 and clocks["isDate"]


def test_console_errors_and_uncaught_exceptions_are_collected(new_page):
    page = new_page()

    page.set_content(
        "<script>console.error('deliberate console error');"
        "setTimeout(() => { throw new Error('deliberate uncaught error'); });</script>"
    )

    errors = wait_for(
        lambda: len(new_page.errors(page)) >= 2 and new_page.errors(page), 5, "errors"
    )
    assert any("deliberate console error" in error for error in errors)
    assert any("deliberate uncaught error" in error for error in errors)
    new_page.take_errors(page)  # expected: they must not fail this test at teardown


def test_allowed_errors_for_an_intentionally_missing_file_are_not_collected(
    new_page, media, media_server
):
    page = new_page(allow_errors=[r"/missing\.webm"])
    page.goto(f"{media_server}/{media.blank}")

    status = page.evaluate("fetch('/missing.webm').then((r) => r.status)")
    page.evaluate("new Promise((resolve) => setTimeout(resolve, 200))")  # let the log arrive

    assert status == 404
    assert new_page.errors(page) == []


def test_phone_viewport_and_strict_autoplay_browser(new_page, media, media_server):
    page = new_page(viewport=PHONE_VIEWPORT, autoplay_policy=AUTOPLAY_NEEDS_GESTURE)
    clip = f"{media_server}/{media.clip}"
    # The page tries to play by itself: an evaluate first would count as a user gesture.
    html = f"""<!doctype html><body><script>
        const attempt = (muted) => {{
            const video = document.createElement('video');
            video.muted = muted;
            video.src = '{clip}';
            document.body.append(video);
            return video.play().then(() => 'played', (error) => error.name);
        }};
        window.outcome = Promise.all([attempt(false), attempt(true)]);
    </script></body>"""
    open_html(page, f"{media_server}/autoplay-probe.html", html)

    unmuted, muted = page.evaluate("window.outcome")

    assert (unmuted, muted) == ("NotAllowedError", "played")
    assert page.evaluate("window.innerWidth") == PHONE_VIEWPORT["width"]


def test_observer_tracks_playback_and_drift_is_measured(
    synctv, room_observer, new_page, drift_stats, media, media_server
):
    owner = synctv.api.guest()
    room = synctv.api.create_room(owner)
    movie = synctv.api.add_movie(owner, room["id"], f"{media_server}/{media.clip}", title="Clip")
    observer = room_observer(room["id"])
    assert observer.playback is not None and observer.server_time is not None

    assert observer.command("set_movie", movie_id=movie["id"])["type"] == "ack"
    assert observer.command("play", position=5)["type"] == "ack"
    state = observer.wait_for_playback(lambda p: p["playing"] and p["movie_id"] == movie["id"])

    page = new_page()
    page.goto(f"{media_server}/{media.blank}")
    open_video(page, media.clip)
    wait_for(lambda: video_state(page)["ready"] >= 3, 10, "the clip to load")
    page.evaluate(
        "(position) => { document.querySelector('video').currentTime = position; }",
        observer.expected_position() + 0.1,  # a seek lands a little later
    )
    wait_for(lambda: video_state(page)["ready"] >= 3, 10, "the seek to complete")

    drifts = [drift_stats.measure(page, observer) for _ in range(3)]

    assert state["version"] == observer.version
    assert all(abs(value) < 1.0 for value in drifts), drifts


def test_node_restarts_on_the_same_port_and_the_observer_reconnects(synctv, room_observer):
    owner = synctv.api.guest()
    room = synctv.api.create_room(owner)
    observer = room_observer(room["id"])
    port, first_node = synctv.port, observer.node_id

    synctv.restart()

    observer.wait_until(lambda: observer.snapshots >= 2, "a snapshot after the restart", 20)
    assert synctv.port == port and synctv.running
    assert 1012 in observer.close_codes
    assert observer.node_id == synctv.node_id != first_node

"""The pages as people use them: lobby, sign-in, shared links, chat, subtitles, members,
autoplay, a phone, and the screenshot shown in the README."""

from __future__ import annotations

import re
from pathlib import Path

from tests.e2e.room import CONNECTED, open_room, video, wait_until_playing
from tests.e2e.support import (
    AUTOPLAY_NEEDS_GESTURE,
    PHONE_VIEWPORT,
    sign_in_context,
    unique_name,
    wait_for,
)

SCREENSHOT = Path(__file__).resolve().parent / "artifacts" / "room.png"
XSS = "<img src=x onerror=alert(1)>"


def test_sign_up_create_a_room_and_find_it_in_the_lobby(synctv, new_page):
    page = new_page(label="alice")
    page.goto(synctv.url("/"))
    page.click("[data-tab=signup]")
    username = unique_name("alice")
    page.fill("#signup-form [name=username]", username)
    page.fill("#signup-form [name=password]", "correct-horse-9")
    page.click("#signup-form button[type=submit]")
    page.wait_for_selector("#whoami")
    assert page.inner_text("#whoami") == username

    name = unique_name("Movie night")
    page.fill("#create-room-form [name=name]", name)
    page.fill("#create-room-form [name=password]", "sesame")
    page.click("#create-room-form button[type=submit]")
    page.wait_for_url(re.compile(r"/r/\w+$"))
    page.wait_for_selector(CONNECTED)
    room_id = page.url.rsplit("/", 1)[1]

    lobby = new_page(label="visitor")
    lobby.goto(synctv.url("/"))
    entry = lobby.wait_for_selector(f"li.room[data-room-id='{room_id}']")
    assert entry.query_selector(".room-name").inner_text() == name
    assert entry.query_selector(".room-lock") is not None
    wait_for(lambda: "1 watching" in entry.inner_text(), 8, "the live viewer count")

    page.click("#signout")
    page.wait_for_url(synctv.url("/"))
    page.wait_for_selector("#auth:not([hidden])")


def test_a_room_that_does_not_exist_shows_a_not_found_page(synctv, new_page):
    page = new_page(allow_errors=(r"404",))
    answer = page.goto(synctv.url("/r/nosuchroom"))
    assert answer.status == 404
    assert page.inner_text("h1") == "Room not found"
    assert page.query_selector("video") is None


def test_a_guest_opening_a_shared_link_of_a_password_room_gets_in_with_the_password(
    synctv, media, media_server, new_page
):
    api = synctv.api
    owner = api.signup()
    room = api.create_room(owner, password="sesame")
    api.add_movie(owner, room["id"], f"{media_server}/{media.clip}")
    page = new_page(label="guest", allow_errors=(r"403",))
    page.goto(synctv.room_url(room["id"]))
    page.wait_for_selector("#gate:not([hidden])")
    assert page.is_hidden("#room")
    page.click("[data-tab=guest]")
    page.fill("#guest-form [name=name]", "Gus")
    page.click("#guest-form button[type=submit]")

    page.wait_for_selector("#password-form:not([hidden])")
    page.fill("#password-form [name=password]", "wrong")
    page.click("#password-form button[type=submit]")
    page.wait_for_selector("#gate-error:not([hidden])")
    assert "wrong room password" in page.inner_text("#gate-error")
    page.fill("#password-form [name=password]", "sesame")
    page.click("#password-form button[type=submit]")

    page.wait_for_selector(CONNECTED)
    assert page.is_hidden("#gate")
    assert page.locator("video").count() == 1
    wait_for(lambda: video(page)["readyState"] >= 1, 10, "the room's movie loaded")
    assert "Gus" in page.inner_text("#members")


def test_chat_goes_both_ways_and_html_in_it_stays_text(synctv, new_page):
    api = synctv.api
    owner = api.signup()
    room = api.create_room(owner)
    ann = open_room(new_page, synctv, room["id"], api.guest("ann"))
    bob = open_room(new_page, synctv, room["id"], api.guest("bob"))
    ann.on("dialog", lambda dialog: (_ for _ in ()).throw(AssertionError("a script ran")))

    bob.fill("#chat-form [name=text]", XSS)
    bob.press("#chat-form [name=text]", "Enter")
    ann.fill("#chat-form [name=text]", "hello bob")
    ann.click("#chat-form button[type=submit]")

    for page in (ann, bob):
        wait_for(lambda page=page: page.locator(".chat-line").count() == 2, 5, "both lines")
        texts = page.locator(".chat-line .chat-text").all_inner_texts()
        assert texts == [XSS, "hello bob"]
        assert page.locator("#chat-log img").count() == 0
    assert ann.locator(".chat-line .chat-author").all_inner_texts() == ["bob", "ann"]
    assert ann.input_value("#chat-form [name=text]") == ""


def test_a_room_admin_deletes_a_chat_line_and_it_goes_for_everyone(synctv, new_page):
    api = synctv.api
    owner = api.signup()
    room = api.create_room(owner)
    admin = open_room(new_page, synctv, room["id"], owner)
    viewer = open_room(new_page, synctv, room["id"], api.guest("spammer"))
    viewer.fill("#chat-form [name=text]", "buy cheap stuff")
    viewer.press("#chat-form [name=text]", "Enter")
    viewer.fill("#chat-form [name=text]", "sorry")
    viewer.press("#chat-form [name=text]", "Enter")
    for page in (admin, viewer):
        wait_for(lambda page=page: page.locator(".chat-line").count() == 2, 5, "both lines")
    assert viewer.query_selector("#chat-log.can-delete") is None  # a member cannot delete

    line = admin.locator(".chat-line", has_text="buy cheap stuff")
    line.hover()
    line.locator(".chat-delete").click()

    for page in (admin, viewer):  # `chat_deleted` removes the line live, on both pages
        wait_for(
            lambda page=page: page.locator(".chat-line .chat-text").all_inner_texts() == ["sorry"],
            5,
            "the deleted line gone",
        )


def test_a_subtitle_track_shows_its_cues(synctv, media, media_server, room_observer, new_page):
    api = synctv.api
    owner = api.signup()
    room = api.create_room(owner)
    track = {"url": f"{media_server}/{media.subs}", "label": "English", "lang": "en"}
    api.add_movie(owner, room["id"], f"{media_server}/{media.clip}", "With subtitles", [track])
    observer = room_observer(room["id"], account=owner)
    page = open_room(new_page, synctv, room["id"], api.guest("reader"))
    wait_for(lambda: page.locator("#subtitle-select option").count() == 2, 5, "the track option")

    page.select_option("#subtitle-select", "0")
    observer.command("seek", position=4.5)
    observer.command("play")
    wait_until_playing(page)

    cue = wait_for(
        lambda: page.evaluate(
            """() => { const t = document.querySelector('video').textTracks[0];
                       return t.mode === 'showing' && t.activeCues && t.activeCues.length
                         ? t.activeCues[0].text : null; }"""
        ),
        8,
        "an active cue",
    )
    assert re.fullmatch(r"Cue \d+", cue)


def test_subtitles_added_later_appear_in_the_chooser(synctv, media, media_server, new_page):
    api = synctv.api
    owner = api.signup()
    room = api.create_room(owner)
    api.add_movie(owner, room["id"], f"{media_server}/{media.clip}")
    page = open_room(new_page, synctv, room["id"], owner)
    page.click("li.movie .movie-subs")
    page.fill(".subs-form [name=url]", f"{media_server}/{media.subs}")
    page.fill(".subs-form [name=label]", "Deutsch")
    page.click(".subs-form button[type=submit]")
    wait_for(lambda: "Deutsch" in page.locator("#subtitle-select").inner_text(), 5, "the new track")
    assert page.locator("video track").count() == 1


def test_room_admins_change_roles_and_ban_from_the_member_list(synctv, new_page):
    api = synctv.api
    owner = api.signup()
    room = api.create_room(owner)
    guest = api.guest("troll")
    admin_page = open_room(new_page, synctv, room["id"], owner)
    guest_page = open_room(new_page, synctv, room["id"], guest, allow_errors=(r"403",))
    member = f"li.member[data-user-id='{guest.id}']"
    admin_page.wait_for_selector(member)
    assert guest_page.query_selector("li.member .member-ban") is None  # members see no controls

    admin_page.select_option(f"{member} .member-role-select", "admin")
    wait_for(lambda: guest_page.inner_text(f"{member} .member-role") == "admin", 5, "the new role")
    guest_page.wait_for_selector("#chat-log.can-delete")  # `me`: an admin's powers, live
    admin_page.select_option(f"{member} .member-role-select", "member")
    wait_for(lambda: guest_page.inner_text(f"{member} .member-role") == "member", 5, "the old role")
    admin_page.click(f"{member} .member-ban")
    admin_page.click(f"{member} .member-ban")  # confirm

    guest_page.wait_for_selector("#conn-state[data-state=offline]")
    assert "banned" in guest_page.get_attribute("#conn-state", "title")
    wait_for(lambda: admin_page.query_selector(member) is None, 5, "the banned user gone")


def test_when_autoplay_is_refused_one_click_joins_playback_in_sync(
    synctv, media, media_server, room_observer, new_page
):
    api = synctv.api
    owner = api.signup()
    room = api.create_room(owner)
    api.add_movie(owner, room["id"], f"{media_server}/{media.clip}")
    observer = room_observer(room["id"], account=owner)
    observer.command("play")
    page = new_page(label="late", autoplay_policy=AUTOPLAY_NEEDS_GESTURE)
    sign_in_context(page.context, synctv.base_url, api.guest("late"))
    # Playwright's selector waits and evaluates count as user gestures, which would lift the
    # autoplay block: wait for the snapshot on the wire instead, then give the page the time
    # to load the movie and try to play before looking at it.
    with page.expect_websocket() as opened:
        page.goto(synctv.room_url(room["id"]))
    opened.value.wait_for_event("framereceived", lambda frame: "snapshot" in str(frame))
    page.wait_for_timeout(3000)
    assert page.is_visible("#autoplay-overlay")
    wait_until_playing(page)  # muted, behind the overlay
    assert video(page)["muted"]

    page.click("#join-playback")

    page.wait_for_selector("#autoplay-overlay", state="hidden")
    wait_until_playing(page)
    assert not video(page)["muted"]
    wait_for(
        lambda: abs(video(page)["currentTime"] - observer.expected_position()) < 0.15,
        3,
        "the player in sync after the click",
    )


def test_the_room_fits_a_phone_without_sideways_scrolling(synctv, media, media_server, new_page):
    api = synctv.api
    owner = api.signup()
    room = api.create_room(owner)
    api.add_movie(owner, room["id"], f"{media_server}/{media.clip}", "A rather long movie title")
    page = open_room(new_page, synctv, room["id"], owner, viewport=PHONE_VIEWPORT)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE_VIEWPORT["width"], f"the page is {width}px wide"
    box = page.locator("#player").bounding_box()
    assert box and box["width"] >= PHONE_VIEWPORT["width"] - 40


def test_screenshot_of_a_room_with_two_viewers_a_playlist_and_chat(
    synctv, media, media_server, room_observer, new_page
):
    api = synctv.api
    owner = api.signup("ann")
    room = api.create_room(owner, name="Friday movie night")
    track = {"url": f"{media_server}/{media.subs}", "label": "English", "lang": "en"}
    api.add_movie(owner, room["id"], f"{media_server}/{media.clip}", "Test pattern", [track])
    api.add_movie(owner, room["id"], f"{media_server}/{media.clip2}", "Second feature")
    api.add_movie(owner, room["id"], f"{media_server}/{media.hls}", "Live stream (HLS)")
    ann = open_room(new_page, synctv, room["id"], owner, viewport={"width": 1280, "height": 1000})
    bob = open_room(new_page, synctv, room["id"], api.guest("bob"))
    ann.select_option("#subtitle-select", "0")
    ann.click("#play-toggle")
    bob.fill("#chat-form [name=text]", "popcorn ready?")
    bob.press("#chat-form [name=text]", "Enter")
    ann.fill("#chat-form [name=text]", "starting now!")
    ann.press("#chat-form [name=text]", "Enter")
    wait_for(lambda: ann.locator(".chat-line").count() == 2, 5, "the chat")
    wait_until_playing(ann)
    ann.wait_for_timeout(1500)  # a frame with a subtitle cue on it
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    ann.screenshot(path=str(SCREENSHOT), full_page=True)
    assert SCREENSHOT.stat().st_size > 10_000


def test_the_playlist_reorders_by_drag_and_removes_live_for_everyone(
    synctv, media, media_server, new_page
):
    api = synctv.api
    owner = api.signup()
    room = api.create_room(owner)
    movies = [
        api.add_movie(owner, room["id"], f"{media_server}/{media.clip}?{title}", title)
        for title in ("First", "Second", "Third")
    ]
    editor = open_room(new_page, synctv, room["id"], owner)
    viewer = open_room(new_page, synctv, room["id"], api.guest("viewer"))
    titles = "li.movie .movie-title"
    assert viewer.locator(titles).all_inner_texts() == ["First", "Second", "Third"]
    assert viewer.get_attribute("li.movie", "draggable") == "false"  # no edit_movie
    assert viewer.is_disabled("li.movie .movie-remove")

    editor.drag_and_drop(
        f"li.movie[data-movie-id='{movies[2]['id']}']",
        f"li.movie[data-movie-id='{movies[0]['id']}']",
    )
    wait_for(
        lambda: viewer.locator(titles).all_inner_texts() == ["Third", "First", "Second"],
        5,
        "the new order on the other page",
    )
    editor.click(f"li.movie[data-movie-id='{movies[1]['id']}'] .movie-remove")
    wait_for(
        lambda: viewer.locator(titles).all_inner_texts() == ["Third", "First"], 5, "the removal"
    )
    assert [m["title"] for m in api.movies(owner, room["id"])["movies"]] == ["Third", "First"]

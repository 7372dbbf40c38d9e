"""The room page under its Content-Security-Policy, in real Chromium: modules, hls.js, subtitles.

A listener installed before any page script (an init script, which the CSP does not
govern) records every `securitypolicyviolation` event; the page must report none while it
loads its modules, plays an HLS movie through hls.js (blob: media, its worker, segments
from the media server) and shows a WebVTT track. An injected inline script proves the
listener hears a violation when there is one.
"""

from __future__ import annotations

import pytest

from tests.e2e.room import CONNECTED, video, wait_until_playing
from tests.e2e.support import sign_in_context, wait_for

RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__cspViolations.push(`${e.effectiveDirective} ${e.blockedURI}`);
});
"""
# How Chromium words the refusal of the one inline script the test injects.
INLINE_SCRIPT_REFUSED = r"inline script violates the following Content Security Policy"

pytestmark = pytest.mark.timeout(120)


def violations(page) -> list[str]:
    return page.evaluate("() => window.__cspViolations")


def test_the_room_plays_hls_with_subtitles_under_its_csp_without_a_violation(
    synctv, media, media_server, room_observer, new_page
):
    api = synctv.api
    owner = api.signup()
    room = api.create_room(owner)
    track = {"url": f"{media_server}/{media.subs}", "label": "English", "lang": "en"}
    api.add_movie(owner, room["id"], f"{media_server}/{media.hls}", "HLS stream", [track])
    observer = room_observer(room["id"], account=owner)
    page = new_page(label="viewer", allow_errors=(INLINE_SCRIPT_REFUSED,))
    page.context.add_init_script(RECORD_VIOLATIONS)
    sign_in_context(page.context, synctv.base_url, api.guest("viewer"))

    answer = page.goto(synctv.room_url(room["id"]))
    page.wait_for_selector(CONNECTED)  # room.js and the modules it imports ran
    page.select_option("#subtitle-select", "0")
    observer.command("play")
    wait_until_playing(page, timeout=15)
    wait_for(
        lambda: (
            page.evaluate("() => document.querySelector('video').textTracks[0].mode") == "showing"
        ),
        5,
        "the subtitle track showing",
    )

    assert "script-src 'self'" in answer.headers["content-security-policy"]
    assert video(page)["src"].startswith("blob:"), "not played by hls.js"
    assert violations(page) == []
    page.evaluate(
        """() => { const s = document.createElement('script');
                   s.textContent = 'window.__inlineRan = true';
                   document.body.appendChild(s); }"""
    )
    wait_for(lambda: violations(page), 5, "the injected inline script's violation")
    assert violations(page) == ["script-src-elem inline"]
    assert page.evaluate("() => window.__inlineRan") is None

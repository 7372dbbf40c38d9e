"""The staff live view in real Chromium: staff_live.js refreshes it, under the admin's CSP."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from tests.e2e.support import sign_in_context, wait_for
from tests.e2e.test_csp import RECORD_VIOLATIONS, violations

pytestmark = pytest.mark.timeout(60)

REFRESHED = "#synctv-live-status:has-text('Refreshed at')"


def room_row_text(page, room_id: str) -> str:
    """The text of the room's row in the live view ('' while it has none)."""
    row = page.locator("tr.synctv-room", has_text=room_id)
    return row.inner_text() if row.count() == 1 else ""


def test_the_live_view_shows_a_socket_that_opens_after_the_page_without_a_csp_violation(
    synctv, room_observer, new_page
):
    api = synctv.api
    staff = api.signup()
    get_user_model().objects.filter(pk=staff.id).update(is_staff=True, is_superuser=True)
    owner = api.signup()
    room = api.create_room(owner, "Watched live")
    page = new_page(label="staff")
    page.context.add_init_script(RECORD_VIOLATIONS)
    sign_in_context(page.context, synctv.base_url, staff)

    page.goto(f"{synctv.base_url}/admin/")
    page.click("text=Nodes and rooms, live")
    before = room_row_text(page, room["id"])
    room_observer(room["id"], account=owner)
    page.wait_for_selector(REFRESHED, timeout=10_000)
    shown = wait_for(lambda: room_row_text(page, room["id"]), 10, "the room's row after a refresh")

    assert page.url.endswith("/admin/rooms/presence/live/")
    assert before == ""
    assert shown.split("\t") == [room["id"], "Watched live", "1"]
    assert violations(page) == []

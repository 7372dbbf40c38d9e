"""Presence that scales (SPEC §4): at most one `presence` per room per 500 ms, coalesced;
`online` capped at the first 100 users by join time, `viewer_count` exact."""

from __future__ import annotations

import time

import pytest
from channels.db import database_sync_to_async

from rooms.services import presence
from rooms.services.presence import ONLINE_LIMIT, PRESENCE_INTERVAL_S
from tests.support.factories import make_member
from tests.support.ws import socket_pool  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db(transaction=True)

JOINERS = 12


async def test_a_burst_of_joins_is_coalesced_into_few_presence_frames(sockets, room, owner):
    watcher = await sockets.join(room.id, token=owner.token)
    joiners = [await database_sync_to_async(make_member)(room) for _ in range(JOINERS)]
    started = time.monotonic()

    for joiner in joiners:
        await sockets.join(room.id, token=joiner.token)

    final = await watcher.expect("presence", where=lambda f: f["viewer_count"] == JOINERS + 1)
    elapsed = time.monotonic() - started
    others = [
        f for f in await watcher.drain(quiet=2 * PRESENCE_INTERVAL_S) if f["type"] == "presence"
    ]

    # The first join goes out at once, later ones at most once per interval: far fewer
    # frames than joins, and one of them says who is there now.
    assert len(others) + 1 <= 2 + int(elapsed / PRESENCE_INTERVAL_S)
    assert len(others) + 1 < JOINERS
    assert len(final["online"]) == JOINERS + 1
    assert all(f["viewer_count"] <= JOINERS + 1 for f in others)


def test_online_lists_the_first_100_by_join_time_and_counts_everyone(room, owner):
    members = [make_member(room) for _ in range(ONLINE_LIMIT + 5)]
    for index, member in enumerate(members):
        presence.connect(f"c{index}", room.id, member.user.id, "node-a")

    online, viewers = presence.online(room.id)

    assert viewers == ONLINE_LIMIT + 5
    assert [entry["user"]["id"] for entry in online] == [m.user.id for m in members[:ONLINE_LIMIT]]

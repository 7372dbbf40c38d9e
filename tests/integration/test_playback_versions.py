"""Concurrent playback changes on one room: each gets its own version, none is lost or repeated."""

import threading

import pytest
from django.db import connection

from rooms.models import PlaybackState
from rooms.services.playback import change_playback
from tests.support.factories import make_member, make_room, make_user

THREADS = 8
SEEKS_PER_THREAD = 10


def seek_many(user, room_id, start, versions, errors):
    """One client: wait for the others, then seek SEEKS_PER_THREAD times on its own connection."""
    try:
        start.wait(timeout=30)
        for n in range(SEEKS_PER_THREAD):
            state = change_playback(user, room_id, "seek", position=float(n))
            versions.append(state["version"])
    except Exception as exc:  # reported by the test, not lost in the thread
        errors.append(exc)
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_concurrent_seeks_get_consecutive_versions_without_duplicates():
    owner = make_user("owner")
    room = make_room(owner, "Busy room")
    users = [make_member(room, f"viewer{n}").user for n in range(THREADS)]
    PlaybackState.objects.filter(room_id=room.id).update(version=100)
    initial = 100
    versions, errors = [], []
    start = threading.Barrier(THREADS)
    threads = [
        threading.Thread(target=seek_many, args=(user, room.id, start, versions, errors))
        for user in users
    ]

    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    total = THREADS * SEEKS_PER_THREAD
    assert sorted(versions) == list(range(initial + 1, initial + total + 1))
    assert PlaybackState.objects.get(room_id=room.id).version == initial + total

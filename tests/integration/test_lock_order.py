"""Concurrent playlist and current-movie changes against PostgreSQL: one lock order, no deadlock.

Every playlist change locks the room's row first, then movies, then the playback row
(rooms.services.rooms.lock_room). Each test lines transactions up behind a lock the test
holds, so the interleaving that deadlocked (or let a deleted movie become current) happens
on every run, not by chance.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.db import connection, transaction

from rooms.codes import ErrorCode
from rooms.errors import ServiceError
from rooms.models import Movie, PlaybackState, Room
from rooms.services import playback, playlist, rooms
from tests.support.factories import make_room, make_user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

DEADLINE = 10.0
ROUNDS = 25


def lock_waiters() -> int:
    """How many backends of the test database wait for a lock now."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Return once `condition()` holds; fail after DEADLINE seconds."""
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


class Worker(threading.Thread):
    """Runs one call on its own database connection and keeps what it returned or raised."""

    def __init__(self, call: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.call = call
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.call()
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.error = exc
        finally:
            connection.close()

    def finish(self) -> Any:
        """Wait for the call; its result, or raise what it raised."""
        self.join(DEADLINE)
        assert not self.is_alive(), "the call never finished"
        if self.error is not None:
            raise self.error
        return self.result


@contextmanager
def row_locked(rows: Callable[[], Any]) -> Iterator[None]:
    """Hold `SELECT … FOR UPDATE` of `rows()` in another transaction while the block runs."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with transaction.atomic():
            list(rows())
            held.set()
            release.wait(DEADLINE * 3)

    holder = Worker(hold)
    holder.start()
    assert held.wait(DEADLINE), "the lock was never taken"
    try:
        yield
    finally:
        release.set()
        holder.finish()


def started_and_waiting(call: Callable[[], Any], waiters: int) -> Worker:
    """Start `call` and return once `waiters` backends (it included) wait for a lock."""
    worker = Worker(call)
    worker.start()
    wait_until(lambda: lock_waiters() >= waiters or not worker.is_alive(), "a lock wait")
    return worker


@pytest.fixture
def owner():
    return make_user("owner")


@pytest.fixture
def room(owner):
    room = make_room(owner, "Locks")
    for n in range(3):
        playlist.add_movie(owner.user, room.id, f"https://media.example/{n}.mp4")
    return room


def movie_ids(room) -> list[str]:
    return [movie.id for movie in playlist.movies(room.id)]


def room_row(room):
    return lambda: Room.objects.select_for_update().filter(pk=room.id)


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(
            lambda owner, room, movie: playlist.update_movie(
                owner.user, room.id, movie, {"title": "Renamed"}
            ),
            id="update",
        ),
        pytest.param(
            lambda owner, room, movie: playlist.delete_movie(owner.user, room.id, movie),
            id="delete",
        ),
    ],
)
def test_reorder_queued_before_an_edit_of_the_same_movie_does_not_deadlock(owner, room, edit):
    ids = movie_ids(room)
    target = ids[0]
    version = Room.objects.get(pk=room.id).playlist_version

    with row_locked(room_row(room)):
        reordering = started_and_waiting(
            lambda: playlist.reorder(owner.user, room.id, list(reversed(ids))), waiters=1
        )
        editing = started_and_waiting(lambda: edit(owner, room, target), waiters=2)

    # Before the fix the edit held the movie and waited for the room, the reorder the
    # reverse: PostgreSQL's deadlock detector failed one of them.
    reordering.finish()
    editing.finish()
    assert Room.objects.get(pk=room.id).playlist_version == version + 2


def test_reorder_against_edits_and_deletes_many_times_never_fails(owner, room):
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def reorder_rounds() -> None:
        start.wait(DEADLINE)
        for _ in range(ROUNDS):
            ids = movie_ids(room)
            try:
                playlist.reorder(owner.user, room.id, list(reversed(ids)))
            except ServiceError as exc:  # the playlist changed between read and reorder
                assert exc.code == ErrorCode.BAD_REQUEST, exc.message
            except BaseException as exc:
                errors.append(exc)

    def edit_rounds() -> None:
        start.wait(DEADLINE)
        for n in range(ROUNDS):
            try:
                added = playlist.add_movie(owner.user, room.id, f"https://media.example/x{n}.mp4")
                first = movie_ids(room)[0]
                playlist.update_movie(owner.user, room.id, first, {"title": f"Round {n}"})
                playlist.delete_movie(owner.user, room.id, added["id"])
            except BaseException as exc:
                errors.append(exc)

    workers = [Worker(reorder_rounds), Worker(edit_rounds)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.finish()

    assert errors == []
    assert Movie.objects.filter(room_id=room.id).count() == 3


def test_a_movie_deleted_while_set_movie_runs_never_stays_current(owner, room):
    ids = movie_ids(room)
    target = ids[1]
    playback_row = lambda: PlaybackState.objects.select_for_update().filter(room_id=room.id)  # noqa: E731

    with row_locked(playback_row):
        setting = started_and_waiting(
            lambda: playback.set_movie(room.id, target, by=owner.user), waiters=1
        )
        # Before the fix the delete did not wait: it committed while set_movie, its check
        # already passed, waited to write the movie it had found.
        deleting = started_and_waiting(
            lambda: playlist.delete_movie(owner.user, room.id, target), waiters=2
        )

    try:
        setting.finish()
    except ServiceError as exc:
        assert exc.code == ErrorCode.NOT_FOUND, exc.message
    deleting.finish()
    assert not Movie.objects.filter(pk=target).exists()
    current = PlaybackState.objects.get(room_id=room.id).movie_id
    assert current is None or current in movie_ids(room)


def test_deleting_a_room_while_its_playlist_is_reordered_does_not_deadlock(owner, room):
    ids = movie_ids(room)

    with row_locked(room_row(room)):
        reordering = started_and_waiting(
            lambda: playlist.reorder(owner.user, room.id, list(reversed(ids))), waiters=1
        )
        deleting = started_and_waiting(lambda: rooms.delete_room(owner.user, room.id), waiters=2)

    # Before the fix the cascade locked the movies, then waited for the room's row, which
    # the reorder had taken and held while it waited for those movies.
    reordering.finish()
    deleting.finish()
    assert not Room.objects.filter(pk=room.id).exists()
    assert not Movie.objects.filter(room_id=room.id).exists()

"""Sockets joining together share their database work (rooms/joins.py, issue 7)."""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.db import database_sync_to_async

from cluster.connections import connection_manager
from rooms import consumers, joins
from rooms.models import Membership, Presence, Room
from rooms.permissions import MemberStatus
from rooms.services.snapshot import snapshot_text
from tests.support.factories import make_member
from tests.support.ws import socket_pool  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db(transaction=True)


async def test_joins_queued_together_are_written_and_read_in_one_batch(room, monkeypatch):
    members = [await database_sync_to_async(make_member)(room) for _ in range(30)]
    batches = []
    real = joins.run_batch

    def counted(batch, *args):
        batches.append(len(batch.joins))
        return real(batch, *args)

    monkeypatch.setattr(joins, "run_batch", counted)
    batcher = joins.batcher()

    shared = await asyncio.gather(
        *(batcher.join(f"c{n}", room.id, member.user.id) for n, member in enumerate(members))
    )

    # Queued before the batcher's task first ran: all 30 share one database call.
    assert batches == [30]
    assert await database_sync_to_async(Presence.objects.filter(room=room).count)() == 30
    last = json.loads(shared[-1])
    assert last["viewer_count"] == 30 and len(last["online"]) == 30
    frame = json.loads(snapshot_text({"type": "snapshot", "connection_id": "c29"}, shared[-1]))
    assert frame["type"] == "snapshot" and frame["playback"] == last["playback"]

    await asyncio.gather(*(batcher.leave(f"c{n}", room.id) for n in range(30)))
    assert await database_sync_to_async(Presence.objects.filter(room=room).count)() == 0


async def test_a_room_deleted_before_the_batch_fails_only_its_own_joins(room, owner):
    other = await database_sync_to_async(Room.objects.create)(name="gone", created_by=owner.user)
    member = await database_sync_to_async(make_member)(room)
    await database_sync_to_async(Room.objects.filter(pk=other.pk).delete)()
    batcher = joins.batcher()

    kept, lost = await asyncio.gather(
        batcher.join("kept", room.id, member.user.id),
        batcher.join("lost", other.pk, owner.user.id),
    )

    assert json.loads(kept)["viewer_count"] == 1
    assert lost is None
    rows = await database_sync_to_async(list)(
        Presence.objects.values_list("connection_id", flat=True)
    )
    assert rows == ["kept"]


def _ban(room_id: str, user_id: int) -> None:
    Membership.objects.filter(room_id=room_id, user_id=user_id).update(status=MemberStatus.BANNED)


def _deactivate(user) -> None:
    user.is_active = False
    user.save(update_fields=["is_active"])


async def test_a_user_banned_or_deactivated_since_admission_is_refused_at_the_join(room):
    banned, deactivated, kept = [await database_sync_to_async(make_member)(room) for _ in "abc"]
    # Both changes were committed after the sockets' admission, before they joined their
    # groups: the events that announce them reached no group of these sockets.
    await database_sync_to_async(_ban)(room.id, banned.user.id)
    await database_sync_to_async(_deactivate)(deactivated.user)
    batcher = joins.batcher()

    results = await asyncio.gather(
        batcher.join("banned", room.id, banned.user.id),
        batcher.join("deactivated", room.id, deactivated.user.id),
        batcher.join("kept", room.id, kept.user.id),
        return_exceptions=True,
    )

    assert [type(result) for result in results[:2]] == [joins.JoinRefused] * 2
    assert json.loads(results[2])["viewer_count"] == 1
    rows = await database_sync_to_async(list)(
        Presence.objects.values_list("connection_id", flat=True)
    )
    assert rows == ["kept"]  # the refused never showed as online


async def test_a_socket_whose_user_is_banned_during_its_admission_is_closed_4003(
    sockets, room, monkeypatch
):
    viewer = await database_sync_to_async(make_member)(room)
    admit = consumers.socket_admission

    def admitted_then_banned(scope, room_id):
        admitted = admit(scope, room_id)
        _ban(room_id, viewer.user.id)  # another node's ban, just after this check
        return admitted

    monkeypatch.setattr(consumers, "socket_admission", admitted_then_banned)

    socket = await sockets.open(room.id, token=viewer.token)

    error = await socket.expect("error")
    assert error["code"] == "forbidden"
    assert await socket.expect_close() == 4003
    assert connection_manager().total == 0  # the slot given back
    assert await database_sync_to_async(Presence.objects.count)() == 0

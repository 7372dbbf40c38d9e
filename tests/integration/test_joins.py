"""Sockets joining together share their database work (rooms/joins.py, issue 7)."""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.db import database_sync_to_async

from rooms import joins
from rooms.models import Presence, Room
from rooms.services.snapshot import snapshot_text
from tests.support.factories import make_member

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

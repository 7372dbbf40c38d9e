"""Connection limits changed at runtime by staff in the Django admin: validated there,
applied at once by the node that saves them and within seconds by every other node."""

from __future__ import annotations

import time

import pytest
from asgiref.sync import sync_to_async
from django.db import connection, connections
from django.test import AsyncClient

from cluster.connections import connection_manager
from rooms.codes import CloseCode, ErrorCode
from rooms.models import ConnectionLimitOverrides
from tests.integration.test_cluster_limits import Attempts, attempts, guests_and_rooms  # noqa: F401
from tests.support.clients import room_client
from tests.support.cluster import cluster, cluster_env  # noqa: F401
from tests.support.factories import make_user
from tests.support.redis_servers import redis_server  # noqa: F401
from tests.support.servers import serve_node  # noqa: F401
from tests.support.ws import override_connection_limits

pytestmark = pytest.mark.django_db(transaction=True)

CHANGE_DEADLINE = 5.0  # the issue: every node applies a change within 5 s
LIMITS_PAGE = "/admin/rooms/connectionlimitoverrides/"


def _make_staff():
    account = make_user()
    account.user.is_staff = account.user.is_superuser = True
    account.user.save()
    connection.close()  # this worker thread's connection would block dropping the test db
    return account.user


@pytest.fixture
async def staff_client():
    """A Django test client signed in as a superuser."""
    client = AsyncClient()
    await client.aforce_login(await sync_to_async(_make_staff, thread_sensitive=False)())
    yield client
    # The admin's views ran on asgiref's thread; its connection would keep the test
    # database from being dropped at the end.
    await sync_to_async(connections.close_all)()


def limits_form(**values: int | str) -> dict[str, int | str]:
    """The admin form's fields, blank but for `values` (model field names)."""
    form = {
        "per_user": "",
        "per_room": "",
        "global_limit": "",
        "idle_timeout_secs": "",
        "max_duration_secs": "",
    }
    return {**form, **values}


async def save_in_admin(client: AsyncClient, **values: int | str):
    """Open the limits page as staff do (the list leads to the one row) and save `values`."""
    listing = await client.get(LIMITS_PAGE)
    assert listing.status_code == 302, listing
    page = await client.get(listing["Location"])
    assert page.status_code == 200
    return await client.post(listing["Location"], limits_form(**values))


def _saved_values() -> dict[str, int | None]:
    try:
        return ConnectionLimitOverrides.current_values()
    finally:
        connection.close()


# --- the admin page (this process) ---------------------------------------------------------


async def test_admin_page_shows_the_configured_defaults_of_blank_fields(settings, staff_client):
    override_connection_limits(settings, per_user=7)

    listing = await staff_client.get(LIMITS_PAGE)
    page = await staff_client.get(listing["Location"])

    assert "blank: the configured default (7)" in page.content.decode()


@pytest.mark.parametrize("value", [0, -3, "lots"])
async def test_admin_refuses_a_limit_below_one(staff_client, value):
    answer = await save_in_admin(staff_client, per_user=value)

    assert answer.status_code == 200  # the form again, with the error
    assert answer.context["adminform"].form.errors["per_user"]
    assert (await sync_to_async(_saved_values, thread_sensitive=False)())["per_user"] is None
    assert connection_manager().limits.current().per_user == 10


async def test_saving_in_the_admin_applies_here_at_once_and_blank_restores_the_default(
    settings, staff_client
):
    override_connection_limits(settings, per_room=50)

    answer = await save_in_admin(staff_client, per_room=3, idle_timeout_secs=60)
    assert answer.status_code == 302, answer.content.decode()[:2000]
    changed = connection_manager().limits.current()
    await save_in_admin(staff_client)
    restored = connection_manager().limits.current()

    assert (changed.per_room, changed.idle_timeout_secs, changed.per_user) == (3, 60, 10)
    assert (restored.per_room, restored.idle_timeout_secs) == (50, 1800)


async def test_a_limit_change_in_the_admin_is_logged_with_the_staff_user(
    settings, staff_client, caplog
):
    override_connection_limits(settings, per_room=50)

    with caplog.at_level("INFO", logger="rooms.services.staff"):
        answer = await save_in_admin(staff_client, per_room=3)
    assert answer.status_code == 302

    [record] = [r for r in caplog.records if r.message == "admin changed connection limits"]
    assert record.changes == {"per_room": 3}
    assert record.staff is True and record.user_id is not None


# --- two real nodes ------------------------------------------------------------------------


@pytest.mark.serve
async def test_per_user_lowered_in_the_admin_is_refused_by_both_nodes_within_5s(
    cluster,  # noqa: F811
    staff_client,
    attempts: Attempts,  # noqa: F811
):
    a, b = cluster(2, env={"SYNCTV__CLUSTER__CONNECTION_LIMITS__PER_USER": "2"})
    (alice,), (room,) = await guests_and_rooms(a, users=1, rooms=1)
    kept = [await attempts.admitted(a, room, alice), await attempts.admitted(b, room, alice)]

    started = time.monotonic()
    answer = await save_in_admin(staff_client, per_user=1)
    assert answer.status_code == 302
    waiting = {a, b}
    while waiting:
        assert time.monotonic() - started < CHANGE_DEADLINE, f"{waiting} still admit a second"
        for node in list(waiting):
            client, refusal = await attempts.attempt(node, room, alice)
            if refusal == "per_user":
                waiting.discard(node)
            await client.close()  # admitted under the old limit: give the slot back
    took = time.monotonic() - started
    print(f"per_user lowered in the admin: both nodes refused a second socket after {took:.2f}s")

    # Sockets open before the change stay: one per node under per_user 1 (node scope).
    assert not any(client.closed.is_set() for client in kept)
    assert took < CHANGE_DEADLINE


@pytest.mark.serve
async def test_idle_timeout_lowered_at_runtime_closes_idle_sockets_on_both_nodes(cluster):  # noqa: F811
    a, b = cluster(2)
    (alice, bob), (room,) = await guests_and_rooms(a, users=2, rooms=1)
    async with room_client(a, room, alice) as on_a, room_client(b, room, bob) as on_b:
        started = time.monotonic()
        await sync_to_async(_save_idle_timeout, thread_sensitive=False)(1)

        for client in (on_a, on_b):
            await client.wait_for(
                "error", lambda f: f["code"] == ErrorCode.IDLE_TIMEOUT, within=CHANGE_DEADLINE + 1
            )
            assert await client.wait_closed() == CloseCode.IDLE_TIMEOUT
        took = time.monotonic() - started
    print(f"idle timeout lowered to 1 s: idle sockets on both nodes closed after {took:.2f}s")
    assert took < CHANGE_DEADLINE + 1


def _save_idle_timeout(seconds: int) -> None:
    try:
        row = ConnectionLimitOverrides.load()
        row.idle_timeout_secs = seconds
        row.save()
    finally:
        connection.close()

"""Schemathesis against the app's own /api/schema/ (issue 8): every operation, with a
signed-in user who owns a room, a movie and a chat line, through Django's WSGI handler on
the real PostgreSQL. No answer is a 500; every status, content type and body is the one
the schema declares; schema-invalid input is refused and schema-valid input accepted (but
where CHECKED_BY_THE_SERVICE says why not); and every 4xx is SPEC §3's
`{"error": {"code", "message"}}`. Bounded: MAX_EXAMPLES per operation, about a minute.
"""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance

from rooms.codes import ErrorCode
from rooms.services import chat, playlist
from tests.support.factories import make_member, make_room, make_user

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(240)]

# Fuzzing examples per operation (the coverage phase adds its own boundary cases).
MAX_EXAMPLES = 10

schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())

CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.negative_data_rejection,
    positive_data_acceptance,
    schemathesis.checks.missing_required_header,
    schemathesis.checks.ignored_auth,
]

# Operations whose schema is looser than their validation, on purpose: a movie's URL and
# subtitle rules (http(s) with a host or a site path, after trimming; one track per URL) are
# checked by rooms.services.playlist, with messages for people, and the schema says them in
# words. A reorder must name the playlist's movies, which no schema can know.
CHECKED_BY_THE_SERVICE = {
    "POST /api/rooms/{room_id}/movies",
    "PATCH /api/rooms/{room_id}/movies/{movie_id}",
}

_numbers = itertools.count(1)
CASES_RUN: Counter[str] = Counter()


def _world() -> dict[str, Any]:
    """A fresh owner with a room, a movie, a chat line and one member: what the ids in the
    paths point at (each example may delete or ban some of it)."""
    owner = make_user(f"fuzz-owner-{next(_numbers)}")
    room = make_room(owner, "Fuzz room")
    member = make_member(room, f"fuzz-member-{next(_numbers)}")
    movie = playlist.add_movie(owner.user, room.id, "https://example.com/a.mp4", "A", None)
    message = chat.send_chat(owner.user, room.id, "hello")
    return {
        "token": owner.token,
        "room_id": room.id,
        "movie_id": movie["id"],
        "user_id": member.user.pk,
        "message_id": message["id"],
    }


def _is_negative(case: Any) -> bool:
    meta = case.meta
    return meta is not None and meta.generation.mode.is_negative


def _aim_at_world(case: Any, world: dict[str, Any]) -> dict[str, str]:
    """Point a schema-valid example at the real room, movie, member and message (one in four
    keeps its generated ids), so it gets past the 404s to the operation's own rules, and sign
    it in. A schema-violating example keeps what it was generated with, its own
    Authorization header included: replacing a bad id or header would make it valid."""
    if _is_negative(case):
        own = {name.lower() for name in (case.headers or {})}
        return {} if "authorization" in own else {"Authorization": f"Bearer {world['token']}"}
    for name, value in list((case.path_parameters or {}).items()):
        if name in world and hash(repr(value)) % 4:
            case.path_parameters[name] = world[name]
    if isinstance(case.body, dict) and "order" in case.body and hash(repr(case.body)) % 4:
        case.body["order"] = [world["movie_id"]]
    return {"Authorization": f"Bearer {world['token']}"}


def _orders_the_playlist(case: Any, world: dict[str, Any]) -> bool:
    return isinstance(case.body, dict) and case.body.get("order") == [world["movie_id"]]


def _assert_error_shape(response: Any) -> None:
    if 400 <= response.status_code < 500:
        body = response.json()
        assert set(body) == {"error"}, body
        assert set(body["error"]) == {"code", "message"}, body
        assert body["error"]["code"] in {str(code) for code in ErrorCode}, body
        assert isinstance(body["error"]["message"], str) and body["error"]["message"], body


@pytest.fixture(autouse=True)
def unthrottled(settings):
    """The fuzzer signs in far more often than a person: throttling is tested on its own."""
    settings.SYNCTV_THROTTLE_RATES = {}


@pytest.fixture(autouse=True)
def connection_kept_across_requests():
    """The WSGI handler closes the database connection after each request; the test's
    transaction needs it open (what Django's own test client does)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_api_operation_keeps_to_its_schema(case):
    world = _world()
    headers = _aim_at_world(case, world)
    checks = CHECKS
    if case.operation.label in CHECKED_BY_THE_SERVICE or (
        case.operation.path.endswith("/reorder") and not _orders_the_playlist(case, world)
    ):
        checks = [check for check in CHECKS if check is not positive_data_acceptance]
    response = case.call_and_validate(headers=headers, checks=checks)
    _assert_error_shape(response)
    CASES_RUN[case.operation.label] += 1


@pytest.fixture(scope="module", autouse=True)
def report_cases_run():
    """How many cases ran, for the record (`pytest -s` shows it)."""
    yield
    print(f"\nschemathesis: {sum(CASES_RUN.values())} cases over {len(CASES_RUN)} operations")

"""Background jobs in a real `manage.py serve` node (single-node mode: it works the jobs itself)."""

from __future__ import annotations

import signal
import threading
import time
from datetime import timedelta

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from rooms.models import Movie, Profile
from tests.integration.test_jobs import Answer, media  # noqa: F401  (fixture)
from tests.support.factories import make_room, make_user
from tests.support.servers import STOP_TIMEOUT, serve_node  # noqa: F401  (fixture)

pytestmark = pytest.mark.serve

DEADLINE = 10.0  # a probe of 127.0.0.1 takes milliseconds; only a bug makes this matter
# The media server listens on 127.0.0.1, which the probe refuses unless the node allows it.
PROBE_LOOPBACK = {"SYNCTV__JOBS__PROBE_ALLOWED_NETWORKS": '["127.0.0.1/32"]'}


def poll(condition, what, within=DEADLINE):
    """Call `condition()` until it returns something true; return that."""
    deadline = time.monotonic() + within
    while not (result := condition()):
        assert time.monotonic() < deadline, f"no {what} within {within}s"
        time.sleep(0.05)
    return result


def ready(node):
    """Whether the node answers GET /ready with 200 (no longer once it drains or stops)."""
    try:
        return httpx.get(f"{node.base_url}/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_movie_added_over_http_gets_the_type_its_url_answers_with(serve_node, media):  # noqa: F811
    media.answers["/live/stream.bin"] = Answer(content_type="application/vnd.apple.mpegurl")
    owner = make_user("owner")
    room = make_room(owner, "Movie night")
    node = serve_node(env=PROBE_LOOPBACK)

    with httpx.Client(base_url=node.base_url, headers=owner.auth, timeout=5) as http:
        added = http.post(
            f"/api/rooms/{room.id}/movies", json={"url": media.url("/live/stream.bin")}
        )
        assert added.status_code == 201, added.text
        assert added.json()["movie"]["type"] == "video"  # the guess from the URL

        def probed_type():
            movies = http.get(f"/api/rooms/{room.id}/movies").json()["movies"]
            kind = movies[0]["type"]
            return kind if kind != "video" else None

        assert poll(probed_type, "probed type") == "hls"


def test_node_prunes_expired_guests_when_it_starts(serve_node):  # noqa: F811
    expired = make_user(guest=True)
    Profile.objects.filter(user=expired.user).update(expires_at=timezone.now() - timedelta(days=1))
    fresh = make_user(guest=True)
    users = get_user_model().objects

    serve_node()

    poll(lambda: not users.filter(pk=expired.user.pk).exists(), "expired guest pruned")
    assert users.filter(pk=fresh.user.pk).exists()


def test_node_stops_cleanly_while_a_probe_is_in_flight(serve_node, media):  # noqa: F811
    held = threading.Event()
    media.answers["/stuck.bin"] = Answer(content_type="video/webm", hold=held)
    owner = make_user("owner")
    room = make_room(owner, "Movie night")
    node = serve_node(env=PROBE_LOOPBACK)
    added = httpx.post(
        f"{node.base_url}/api/rooms/{room.id}/movies",
        json={"url": media.url("/stuck.bin")},
        headers=owner.auth,
        timeout=5,
    )
    assert added.status_code == 201, added.text
    poll(lambda: media.requests, "probe reaching the media server")

    node.process.send_signal(signal.SIGTERM)
    poll(lambda: not ready(node), "drain started")
    held.set()  # the probe answers while the node shuts down

    assert node.process.wait(timeout=STOP_TIMEOUT) == 0, node.log_tail()
    assert Movie.objects.get(pk=added.json()["movie"]["id"]).type == "webm"  # the job finished

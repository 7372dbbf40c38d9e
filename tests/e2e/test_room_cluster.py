"""Two nodes and Redis: a viewer on each node, and they still watch the same moment."""

from __future__ import annotations

import pytest

from tests.e2e.room import (
    assert_converges,
    assert_stays_in_sync,
    open_room,
    video,
    wait_until_playing,
)
from tests.e2e.support import RestartableNode, RoomObserver, wait_for
from tests.support.redis_servers import redis_server  # noqa: F401
from tests.support.servers import database_url


@pytest.fixture
def two_nodes(redis_server, tmp_path):  # noqa: F811
    """Two `manage.py serve` nodes sharing the test database and one Redis."""
    from django.conf import settings

    env = {
        "SYNCTV__DATABASE__URL": database_url(),
        "SYNCTV__SERVER__SECRET_KEY": settings.SECRET_KEY,
        "SYNCTV__REDIS__URL": redis_server.url,
        "SYNCTV__CLUSTER__SHUTDOWN_GRACE_SECS": "1",
        "DJANGO_ALLOW_ASYNC_UNSAFE": "",
    }
    nodes = []
    try:
        for name in ("one", "two"):
            nodes.append(RestartableNode({**env, "NODE_NAME": name}, tmp_path / name))
        yield nodes
    finally:
        for node in nodes:
            node.stop()


def test_viewers_on_two_nodes_stay_within_150ms(
    two_nodes, media, media_server, new_page, drift_stats
):
    one, two = two_nodes
    owner = one.api.signup()
    room = one.api.create_room(owner)
    one.api.add_movie(owner, room["id"], f"{media_server}/{media.clip}", "Test pattern")
    observer = RoomObserver(two, room["id"], account=owner)
    try:
        ann = open_room(new_page, one, room["id"], one.api.guest("ann"))
        bob = open_room(new_page, two, room["id"], two.api.guest("bob"))
        assert one.node_id in ann.get_attribute("#conn-state", "title")
        assert two.node_id in bob.get_attribute("#conn-state", "title")
        pages = [ann, bob]
        wait_for(lambda: all(video(page)["readyState"] >= 1 for page in pages), 10, "metadata")

        ann.click("#play-toggle")  # on node one; the observer listens on node two
        observer.wait_for_playback(lambda p: p["playing"])
        for page in pages:
            wait_until_playing(page)
        assert_converges(pages, observer, drift_stats)

        bob.keyboard.press("ArrowRight")  # seek +5 s from node two
        bob.keyboard.press("ArrowRight")
        observer.wait_for_playback(lambda p: p["position"] >= 9)
        assert_converges(pages, observer, drift_stats)
        assert_stays_in_sync(pages, observer, drift_stats, seconds=6)
    finally:
        observer.close()

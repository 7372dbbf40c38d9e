"""The movie probe's SSRF guard: real sockets, real name lookups, test servers that count.

A refused probe must send nothing to the target: each media server counts the TCP
connections it accepts, and a control probe that is allowed afterwards proves the server
would have counted one (connections are accepted in order, so a refused probe that had
connected would show as a second).
"""

from __future__ import annotations

import ipaddress
import socket
import time

import pytest
from channels.db import database_sync_to_async

from rooms import jobs
from rooms.models import Movie
from rooms.probe import (
    ProbeAllowList,
    ProbeFailed,
    ProbeRefused,
    fetch_content_type,
    non_public_reason,
)
from synctv_project.config import ConfigError, load_config
from tests.integration.test_jobs import Answer, MediaServer, make_movie, movie_type_of

pytestmark = pytest.mark.timeout(60)

NOBODY = ProbeAllowList()
REFUSAL_DEADLINE = 0.5  # a refusal is decided before any connection: no network wait


def _ipv6_loopback_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe_socket:
            probe_socket.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.fixture
def media():
    """A media server on 127.0.0.1 answering /film.mp4."""
    server = MediaServer().start()
    server.answers["/film.mp4"] = Answer(content_type="video/mp4")
    yield server
    server.stop()


@pytest.fixture
def media_v6():
    """A media server on ::1 answering /film.mp4."""
    if not _ipv6_loopback_available():
        pytest.skip("no IPv6 loopback on this machine")
    server = MediaServer(host="::1").start()
    server.answers["/film.mp4"] = Answer(content_type="video/mp4")
    yield server
    server.stop()


@pytest.fixture
def refused_media():
    """A media server on 127.0.0.2 (loopback, but not the allowed 127.0.0.1/32)."""
    server = MediaServer(host="127.0.0.2").start()
    server.answers["/film.mp4"] = Answer(content_type="video/mp4")
    yield server
    server.stop()


def assert_refused(url: str, allowed: ProbeAllowList = NOBODY) -> ProbeRefused:
    started = time.monotonic()
    with pytest.raises(ProbeRefused) as refusal:
        fetch_content_type(url, timeout=3, allowed=allowed)
    assert time.monotonic() - started < REFUSAL_DEADLINE
    return refusal.value


LOOPBACK_FORMS = [
    "127.0.0.1",
    "2130706433",  # decimal
    "0x7f.1",  # hex and short
    "0x7f000001",
    "017700000001",  # octal
    "127.1",
    "[::ffff:127.0.0.1]",  # IPv4-mapped IPv6
    "[::ffff:7f00:1]",
    "localhost",  # a name that resolves to 127.0.0.1
    "0.0.0.0",  # Linux connects it to the local host
]


@pytest.mark.parametrize("host", LOOPBACK_FORMS)
def test_probe_of_any_form_of_a_loopback_address_connects_nowhere(media, host):
    url = f"http://{host}:{media.port}/film.mp4"

    refusal = assert_refused(url)

    assert "public" in str(refusal) and "jobs.probe_allowed_networks" in str(refusal)
    # The control: the same URL, allowed, reaches the server and is its first connection.
    allowed = ProbeAllowList.from_entries(["127.0.0.0/8", "0.0.0.0/32"])
    assert fetch_content_type(url, timeout=3, allowed=allowed) == "video/mp4"
    assert media.connections == 1
    assert len(media.requests) == 1


def test_probe_of_ipv6_loopback_connects_nowhere(media_v6):
    url = media_v6.url("/film.mp4")

    assert_refused(url)

    assert fetch_content_type(url, timeout=3, allowed=ProbeAllowList.from_entries(["::1"]))
    assert media_v6.connections == 1


@pytest.mark.parametrize(
    "url",
    [
        "http://10.1.2.3/film.mp4",
        "http://192.168.0.10:8096/film.mp4",
        "http://172.16.5.4/film.mp4",
        "http://169.254.169.254/latest/meta-data/",  # a cloud's metadata service
        "http://100.64.0.1/film.mp4",  # carrier-grade NAT
        "http://224.0.0.1/film.mp4",  # multicast
        "http://240.0.0.1/film.mp4",  # reserved
        "http://255.255.255.255/film.mp4",
        "http://[fe80::1]/film.mp4",
        "http://[fc00::5]/film.mp4",
        "http://[ff02::1]/film.mp4",
        "http://[::]/film.mp4",
        "http://[::ffff:10.0.0.1]/film.mp4",
        "http://[2002:a00:1::]/film.mp4",  # 6to4 of 10.0.0.1
        "http://[64:ff9b::a9fe:a9fe]/film.mp4",  # NAT64 of 169.254.169.254
        "https://0xa9fea9fe/latest/meta-data/",  # 169.254.169.254 in hex, over TLS
    ],
)
def test_probe_of_a_private_or_special_address_is_refused_before_connecting(url):
    refusal = assert_refused(url)

    assert "public" in str(refusal)


def test_redirect_to_a_refused_address_is_not_followed(media, refused_media):
    media.answers["/moved.mp4"] = Answer(status=302, location=refused_media.url("/film.mp4"))
    allowed = ProbeAllowList.from_entries(["127.0.0.1/32"])

    refusal = assert_refused(media.url("/moved.mp4"), allowed)

    assert "127.0.0.2" in str(refusal)
    assert [path for _, path, _ in media.requests] == ["/moved.mp4"]  # the allowed hop went
    both = ProbeAllowList.from_entries(["127.0.0.1/32", "127.0.0.2"])
    assert fetch_content_type(media.url("/moved.mp4"), timeout=3, allowed=both) == "video/mp4"
    assert refused_media.connections == 1  # the control's; the refused redirect made none


def test_allow_list_by_host_name_admits_what_the_name_resolves_to(media):
    url = f"http://localhost:{media.port}/film.mp4"

    assert fetch_content_type(url, timeout=3, allowed=ProbeAllowList.from_entries(["localhost"]))

    assert media.connections == 1
    assert_refused(f"http://127.0.0.1:{media.port}/film.mp4", ProbeAllowList.from_entries(["lan"]))


def test_refusal_is_a_probe_failure():
    assert issubclass(ProbeRefused, ProbeFailed)  # probe_movie keeps the guessed type for both


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700::1111", True),
        ("::ffff:8.8.8.8", True),
        ("127.0.0.1", False),
        ("::1", False),
        ("::ffff:127.0.0.1", False),
        ("2002:7f00:1::", False),  # 6to4 of 127.0.0.1
        ("64:ff9b::7f00:1", False),  # NAT64 of 127.0.0.1
        ("2001::1", False),  # Teredo
        ("192.0.0.1", False),  # IETF protocol assignments
        ("198.18.0.1", False),  # benchmarking
    ],
)
def test_public_means_global_unicast_whatever_the_form(address, public):
    assert (non_public_reason(ipaddress.ip_address(address)) is None) is public


# --- through the job, with the node's settings --------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_refused_probe_leaves_the_movie_playable_with_its_guessed_type(
    media, room, settings, caplog
):
    settings.SYNCTV_PROBE_ALLOWED_NETWORKS = []
    media.answers["/live.m3u8"] = Answer(content_type="video/mp4")
    movie = await database_sync_to_async(make_movie)(room, media.url("/live.m3u8"))

    changed = await database_sync_to_async(jobs.probe_movie)(movie.id)

    assert changed is None
    assert await database_sync_to_async(movie_type_of)(movie) == "hls"  # the URL's guess
    [warning] = [r for r in caplog.records if r.name == "synctv.jobs"]
    assert "127.0.0.1" in warning.getMessage() and warning.movie_id == movie.id
    assert media.connections == 0 and media.requests == []
    settings.SYNCTV_PROBE_ALLOWED_NETWORKS = ["127.0.0.1/32"]  # the control
    assert await database_sync_to_async(jobs.probe_movie)(movie.id) == "mp4"
    assert await database_sync_to_async(Movie.objects.filter(type="mp4").count)() == 1


# --- the configuration key ------------------------------------------------------------------


def test_allow_list_is_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("SYNCTV__JOBS__PROBE_ALLOWED_NETWORKS", '["192.168.1.0/24", "Media.LAN"]')

    allowed = ProbeAllowList.from_entries(load_config().jobs.probe_allowed_networks)

    assert allowed.names_address(ipaddress.ip_address("192.168.1.40"))
    assert not allowed.names_address(ipaddress.ip_address("192.168.2.40"))
    assert allowed.names_host("media.lan.")


@pytest.mark.parametrize("value", ['["not a host!"]', '["10.0.0.0/33"]', "10.0.0.0/8"])
def test_bad_allow_list_stops_start_with_one_line_naming_the_key(monkeypatch, value):
    monkeypatch.setenv("SYNCTV__JOBS__PROBE_ALLOWED_NETWORKS", value)

    with pytest.raises(ConfigError) as error:
        load_config()

    message = str(error.value)
    assert "\n" not in message
    assert "jobs" in message and "expected" in message

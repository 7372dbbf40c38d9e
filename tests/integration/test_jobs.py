"""Background jobs on `synctv.jobs` in-process: the real worker, database, sockets and HTTP."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.db import connections
from django.utils import timezone

from rooms import jobs, probe
from rooms.models import Movie, Presence, Profile, Room
from rooms.services import playlist
from synctv_project.asgi import application
from tests.support.factories import make_member, make_user
from tests.support.servers import free_port
from tests.support.ws import next_req_id, socket_pool  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db(transaction=True)

db = database_sync_to_async
JOB_DEADLINE = 5.0  # a job on 127.0.0.1 takes milliseconds; only a bug makes this matter
SHORT_PROBE_TIMEOUT = 0.3


# --- a real HTTP server for the probes ----------------------------------------------------


@dataclass
class Answer:
    """How the media server answers one path."""

    status: int = 200
    content_type: str = "video/mp4"
    location: str | None = None
    refuse_head: bool = False  # HEAD gets 405, GET works
    hold: threading.Event | None = None  # wait for this before answering
    trickle: bool = False  # send the headers one byte at a time, forever


@dataclass
class MediaServer:
    """An HTTP server on 127.0.0.1, in a thread, answering each path as told; it records requests."""

    host: str = "127.0.0.1"
    answers: dict[str, Answer] = field(default_factory=dict)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, path, Range
    connections: int = 0  # TCP connections accepted, whether or not a request followed
    stopping: threading.Event = field(default_factory=threading.Event)

    def start(self) -> MediaServer:
        """Listen on a free port and serve in a daemon thread."""
        server_class = _CountingHTTPServer6 if ":" in self.host else _CountingHTTPServer
        self.httpd = server_class((self.host, 0), _MediaHandler)
        self.httpd.daemon_threads = True
        self.httpd.media = self  # type: ignore[attr-defined]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()
        return self

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self.httpd.server_address[1])

    def url(self, path: str) -> str:
        """The address of `path` on this server."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{path}"

    def stop(self) -> None:
        """Release every held answer and stop serving."""
        self.stopping.set()
        for answer in self.answers.values():
            if answer.hold is not None:
                answer.hold.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


class _CountingHTTPServer(ThreadingHTTPServer):
    def verify_request(self, request: object, client_address: object) -> bool:
        self.media.connections += 1  # type: ignore[attr-defined]
        return True


class _CountingHTTPServer6(_CountingHTTPServer):
    address_family = socket.AF_INET6


class _MediaHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_HEAD(self) -> None:
        self._answer()

    def do_GET(self) -> None:
        self._answer()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test output is for the tests."""

    def _answer(self) -> None:
        media: MediaServer = self.server.media  # type: ignore[attr-defined]
        media.requests.append((self.command, self.path, self.headers.get("Range")))
        answer = media.answers.get(self.path)
        if answer is None:
            self.send_error(404)
            return
        if answer.hold is not None:
            answer.hold.wait(timeout=10)
        try:
            if answer.trickle:
                self._trickle(media)
            elif answer.refuse_head and self.command == "HEAD":
                self.send_response(405)
                self.send_header("Allow", "GET")
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self._send(answer)
        except OSError:
            pass  # the prober went away, as it may

    def _send(self, answer: Answer) -> None:
        ranged = self.command == "GET" and self.headers.get("Range") == "bytes=0-0"
        status = 206 if ranged and answer.status == 200 else answer.status
        self.send_response(status)
        self.send_header("Content-Type", answer.content_type)
        if answer.location:
            self.send_header("Location", answer.location)
        # A big body is announced; only a ranged GET gets (one byte of) it.
        self.send_header("Content-Length", "1" if ranged else "1000000")
        self.end_headers()
        if ranged:
            self.wfile.write(b"\0")

    def _trickle(self, media: MediaServer) -> None:
        for byte in b"HTTP/1.1 200 OK\r\nX-Slow: ":
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
        while not media.stopping.wait(0.05):
            self.wfile.write(b"a")
            self.wfile.flush()


@pytest.fixture(autouse=True)
def probe_may_reach_loopback(settings):
    """The media servers of these tests listen on 127.0.0.1, which the probe refuses by default."""
    settings.SYNCTV_PROBE_ALLOWED_NETWORKS = ["127.0.0.1/32"]


@pytest.fixture
def media():
    """A running MediaServer, stopped after the test."""
    server = MediaServer().start()
    yield server
    server.stop()


# --- the worker and the data --------------------------------------------------------------


@pytest.fixture
async def jobs_worker(transactional_db):
    """The in-process worker on `synctv.jobs` (what the server runs in single-node mode)."""
    task = asyncio.create_task(jobs.run_worker(application))
    yield task
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    # The test's own database calls ran in asgiref's thread: close its connection, or it
    # keeps the test database from being dropped at the end of the run.
    await db(connections.close_all)()


@pytest.fixture
def job_warnings(caplog):
    """The warnings the jobs logged, as a function of a movie id (all of them for None)."""
    caplog.set_level(logging.WARNING, logger="synctv.jobs")

    def warnings(movie_id=None):
        return [
            record
            for record in caplog.records
            if record.name == "synctv.jobs"
            and record.levelno == logging.WARNING
            and (movie_id is None or getattr(record, "movie_id", None) == movie_id)
        ]

    return warnings


def make_movie(room, url):
    """A playlist entry stored as the playlist service stores it, without queueing a probe."""
    position = Movie.objects.filter(room=room).count()
    return Movie.objects.create(
        room=room, url=url, title="Film", type=playlist.movie_type(url), position=position
    )


def playlist_version(room):
    return Room.objects.get(pk=room.id).playlist_version


def movie_type_of(movie):
    return Movie.objects.get(pk=movie.id).type


async def until(condition, what, within=JOB_DEADLINE):
    """Wait until `condition()` (sync, may use the database) is true, at most `within` seconds."""
    deadline = time.monotonic() + within
    while not await db(condition)():
        assert time.monotonic() < deadline, f"no {what} within {within}s"
        await asyncio.sleep(0.02)


def type_in(frame, movie_id):
    return next(m["type"] for m in frame["playlist"]["movies"] if m["id"] == movie_id)


# --- job.probe_movie --------------------------------------------------------------------


async def test_probe_sets_the_type_named_by_the_content_type_and_the_room_hears_it(
    jobs_worker, media, sockets, owner, room
):
    media.answers["/live/stream.bin"] = Answer(content_type="application/vnd.apple.mpegurl")
    movie = await db(make_movie)(room, media.url("/live/stream.bin"))
    version = await db(playlist_version)(room)
    socket = await sockets.join(room.id, token=owner.token)

    await jobs.aenqueue(jobs.PROBE_MOVIE, movie_id=movie.id)

    frame = await socket.expect("playlist")
    assert type_in(frame, movie.id) == "hls"
    assert frame["playlist"]["version"] == version + 1
    assert await db(movie_type_of)(movie) == "hls"
    assert await db(playlist_version)(room) == version + 1
    assert [method for method, _, _ in media.requests] == ["HEAD"]


@pytest.mark.parametrize(
    ("content_type", "kind"),
    [
        ("video/mp4", "mp4"),
        ("video/webm", "webm"),
        ("video/ogg", "ogg"),
        ("application/vnd.apple.mpegurl", "hls"),
        ("application/x-mpegURL", "hls"),
        ("application/dash+xml; charset=utf-8", "dash"),
        ("video/quicktime", "mov"),
        ("video/x-matroska", "mkv"),
        ("video/x-msvideo", "video"),
        ("text/html; charset=utf-8", None),
        ("application/octet-stream", None),
        ("", None),
    ],
)
def test_content_types_map_to_movie_types(content_type, kind):
    assert playlist.kind_of_content_type(content_type) == kind


async def test_probe_falls_back_to_a_one_byte_get_when_head_is_refused(jobs_worker, media, room):
    media.answers["/clip"] = Answer(content_type="video/webm", refuse_head=True)
    movie = await db(make_movie)(room, media.url("/clip"))

    await jobs.aenqueue(jobs.PROBE_MOVIE, movie_id=movie.id)

    await until(lambda: movie_type_of(movie) == "webm", "type webm")
    assert media.requests == [("HEAD", "/clip", None), ("GET", "/clip", "bytes=0-0")]


async def test_probe_follows_redirects(jobs_worker, media, room):
    media.answers["/old.bin"] = Answer(status=302, location="/new.bin")
    media.answers["/new.bin"] = Answer(content_type="application/dash+xml")
    movie = await db(make_movie)(room, media.url("/old.bin"))

    await jobs.aenqueue(jobs.PROBE_MOVIE, movie_id=movie.id)

    await until(lambda: movie_type_of(movie) == "dash", "type dash")


async def test_probe_that_confirms_the_guessed_type_changes_nothing(
    jobs_worker, media, sockets, owner, room
):
    media.answers["/film.mp4"] = Answer(content_type="video/mp4")
    media.answers["/other.bin"] = Answer(content_type="video/ogg")
    confirmed = await db(make_movie)(room, media.url("/film.mp4"))
    changed = await db(make_movie)(room, media.url("/other.bin"))
    version = await db(playlist_version)(room)
    socket = await sockets.join(room.id, token=owner.token)

    await jobs.aenqueue(jobs.PROBE_MOVIE, movie_id=confirmed.id)
    await jobs.aenqueue(jobs.PROBE_MOVIE, movie_id=changed.id)  # runs after the first

    frame = await socket.expect("playlist")
    assert type_in(frame, changed.id) == "ogg"
    assert frame["playlist"]["version"] == version + 1  # one bump: the second probe's
    assert [f for f in await socket.drain() if f["type"] == "playlist"] == []


@pytest.mark.parametrize(
    "answer",
    [Answer(status=404), Answer(status=500), Answer(content_type="text/html"), None],
    ids=["not-found", "server-error", "not-a-video", "connection-refused"],
)
async def test_failed_probe_changes_nothing_and_logs_one_warning(
    jobs_worker, media, room, job_warnings, answer
):
    if answer is None:
        url = f"http://127.0.0.1:{free_port()}/film.bin"  # nothing listens there
    else:
        media.answers["/film.bin"] = answer
        url = media.url("/film.bin")
    movie = await db(make_movie)(room, url)
    version = await db(playlist_version)(room)

    await jobs.aenqueue(jobs.PROBE_MOVIE, movie_id=movie.id)

    await until(lambda: job_warnings(movie.id), "warning")
    [warning] = job_warnings(movie.id)
    assert warning.room_id == room.id
    assert movie.id in warning.getMessage() and room.id in warning.getMessage()
    assert await db(movie_type_of)(movie) == "video"
    assert await db(playlist_version)(room) == version


@pytest.mark.parametrize("slowness", ["never-answers", "trickles-its-headers"])
async def test_probe_gives_up_at_its_deadline(
    jobs_worker, media, room, job_warnings, monkeypatch, slowness
):
    monkeypatch.setattr(probe, "PROBE_TIMEOUT_SECS", SHORT_PROBE_TIMEOUT)
    if slowness == "never-answers":
        media.answers["/slow.mp4"] = Answer(hold=threading.Event())  # set only at teardown
    else:
        media.answers["/slow.mp4"] = Answer(trickle=True)
    movie = await db(make_movie)(room, media.url("/slow.mp4"))
    started = time.monotonic()

    await jobs.aenqueue(jobs.PROBE_MOVIE, movie_id=movie.id)

    await until(lambda: job_warnings(movie.id), "warning")
    assert time.monotonic() - started < SHORT_PROBE_TIMEOUT + 1.5
    assert len(job_warnings(movie.id)) == 1
    assert await db(movie_type_of)(movie) == "mp4"


async def test_probe_result_for_a_url_changed_meanwhile_is_dropped(
    jobs_worker, media, sockets, owner, room
):
    held = threading.Event()
    media.answers["/first.bin"] = Answer(content_type="application/vnd.apple.mpegurl", hold=held)
    media.answers["/second.bin"] = Answer(content_type="video/webm")
    movie = await db(make_movie)(room, media.url("/first.bin"))
    socket = await sockets.join(room.id, token=owner.token)
    await jobs.aenqueue(jobs.PROBE_MOVIE, movie_id=movie.id)
    await until(lambda: media.requests, "probe of the first URL")

    await db(playlist.update_movie)(
        owner.user, room.id, movie.id, {"url": media.url("/second.bin")}
    )
    held.set()

    await socket.expect("playlist", where=lambda f: type_in(f, movie.id) == "webm")
    assert await db(movie_type_of)(movie) == "webm"
    seen = [type_in(f, movie.id) for f in await socket.drain() if f["type"] == "playlist"]
    assert "hls" not in seen


async def test_room_sockets_database_calls_do_not_wait_for_a_running_probe(
    jobs_worker, media, sockets, owner, room
):
    held = threading.Event()
    media.answers["/held.bin"] = Answer(content_type="video/webm", hold=held)
    movie = await db(make_movie)(room, media.url("/held.bin"))
    socket = await sockets.join(room.id, token=owner.token)
    await jobs.aenqueue(jobs.PROBE_MOVIE, movie_id=movie.id)
    await until(lambda: media.requests, "probe reaching the media server")

    req_id = next_req_id()
    await socket.send({"type": "sync", "req_id": req_id})  # answered from the database

    answer = await socket.answer(req_id, within=1.0)  # the probe itself may take 5 s
    assert answer["type"] == "playback"
    held.set()
    await socket.expect("playlist", where=lambda f: type_in(f, movie.id) == "webm")


async def test_adding_a_movie_or_changing_its_url_probes_it(
    jobs_worker, media, sockets, owner, room
):
    media.answers["/a.bin"] = Answer(content_type="application/vnd.apple.mpegurl")
    media.answers["/b.bin"] = Answer(content_type="video/quicktime")
    socket = await sockets.join(room.id, token=owner.token)

    added = await db(playlist.add_movie)(owner.user, room.id, media.url("/a.bin"))
    await socket.expect("playlist", where=lambda f: type_in(f, added["id"]) == "hls")
    await db(playlist.update_movie)(owner.user, room.id, added["id"], {"url": media.url("/b.bin")})

    await socket.expect("playlist", where=lambda f: type_in(f, added["id"]) == "mov")


async def test_movie_on_this_site_is_not_probed(jobs_worker, media, room, job_warnings):
    on_site = await db(make_movie)(room, "/static/film.bin")
    media.answers["/marker.bin"] = Answer(content_type="video/ogg")
    marker = await db(make_movie)(room, media.url("/marker.bin"))

    await jobs.aenqueue(jobs.PROBE_MOVIE, movie_id=on_site.id)
    await jobs.aenqueue(jobs.PROBE_MOVIE, movie_id=marker.id)  # runs after the first

    await until(lambda: movie_type_of(marker) == "ogg", "the marker probed")
    assert await db(movie_type_of)(on_site) == "video"
    assert media.requests == [("HEAD", "/marker.bin", None)]
    assert job_warnings() == []


# --- job.prune_guests -------------------------------------------------------------------


def expire(account):
    Profile.objects.filter(user=account.user).update(expires_at=timezone.now() - timedelta(hours=1))


def user_exists(account):
    return get_user_model().objects.filter(pk=account.user.pk).exists()


async def test_prune_guests_removes_only_expired_guests_without_a_socket(
    jobs_worker, sockets, owner, room
):
    expired = await db(make_user)(guest=True)
    await db(expire)(expired)
    fresh = await db(make_user)(guest=True)
    connected = await db(make_member)(room, guest=True)
    await sockets.join(room.id, token=connected.token)
    await db(expire)(connected)

    await jobs.aenqueue(jobs.PRUNE_GUESTS)

    await until(lambda: not user_exists(expired), "expired guest deleted")
    assert await db(user_exists)(fresh)
    assert await db(user_exists)(connected)
    assert await db(user_exists)(owner)


# --- job.clear_node ---------------------------------------------------------------------


async def test_clear_node_forgets_that_nodes_sockets_and_tells_the_room(
    jobs_worker, sockets, owner, room
):
    ghost = await db(make_member)(room, "ghost")
    await db(Presence.objects.create)(
        connection_id="dead-conn-1", room_id=room.id, user_id=ghost.user.id, node_id="dead-node"
    )
    socket = await sockets.join(room.id, token=owner.token)
    assert {e["user"]["id"] for e in socket.snapshot["online"]} == {owner.user.id, ghost.user.id}

    await jobs.aenqueue(jobs.CLEAR_NODE, node_id="dead-node")

    frame = await socket.expect("presence", where=lambda f: len(f["online"]) == 1)
    assert [e["user"]["id"] for e in frame["online"]] == [owner.user.id]
    assert frame["viewer_count"] == 1
    nodes = await db(lambda: list(Presence.objects.values_list("node_id", flat=True)))()
    assert nodes == [django_settings.SYNCTV_NODE_ID]


# --- queueing -----------------------------------------------------------------------------


async def test_full_jobs_channel_drops_the_job_with_a_warning(job_warnings):
    capacity = get_channel_layer().get_capacity(jobs.JOBS_CHANNEL)
    for _ in range(capacity):
        await jobs.aenqueue(jobs.CLEAR_NODE, node_id="dead-node")

    await jobs.aenqueue(jobs.CLEAR_NODE, node_id="dead-node")

    [warning] = job_warnings()
    assert "full" in warning.getMessage()


async def test_unknown_job_type_is_refused_where_it_is_queued():
    with pytest.raises(ValueError, match="job.probe_movie"):
        await jobs.aenqueue("job.probe_everything")
    with pytest.raises(ValueError, match="job.probe_movie"):
        jobs.enqueue_on_commit("probe_movie", movie_id="m1")


async def test_worker_skips_a_message_of_unknown_type_and_goes_on(
    jobs_worker, media, room, job_warnings
):
    media.answers["/film.bin"] = Answer(content_type="video/ogg")
    movie = await db(make_movie)(room, media.url("/film.bin"))

    await get_channel_layer().send(jobs.JOBS_CHANNEL, {"type": "job.unheard_of"})
    await jobs.aenqueue(jobs.PROBE_MOVIE, movie_id=movie.id)

    await until(lambda: movie_type_of(movie) == "ogg", "type ogg")
    [warning] = job_warnings()
    assert "job.unheard_of" in warning.getMessage()


async def test_worker_drops_a_job_beyond_its_bound_while_one_runs(media, room, job_warnings):
    held = threading.Event()
    media.answers["/held.bin"] = Answer(content_type="video/webm", hold=held)
    for name in ("a", "b", "c", "marker"):
        media.answers[f"/{name}.bin"] = Answer(content_type="video/ogg")
    running = await db(make_movie)(room, media.url("/held.bin"))
    waiting = [await db(make_movie)(room, media.url(f"/{name}.bin")) for name in ("a", "b", "c")]
    marker = await db(make_movie)(room, media.url("/marker.bin"))
    worker = asyncio.create_task(jobs.run_worker(application, capacity=2))
    try:
        await jobs.aenqueue(jobs.PROBE_MOVIE, movie_id=running.id)
        await until(lambda: media.requests, "the first probe running")

        for movie in waiting:  # two wait, the third finds the worker's queue full
            await jobs.aenqueue(jobs.PROBE_MOVIE, movie_id=movie.id)
        await until(lambda: job_warnings(), "the dropped job's warning")
        held.set()
        await until(lambda: movie_type_of(running) == "webm", "the first probe done")
        await jobs.aenqueue(jobs.PROBE_MOVIE, movie_id=marker.id)  # runs after the two kept
        await until(lambda: movie_type_of(marker) == "ogg", "the marker probed")
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        await db(connections.close_all)()

    [warning] = job_warnings()
    assert "dropped" in warning.getMessage() and "2 jobs waiting" in warning.getMessage()
    paths = [path for _, path, _ in media.requests]
    assert paths == ["/held.bin", "/a.bin", "/b.bin", "/marker.bin"]
    assert await db(movie_type_of)(waiting[2]) == "video"

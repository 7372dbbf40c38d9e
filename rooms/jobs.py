"""Background jobs on the channel `synctv.jobs` (docs/jobs.md).

`enqueue()` and `aenqueue()` put a job on the channel; `JobsConsumer` runs it. In
single-node mode the server works the channel itself (`run_worker`, started by
synctv_project/server.py); in cluster mode `manage.py runworker synctv.jobs` does, and the
channel is a Redis list, so each job reaches exactly one worker. Every job is idempotent,
and none raises out of the consumer: a failed job is logged and changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import logging
import queue
import socket
import threading
import time
from functools import partial
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

from asgiref.sync import async_to_sync
from channels.consumer import AsyncConsumer, get_handler_name
from channels.db import DatabaseSyncToAsync
from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from django.db import connections, transaction

from rooms.models import Movie, Room
from rooms.services import accounts, playlist, presence

logger = logging.getLogger("synctv.jobs")

JOBS_CHANNEL = "synctv.jobs"
PROBE_MOVIE = "job.probe_movie"  # {movie_id}
PRUNE_GUESTS = "job.prune_guests"  # {}
CLEAR_NODE = "job.clear_node"  # {node_id}
JOB_TYPES = frozenset({PROBE_MOVIE, PRUNE_GUESTS, CLEAR_NODE})

# The whole probe of one URL (redirects and the GET fallback included) gets this long.
PROBE_TIMEOUT_SECS = 5.0
PROBE_MAX_REDIRECTS = 5
PROBE_USER_AGENT = "SyncTV-probe/1"
HEAD_REFUSED = frozenset({405, 501})
REDIRECTS = frozenset({301, 302, 303, 307, 308})
PRUNE_INTERVAL_SECS = 3600.0

TYPES_BY_CONTENT_TYPE = {
    "video/mp4": "mp4",
    "video/x-m4v": "mp4",  # the same container; playlist.py guesses .m4v as mp4 too
    "video/webm": "webm",
    "video/ogg": "ogg",
    "application/vnd.apple.mpegurl": "hls",
    "application/x-mpegurl": "hls",
    "application/dash+xml": "dash",
    "video/quicktime": "mov",
    "video/x-matroska": "mkv",
}


# --- queueing -------------------------------------------------------------------------


def _job_message(job_type: str, fields: dict[str, Any]) -> dict[str, Any]:
    if job_type not in JOB_TYPES:
        raise ValueError(f"unknown job type {job_type!r}; known: {', '.join(sorted(JOB_TYPES))}")
    return {**fields, "type": job_type}


async def aenqueue(job_type: str, **fields: Any) -> None:
    """Queue a job from async code; a full channel drops it with a warning instead of raising."""
    message = _job_message(job_type, fields)
    try:
        await get_channel_layer().send(JOBS_CHANNEL, message)
    except ChannelFull:
        logger.warning(
            "job %s dropped: the channel %s is full", job_type, JOBS_CHANNEL, extra={"job": message}
        )


def enqueue(job_type: str, **fields: Any) -> None:
    """Queue a job from sync code running in a thread (a service, a view, a job)."""
    async_to_sync(aenqueue)(job_type, **fields)


def enqueue_on_commit(job_type: str, **fields: Any) -> None:
    """Queue a job once the current transaction commits (at once outside a transaction)."""
    _job_message(job_type, fields)  # refuse an unknown type now, where the caller is
    transaction.on_commit(partial(enqueue, job_type, **fields))


# --- probing a movie's URL --------------------------------------------------------------


class ProbeFailed(Exception):
    """The URL did not tell a content type; the message says why."""


def kind_of_content_type(content_type: str) -> str | None:
    """The movie `type` a Content-Type header names, or None when it is not a video type."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type in TYPES_BY_CONTENT_TYPE:
        return TYPES_BY_CONTENT_TYPE[media_type]
    return "video" if media_type.startswith("video/") else None


class _ContentTypeProbe:
    """One look at a URL's Content-Type, run in a daemon thread so that its deadline holds.

    Socket timeouts bound each read, not the whole exchange (a server may trickle its
    headers) nor the name lookup; so the caller waits at most `timeout`, then shuts the
    socket and leaves the thread, which touches nothing else, to end on its own.
    """

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self._outcome: queue.SimpleQueue[tuple[bool, Any]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._connection: http.client.HTTPConnection | None = None
        self._abandoned = False

    def run(self) -> str:
        """The Content-Type of a 2xx answer; raises ProbeFailed."""
        threading.Thread(target=self._ask, name="synctv-probe", daemon=True).start()
        try:
            succeeded, value = self._outcome.get(timeout=self.timeout)
        except queue.Empty:
            self._abandon()
            raise ProbeFailed(f"no answer within {self.timeout:g}s") from None
        if not succeeded:
            raise ProbeFailed(value)
        return str(value)

    def _ask(self) -> None:
        try:
            status, content_type = self._request(self.url, "HEAD", {})
            if status in HEAD_REFUSED:
                # One byte at most: the body is never read anyway, the Range keeps it small.
                status, content_type = self._request(self.url, "GET", {"Range": "bytes=0-0"})
            if not 200 <= status < 300:
                self._outcome.put((False, f"the server answered {status}"))
            else:
                self._outcome.put((True, content_type))
        except Exception as exc:  # any failure is the probe's answer, never the job's crash
            self._outcome.put((False, str(exc) or type(exc).__name__))

    def _request(self, url: str, method: str, headers: dict[str, str]) -> tuple[int, str]:
        for _ in range(PROBE_MAX_REDIRECTS + 1):
            status, content_type, location = self._exchange(url, method, headers)
            if status not in REDIRECTS or not location:
                return status, content_type
            url = urljoin(url, location)
            if urlsplit(url).scheme not in ("http", "https"):
                raise ProbeFailed(f"redirected to {url!r}, not an http(s) URL")
        raise ProbeFailed(f"more than {PROBE_MAX_REDIRECTS} redirects")

    def _exchange(
        self, url: str, method: str, headers: dict[str, str]
    ) -> tuple[int, str, str | None]:
        """One request; the status line and headers are read, the body never is."""
        parts = urlsplit(url)
        https = parts.scheme == "https"
        remaining = max(self.deadline - time.monotonic(), 0.001)
        connection_class = http.client.HTTPSConnection if https else http.client.HTTPConnection
        connection = connection_class(
            parts.hostname or "", parts.port or (443 if https else 80), timeout=remaining
        )
        with self._lock:
            if self._abandoned:
                raise ProbeFailed("abandoned")
            self._connection = connection
        try:
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            safe = "!#$%&'()*+,/:;=?@[]~"  # percent-encode only what may not appear raw
            connection.request(
                method,
                quote(target, safe=safe),
                headers={"User-Agent": PROBE_USER_AGENT, **headers},
            )
            response = connection.getresponse()
            return (
                response.status,
                response.getheader("Content-Type", ""),
                response.getheader("Location"),
            )
        finally:
            connection.close()

    def _abandon(self) -> None:
        with self._lock:
            self._abandoned = True
            sock = self._connection.sock if self._connection is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked reading it


def fetch_content_type(url: str, timeout: float | None = None) -> str:
    """What an http(s) URL says its Content-Type is, by HEAD (a one-byte GET if HEAD is refused).

    Raises ProbeFailed on a timeout (PROBE_TIMEOUT_SECS for the whole probe by default), a
    refused connection or an answer other than 2xx. Never downloads a body.
    """
    return _ContentTypeProbe(url, PROBE_TIMEOUT_SECS if timeout is None else timeout).run()


def probe_movie(movie_id: str) -> str | None:
    """Set a movie's `type` from its URL's Content-Type; returns the new type if it changed.

    A changed type bumps the playlist version and publishes `playlist`, as any playlist edit.
    A failure changes nothing and logs one warning. The update only applies if the movie
    still has the URL that was probed (a new URL gets a probe of its own).
    """
    movie = Movie.objects.filter(pk=movie_id).values("room_id", "url", "type").first()
    if movie is None or urlsplit(movie["url"]).scheme not in ("http", "https"):
        return None  # removed since, or a file of this site
    room_id = movie["room_id"]
    ids = {"room_id": room_id, "movie_id": movie_id}
    try:
        content_type = fetch_content_type(movie["url"])
    except ProbeFailed as exc:
        logger.warning("probe of movie %s in room %s failed: %s", movie_id, room_id, exc, extra=ids)
        return None
    kind = kind_of_content_type(content_type)
    if kind is None:
        logger.warning(
            "probe of movie %s in room %s failed: %r is not a video type",
            movie_id,
            room_id,
            content_type,
            extra=ids,
        )
        return None
    if kind == movie["type"]:
        return None
    with transaction.atomic():
        # The room first, as add_movie and reorder lock it: the playlist's lock.
        Room.objects.select_for_update().filter(pk=room_id).first()
        changed = (
            Movie.objects.filter(pk=movie_id, url=movie["url"]).exclude(type=kind).update(type=kind)
        )
        if not changed:
            return None
        playlist._bump_and_publish(room_id)
    logger.info("movie %s in room %s is %s (%s)", movie_id, room_id, kind, content_type, extra=ids)
    return kind


# --- the consumer and the in-process worker ---------------------------------------------


class JobsConsumer(AsyncConsumer):
    """Runs the jobs of `synctv.jobs` one after another; a handler per job type.

    Handlers run in a worker thread of their own, not in asgiref's one shared thread where
    every socket's database calls run: a probe waiting seconds on a slow server must not
    hold those up. Each job closes its database connections when it ends.
    """

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Run the job's handler in a thread; unknown types and failures are only logged."""
        await DatabaseSyncToAsync(self._run_job, thread_sensitive=False)(message)

    def _run_job(self, message: dict[str, Any]) -> None:
        job_type = message.get("type")
        if job_type not in JOB_TYPES:
            logger.warning("ignored a message of unknown type %r on %s", job_type, JOBS_CHANNEL)
            return
        try:
            getattr(self, get_handler_name(message))(message)
        except Exception:
            logger.exception("job %s failed", job_type, extra={"job": message})
        finally:
            connections.close_all()

    def job_probe_movie(self, message: dict[str, Any]) -> None:
        """`{movie_id}`: refine the movie's type from its URL's Content-Type."""
        probe_movie(str(message["movie_id"]))

    def job_prune_guests(self, message: dict[str, Any]) -> None:
        """`{}`: delete guest accounts past their lifetime."""
        pruned = accounts.prune_expired_guests()
        if pruned:
            logger.info("pruned %d expired guest accounts", pruned)

    def job_clear_node(self, message: dict[str, Any]) -> None:
        """`{node_id}`: forget the sockets of a node that died, and tell their rooms."""
        node_id = str(message["node_id"])
        cleared = presence.clear_node(node_id)
        logger.info("forgot %d sockets of node %s", cleared, node_id)


async def _no_replies(message: dict[str, Any]) -> None:
    """A channel consumer has nobody to answer."""


def _report_crash(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("the jobs consumer crashed", exc_info=task.exception())


async def run_worker(application: Any) -> None:
    """Work `synctv.jobs` on this event loop until cancelled (single-node mode's worker).

    What `manage.py runworker synctv.jobs` does, inside the server: jobs go through the
    ASGI application's "channel" route to one JobsConsumer, restarted if it ever crashes.
    """
    layer = get_channel_layer()
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    scope = {"type": "channel", "channel": JOBS_CHANNEL}
    consumer: asyncio.Task[Any] | None = None
    try:
        while True:
            message = await layer.receive(JOBS_CHANNEL)
            if consumer is None or consumer.done():
                consumer = asyncio.ensure_future(application(scope, inbox.get, _no_replies))
                consumer.add_done_callback(_report_crash)
            inbox.put_nowait(message)
    finally:
        if consumer is not None:
            consumer.cancel()
            await asyncio.gather(consumer, return_exceptions=True)


async def schedule_guest_pruning(interval: float = PRUNE_INTERVAL_SECS) -> None:
    """Enqueue `job.prune_guests` now and then every `interval` seconds, until cancelled."""
    while True:
        try:
            await aenqueue(PRUNE_GUESTS)
        except Exception:  # a layer error must not end the schedule
            logger.exception("could not enqueue %s", PRUNE_GUESTS)
        await asyncio.sleep(interval)

"""Background jobs on the channel `synctv.jobs` (docs/jobs.md): the job functions and their worker.

`enqueue()` and `aenqueue()` (from `rooms.job_queue`, re-exported here) put a job on the
channel; `JobsConsumer` runs it. In single-node mode the server works the channel itself
(`run_worker`, started by synctv_project/server.py); in cluster mode `manage.py runworker
synctv.jobs` does, and the channel is a Redis list, so each job reaches exactly one worker.
Every job is idempotent, and none raises out of the consumer: a failed job is logged and
changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import urlsplit

from channels.consumer import AsyncConsumer, get_handler_name
from channels.db import DatabaseSyncToAsync
from channels.layers import get_channel_layer
from django.db import connections

from rooms import probe
from rooms.job_queue import (
    CLEAR_NODE,
    JOB_TYPES,
    JOBS_CHANNEL,
    PROBE_MOVIE,
    PRUNE_GUESTS,
    aenqueue,
    enqueue,
    enqueue_on_commit,
)
from rooms.models import Movie
from rooms.payloads import now_ms
from rooms.services import accounts, playlist, presence
from rooms.services.events import DEAD_NODE_WINDOW_MS, announce_changed

__all__ = [
    "CLEAR_NODE",
    "JOBS_CHANNEL",
    "JOB_TYPES",
    "PROBE_MOVIE",
    "PRUNE_GUESTS",
    "JobsConsumer",
    "aenqueue",
    "enqueue",
    "enqueue_on_commit",
    "probe_movie",
    "run_worker",
    "schedule_guest_pruning",
]

logger = logging.getLogger("synctv.jobs")

PRUNE_INTERVAL_SECS = 3600.0


# --- job.probe_movie ------------------------------------------------------------------------


def probe_movie(movie_id: str) -> str | None:
    """Set a movie's `type` from its URL's Content-Type; returns the new type if it changed.

    A changed type bumps the playlist version and publishes `playlist`, as any playlist edit.
    A failure (a refused, non-public host included) changes nothing and logs one warning:
    the movie keeps the type guessed from its URL and stays playable. The update only
    applies if the movie still has the URL that was probed (a new URL gets its own probe).
    """
    movie = Movie.objects.filter(pk=movie_id).values("room_id", "url", "type").first()
    if movie is None or urlsplit(movie["url"]).scheme not in ("http", "https"):
        return None  # removed since, or a file of this site
    room_id = movie["room_id"]
    ids = {"room_id": room_id, "movie_id": movie_id}
    try:
        content_type = probe.fetch_content_type(movie["url"])
    except probe.ProbeFailed as exc:
        logger.warning("probe of movie %s in room %s failed: %s", movie_id, room_id, exc, extra=ids)
        return None
    kind = playlist.kind_of_content_type(content_type)
    if kind is None:
        logger.warning(
            "probe of movie %s in room %s failed: %r is not a video type",
            movie_id,
            room_id,
            content_type,
            extra=ids,
        )
        return None
    if kind == movie["type"] or not playlist.set_probed_type(room_id, movie_id, movie["url"], kind):
        return None
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
        rooms = presence.clear_node(node_id)
        # Events it had not yet published when it died reached no other node.
        announce_changed(rooms, now_ms() - DEAD_NODE_WINDOW_MS)
        logger.info("forgot the sockets of node %s in %d rooms", node_id, len(rooms))


async def _no_replies(message: dict[str, Any]) -> None:
    """A channel consumer has nobody to answer."""


def _report_crash(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("the jobs consumer crashed", exc_info=task.exception())


async def run_worker(application: Any, capacity: int | None = None) -> None:
    """Work `synctv.jobs` on this event loop until cancelled (single-node mode's worker).

    What `manage.py runworker synctv.jobs` does, inside the server: jobs go through the
    ASGI application's "channel" route to one JobsConsumer, restarted if it ever crashes.
    The jobs waiting for the consumer are bounded like the channel itself (`capacity`,
    the layer's capacity for `synctv.jobs` by default): one more is dropped with a warning.
    """
    layer = get_channel_layer()
    waiting = layer.get_capacity(JOBS_CHANNEL) if capacity is None else capacity
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=waiting)
    scope = {"type": "channel", "channel": JOBS_CHANNEL}
    consumer: asyncio.Task[Any] | None = None
    try:
        while True:
            message = await layer.receive(JOBS_CHANNEL)
            if consumer is None or consumer.done():
                consumer = asyncio.ensure_future(application(scope, inbox.get, _no_replies))
                consumer.add_done_callback(_report_crash)
            try:
                inbox.put_nowait(message)
            except asyncio.QueueFull:
                logger.warning(
                    "job %s dropped: the worker already has %d jobs waiting",
                    message.get("type"),
                    waiting,
                    extra={"job": message},
                )
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

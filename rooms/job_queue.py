"""Putting jobs on the channel `synctv.jobs` (docs/jobs.md); `rooms.jobs` runs them.

Services queue jobs through this module, which imports no service: the playlist service
queues the probe that `rooms.jobs` runs and that updates the playlist, with no import cycle.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from asgiref.sync import async_to_sync
from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger("synctv.jobs")

JOBS_CHANNEL = "synctv.jobs"
PROBE_MOVIE = "job.probe_movie"  # {movie_id}
PRUNE_GUESTS = "job.prune_guests"  # {}
CLEAR_NODE = "job.clear_node"  # {node_id}
JOB_TYPES = frozenset({PROBE_MOVIE, PRUNE_GUESTS, CLEAR_NODE})


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

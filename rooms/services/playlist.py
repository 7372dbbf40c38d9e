"""Playlist: add, edit, remove and reorder movies; every change bumps the playlist version."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from django.db import transaction
from django.db.models import F, Max

from rooms import job_queue
from rooms.errors import bad_request, not_found
from rooms.models import Movie, PlaybackState, Room
from rooms.payloads import movie_payload, playlist_payload
from rooms.permissions import Permission
from rooms.services.events import publish
from rooms.services.playback import set_movie
from rooms.services.rooms import has_nul, lock_room, require_active_member, require_permission

MAX_URL_LENGTH = 2048
MAX_TITLE_LENGTH = 200
MAX_SUBTITLES = 8
MAX_SUBTITLE_LABEL_LENGTH = 100
MAX_SUBTITLE_LANG_LENGTH = 35
SUBTITLE_KEYS = ("url", "label", "lang")
# BCP-47-like: a letter subtag, then letter-or-digit subtags ("en", "pt-BR", "zh-Hant-TW").
LANG_TAG = re.compile(r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*")
TYPES_BY_SUFFIX = {
    ".mp4": "mp4",
    ".m4v": "mp4",
    ".webm": "webm",
    ".ogv": "ogg",
    ".ogg": "ogg",
    ".m3u8": "hls",
    ".mpd": "dash",
    ".mkv": "mkv",
    ".mov": "mov",
}
# The movie `type` a Content-Type names, once the probe job has asked the URL (docs/jobs.md).
TYPES_BY_CONTENT_TYPE = {
    "video/mp4": "mp4",
    "video/x-m4v": "mp4",  # the same container, as .m4v is guessed mp4 above
    "video/webm": "webm",
    "video/ogg": "ogg",
    "application/vnd.apple.mpegurl": "hls",
    "application/x-mpegurl": "hls",
    "application/dash+xml": "dash",
    "video/quicktime": "mov",
    "video/x-matroska": "mkv",
}


def movie_type(url: str) -> str:
    """A first guess of the movie's kind from its URL (a later job may refine it)."""
    path = urlsplit(url).path.lower()
    for suffix, kind in TYPES_BY_SUFFIX.items():
        if path.endswith(suffix):
            return kind
    return "video"


def kind_of_content_type(content_type: str) -> str | None:
    """The movie `type` a Content-Type header names, or None when it is not a video type."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type in TYPES_BY_CONTENT_TYPE:
        return TYPES_BY_CONTENT_TYPE[media_type]
    return "video" if media_type.startswith("video/") else None


def set_probed_type(room_id: str, movie_id: str, url: str, kind: str) -> bool:
    """Store the type the probe found, if the movie still has the probed `url`; True if changed.

    A change bumps the playlist version and publishes `playlist`, as any playlist edit.
    """
    with transaction.atomic():
        Room.objects.select_for_update().filter(pk=room_id).first()  # the playlist's lock
        changed = Movie.objects.filter(pk=movie_id, url=url).exclude(type=kind).update(type=kind)
        if changed:
            _bump_and_publish(room_id)
    return bool(changed)


def _clean_url(url: Any, field: str = "url") -> str:
    if not isinstance(url, str) or not url.strip():
        raise bad_request(f"{field} must be a non-empty string")
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise bad_request(f"{field} must be at most {MAX_URL_LENGTH} characters")
    if has_nul(url):
        raise bad_request(f"{field} must not contain NUL characters")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. `http://[::1`, a host that changes under NFKC
        raise bad_request(f"{field} is not a valid URL: {exc}") from exc
    if parts.scheme in ("http", "https") and parts.netloc:
        return url
    if not parts.scheme and url.startswith("/") and not url.startswith("//"):
        return url  # a file served by this site, e.g. /static/...
    raise bad_request(f"{field} must be an http(s) URL or a path on this site starting with '/'")


def _clean_title(title: Any, url: str) -> str:
    if title is None or title == "":
        tail = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]
        return (tail or url)[:MAX_TITLE_LENGTH]
    if not isinstance(title, str) or len(title) > MAX_TITLE_LENGTH:
        raise bad_request(f"title must be a string of at most {MAX_TITLE_LENGTH} characters")
    if has_nul(title):
        raise bad_request("title must not contain NUL characters")
    return " ".join(title.split()) or url[:MAX_TITLE_LENGTH]


def _clean_lang(lang: Any, field: str) -> str:
    if lang is None or lang == "":
        return ""
    if (
        not isinstance(lang, str)
        or len(lang) > MAX_SUBTITLE_LANG_LENGTH
        or not LANG_TAG.fullmatch(lang)
    ):
        raise bad_request(
            f"{field} must be empty or a language tag such as 'en' or 'pt-BR' "
            f"(letters, digits and hyphens, at most {MAX_SUBTITLE_LANG_LENGTH} characters)"
        )
    return lang


def _clean_label(label: Any, fallback: str, field: str) -> str:
    if label is None or label == "":
        return fallback
    if not isinstance(label, str) or len(label) > MAX_SUBTITLE_LABEL_LENGTH:
        raise bad_request(
            f"{field} must be a string of at most {MAX_SUBTITLE_LABEL_LENGTH} characters"
        )
    if has_nul(label):
        raise bad_request(f"{field} must not contain NUL characters")
    return " ".join(label.split()) or fallback


def clean_subtitles(tracks: Any) -> list[dict[str, str]]:
    """A movie's subtitle tracks as stored: `[{url, label, lang}]`, at most MAX_SUBTITLES.

    None means no tracks. A missing label becomes the language tag, else "Subtitles N".
    """
    if tracks is None:
        return []
    if not isinstance(tracks, list):
        raise bad_request("subtitles must be a list of {url, label?, lang?} objects")
    if len(tracks) > MAX_SUBTITLES:
        raise bad_request(
            f"a movie may have at most {MAX_SUBTITLES} subtitle tracks, not {len(tracks)}"
        )
    cleaned: list[dict[str, str]] = []
    for index, track in enumerate(tracks):
        where = f"subtitles[{index}]"
        if not isinstance(track, dict):
            raise bad_request(f"{where} must be an object {{url, label?, lang?}}")
        unknown = set(track) - set(SUBTITLE_KEYS)
        if unknown:
            raise bad_request(
                f"{where} has unknown keys {', '.join(sorted(map(str, unknown)))}; "
                f"allowed: {', '.join(SUBTITLE_KEYS)}"
            )
        url = _clean_url(track.get("url"), f"{where}.url")
        for earlier, kept in enumerate(cleaned):
            if kept["url"] == url:
                raise bad_request(
                    f"{where}.url repeats subtitles[{earlier}].url: one track per file"
                )
        lang = _clean_lang(track.get("lang"), f"{where}.lang")
        fallback = lang or f"Subtitles {index + 1}"
        label = _clean_label(track.get("label"), fallback, f"{where}.label")
        cleaned.append({"url": url, "label": label, "lang": lang})
    return cleaned


def movies(room_id: str) -> list[Movie]:
    """The playlist's movies in order."""
    return list(Movie.objects.filter(room_id=room_id).order_by("position", "created_at"))


def playlist(room_id: str) -> dict[str, Any]:
    """`{version, movies}` as stored."""
    version = Room.objects.filter(pk=room_id).values_list("playlist_version", flat=True).first()
    if version is None:
        raise not_found(f"no room {room_id!r}")
    return playlist_payload(version, movies(room_id))


def get_playlist(user: Any, room_id: str) -> dict[str, Any]:
    """The playlist, for a member."""
    require_active_member(room_id, user)
    return playlist(room_id)


def _bump_and_publish(room_id: str) -> dict[str, Any]:
    Room.objects.filter(pk=room_id).update(playlist_version=F("playlist_version") + 1)
    current = playlist(room_id)
    publish(room_id, {"type": "playlist", "playlist": current})
    return current


def _movie(room_id: str, movie_id: str) -> Movie:
    # Locked after the room (lock_room): the playlist's lock order.
    movies = Movie.objects.select_for_update().filter(room_id=room_id)
    movie = None if has_nul(movie_id) else movies.filter(pk=movie_id).first()
    if movie is None:
        raise not_found(f"no movie {movie_id!r} in this room's playlist")
    return movie


def add_movie(
    user: Any, room_id: str, url: Any, title: Any = None, subtitles: Any = None
) -> dict[str, Any]:
    """Append a movie (with its subtitle tracks); the first of an empty room becomes current."""
    require_permission(room_id, user, Permission.ADD_MOVIE)
    return append_movie(room_id, url, title, subtitles, by=user)


def append_movie(
    room_id: str, url: Any, title: Any = None, subtitles: Any = None, by: Any = None
) -> dict[str, Any]:
    """`add_movie` without a permission check (staff in the admin); `by` is who added it."""
    clean_url = _clean_url(url)
    tracks = clean_subtitles(subtitles)
    with transaction.atomic():
        lock_room(room_id)
        last = Movie.objects.filter(room_id=room_id).aggregate(m=Max("position"))["m"]
        movie = Movie.objects.create(
            room_id=room_id,
            url=clean_url,
            title=_clean_title(title, clean_url),
            type=movie_type(clean_url),
            position=0 if last is None else last + 1,
            subtitles=tracks,
            added_by=by,
        )
        _bump_and_publish(room_id)
        job_queue.enqueue_on_commit(job_queue.PROBE_MOVIE, movie_id=movie.id)
        if PlaybackState.objects.filter(room_id=room_id, movie__isnull=True).exists():
            set_movie(room_id, movie.id, by=by)
    return movie_payload(movie)


def update_movie(user: Any, room_id: str, movie_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    """Change a movie's url, title or subtitles (the given list replaces the old one)."""
    require_permission(room_id, user, Permission.EDIT_MOVIE)
    return edit_movie(room_id, movie_id, changes)


def edit_movie(room_id: str, movie_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    """`update_movie` without a permission check (staff in the admin)."""
    unknown = set(changes) - {"url", "title", "subtitles"}
    if unknown:
        raise bad_request(
            f"cannot change {', '.join(sorted(unknown))}; allowed: url, title, subtitles"
        )
    with transaction.atomic():
        lock_room(room_id)
        movie = _movie(room_id, movie_id)
        if "url" in changes:
            movie.url = _clean_url(changes["url"])
            movie.type = movie_type(movie.url)
            job_queue.enqueue_on_commit(job_queue.PROBE_MOVIE, movie_id=movie.id)
        if "title" in changes:
            movie.title = _clean_title(changes["title"], movie.url)
        if "subtitles" in changes:
            movie.subtitles = clean_subtitles(changes["subtitles"])
        movie.save()
        _bump_and_publish(room_id)
    return movie_payload(movie)


def delete_movie(user: Any, room_id: str, movie_id: str) -> None:
    """Remove a movie; if it was playing, the room has no current movie until one is set."""
    require_permission(room_id, user, Permission.DELETE_MOVIE)
    remove_movie(room_id, movie_id, by=user)


def remove_movie(room_id: str, movie_id: str, by: Any = None) -> None:
    """`delete_movie` without a permission check (staff in the admin); `by` is who removed it."""
    with transaction.atomic():
        lock_room(room_id)
        movie = _movie(room_id, movie_id)
        was_current = PlaybackState.objects.filter(room_id=room_id, movie_id=movie_id).exists()
        movie.delete()
        _bump_and_publish(room_id)
        if was_current:
            set_movie(room_id, None, by=by)


def reorder(user: Any, room_id: str, order: Any) -> dict[str, Any]:
    """Put the movies in the given order: a list naming every movie of the room once."""
    require_permission(room_id, user, Permission.EDIT_MOVIE)
    if not isinstance(order, list) or not all(isinstance(item, str) for item in order):
        raise bad_request("order must be a list of movie ids")
    with transaction.atomic():
        lock_room(room_id)
        by_id = {movie.id: movie for movie in movies(room_id)}
        if len(order) != len(set(order)) or set(order) != set(by_id):
            raise bad_request("order must name every movie of the playlist exactly once")
        for index, movie_id in enumerate(order):
            by_id[movie_id].position = index
        Movie.objects.bulk_update(by_id.values(), ["position"])
        return _bump_and_publish(room_id)

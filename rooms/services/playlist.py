"""Playlist: add, edit, remove and reorder movies; every change bumps the playlist version."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.db import transaction
from django.db.models import F, Max

from rooms import jobs
from rooms.errors import bad_request, not_found
from rooms.models import Movie, PlaybackState, Room
from rooms.payloads import movie_payload, playlist_payload
from rooms.permissions import Permission
from rooms.services.events import publish
from rooms.services.playback import set_movie
from rooms.services.rooms import has_nul, require_active_member, require_permission

MAX_URL_LENGTH = 2048
MAX_TITLE_LENGTH = 200
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


def movie_type(url: str) -> str:
    """A first guess of the movie's kind from its URL (a later job may refine it)."""
    path = urlsplit(url).path.lower()
    for suffix, kind in TYPES_BY_SUFFIX.items():
        if path.endswith(suffix):
            return kind
    return "video"


def _clean_url(url: Any) -> str:
    if not isinstance(url, str) or not url.strip():
        raise bad_request("url must be a non-empty string")
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise bad_request(f"url must be at most {MAX_URL_LENGTH} characters")
    if has_nul(url):
        raise bad_request("url must not contain NUL characters")
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.netloc:
        return url
    if not parts.scheme and url.startswith("/") and not url.startswith("//"):
        return url  # a file served by this site, e.g. /static/...
    raise bad_request("url must be an http(s) URL or a path on this site starting with '/'")


def _clean_title(title: Any, url: str) -> str:
    if title is None or title == "":
        tail = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]
        return (tail or url)[:MAX_TITLE_LENGTH]
    if not isinstance(title, str) or len(title) > MAX_TITLE_LENGTH:
        raise bad_request(f"title must be a string of at most {MAX_TITLE_LENGTH} characters")
    if has_nul(title):
        raise bad_request("title must not contain NUL characters")
    return " ".join(title.split()) or url[:MAX_TITLE_LENGTH]


def _movies(room_id: str) -> list[Movie]:
    return list(Movie.objects.filter(room_id=room_id).order_by("position", "created_at"))


def playlist(room_id: str) -> dict[str, Any]:
    """`{version, movies}` as stored."""
    version = Room.objects.filter(pk=room_id).values_list("playlist_version", flat=True).first()
    if version is None:
        raise not_found(f"no room {room_id!r}")
    return playlist_payload(version, _movies(room_id))


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
    movies = Movie.objects.select_for_update().filter(room_id=room_id)
    movie = None if has_nul(movie_id) else movies.filter(pk=movie_id).first()
    if movie is None:
        raise not_found(f"no movie {movie_id!r} in this room's playlist")
    return movie


def add_movie(user: Any, room_id: str, url: Any, title: Any = None) -> dict[str, Any]:
    """Append a movie; the first movie of an empty room becomes the current one."""
    require_permission(room_id, user, Permission.ADD_MOVIE)
    clean_url = _clean_url(url)
    with transaction.atomic():
        Room.objects.select_for_update().filter(pk=room_id).first()
        last = Movie.objects.filter(room_id=room_id).aggregate(m=Max("position"))["m"]
        movie = Movie.objects.create(
            room_id=room_id,
            url=clean_url,
            title=_clean_title(title, clean_url),
            type=movie_type(clean_url),
            position=0 if last is None else last + 1,
            added_by=user,
        )
        _bump_and_publish(room_id)
        jobs.enqueue_on_commit(jobs.PROBE_MOVIE, movie_id=movie.id)
        if PlaybackState.objects.filter(room_id=room_id, movie__isnull=True).exists():
            set_movie(room_id, movie.id, by=user)
    return movie_payload(movie)


def update_movie(user: Any, room_id: str, movie_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    """Change a movie's url or title."""
    require_permission(room_id, user, Permission.EDIT_MOVIE)
    unknown = set(changes) - {"url", "title"}
    if unknown:
        raise bad_request(f"cannot change {', '.join(sorted(unknown))}; allowed: url, title")
    with transaction.atomic():
        movie = _movie(room_id, movie_id)
        if "url" in changes:
            movie.url = _clean_url(changes["url"])
            movie.type = movie_type(movie.url)
            jobs.enqueue_on_commit(jobs.PROBE_MOVIE, movie_id=movie.id)
        if "title" in changes:
            movie.title = _clean_title(changes["title"], movie.url)
        movie.save()
        _bump_and_publish(room_id)
    return movie_payload(movie)


def delete_movie(user: Any, room_id: str, movie_id: str) -> None:
    """Remove a movie; if it was playing, the room has no current movie until one is set."""
    require_permission(room_id, user, Permission.DELETE_MOVIE)
    with transaction.atomic():
        movie = _movie(room_id, movie_id)
        was_current = PlaybackState.objects.filter(room_id=room_id, movie_id=movie_id).exists()
        movie.delete()
        _bump_and_publish(room_id)
        if was_current:
            set_movie(room_id, None, by=user)


def reorder(user: Any, room_id: str, order: Any) -> dict[str, Any]:
    """Put the movies in the given order: a list naming every movie of the room once."""
    require_permission(room_id, user, Permission.EDIT_MOVIE)
    if not isinstance(order, list) or not all(isinstance(item, str) for item in order):
        raise bad_request("order must be a list of movie ids")
    with transaction.atomic():
        Room.objects.select_for_update().filter(pk=room_id).first()
        movies = {movie.id: movie for movie in _movies(room_id)}
        if len(order) != len(set(order)) or set(order) != set(movies):
            raise bad_request("order must name every movie of the playlist exactly once")
        for index, movie_id in enumerate(order):
            movies[movie_id].position = index
        Movie.objects.bulk_update(movies.values(), ["position"])
        return _bump_and_publish(room_id)

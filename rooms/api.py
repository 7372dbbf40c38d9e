"""The JSON HTTP API (SPEC §3), thin: every view translates between HTTP and rooms.services.

django-ninja validates bodies and serves the OpenAPI schema at /api/schema/.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth import login as start_session
from django.contrib.auth import logout as end_session
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI, Schema
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.security import HttpBearer, django_auth
from pydantic import ConfigDict, Field

from rooms.codes import HTTP_STATUS, ErrorCode
from rooms.errors import ServiceError
from rooms.payloads import member_payload, room_payload, user_payload
from rooms.services import accounts, chat, members, playlist, rooms

logger = logging.getLogger(__name__)


class BearerAuth(HttpBearer):
    """`Authorization: Bearer <token>` from signup, login or guest."""

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        """The token's user, also set as request.user so services see who acts."""
        user = accounts.user_for_token(token)
        if user is not None:
            request.user = user
        return user


AUTH = [BearerAuth(), django_auth]

api = NinjaAPI(
    title="SyncTV API",
    version="1",
    description="Watch together: rooms, members, playlists and chat. See SPEC §3.",
    openapi_url="/schema/",
    docs_url="/docs",
    urls_namespace="api",
)


def error_response(
    request: HttpRequest, code: ErrorCode, message: str, status: int | None = None
) -> HttpResponse:
    """`{"error": {"code", "message"}}` with the fitting status."""
    body = {"error": {"code": str(code), "message": message}}
    return api.create_response(request, body, status=status or HTTP_STATUS.get(code, 400))


@api.exception_handler(ServiceError)
def _service_error(request: HttpRequest, exc: ServiceError) -> HttpResponse:
    return error_response(request, exc.code, exc.message)


@api.exception_handler(NinjaValidationError)
def _validation_error(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
    problems = []
    for item in exc.errors:
        where = ".".join(str(part) for part in item.get("loc", ()) if part not in ("body", "query"))
        problems.append(f"{where}: {item.get('msg')}" if where else str(item.get("msg")))
    return error_response(request, ErrorCode.BAD_REQUEST, "; ".join(problems) or "bad request")


@api.exception_handler(AuthenticationError)
def _unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return error_response(
        request,
        ErrorCode.UNAUTHENTICATED,
        "sign in first: a session cookie or Authorization: Bearer <token>",
    )


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    code = {
        400: ErrorCode.BAD_REQUEST,
        401: ErrorCode.UNAUTHENTICATED,
        403: ErrorCode.FORBIDDEN,
        404: ErrorCode.NOT_FOUND,
        429: ErrorCode.RATE_LIMITED,
    }.get(exc.status_code, ErrorCode.BAD_REQUEST)
    return error_response(request, code, str(exc), status=exc.status_code)


def not_found_view(request: HttpRequest, path: str = "") -> HttpResponse:
    """Unknown paths under /api/ answer in the API's error format, not an HTML page."""
    return error_response(request, ErrorCode.NOT_FOUND, f"no API endpoint /api/{path}")


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return error_response(request, ErrorCode.NOT_FOUND, "not found")


class Body(Schema):
    """A request body: unknown fields and wrong types are refused, not ignored or coerced."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Credentials(Body):
    """Username and password."""

    username: str = Field(max_length=150)
    password: str = Field(max_length=256)


class GuestIn(Body):
    """A guest's display name."""

    name: str = Field(max_length=200)


class RoomIn(Body):
    """A new room."""

    name: str
    password: str | None = None
    hidden: bool = False
    settings: dict[str, Any] | None = None


class RoomPatch(Body):
    """Room changes: only the fields given change."""

    name: str | None = None
    password: str | None = None
    hidden: bool | None = None
    settings: dict[str, Any] | None = None


class JoinIn(Body):
    """The room password, where the room has one."""

    password: str | None = None


class MemberPatch(Body):
    """Member changes: only the fields given change."""

    role: str | None = None
    permissions: list[str] | None = None
    status: str | None = None


SUBTITLES_HELP = f"WebVTT tracks, at most {playlist.MAX_SUBTITLES}: [{{url, label?, lang?}}]"


class MovieIn(Body):
    """A movie to add, optionally with its subtitle tracks."""

    url: str
    title: str | None = None
    subtitles: list[dict[str, Any]] | None = Field(default=None, description=SUBTITLES_HELP)


class MoviePatch(Body):
    """Movie changes; `subtitles` replaces the whole list of tracks."""

    url: str | None = None
    title: str | None = None
    subtitles: list[dict[str, Any]] | None = Field(default=None, description=SUBTITLES_HELP)


class OrderIn(Body):
    """Every movie id of the playlist, in the new order."""

    order: list[str]


def _signed_in(request: HttpRequest, user: Any) -> dict[str, Any]:
    start_session(request, user, backend="django.contrib.auth.backends.ModelBackend")
    return {"user": user_payload(user), "token": accounts.issue_token(user)}


@api.post("/auth/signup", response={201: dict}, tags=["auth"])
def signup(request: HttpRequest, body: Credentials) -> dict:
    """Create an account; answers `{user, token}` and starts a session."""
    user = accounts.signup(body.username, body.password)
    return _signed_in(request, user)


@api.post("/auth/login", response=dict, tags=["auth"])
def login(request: HttpRequest, body: Credentials) -> dict:
    """Sign in; answers `{user, token}` and starts a session."""
    return _signed_in(request, accounts.login(body.username, body.password))


@api.post("/auth/guest", response=dict, tags=["auth"])
def guest(request: HttpRequest, body: GuestIn) -> dict:
    """A guest account with a display name; answers `{user, token}` and starts a session."""
    return _signed_in(request, accounts.create_guest(body.name))


@api.post("/auth/logout", response={204: None}, tags=["auth"])
def logout(request: HttpRequest) -> None:
    """End the session and revoke the bearer token the request carries."""
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        accounts.revoke_token(header[7:].strip())
    end_session(request)
    return None


@api.get("/me", response=dict, auth=AUTH, tags=["auth"])
def me(request: HttpRequest) -> dict:
    """Who the caller is."""
    return {"user": user_payload(request.user)}


@api.get("/rooms", response=list[dict], tags=["rooms"])
def list_rooms(request: HttpRequest) -> list[dict]:
    """Public, non-hidden rooms, busiest first."""
    return rooms.list_public_rooms()


@api.post("/rooms", response={201: dict}, auth=AUTH, tags=["rooms"])
def create_room(request: HttpRequest, body: RoomIn) -> dict:
    """Create a room; the caller becomes its creator."""
    room = rooms.create_room(request.user, body.name, body.password, body.hidden, body.settings)
    return {"room": room_payload(rooms.get_room(room.id))}


@api.get("/rooms/{room_id}", response=dict, tags=["rooms"])
def get_room(request: HttpRequest, room_id: str) -> dict:
    """One room (public information; the password is never shown)."""
    return {"room": rooms.room_with_viewers(rooms.get_room(room_id))}


@api.patch("/rooms/{room_id}", response=dict, auth=AUTH, tags=["rooms"])
def patch_room(request: HttpRequest, room_id: str, body: RoomPatch) -> dict:
    """Change name, password, hidden or settings (room admins)."""
    room = rooms.update_room(request.user, room_id, body.model_dump(exclude_unset=True))
    return {"room": rooms.room_with_viewers(room)}


@api.delete("/rooms/{room_id}", response={204: None}, auth=AUTH, tags=["rooms"])
def delete_room(request: HttpRequest, room_id: str) -> None:
    """Delete the room (creator only); its sockets close with 4004."""
    rooms.delete_room(request.user, room_id)
    return None


@api.post("/rooms/{room_id}/join", response=dict, auth=AUTH, tags=["members"])
def join_room(request: HttpRequest, room_id: str, body: JoinIn | None = None) -> dict:
    """Become a member, with the password where the room has one."""
    membership = rooms.join_room(request.user, room_id, body.password if body else None)
    return {"member": member_payload(membership)}


@api.get("/rooms/{room_id}/members", response=list[dict], auth=AUTH, tags=["members"])
def list_members(request: HttpRequest, room_id: str) -> list[dict]:
    """Every member of the room (members only)."""
    return members.list_members(request.user, room_id)


@api.patch("/rooms/{room_id}/members/{user_id}", response=dict, auth=AUTH, tags=["members"])
def patch_member(request: HttpRequest, room_id: str, user_id: int, body: MemberPatch) -> dict:
    """Change a member's role, permissions or status (room admins); a ban kicks them."""
    return {
        "member": members.update_member(
            request.user, room_id, user_id, body.model_dump(exclude_unset=True)
        )
    }


@api.get("/rooms/{room_id}/movies", response=dict, auth=AUTH, tags=["playlist"])
def list_movies(request: HttpRequest, room_id: str) -> dict:
    """The playlist: `{version, movies}`."""
    return playlist.get_playlist(request.user, room_id)


@api.post("/rooms/{room_id}/movies", response={201: dict}, auth=AUTH, tags=["playlist"])
def add_movie(request: HttpRequest, room_id: str, body: MovieIn) -> dict:
    """Add a movie at the end of the playlist."""
    movie = playlist.add_movie(request.user, room_id, body.url, body.title, body.subtitles)
    return {"movie": movie}


@api.post("/rooms/{room_id}/movies/reorder", response=dict, auth=AUTH, tags=["playlist"])
def reorder_movies(request: HttpRequest, room_id: str, body: OrderIn) -> dict:
    """Put the playlist in a new order."""
    return playlist.reorder(request.user, room_id, body.order)


@api.patch("/rooms/{room_id}/movies/{movie_id}", response=dict, auth=AUTH, tags=["playlist"])
def patch_movie(request: HttpRequest, room_id: str, movie_id: str, body: MoviePatch) -> dict:
    """Change a movie's url, title or subtitles."""
    changes = body.model_dump(exclude_unset=True)
    return {"movie": playlist.update_movie(request.user, room_id, movie_id, changes)}


@api.delete(
    "/rooms/{room_id}/movies/{movie_id}", response={204: None}, auth=AUTH, tags=["playlist"]
)
def delete_movie(request: HttpRequest, room_id: str, movie_id: str) -> None:
    """Remove a movie from the playlist."""
    playlist.delete_movie(request.user, room_id, movie_id)
    return None


@api.get("/rooms/{room_id}/chat", response=list[dict], auth=AUTH, tags=["chat"])
def chat_history(
    request: HttpRequest, room_id: str, before: int | None = None, limit: int = 50
) -> list[dict]:
    """Chat history, newest last: `?before=ID&limit=N`."""
    return chat.history(request.user, room_id, before, limit)


@api.delete("/rooms/{room_id}/chat/{message_id}", response={204: None}, auth=AUTH, tags=["chat"])
def delete_chat(request: HttpRequest, room_id: str, message_id: int) -> None:
    """Delete a chat message (room admins and staff); sockets get `chat_deleted {id}`."""
    chat.delete_chat(request.user, room_id, message_id)
    return None

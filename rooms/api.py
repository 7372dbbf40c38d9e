"""The JSON HTTP API (SPEC §3), thin: every view translates between HTTP and rooms.services.

django-ninja validates bodies and serves the OpenAPI schema at /api/schema/.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from django.contrib.auth import SESSION_KEY, update_session_auth_hash
from django.contrib.auth import login as start_session
from django.contrib.auth import logout as end_session
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.urls import URLPattern, URLResolver
from ninja import NinjaAPI, Query, Schema, Status
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.security import HttpBearer, SessionAuth
from pydantic import ConfigDict, Field, Strict, ValidationInfo, field_validator

from rooms import throttling
from rooms.codes import HTTP_STATUS, ErrorCode
from rooms.errors import ServiceError
from rooms.payloads import member_payload, room_payload, user_payload
from rooms.permissions import MemberStatus, Permission
from rooms.services import accounts, chat, members, playlist, rooms
from rooms.services.rooms import MAX_PASSWORD_LENGTH as MAX_ROOM_PASSWORD_LENGTH

logger = logging.getLogger(__name__)


class BearerAuth(HttpBearer):
    """`Authorization: Bearer <token>` from signup, login or guest."""

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        """The token's user, also set as request.user so services see who acts."""
        user = accounts.user_for_token(token)
        if user is not None:
            request.user = user
        return user


class SignedInSession(SessionAuth):
    """The session cookie. Its CSRF check applies to a signed-in session only: a request with
    no session is answered 401 (sign in), not a CSRF 403."""

    def __call__(self, request: HttpRequest) -> Any:
        """The session's user, after the CSRF check; None when nobody is signed in."""
        if not request.user.is_authenticated:
            return None
        return super().__call__(request)


AUTH = [BearerAuth(), SignedInSession()]


class SyncTVApi(NinjaAPI):
    """django-ninja's API, whose 405 (a method the path does not have) answers in the error
    shape too, with its Allow header."""

    def _get_urls(self) -> list[URLResolver | URLPattern]:
        urls = super()._get_urls()
        for pattern in urls:
            if isinstance(pattern, URLPattern):
                pattern.callback = _method_not_allowed_as_error(pattern.callback)
        return urls


def _method_not_allowed_as_error(view: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(view)
    def shaped(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        response = view(request, *args, **kwargs)
        if not isinstance(response, HttpResponseNotAllowed):
            return response
        allowed = response["Allow"]
        message = f"{request.method} is not allowed here; allowed: {allowed}"
        answer = error_response(request, ErrorCode.BAD_REQUEST, message, status=405)
        answer["Allow"] = allowed
        return answer

    return shaped


api = SyncTVApi(
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
        message = str(item.get("msg")).removeprefix("Value error, ")
        problems.append(f"{where}: {message}" if where else message)
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
    message = str(exc)
    if exc.status_code == 429:
        message = "too many tries from this address or for this account: wait and try again"
    return error_response(request, code, message, status=exc.status_code)


@api.exception_handler(RequestDataTooBig)
def _too_large(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    return error_response(request, ErrorCode.TOO_LARGE, "the request body is too large")


def not_found_view(request: HttpRequest, path: str = "") -> HttpResponse:
    """Unknown paths under /api/ answer in the API's error format, not an HTML page."""
    return error_response(request, ErrorCode.NOT_FOUND, f"no API endpoint /api/{path}")


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return error_response(request, ErrorCode.NOT_FOUND, "not found")


class ErrorDetail(Schema):
    """What was refused and why."""

    code: ErrorCode
    message: str


class ErrorOut(Schema):
    """Every error answer (SPEC §3): `{"error": {"code", "message"}}`."""

    error: ErrorDetail


def answers(success: dict[int, Any], *errors: int) -> dict[Any, Any]:
    """An operation's documented responses: its success answers and, for each error status
    it can give, the error shape."""
    return {**success, frozenset(errors): ErrorOut} if errors else dict(success)


# Every operation that reads a JSON body can refuse it (400) or its size (413).
BODY = (400, 413)
# Signed-in operations: no or a bad token (401); a session without its CSRF token, or the
# caller may not do this (403).
SIGNED_IN = (401, 403)
THROTTLED = (429,)


class Body(Schema):
    """A request body: unknown fields and wrong types are refused, not ignored or coerced."""

    model_config = ConfigDict(extra="forbid", strict=True)


MAX_ROOM_NAME_LENGTH = 100  # Room.name's max_length

# A name people see (guest, room): not blank, no NUL. Its length is checked before runs of
# whitespace are collapsed, so the schema's maxLength is the length that counts.
VISIBLE_NAME = accounts.VISIBLE_NAME_PATTERN


class Credentials(Body):
    """Username and password of an existing account."""

    username: str = Field(max_length=150)
    password: str = Field(max_length=accounts.MAX_PASSWORD_LENGTH)


class SignupIn(Body):
    """A new account's username and password."""

    username: str = Field(
        pattern=accounts.USERNAME_PATTERN,
        description="3 to 32 letters, digits, '_', '.' or '-'",
    )
    password: str = Field(
        min_length=accounts.MIN_PASSWORD_LENGTH, max_length=accounts.MAX_PASSWORD_LENGTH
    )


class PasswordIn(Body):
    """The current password and the new one."""

    old_password: str = Field(max_length=accounts.MAX_PASSWORD_LENGTH)
    new_password: str = Field(
        min_length=accounts.MIN_PASSWORD_LENGTH, max_length=accounts.MAX_PASSWORD_LENGTH
    )


class GuestIn(Body):
    """A guest's display name."""

    name: str = Field(min_length=1, max_length=accounts.MAX_GUEST_NAME_LENGTH, pattern=VISIBLE_NAME)


# Enum values arrive as JSON strings: the one place a Body accepts a str for another type.
PermissionName = Annotated[Permission, Strict(False)]
StatusName = Annotated[MemberStatus, Strict(False)]


class RoomSettingsIn(Body):
    """Room settings; those left out keep their value (defaults for a new room)."""

    guests_allowed: bool | None = None
    member_permissions: list[PermissionName] | None = None


ROOM_NAME = Field(min_length=1, max_length=MAX_ROOM_NAME_LENGTH, pattern=VISIBLE_NAME)
ROOM_PASSWORD = Field(
    default=None,
    max_length=MAX_ROOM_PASSWORD_LENGTH,
    description="empty or null: no password",
)


class RoomIn(Body):
    """A new room."""

    name: str = ROOM_NAME
    password: str | None = ROOM_PASSWORD
    hidden: bool = False
    settings: RoomSettingsIn | None = None


class RoomPatch(Body):
    """Room changes: only the fields given change (null name, hidden or settings: no change;
    an empty or null password removes it)."""

    name: str | None = Field(
        default=None, min_length=1, max_length=MAX_ROOM_NAME_LENGTH, pattern=VISIBLE_NAME
    )
    password: str | None = ROOM_PASSWORD
    hidden: bool | None = None
    settings: RoomSettingsIn | None = None

    def changes(self) -> dict[str, Any]:
        """The fields to change, as rooms.update_room takes them."""
        given = self.model_dump(exclude_unset=True)
        changes = {key: value for key, value in given.items() if value is not None}
        if "password" in given:
            changes["password"] = given["password"]
        if self.settings is not None:
            changes["settings"] = self.settings.model_dump(exclude_none=True)
        return changes


class JoinIn(Body):
    """The room password, where the room has one."""

    password: str | None = None


class MemberPatch(Body):
    """Member changes: only the fields given change."""

    # The creator's role is never given or taken (rooms.services.members).
    role: Literal["admin", "member"] | None = None
    permissions: list[PermissionName] | None = None
    status: StatusName | None = None


SUBTITLES_HELP = f"WebVTT tracks, at most {playlist.MAX_SUBTITLES}: [{{url, label?, lang?}}]"


def _readable_urls(value: Any, field: str) -> Any:
    """Refuse a URL that urllib cannot even split (a malformed IPv6 host, a host that changes
    under NFKC): rooms.services.playlist checks the rest, with its own messages."""
    urls: list[tuple[str, Any]] = [(field, value)] if isinstance(value, str) else []
    if isinstance(value, list):
        urls = [
            (f"{field}[{index}].url", track.get("url"))
            for index, track in enumerate(value)
            if isinstance(track, dict)
        ]
    for where, url in urls:
        if not isinstance(url, str):
            continue
        try:
            urlsplit(url.strip())
        except ValueError as exc:
            raise ValueError(f"{where} is not a URL that can be read: {exc}") from None
    return value


class MovieBody(Body):
    """What a movie's body shares: its URLs are ones urllib can read."""

    @field_validator("url", "subtitles", check_fields=False)
    @classmethod
    def _readable(cls, value: Any, info: ValidationInfo) -> Any:
        return _readable_urls(value, str(info.field_name))


class MovieIn(MovieBody):
    """A movie to add, optionally with its subtitle tracks."""

    url: str
    title: str | None = None
    subtitles: list[dict[str, Any]] | None = Field(default=None, description=SUBTITLES_HELP)


class MoviePatch(MovieBody):
    """Movie changes; `subtitles` replaces the whole list of tracks."""

    url: str | None = None
    title: str | None = None
    subtitles: list[dict[str, Any]] | None = Field(default=None, description=SUBTITLES_HELP)


class OrderIn(Body):
    """Every movie id of the playlist, in the new order."""

    order: list[str]


def _signed_in(request: HttpRequest, user: Any) -> dict[str, Any]:
    start_session(request, user, backend=accounts.SESSION_BACKEND)
    return {"user": user_payload(user), "token": accounts.issue_token(user)}


@api.post(
    "/auth/signup",
    response=answers({201: dict}, *BODY, 409, *THROTTLED),
    throttle=throttling.signup_throttles(),
    tags=["auth"],
)
def signup(request: HttpRequest, body: SignupIn) -> Status[dict]:
    """Create an account; answers `{user, token}` and starts a session."""
    user = accounts.signup(body.username, body.password)
    return Status(201, _signed_in(request, user))


@api.post(
    "/auth/login",
    response=answers({200: dict}, *BODY, 401, *THROTTLED),
    throttle=throttling.login_throttles(),
    tags=["auth"],
)
def login(request: HttpRequest, body: Credentials) -> dict:
    """Sign in; answers `{user, token}` and starts a session."""
    return _signed_in(request, accounts.login(body.username, body.password))


@api.post(
    "/auth/guest",
    response=answers({200: dict}, *BODY, *THROTTLED),
    throttle=throttling.guest_throttles(),
    tags=["auth"],
)
def guest(request: HttpRequest, body: GuestIn) -> dict:
    """A guest account with a display name; answers `{user, token}` and starts a session."""
    return _signed_in(request, accounts.create_guest(body.name))


@api.post(
    "/auth/password",
    response=answers({200: dict}, *BODY, *SIGNED_IN, *THROTTLED),
    auth=AUTH,
    throttle=throttling.password_throttles(),
    tags=["auth"],
)
def change_password(request: HttpRequest, body: PasswordIn) -> dict:
    """Change the caller's password: every bearer token of the account is revoked and its
    other sessions end; answers `{user, token}` with a fresh token, this session kept."""
    user = request.auth  # type: ignore[attr-defined]
    accounts.change_password(user, body.old_password, body.new_password)
    if request.session.get(SESSION_KEY) is not None:
        update_session_auth_hash(request, user)
    return {"user": user_payload(user), "token": accounts.issue_token(user)}


@api.post("/auth/logout", response={204: None}, tags=["auth"])
def logout(request: HttpRequest) -> None:
    """End the session and revoke the bearer token the request carries."""
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        accounts.revoke_token(header[7:].strip())
    end_session(request)
    return None


@api.get("/me", response=answers({200: dict}, 401), auth=AUTH, tags=["auth"])
def me(request: HttpRequest) -> dict:
    """Who the caller is."""
    return {"user": user_payload(request.user)}


@api.get("/rooms", response=list[dict], tags=["rooms"])
def list_rooms(request: HttpRequest) -> list[dict]:
    """Public, non-hidden rooms, busiest first."""
    return rooms.list_public_rooms()


@api.post("/rooms", response=answers({201: dict}, *BODY, *SIGNED_IN), auth=AUTH, tags=["rooms"])
def create_room(request: HttpRequest, body: RoomIn) -> Status[dict]:
    """Create a room; the caller becomes its creator."""
    settings = body.settings.model_dump(exclude_none=True) if body.settings else None
    room = rooms.create_room(request.user, body.name, body.password, body.hidden, settings)
    return Status(201, {"room": room_payload(rooms.get_room(room.id))})


@api.get("/rooms/{room_id}", response=answers({200: dict}, 404), tags=["rooms"])
def get_room(request: HttpRequest, room_id: str) -> dict:
    """One room (public information; the password is never shown)."""
    return {"room": rooms.room_with_viewers(rooms.get_room(room_id))}


# Operations on one room (or something in it): it may not exist.
IN_ROOM = (*SIGNED_IN, 404)


@api.patch(
    "/rooms/{room_id}", response=answers({200: dict}, *BODY, *IN_ROOM), auth=AUTH, tags=["rooms"]
)
def patch_room(request: HttpRequest, room_id: str, body: RoomPatch) -> dict:
    """Change name, password, hidden or settings (room admins)."""
    room = rooms.update_room(request.user, room_id, body.changes())
    return {"room": rooms.room_with_viewers(room)}


@api.delete("/rooms/{room_id}", response=answers({204: None}, *IN_ROOM), auth=AUTH, tags=["rooms"])
def delete_room(request: HttpRequest, room_id: str) -> Status[None]:
    """Delete the room (creator only); its sockets close with 4004."""
    rooms.delete_room(request.user, room_id)
    return Status(204, None)


@api.post(
    "/rooms/{room_id}/join",
    response=answers({200: dict}, *BODY, *IN_ROOM),
    auth=AUTH,
    tags=["members"],
)
def join_room(request: HttpRequest, room_id: str, body: JoinIn | None = None) -> dict:
    """Become a member, with the password where the room has one."""
    membership = rooms.join_room(request.user, room_id, body.password if body else None)
    return {"member": member_payload(membership)}


@api.get(
    "/rooms/{room_id}/members",
    response=answers({200: list[dict]}, *IN_ROOM),
    auth=AUTH,
    tags=["members"],
)
def list_members(request: HttpRequest, room_id: str) -> list[dict]:
    """Every member of the room (members only)."""
    return members.list_members(request.user, room_id)


@api.patch(
    "/rooms/{room_id}/members/{user_id}",
    response=answers({200: dict}, *BODY, *IN_ROOM),
    auth=AUTH,
    tags=["members"],
)
def patch_member(request: HttpRequest, room_id: str, user_id: int, body: MemberPatch) -> dict:
    """Change a member's role, permissions or status (room admins); a ban kicks them."""
    return {
        "member": members.update_member(
            request.user, room_id, user_id, body.model_dump(exclude_unset=True)
        )
    }


@api.get(
    "/rooms/{room_id}/movies", response=answers({200: dict}, *IN_ROOM), auth=AUTH, tags=["playlist"]
)
def list_movies(request: HttpRequest, room_id: str) -> dict:
    """The playlist: `{version, movies}`."""
    return playlist.get_playlist(request.user, room_id)


@api.post(
    "/rooms/{room_id}/movies",
    response=answers({201: dict}, *BODY, *IN_ROOM),
    auth=AUTH,
    tags=["playlist"],
)
def add_movie(request: HttpRequest, room_id: str, body: MovieIn) -> Status[dict]:
    """Add a movie at the end of the playlist."""
    movie = playlist.add_movie(request.user, room_id, body.url, body.title, body.subtitles)
    return Status(201, {"movie": movie})


@api.post(
    "/rooms/{room_id}/movies/reorder",
    response=answers({200: dict}, *BODY, *IN_ROOM),
    auth=AUTH,
    tags=["playlist"],
)
def reorder_movies(request: HttpRequest, room_id: str, body: OrderIn) -> dict:
    """Put the playlist in a new order."""
    return playlist.reorder(request.user, room_id, body.order)


@api.patch(
    "/rooms/{room_id}/movies/{movie_id}",
    response=answers({200: dict}, *BODY, *IN_ROOM),
    auth=AUTH,
    tags=["playlist"],
)
def patch_movie(request: HttpRequest, room_id: str, movie_id: str, body: MoviePatch) -> dict:
    """Change a movie's url, title or subtitles."""
    changes = body.model_dump(exclude_unset=True)
    return {"movie": playlist.update_movie(request.user, room_id, movie_id, changes)}


@api.delete(
    "/rooms/{room_id}/movies/{movie_id}",
    response=answers({204: None}, *IN_ROOM),
    auth=AUTH,
    tags=["playlist"],
)
def delete_movie(request: HttpRequest, room_id: str, movie_id: str) -> Status[None]:
    """Remove a movie from the playlist."""
    playlist.delete_movie(request.user, room_id, movie_id)
    return Status(204, None)


@api.get(
    "/rooms/{room_id}/chat",
    response=answers({200: list[dict]}, 400, *IN_ROOM),
    auth=AUTH,
    tags=["chat"],
)
def chat_history(
    request: HttpRequest,
    room_id: str,
    before: int | None = None,
    limit: int = Query(50, ge=1, le=chat.MAX_HISTORY),
) -> list[dict]:
    """Chat history, newest last: `?before=ID&limit=N`."""
    return chat.history(request.user, room_id, before, limit)


@api.delete(
    "/rooms/{room_id}/chat/{message_id}",
    response=answers({204: None}, 400, *IN_ROOM),
    auth=AUTH,
    tags=["chat"],
)
def delete_chat(request: HttpRequest, room_id: str, message_id: int) -> Status[None]:
    """Delete a chat message (room admins and staff); sockets get `chat_deleted {id}`."""
    chat.delete_chat(request.user, room_id, message_id)
    return Status(204, None)

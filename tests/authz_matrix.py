"""Who may do what: every HTTP action of SPEC §3 (and /api/auth/password) and WebSocket
action of SPEC §4, by role.

The one declaration of authorization that tests/integration/test_authz_matrix.py tries
cell by cell against the real application. Each cell is the outcome a caller in that role
gets: an HTTP status, or for a socket the reply frame's type (`ack`, `pong`, `playback`),
an error code (`forbidden`), or the close code that refused the handshake.

The scene every cell starts from: a public room without a password (guests allowed,
default member permissions) made by `creator`, with one movie in its playlist, a chat line,
a plain member `target` and a second admin `admin2` to act on. An action may change the room
first, once everyone has joined (`room_changes`: a password set later, guests no longer
allowed). The roles:

| role | who |
|---|---|
| creator | made the room |
| admin | a member promoted to admin |
| member | joined, default permissions (all but edit_movie and delete_movie) |
| guest | a guest account that joined, default permissions |
| restricted | a member whose permissions were all taken away |
| non_member | a signed-up user who never joined |
| banned | a member with status banned |
| anonymous | no session, no token |
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rooms.codes import CloseCode, ErrorCode

ROLES = (
    "creator",
    "admin",
    "member",
    "guest",
    "restricted",
    "non_member",
    "banned",
    "anonymous",
)
ADMINS = ("creator", "admin")
PASSWORD = "sesame-open"
MEMBERS = ("creator", "admin", "member", "guest", "restricted")


def outcomes(default: Any, **by_role: Any) -> dict[str, Any]:
    """Every role's outcome: `default`, except the roles named."""
    table = dict.fromkeys(ROLES, default)
    for role, outcome in by_role.items():
        assert role in table, f"unknown role {role!r}"
        table[role] = outcome
    return table


def each(roles: Iterable[str], outcome: Any) -> dict[str, Any]:
    """`{role: outcome}` for several roles, to spread into `outcomes(...)`."""
    return dict.fromkeys(roles, outcome)


def signed_in_only(table: Mapping[str, Any]) -> dict[str, Any]:
    """The table, with an anonymous caller refused as unauthenticated (401)."""
    return {**table, "anonymous": 401}


# --- HTTP (SPEC §3) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpAction:
    """One API call; `{room}`, `{movie}`, `{message}` and the user ids `{target}`, `{admin2}`,
    `{creator}`, `{self}` (the caller's) are filled from the scene."""

    name: str
    method: str
    path: str
    outcomes: Mapping[str, int]
    body: Any = None
    room_changes: Mapping[str, Any] = field(default_factory=dict)
    # Why some roles have no cell (the call does not depend on the role).
    reason: str = ""


def _room_admin_only(success: int) -> dict[str, int]:
    return signed_in_only(outcomes(403, **each(ADMINS, success)))


def _members_only(success: int) -> dict[str, int]:
    return signed_in_only(outcomes(403, **each(MEMBERS, success)))


ACCOUNT_CREATION_REASON = (
    "who calls it does not matter (the caller's session is replaced); two roles only, "
    "since sign-in calls are throttled per address"
)

HTTP_ACTIONS: tuple[HttpAction, ...] = (
    HttpAction(
        "signup",
        "POST",
        "/api/auth/signup",
        {"anonymous": 201, "member": 201},
        {"username": "{fresh}", "password": "correct-horse-9"},
        reason=ACCOUNT_CREATION_REASON,
    ),
    HttpAction(
        "login",
        "POST",
        "/api/auth/login",
        {"anonymous": 200, "member": 200},
        {"username": "target", "password": "correct-horse-9"},
        reason=ACCOUNT_CREATION_REASON,
    ),
    HttpAction(
        "guest",
        "POST",
        "/api/auth/guest",
        {"anonymous": 200, "member": 200},
        {"name": "Visitor"},
        reason=ACCOUNT_CREATION_REASON,
    ),
    HttpAction(
        "change_password",
        "POST",
        "/api/auth/password",
        {"member": 200, "guest": 400, "anonymous": 401},  # a guest has no password
        {"old_password": "correct-horse-9", "new_password": "another-horse-10"},
        reason="about the caller's own account, not a room: one account of each kind",
    ),
    HttpAction("logout", "POST", "/api/auth/logout", outcomes(204)),
    HttpAction("me", "GET", "/api/me", signed_in_only(outcomes(200))),
    HttpAction("list_rooms", "GET", "/api/rooms", outcomes(200)),
    HttpAction(
        "create_room", "POST", "/api/rooms", signed_in_only(outcomes(201)), {"name": "Mine"}
    ),
    HttpAction("get_room", "GET", "/api/rooms/{room}", outcomes(200)),
    HttpAction(
        "patch_room", "PATCH", "/api/rooms/{room}", _room_admin_only(200), {"name": "Renamed"}
    ),
    HttpAction(
        "delete_room",
        "DELETE",
        "/api/rooms/{room}",
        signed_in_only(outcomes(403, creator=204)),
    ),
    HttpAction(
        "join_room",
        "POST",
        "/api/rooms/{room}/join",
        signed_in_only(outcomes(200, banned=403)),
        {},
    ),
    HttpAction(
        "join_after_a_password_was_set_without_it",
        "POST",
        "/api/rooms/{room}/join",
        signed_in_only(outcomes(200, non_member=403, banned=403)),  # members stay members
        {},
        room_changes={"password": PASSWORD},
    ),
    HttpAction(
        "join_with_the_password",
        "POST",
        "/api/rooms/{room}/join",
        signed_in_only(outcomes(200, banned=403)),  # the password does not lift a ban
        {"password": PASSWORD},
        room_changes={"password": PASSWORD},
    ),
    HttpAction("list_members", "GET", "/api/rooms/{room}/members", _members_only(200)),
    HttpAction(
        "patch_member",
        "PATCH",
        "/api/rooms/{room}/members/{target}",
        _room_admin_only(200),
        {"permissions": ["send_chat"]},
    ),
    HttpAction(
        "ban_member",
        "PATCH",
        "/api/rooms/{room}/members/{target}",
        _room_admin_only(200),
        {"status": "banned"},
    ),
    HttpAction(
        "promote_to_admin",
        "PATCH",
        "/api/rooms/{room}/members/{target}",
        signed_in_only(outcomes(403, creator=200)),  # only the creator grants the admin role
        {"role": "admin"},
    ),
    HttpAction(
        "demote_an_admin",
        "PATCH",
        "/api/rooms/{room}/members/{admin2}",
        signed_in_only(outcomes(403, creator=200)),  # admins cannot change each other
        {"role": "member"},
    ),
    HttpAction(
        "ban_the_creator",
        "PATCH",
        "/api/rooms/{room}/members/{creator}",
        signed_in_only(outcomes(403)),  # nobody changes the creator, the creator included
        {"status": "banned"},
    ),
    HttpAction(
        "grant_oneself_a_permission",
        "PATCH",
        "/api/rooms/{room}/members/{self}",
        signed_in_only(outcomes(403)),  # nobody changes their own membership
        {"permissions": ["edit_movie", "delete_movie"]},
    ),
    HttpAction("list_movies", "GET", "/api/rooms/{room}/movies", _members_only(200)),
    HttpAction(
        "add_movie",
        "POST",
        "/api/rooms/{room}/movies",
        signed_in_only(outcomes(403, **each(("creator", "admin", "member", "guest"), 201))),
        {"url": "https://media.example/added.mp4"},
    ),
    HttpAction(
        "patch_movie",
        "PATCH",
        "/api/rooms/{room}/movies/{movie}",
        _room_admin_only(200),
        {"title": "Renamed"},
    ),
    HttpAction("delete_movie", "DELETE", "/api/rooms/{room}/movies/{movie}", _room_admin_only(204)),
    HttpAction(
        "reorder_movies",
        "POST",
        "/api/rooms/{room}/movies/reorder",
        _room_admin_only(200),
        {"order": ["{movie}"]},
    ),
    HttpAction("chat_history", "GET", "/api/rooms/{room}/chat", _members_only(200)),
    HttpAction("delete_chat", "DELETE", "/api/rooms/{room}/chat/{message}", _room_admin_only(204)),
)


# --- WebSocket (SPEC §4) ----------------------------------------------------------------------


@dataclass(frozen=True)
class WsAction:
    """One client frame sent on the room's socket (None: only the handshake is tried)."""

    name: str
    frame: Mapping[str, Any] | None
    outcomes: Mapping[str, str | int]
    room_changes: Mapping[str, Any] = field(default_factory=dict)


# Who cannot open the room's socket, and the close code that says so.
REFUSED_SOCKETS = {"banned": CloseCode.NOT_ALLOWED, "anonymous": CloseCode.NOT_AUTHENTICATED}


def _socket(success: str, restricted: str | None = None) -> dict[str, str | int]:
    """Outcomes of a frame: `success` for who may, forbidden for `restricted` if it may not."""
    # A non-member's socket joins the room (SPEC §4): it then acts as a default member.
    table: dict[str, str | int] = outcomes(success, **REFUSED_SOCKETS)
    if restricted is not None:
        table["restricted"] = restricted
    return table


WS_ACTIONS: tuple[WsAction, ...] = (
    WsAction("connect", None, _socket("snapshot")),
    WsAction(
        "connect_after_a_password_was_set",
        None,
        {**_socket("snapshot"), "non_member": CloseCode.NOT_ALLOWED},
        room_changes={"password": PASSWORD},
    ),
    WsAction(
        "connect_after_guests_were_refused",
        None,
        _socket("snapshot"),  # guests_allowed is checked on joining: a guest member stays
        room_changes={"settings": {"guests_allowed": False}},
    ),
    WsAction("ping", {"type": "ping", "client_time": 1}, _socket("pong")),
    WsAction("play", {"type": "play"}, _socket("ack", ErrorCode.FORBIDDEN)),
    WsAction("pause", {"type": "pause", "position": 3}, _socket("ack", ErrorCode.FORBIDDEN)),
    WsAction("seek", {"type": "seek", "position": 12.5}, _socket("ack", ErrorCode.FORBIDDEN)),
    WsAction("rate", {"type": "rate", "rate": 1.5}, _socket("ack", ErrorCode.FORBIDDEN)),
    WsAction(
        "set_movie",
        {"type": "set_movie", "movie_id": "{movie}"},
        _socket("ack", ErrorCode.FORBIDDEN),
    ),
    WsAction("chat", {"type": "chat", "text": "hello"}, _socket("ack", ErrorCode.FORBIDDEN)),
    WsAction("sync", {"type": "sync"}, _socket("playback")),
)


def http_cells() -> list[tuple[HttpAction, str, int]]:
    """(action, role, expected status) for every declared HTTP cell."""
    return [
        (action, role, status)
        for action in HTTP_ACTIONS
        for role, status in action.outcomes.items()
    ]


def ws_cells() -> list[tuple[WsAction, str, str | int]]:
    """(action, role, expected outcome) for every declared WebSocket cell."""
    return [
        (action, role, outcome)
        for action in WS_ACTIONS
        for role, outcome in action.outcomes.items()
    ]

"""The WebSocket messages a client may send (SPEC §4), declared once as schemas."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from rooms.services.chat import MAX_CHAT_LENGTH
from rooms.services.playback import MAX_RATE, MIN_RATE

ReqId = Annotated[str, Field(max_length=64)] | int
Position = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class ClientMessage(BaseModel):
    """Fields every client message may carry."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    type: str
    req_id: ReqId | None = None


class Ping(ClientMessage):
    """Clock sample: answered at once with `pong`."""

    type: Literal["ping"]
    client_time: Annotated[float, Field(allow_inf_nan=False)] | None = None


class Play(ClientMessage):
    """Start playing, from `position` or where it is now."""

    type: Literal["play"]
    position: Position | None = None


class Pause(ClientMessage):
    """Pause, at `position` or where it is now."""

    type: Literal["pause"]
    position: Position | None = None


class Seek(ClientMessage):
    """Jump to `position` seconds."""

    type: Literal["seek"]
    position: Position


class Rate(ClientMessage):
    """Change playback speed."""

    type: Literal["rate"]
    rate: Annotated[float, Field(ge=MIN_RATE, le=MAX_RATE, allow_inf_nan=False)]


class SetMovie(ClientMessage):
    """Make a playlist entry the current movie."""

    type: Literal["set_movie"]
    movie_id: Annotated[str, Field(min_length=1, max_length=32)]


class Chat(ClientMessage):
    """Say something in the room's chat."""

    type: Literal["chat"]
    text: Annotated[str, Field(min_length=1, max_length=MAX_CHAT_LENGTH)]


class Sync(ClientMessage):
    """Ask for the current playback state."""

    type: Literal["sync"]


AnyClientMessage = Annotated[
    Ping | Play | Pause | Seek | Rate | SetMovie | Chat | Sync, Field(discriminator="type")
]
MESSAGE_TYPES = ("ping", "play", "pause", "seek", "rate", "set_movie", "chat", "sync")
_adapter: TypeAdapter[Any] = TypeAdapter(AnyClientMessage)


def _describe(error: ValidationError, raw_type: Any) -> str:
    first = error.errors()[0]
    if first["type"] in ("union_tag_invalid", "union_tag_not_found"):
        if "type" not in first.get("input", {}):
            return f"missing 'type'; expected one of {', '.join(MESSAGE_TYPES)}"
        return f"unknown type {raw_type!r}; expected one of {', '.join(MESSAGE_TYPES)}"
    field = ".".join(str(part) for part in first["loc"][1:]) or "message"
    return f"{raw_type}: {field}: {first['msg']}"


def parse(text: str) -> tuple[ClientMessage | None, Any, str | None]:
    """(message, req_id, problem): the parsed message, or the reason it was refused."""
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError):
        return None, None, "malformed JSON"
    if not isinstance(raw, dict):
        return None, None, "a message must be a JSON object with a 'type'"
    req_id = raw.get("req_id")
    if not (isinstance(req_id, int | str) and not isinstance(req_id, bool)) or (
        isinstance(req_id, str) and len(req_id) > 64
    ):
        req_id = None
    try:
        return _adapter.validate_python(raw), req_id, None
    except ValidationError as exc:
        return None, req_id, _describe(exc, raw.get("type"))

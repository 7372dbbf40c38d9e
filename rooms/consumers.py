"""RoomConsumer: one browser socket in one room. Parses frames, calls services, relays events.

It holds no business rules: admission, permissions and state changes live in rooms.services;
room events arrive from the channel layer already encoded and are sent as they are.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import uuid
from typing import Any

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings

from cluster.connections import connection_manager
from cluster.fastlane import INBOX_KEY, SCOPE_KEY, Sink
from cluster.hub import Inbox
from monitoring.logging import bind_log_context, correlation_id_of
from monitoring.metrics import EVENT_DELIVERY_DURATION, count_close, count_refusal
from rooms import joins, protocol, timeouts
from rooms.codes import CLOSE_ERROR, MAX_FRAME_BYTES, CloseCode, ErrorCode
from rooms.db import database_call
from rooms.errors import ServiceError
from rooms.flood import ErrorWindow, TokenBucket
from rooms.payloads import me_payload, now_ms
from rooms.services import chat, events, playback, presence
from rooms.services.events import (
    NODE_SOCKETS_GROUP,
    encode,
    error_frame,
    member_group,
    room_group,
    user_group,
)
from rooms.services.snapshot import snapshot_text
from rooms.ws_auth import socket_admission

logger = logging.getLogger(__name__)

RECONNECT_MIN_MS = 500
RECONNECT_MAX_MS = 3000
PLAYBACK_COMMANDS = frozenset({"play", "pause", "seek", "rate", "set_movie"})


def _offered_sink(scope: dict[str, Any], layer: Any) -> Sink | None:
    """The socket's fast lane, where the server offers one, the layer can use it and the
    config has not turned it off."""
    sink = (scope.get("extensions") or {}).get(SCOPE_KEY)
    if sink is None or not hasattr(layer, "attach_sink") or not settings.SYNCTV.websocket.fast_lane:
        return None
    return sink


def _frame_size_over_limit(text_data: str | None, bytes_data: bytes | None) -> bool:
    """Whether a frame, text or binary, is over MAX_FRAME_BYTES (SPEC §4: close 1009)."""
    if text_data is None:
        return len(bytes_data or b"") > MAX_FRAME_BYTES
    # A character is at most 4 bytes of UTF-8: short frames need no encoding to check.
    return len(text_data) > MAX_FRAME_BYTES // 4 and len(text_data.encode()) > MAX_FRAME_BYTES


class RoomConsumer(AsyncWebsocketConsumer):
    """The WebSocket of `/ws/rooms/{room_id}/` (SPEC §4)."""

    room_id: str
    connection_id: str
    user: Any
    admitted = False
    present = False  # its presence row is written and counted (joins.JoinBatcher.present)
    closing = False
    close_sent: tuple[int, str] | None = None  # the code and reason of the server's close
    sink: Sink | None = None  # the fast lane to this socket, when the server offers one
    inbox: Inbox | None = None  # where the layer hands this socket's other messages, if set

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Channels' loop, or, where the server hands layer messages to the socket's own
        input (`manage.py serve`), one loop over that input: no task per source and no
        `asyncio.wait` for each socket (about 3 KB each: docs/performance.md)."""
        layer = get_channel_layer(self.channel_layer_alias)
        inbox = (scope.get("extensions") or {}).get(INBOX_KEY)
        if inbox is None or _offered_sink(scope, layer) is None:
            await super().__call__(scope, receive, send)
            return
        self.scope = scope
        self.channel_layer = layer
        self.channel_name = await layer.new_channel()
        self.inbox = inbox
        self.base_send = send
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Call the message's handler, without Channels' `aclose_old_connections()` first.

        Channels hops onto its one thread-sensitive database thread before every handler to
        close stale connections there. This consumer never uses that thread: its database
        calls run on rooms.db's threads, which close or hand back their connection around
        each call. On a busy node that hop made every delivered frame, and every join, queue
        behind other sockets' ORM work (issue 7).
        """
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"no handler for message type {message['type']!r}")
        await handler(message)

    async def connect(self) -> None:
        """Admit the socket (auth, membership, limits), then send the snapshot."""
        config = settings.SYNCTV
        self.room_id = self.scope["url_route"]["kwargs"]["room_id"]
        self.connection_id = uuid.uuid4().hex
        self.user = None
        self.bucket = TokenBucket(
            config.websocket.rate_limit_per_sec, config.websocket.rate_limit_burst
        )
        self.errors = ErrorWindow(
            config.websocket.abuse_max_errors, config.websocket.abuse_window_secs
        )
        self.started = self.last_activity = time.monotonic()
        loop = asyncio.get_running_loop()
        events.use_event_loop(loop)
        presence.use_event_loop(loop)
        bind_log_context(
            room_id=self.room_id,
            connection_id=self.connection_id,
            correlation_id=correlation_id_of(self.scope),
        )
        await self.accept()
        try:
            self.user, membership = await database_call(socket_admission)(self.scope, self.room_id)
        except ServiceError as exc:
            code = (
                CloseCode.ROOM_NOT_FOUND
                if exc.code == ErrorCode.NOT_FOUND
                else CloseCode.NOT_ALLOWED
            )
            await self.close_with(code, exc.message)
            return
        if membership is None:
            await self.close_with(
                CloseCode.NOT_AUTHENTICATED, "sign in first: a session cookie or ?token=<token>"
            )
            return
        bind_log_context(user_id=self.user.id)
        refusal = await connection_manager().try_admit(
            str(self.user.id), self.room_id, self.connection_id
        )
        if refusal is not None:
            limit = {"limit": refusal, "close_code": int(CloseCode.CONNECTION_LIMIT)}
            logger.info("socket refused: connection limit", extra=limit)
            count_refusal(refusal)
            await self.close_with(
                CloseCode.CONNECTION_LIMIT, f"connection limit reached: {refusal}", reason=refusal
            )
            return
        self.admitted = True
        # From here on the socket holds a slot, groups and (soon) a presence row: a failure
        # before the snapshot gives all three back, or they would outlive the socket.
        try:
            joined = await self._join_room(membership)
        except joins.JoinRefused as refused:  # banned or deactivated since admission
            await self._leave_room()
            await self.close_with(CloseCode.NOT_ALLOWED, str(refused))
            return
        except Exception:
            logger.exception("socket could not join the room")
            await self._leave_room()
            await self._close(CloseCode.INTERNAL_ERROR)
            return
        except BaseException:  # cancelled (the server stopping): still give them back
            await self._leave_room()
            raise
        if not joined:
            await self._leave_room()
            await self.close_with(CloseCode.ROOM_NOT_FOUND, f"no room {self.room_id!r}")
            return
        timeouts.sweeper().watch(self)
        logger.info("socket joined room")

    async def _join_room(self, membership: Any) -> bool:
        """Join the room's groups and presence, then send the snapshot; False when the room
        is gone."""
        self._attach_fast_lane()
        for group in self._groups():
            await self.channel_layer.group_add(group, self.channel_name)
        # Written and read together with the other sockets joining now (rooms/joins.py).
        batcher = joins.batcher()
        shared = await batcher.join(self.connection_id, self.room_id, self.user.id)
        if shared is None:
            return False
        self.present = True
        batcher.present += 1
        head = {
            "type": "snapshot",
            "server_time": now_ms(),
            "node_id": settings.SYNCTV_NODE_ID,
            "connection_id": self.connection_id,
            "me": me_payload(membership),
        }
        await self.send(text_data=snapshot_text(head, shared))
        if self.sink is not None:
            self.sink.release()  # room events since group_add follow the snapshot
        return True

    def _attach_fast_lane(self) -> None:
        """Room events to be written straight to this socket, when server and layer can."""
        sink = _offered_sink(self.scope, self.channel_layer)
        if sink is not None:
            self.sink = sink
            self.channel_layer.attach_sink(self.channel_name, sink, self.inbox)

    def _groups(self) -> list[str]:
        return [
            room_group(self.room_id),
            member_group(self.room_id, self.user.id),
            user_group(self.user.id),  # the user's account deactivated (room_close)
            NODE_SOCKETS_GROUP,
        ]

    async def disconnect(self, code: int) -> None:
        """Leave groups, forget presence and free the connection slot."""
        if not self.admitted:
            return
        await self._leave_room()
        closed_by = "server" if self.close_sent else "client"
        code, reason = self.close_sent or (code, "")
        extra = {"close_code": code, "close_reason": reason, "closed_by": closed_by}
        logger.info("socket left room", extra=extra)

    async def _leave_room(self) -> None:
        """Give back what admission took: the slot, the fast lane, the groups and the
        presence row. Once only; each step runs even when one before it failed."""
        if not self.admitted:
            return
        self.admitted = False
        connection_manager().release(str(self.user.id), self.room_id, self.connection_id)
        if self.sink is not None:
            self.channel_layer.detach_sink(self.channel_name)
        for group in self._groups():
            try:
                await self.channel_layer.group_discard(group, self.channel_name)
            except Exception:
                logger.exception("socket could not leave group %s", group)
        batcher = joins.batcher()
        if self.present:
            self.present = False
            batcher.present -= 1
        try:
            await batcher.leave(self.connection_id, self.room_id)
        except Exception:
            # The node's rows are cleared at its next start or shutdown (presence.clear_node).
            logger.exception("socket's presence could not be forgotten")

    async def close_with(self, code: CloseCode, message: str, reason: str | None = None) -> None:
        """Send the `error` that explains a 4xxx close, then close."""
        if self.closing:
            return
        error_code = CLOSE_ERROR.get(code)
        if error_code is not None:
            await self.send(text_data=encode(error_frame(error_code, message)))
        await self._close(code, reason, message)

    async def _close(self, code: int, reason: str | None = None, why: str | None = None) -> None:
        """Close with `code` and the close frame's `reason`; `why` (or the code's name) is
        what the log line says when there is no reason."""
        self.closing = True
        name = CloseCode(code).name.lower() if code in set(CloseCode) else ""
        self.close_sent = (int(code), reason or why or name)
        count_close(code)
        await self.close(code=int(code), reason=reason)

    # --- frames from the client -------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """One client frame: size, flood and schema checks, then the command."""
        if self.closing or not self.admitted:
            return
        self.last_activity = time.monotonic()
        if _frame_size_over_limit(text_data, bytes_data):
            await self.send(
                text_data=encode(
                    error_frame(
                        ErrorCode.TOO_LARGE, f"a frame may be at most {MAX_FRAME_BYTES} bytes"
                    )
                )
            )
            await self._close(CloseCode.FRAME_TOO_LARGE)
            return
        if text_data is None:
            await self.refuse(ErrorCode.BAD_REQUEST, "binary frames are not supported: send JSON")
            return
        # Parsed before the rate check so that a refused command's req_id is echoed too.
        message, req_id, problem = protocol.parse(text_data)
        if not self.bucket.take():
            await self.refuse(ErrorCode.RATE_LIMITED, "too many messages: slow down", req_id)
            return
        if message is None:
            await self.refuse(ErrorCode.BAD_REQUEST, problem or "bad message", req_id)
            return
        try:
            await self.handle(message)
        except ServiceError as exc:
            await self.refuse(exc.code, exc.message, message.req_id)
        except Exception:
            logger.exception("command failed", extra={"command": message.type})
            await self.refuse(
                ErrorCode.SERVER_ERROR, "the server could not do that; try again", message.req_id
            )

    async def refuse(self, code: ErrorCode, text: str, req_id: Any = None) -> None:
        """Answer with an `error`; too many of them in a minute closes the socket (1008)."""
        await self.send(text_data=encode(error_frame(code, text, req_id)))
        if self.errors.record():
            await self._close(CloseCode.POLICY_VIOLATION)

    async def handle(self, message: Any) -> None:
        """Run one valid command."""
        kind = message.type
        if kind == "ping":
            await self.reply(
                {"type": "pong", "client_time": message.client_time, "server_time": now_ms()},
                message.req_id,
            )
        elif kind == "sync":
            state = await database_call(playback.current)(self.room_id)
            await self.reply({"type": "playback", "playback": state, "by": None}, message.req_id)
        elif kind in PLAYBACK_COMMANDS:
            fields = message.model_dump(exclude={"type", "req_id"})
            state = await database_call(playback.change_playback)(
                self.user, self.room_id, kind, **fields
            )
            await self.reply({"type": "ack", "version": state["version"]}, message.req_id)
        elif kind == "chat":
            await database_call(chat.send_chat)(self.user, self.room_id, message.text)
            await self.reply({"type": "ack"}, message.req_id)

    async def reply(self, frame: dict[str, Any], req_id: Any) -> None:
        """Send a frame to this socket only, echoing `req_id` when the client gave one."""
        if req_id is not None:
            frame["req_id"] = req_id
        await self.send(text_data=encode(frame))

    # --- events from the channel layer --------------------------------------------------

    async def room_event(self, message: dict[str, Any]) -> None:
        """A room event, already encoded once by its publisher: send it as it is."""
        if self.closing:
            return
        await self.send(text_data=message["text"])
        EVENT_DELIVERY_DURATION.observe(max(0.0, time.time() - message["published_at"]))

    async def room_close(self, message: dict[str, Any]) -> None:
        """Frames to send, then a close (room deleted, banned)."""
        if self.closing:
            return
        for text in message["texts"]:
            await self.send(text_data=text)
        # The log says why: the first frame's type (`kicked`, `room_deleted`; then an error).
        why = json.loads(message["texts"][0]).get("type") if message["texts"] else None
        await self._close(message["code"], why=why)

    async def presence_reclaim(self, message: dict[str, Any]) -> None:
        """This node's presence rows were cleared while it was cut off: write ours again."""
        if self.present and not self.closing:
            joins.batcher().reclaim(self.connection_id, self.room_id, self.user.id)

    async def channel_overflow(self, message: dict[str, Any]) -> None:
        """This socket fell too far behind the room's events: close 1013 so it reconnects."""
        await self._close(CloseCode.TRY_AGAIN_LATER)

    async def server_shutdown(self, message: dict[str, Any]) -> None:
        """This node is draining: tell the client when to reconnect (elsewhere), close 1012."""
        if self.closing:
            return
        # Spread the reconnects so a draining node's clients do not arrive all at once.
        delay = random.randint(RECONNECT_MIN_MS, RECONNECT_MAX_MS)
        await self.send(text_data=encode({"type": "shutdown", "reconnect_after_ms": delay}))
        await self._close(CloseCode.SERVER_RESTARTING)

    # --- timeouts (rooms/timeouts.py watches every socket of the loop) ---------------------

    def timeout_due(self) -> float | None:
        """When this socket times out (time.monotonic()), unless active before; None once it
        is closing."""
        if self.closing or not self.admitted:
            return None
        limits = connection_manager().limits.current()  # may change at runtime
        return min(
            self.started + limits.max_duration_secs, self.last_activity + limits.idle_timeout_secs
        )

    async def time_out(self) -> None:
        """Close with 4010 past the maximum duration, else with 4008 (idle)."""
        limits = connection_manager().limits.current()
        if time.monotonic() >= self.started + limits.max_duration_secs:
            await self.close_with(
                CloseCode.MAX_DURATION, "this connection reached its maximum duration: reconnect"
            )
        else:
            await self.close_with(CloseCode.IDLE_TIMEOUT, "closed after being idle")

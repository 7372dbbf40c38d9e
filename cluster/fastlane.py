"""The fan-out fast lane: a room event framed once and written to every local socket.

A server that supports it puts a `Sink` for each WebSocket in the ASGI scope under
`scope["extensions"][SCOPE_KEY]`. The consumer attaches it to its channel
(`ClusterChannelLayer.attach_sink`); from then on the layer's hub writes fast-lane messages
(by default `room.event`, whose `text` is the frame's JSON) straight to the sink as one
ready WebSocket frame, shared by every recipient: server frames are unmasked, so the same
bytes serve every socket. No consumer task, dispatch or copy per recipient. Everything else
(control messages, the consumer's own frames) keeps the normal Channels path.

Pure standard library, like the hub.
"""

from __future__ import annotations

from typing import Protocol

SCOPE_KEY = "synctv.fastlane"
# Where the server offers the socket's own input queue to the channel layer: a callable that
# takes a layer message, which the application then gets from its ASGI `receive` in order
# with the socket's events. A consumer reading only `receive` needs no task of its own for
# the layer (rooms/consumers.py).
INBOX_KEY = "synctv.inbox"

OPCODE_TEXT = 0x1
OPCODE_BINARY = 0x2
_FIN = 0x80


class Sink(Protocol):
    """Where ready WebSocket frames for one socket go, in the order they are written."""

    def write_frame(self, frame: bytes) -> None:
        """Queue one complete frame for the socket (never blocks, never raises).

        Frames written before `release()` are held back until then.
        """

    def release(self) -> None:
        """The consumer has sent its first frame (the snapshot): held frames may follow."""


def websocket_frame(payload: bytes, opcode: int = OPCODE_TEXT) -> bytes:
    """One final, unmasked WebSocket frame (RFC 6455 §5.2) carrying `payload`."""
    length = len(payload)
    first = _FIN | opcode
    if length < 126:
        header = bytes((first, length))
    elif length < 1 << 16:
        header = bytes((first, 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((first, 127)) + length.to_bytes(8, "big")
    return header + payload


def text_frame(text: str) -> bytes:
    """The WebSocket text frame of `text`."""
    return websocket_frame(text.encode())

"""Each socket's outgoing frames under `manage.py serve`: the fast lane's sink and the byte budget.

Every frame the server sends on a room socket goes through its `SocketSink`: the consumer's
own frames (framed here instead of by autobahn) and the fast lane's ready frames (written
by the channel layer's hub, cluster/fastlane.py). One path keeps them in order.

The budget is measured at the transport. The sink is the transport's streaming producer:
Twisted pauses it when the transport holds more than its `bufferSize` (the high water mark,
`websocket.transport_buffer_bytes`) and resumes it once the transport has drained (low
water: empty). While paused, frames wait in the sink's backlog; a backlog over
`websocket.send_backlog_bytes` means a client that cannot keep up: the backlog is dropped
at once and the socket is closed with 1013, so the client reconnects and gets a fresh
snapshot. A client that stopped reading never answers the close: autobahn aborts the TCP
connection after its close-handshake timeout (1 s), which frees the transport's buffer too.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from monitoring.metrics import count_close

logger = logging.getLogger("synctv.server")

SLOW_CLIENT_CODE = 1013
SLOW_CLIENT_REASON = b"too far behind: reconnect"
# How long a close may wait behind a backlog before the connection is dropped.
CLOSE_BEHIND_BACKLOG_SECS = 5.0


class SocketSink:
    """One WebSocket's outgoing frames, in order, within a byte budget.

    Fast-lane frames that arrive before `release()` (the consumer has not sent its snapshot
    yet) are held back and follow the snapshot; the client drops versions older than it.
    """

    __slots__ = (
        "backlog",
        "backlog_bytes",
        "backlog_limit",
        "closed",
        "direct",
        "held",
        "paused",
        "protocol",
        "transport",
    )

    def __init__(self, protocol: Any, backlog_limit: int) -> None:
        self.protocol = protocol
        self.transport: Any = None
        self.backlog_limit = backlog_limit
        self.backlog: deque[bytes | Callable[[], None]] | None = None
        self.backlog_bytes = 0
        self.held: list[bytes] | None = []
        self.paused = False
        self.closed = False
        self.direct = False  # may frames go to the socket itself (plain TCP, see attach)

    def attach(self, buffer_bytes: int) -> None:
        """Become the producer of the socket's TCP transport (the handshake is done).

        The HTTP channel the socket was upgraded from is that producer until now; its
        work is over, and it would pause reading from the client instead of telling us.
        """
        transport = self.protocol.transport
        transport.bufferSize = buffer_bytes
        if transport.producer is not None:
            transport.unregisterProducer()
        transport.registerProducer(self, True)
        self.transport = transport
        # Plain TCP only: TLS or any other wrapper must see every byte.
        self.direct = (
            hasattr(transport, "socket")
            and hasattr(transport, "dataBuffer")
            and not getattr(transport, "TLS", False)
        )

    # --- what writes to the sink -----------------------------------------------------

    def write_frame(self, frame: bytes) -> None:
        """A fast-lane frame (cluster.fastlane.Sink): after the snapshot, in order."""
        held = self.held
        if held is None:
            self.send(frame)
            return
        if self.closed:
            return
        held.append(frame)
        self._charge(len(frame))

    def release(self) -> None:
        """The consumer sent its snapshot: write the held fast-lane frames, then go direct."""
        held, self.held = self.held, None
        if not held:
            return
        self.backlog_bytes -= sum(len(frame) for frame in held)
        for frame in held:
            self.send(frame)

    def send(self, frame: bytes) -> None:
        """Write one frame now, or queue it behind the backlog while the transport is full."""
        if self.closed or self.transport is None or not self._open():
            return
        backlog = self.backlog
        if self.paused or backlog:
            if backlog is None:
                backlog = self.backlog = deque()
            backlog.append(frame)
            self._charge(len(frame))
            return
        self._write(frame)

    def then(self, action: Callable[[], None]) -> None:
        """Run `action` (a close) once the frames queued before it are written."""
        if self.closed or not self.backlog:
            action()
            return
        self.backlog.append(action)
        # A client that never drains must not keep the connection (and its buffers).
        self.protocol.factory.reactor.callLater(CLOSE_BEHIND_BACKLOG_SECS, self._abort)

    # --- IPushProducer: Twisted's view of the transport --------------------------------

    def pauseProducing(self) -> None:
        """The transport holds more than its high water mark."""
        self.paused = True

    def resumeProducing(self) -> None:
        """The transport has drained: write the backlog until it fills again."""
        self.paused = False
        backlog = self.backlog
        while backlog and not self.paused and not self.closed:
            item = backlog.popleft()
            if isinstance(item, bytes):
                self.backlog_bytes -= len(item)
                self._write(item)
            else:
                item()

    def stopProducing(self) -> None:
        """The connection is gone: drop everything."""
        self._drop()

    # --- internals ---------------------------------------------------------------------

    def _write(self, frame: bytes) -> None:
        """To the kernel at once while Twisted holds nothing for this socket, else to Twisted.

        Twisted would register the socket with the event loop, wait for it to be writable
        and unregister it again: three system calls per frame, a fifth of the node's CPU
        while fanning out (py-spy). An idle socket takes the frame in one `send()`.
        """
        transport = self.transport
        # `direct` first: only a plain TCP transport has the buffers asked about next.
        if self.direct and not transport.dataBuffer and not transport._tempDataLen:
            try:
                sent = transport.socket.send(frame)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                sent = 0  # Twisted's write below finds the error and closes the connection
            if sent == len(frame):
                return
            frame = frame[sent:]
        transport.write(frame)

    def _charge(self, size: int) -> None:
        """Count `size` more bytes waiting (held or in the backlog); over budget: 1013."""
        self.backlog_bytes += size
        if self.backlog_bytes > self.backlog_limit:
            self._too_slow()

    def _open(self) -> bool:
        return bool(self.protocol.state == self.protocol.STATE_OPEN)

    def _drop(self) -> None:
        self.closed = True
        self.backlog = None
        self.held = None
        self.backlog_bytes = 0

    def _too_slow(self) -> None:
        logger.warning(
            "closing a socket that cannot keep up (1013)",
            extra={"backlog_bytes": self.backlog_bytes, "close_code": SLOW_CLIENT_CODE},
        )
        self._drop()
        count_close(SLOW_CLIENT_CODE)
        if self.transport is not None and self._open():
            # Written behind whole frames only, so the stream stays valid for the client.
            self.protocol.sendCloseFrame(code=SLOW_CLIENT_CODE, reasonUtf8=SLOW_CLIENT_REASON)

    def _abort(self) -> None:
        if self.transport is not None and self.backlog:
            self._drop()
            self.transport.abortConnection()

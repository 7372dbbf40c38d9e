"""The daphne server behind `manage.py serve`, with what plain daphne lacks for SyncTV.

- every close code of SPEC §4 is sent, with the ASGI close `reason` (daphne drops the
  reason, and autobahn refuses 1008/1009/1012/1013; SPEC §4 wants 4029 to say which limit
  refused the socket);
- a frame over 64 KiB is answered with a 1009 close instead of a dropped connection;
- each room socket gets a sink in its scope (`scope["extensions"]["synctv.fastlane"]`): the
  channel layer writes room events to it as ready frames, the consumer's own frames go
  through it too (in order), and a client that cannot keep up is closed with 1013 once its
  backlog passes the byte budget (synctv_project/sinks.py, docs/performance.md);
- SIGTERM/SIGINT drain the node: /ready turns 503, every socket gets `shutdown` and a
  1012 close, and the process waits up to `cluster.shutdown_grace_secs` for them to go;
  a new WebSocket handshake meanwhile is answered HTTP 503 before the upgrade, which a
  load balancer retries on another node (nginx: `proxy_next_upstream http_503`);
- after the reactor stops, database calls that cancelled consumers had started are let
  finish, so the process exits instead of hanging on their threads;
- background tasks run on daphne's loop while the node serves: the `synctv.jobs` worker
  (single-node mode only; cluster mode runs `manage.py runworker synctv.jobs`) and the
  hourly `job.prune_guests` (docs/jobs.md). They are cancelled when the node drains.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import logging
import os
import signal
import time
from collections.abc import Collection
from concurrent.futures import Executor
from functools import partial
from types import SimpleNamespace
from typing import Any

from asgiref.sync import SyncToAsync
from autobahn.websocket.types import ConnectionDeny
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from daphne.endpoints import build_endpoint_description_strings
from daphne.server import Server
from daphne.ws_protocol import WebSocketProtocol
from django.conf import settings

from cluster import limits
from cluster import registry as registry_module
from cluster.connections import connection_manager
from cluster.fastlane import INBOX_KEY, OPCODE_BINARY, SCOPE_KEY, text_frame, websocket_frame
from cluster.registry import NodeRegistry
from monitoring.health import mark_draining
from rooms import db, jobs, joins, timeouts
from rooms.codes import MAX_FRAME_BYTES
from rooms.models import ConnectionLimitOverrides
from rooms.services import presence
from rooms.services.events import DEAD_NODE_WINDOW_MS, NODE_SOCKETS_GROUP, SERVER_SHUTDOWN
from synctv_project.rounds import SLICES, Rounds, check_application
from synctv_project.sinks import SocketSink

logger = logging.getLogger("synctv.server")

# A close frame's payload is at most 125 bytes, two of them the code.
REASON_MAX_BYTES = 123
# Connections the kernel queues before they are accepted. Daphne's default (Twisted's 50)
# overflowed under a watch party's join storm: the dropped handshakes waited for TCP's 1 s
# and 3 s retransmits (bench/README.md, scenario d). The kernel caps it at somaxconn.
LISTEN_BACKLOG = 4096
# How long, after daphne stops, the database calls of cancelled consumers may take to finish.
WORKER_FINISH_SECS = 10.0
# The garbage collector's young-generation threshold (Python's default: 700 allocations).
# With 10,000 sockets, the default promoted objects that live a few milliseconds (a
# command's frames, futures) into the old generation so fast that a full collection, about
# a second with that many sockets' objects to traverse, ran every few seconds: 13 s of
# pauses in a 150 s run of bench scenario (b). Collecting the young generation less often
# lets such objects die young (docs/performance.md, garbage collection).
GC_THRESHOLDS = (10_000, 20, 100)
# How often daphne looks at each connection: finished applications, and timeouts and pings.
APPLICATION_CHECK_SECS = 1.0
TIMEOUT_CHECK_SECS = 2.0
# The answer to a WebSocket handshake on a draining node: a status a load balancer retries
# elsewhere, as /ready's 503 says the same.
DRAINING_STATUS = 503


# What autobahn keeps of the opening handshake, read by nothing once the socket is open.
HANDSHAKE_ONLY = (
    "http_request_data",
    "http_headers",
    "http_request_params",
    "http_status_line",
    "http_response_data",
    "http_request_uri",
)


class CloseReasonWebSocketProtocol(WebSocketProtocol):
    """Daphne's WebSocket protocol, sending any close code with the application's reason.

    Autobahn's sendClose() refuses 1008, 1009, 1012 and 1013, which RFC 6455 lets a server
    send and SPEC §4 uses; the close frame itself is written here instead.
    """

    sink: SocketSink | None = None
    request: Any  # set by daphne's onConnect
    refused = False  # answered DRAINING_STATUS: never handed to daphne or the application

    def onConnect(self, request: Any) -> Any:
        """Daphne's, except on a draining node: HTTP 503 before the upgrade, so that the new
        socket goes to another node (docs/cluster.md, nginx) instead of getting 1012 here."""
        if getattr(self.factory.server_class, "draining", False):
            self.refused = True
            raise ConnectionDeny(DRAINING_STATUS, "draining: connect to another node")
        return super().onConnect(request)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        """Daphne's, except for a refused handshake, which daphne never counted."""
        if not self.refused:
            super().onClose(wasClean, code, reason)

    def onOpen(self) -> None:
        """The handshake is done: the sink starts measuring the transport, and what only the
        handshake needed is let go (about 2 KB a socket: docs/performance.md)."""
        super().onOpen()
        if self.sink is not None:
            self.sink.attach(settings.SYNCTV.websocket.transport_buffer_bytes)
        for name in HANDSHAKE_ONLY:
            self.__dict__.pop(name, None)
        # Daphne reads only the path of the request again, for its access log.
        self.request = SimpleNamespace(path=self.request.path)

    def handle_reply(self, message: dict[str, Any]) -> None:
        """Send `websocket.close` with its code and reason; everything else as daphne does."""
        kind = message.get("type")
        if kind == "websocket.send" and self.state != self.STATE_OPEN:
            # The client went away while an event was on its way: daphne would raise into
            # the consumer, which then never runs its disconnect (ghost presence, lost slot).
            return
        if kind == "websocket.send" and self.sink is not None:
            text, data = message.get("text"), message.get("bytes")
            if text is not None and data is not None:
                raise ValueError("a websocket.send message has both bytes and text")
            if text is not None:
                self.sink.send(text_frame(text))
            elif data is not None:
                self.sink.send(websocket_frame(data, OPCODE_BINARY))
            return
        if kind == "websocket.close" and self.state not in (self.STATE_OPEN, self.STATE_CONNECTING):
            return  # already closing (a slow client's 1013, the peer's close): nothing to send
        if kind == "websocket.close" and self.state == self.STATE_OPEN:
            reason = str(message.get("reason") or "").encode()[:REASON_MAX_BYTES]
            code = message.get("code") or 1000
            close = partial(self._send_close, code, reason.decode(errors="ignore").encode())
            if self.sink is not None:
                self.sink.then(close)  # after the frames the consumer sent before it
            else:
                close()
            return
        super().handle_reply(message)

    def _send_close(self, code: int, reason: bytes) -> None:
        if self.state == self.STATE_OPEN:
            self.sendCloseFrame(code=code, reasonUtf8=reason or None)


class SocketInput:
    """A socket's ASGI input: the events daphne puts, and the layer messages the hub hands
    over (the `synctv.inbox` extension), in order, for the one task that gets them.

    An asyncio.Queue holds four deques, about 3 KB, for each of 10,000 idle sockets
    (docs/performance.md, memory per socket); this is a list and a future.
    """

    __slots__ = ("events", "waiter")

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.waiter: asyncio.Future[None] | None = None

    def put_nowait(self, event: dict[str, Any]) -> None:
        """Daphne's side: never blocks."""
        self.events.append(event)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> dict[str, Any]:
        """The application's side (its `receive`); a cancelled get loses nothing."""
        while not self.events:
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        return self.events.pop(0)


class SyncTVServer(Server):
    """One SyncTV node: daphne with close reasons, 1009 for big frames and a graceful drain."""

    def __init__(
        self,
        application: Any,
        host: str,
        port: int,
        grace_secs: float,
        crashed_in: Collection[str] = (),
    ) -> None:
        super().__init__(
            application=application,
            endpoints=[
                f"{endpoint}:backlog={LISTEN_BACKLOG}"
                for endpoint in build_endpoint_description_strings(host=host, port=port)
            ],
            signal_handlers=False,  # ours drain first (see _on_signal)
            websocket_timeout=-1,  # max duration is enforced by the consumer (close 4010)
            websocket_max_message_size=MAX_FRAME_BYTES,
            websocket_max_frame_size=MAX_FRAME_BYTES,
            application_close_timeout=10,
            verbosity=0,
            ready_callable=self._ready,
        )
        self.host = host
        self.port = port
        self.grace_secs = grace_secs
        # Rooms this node had sockets in when it last stopped without draining (a crash).
        self.crashed_in = crashed_in
        self.draining = False
        self._application_rounds = Rounds()
        self._timeout_rounds = Rounds()
        self.registry: NodeRegistry | None = None
        self.background_tasks: list[asyncio.Task[None]] = []

    def create_application(self, protocol: Any, scope: dict[str, Any]) -> Any:
        """Daphne's, plus a sink in the scope of every WebSocket (the consumer may use it as
        its fast lane; its byte budget holds either way) and a lighter input queue."""
        if scope.get("type") != "websocket":
            return super().create_application(protocol, scope)
        sink = SocketSink(protocol, settings.SYNCTV.websocket.send_backlog_bytes)
        protocol.sink = sink
        received = SocketInput()
        scope["extensions"] = {
            **(scope.get("extensions") or {}),
            SCOPE_KEY: sink,
            INBOX_KEY: received.put_nowait,
        }
        scope.setdefault("asgi", {"version": "3.0"})
        # As daphne does it, with a SocketInput instead of an asyncio.Queue.
        instance = self.application(
            scope=scope, receive=received.get, send=partial(self.handle_reply, protocol)
        )
        if protocol not in self.connections:
            instance.close()
            return None
        self.connections[protocol]["application_instance"] = asyncio.ensure_future(instance)
        return received

    def application_checker(self) -> None:
        """Daphne's check of finished applications, a slice of the connections every
        1/SLICES s rather than all of them each second (synctv_project/rounds.py)."""
        for protocol in self._application_rounds.next_slice(self.connections):
            check_application(self, protocol)
        asyncio.get_event_loop().call_later(
            APPLICATION_CHECK_SECS / SLICES, self.application_checker
        )

    def timeout_checker(self) -> None:
        """Daphne's timeout and keep-alive ping checks, a slice at a time likewise."""
        for protocol in self._timeout_rounds.next_slice(self.connections):
            if protocol in self.connections:
                protocol.check_timeouts()
        asyncio.get_event_loop().call_later(TIMEOUT_CHECK_SECS / SLICES, self.timeout_checker)

    def _ready(self) -> None:
        # Runs once daphne's factories exist, before any connection is accepted.
        _tune_garbage_collector()
        self.ws_factory.protocol = CloseReasonWebSocketProtocol
        # Autobahn drops the TCP connection on a frame over the limit unless told otherwise.
        self.ws_factory.setProtocolOptions(failByDrop=False)
        # Autobahn copies its 29 options from the factory into every connection's own
        # attributes, unless the protocol class has them already: give them to the class
        # (a function as a staticmethod, or it would be bound to each connection).
        for name in CloseReasonWebSocketProtocol.CONFIG_ATTRS:
            value = getattr(self.ws_factory, name)
            setattr(
                CloseReasonWebSocketProtocol,
                name,
                staticmethod(value) if inspect.isfunction(value) else value,
            )
        loop = asyncio.get_event_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal)
        self._start_background_tasks()

    def _start_background_tasks(self) -> None:
        """Start the tasks that live as long as the node serves (on daphne's loop)."""
        loop = asyncio.get_event_loop()
        if not settings.SYNCTV.cluster_mode:
            # No `runworker` process in single-node mode: this process works the jobs.
            worker = jobs.run_worker(self.application)
            self.background_tasks.append(loop.create_task(worker, name="synctv-jobs-worker"))
        pruning = jobs.schedule_guest_pruning()
        self.background_tasks.append(loop.create_task(pruning, name="synctv-guest-pruning"))
        manager = connection_manager()
        read_limits = db.database_call(ConnectionLimitOverrides.current_values)
        refresh = limits.keep_fresh(manager.limits, read_limits, timeouts.reschedule_everywhere)
        self.background_tasks.append(loop.create_task(refresh, name="synctv-limits-refresh"))
        if manager.cluster is not None:
            leases = manager.cluster.keep_leases(manager.sockets)
            self.background_tasks.append(loop.create_task(leases, name="synctv-limit-leases"))
        if settings.SYNCTV.cluster_mode:
            heartbeat = self._run_node_registry()
            self.background_tasks.append(loop.create_task(heartbeat, name="synctv-heartbeat"))

    async def _run_node_registry(self) -> None:
        """Connect to Redis (the layer's bridge for this loop) and beat as this node."""
        # Events it had not yet published when it crashed reached no other node.
        since = int(time.time() * 1000) - DEAD_NODE_WINDOW_MS
        get_channel_layer().announce_changed(self.crashed_in, since)
        self.registry = self._node_registry()
        await self.registry.run()

    def _node_registry(self) -> NodeRegistry:
        bridge = get_channel_layer().bridge
        registry = NodeRegistry(
            bridge,
            settings.SYNCTV_NODE_ID,
            info={"address": f"{self.host}:{self.port}", "pid": os.getpid()},
            present_nodes=database_sync_to_async(presence.node_ids),
            on_dead_node=partial(jobs.aenqueue, jobs.CLEAR_NODE),
            after_beat=joins.reclaim_lost_presence,
        )
        registry_module.current = registry
        return registry

    async def _stop_background_tasks(self) -> None:
        """Cancel the background tasks and wait for them to end.

        A job already running in its thread finishes on its own (bounded by the probe timeout);
        `_finish_worker_threads` waits for it.
        """
        tasks, self.background_tasks = self.background_tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _on_signal(self) -> None:
        if self.draining:  # a second signal: stop now
            self.stop()
            return
        self.draining = True
        asyncio.ensure_future(self.drain())

    async def drain(self) -> None:
        """Tell every socket to reconnect elsewhere, wait for them to go, then stop."""
        mark_draining()
        logger.info("draining", extra={"sockets": connection_manager().total})
        try:
            await self._stop_background_tasks()
            if self.registry is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(1):
                        await self.registry.leave()
            await get_channel_layer().group_send(NODE_SOCKETS_GROUP, {"type": SERVER_SHUTDOWN})
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.grace_secs):
                    await connection_manager().wait_until_empty()
        finally:
            self.stop()

    def serve(self) -> bool:
        """Run until stopped; False when it could not listen."""
        self.run()
        finished = _finish_worker_threads(WORKER_FINISH_SECS)
        if not finished:
            logger.warning("database calls still running after shutdown: exiting without them")
        return bool(self.listening_addresses) and finished


def _tune_garbage_collector() -> None:
    """Freeze what was made at start (modules, settings: never garbage) and collect less often.

    Frozen objects are left out of every later collection, so a full one only traverses
    what the node made while serving.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _finish_worker_threads(timeout: float) -> bool:
    """Run the stopped server's event loop until its tasks and database threads are done.

    Daphne cancels the consumers still running at shutdown, but a database call one of them
    started goes on in its worker thread and may hand work back to the event loop
    (transaction.on_commit -> group_send). With the loop stopped that thread waits forever,
    and so does the interpreter's exit, which joins it. False when `timeout` ran out.
    """
    loop = asyncio.get_event_loop()  # daphne's loop: stopped, not closed

    async def finish() -> None:
        async with asyncio.timeout(timeout):
            for task in _other_tasks():
                task.cancel()
            while True:
                await asyncio.gather(*_other_tasks(), return_exceptions=True)
                # These executors have one thread each: a no-op runs once the work before it is done.
                executors: list[Executor] = [
                    SyncToAsync.single_thread_executor,
                    *SyncToAsync.context_to_thread_executor.values(),
                ]
                await asyncio.gather(*(asyncio.wrap_future(pool.submit(int)) for pool in executors))
                if not _other_tasks():
                    break
            await asyncio.to_thread(db.shutdown)  # the room sockets' database threads
            await loop.shutdown_default_executor()

    try:
        loop.run_until_complete(finish())
    except TimeoutError:
        return False
    return True


def _other_tasks() -> set[asyncio.Task[Any]]:
    """The event loop's unfinished tasks, except the one asking."""
    current = asyncio.current_task()
    return {task for task in asyncio.all_tasks() if task is not current and not task.done()}

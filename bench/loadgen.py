#!/usr/bin/env python
"""The load generator: WebSocket clients on picows (C-accelerated), driven over stdin/stdout.

The harness (bench/harness.py) starts it pinned to its own core and writes one JSON command
a line; it answers each with one JSON line. It holds groups of sockets; a few of them
("sampled") read every frame for latency, the rest only count frames, so that receiving
stays cheap. Its own CPU over each measured window is part of every answer: a window where
it passed the harness's threshold was measured by a busy load generator, not a busy server.

Commands (`cmd`, then fields): `open` a group, `run` send streams at fixed rates and drain,
`mark`/`wait_ready` (reconnects after a server restart), `stats`, `close`, `quit`.
See bench/README.md for the fields and bench/driver.py for the harness's side.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import re
import resource
import sys
import time
from typing import Any

from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

MARK = b"bench:"
PLAYBACK_PREFIX = b'{"type":"playback"'
SHUTDOWN_PREFIX = b'{"type":"shutdown"'
POSITION = re.compile(rb'"position":([0-9.]+)')
RECONNECT_AFTER = re.compile(rb'"reconnect_after_ms":([0-9]+)')
# A chat frame of about 110 bytes on the wire, as the chat load.
CHAT_FRAME_BYTES = 110
TICK_SECS = 0.005
DRAIN_IDLE_SECS = 2.0
ABNORMAL = 1006
RECONNECT_CODES = frozenset({1006, 1011, 1012, 1013})
STDIN_LIMIT = 64 << 20
READ_BUFFER_BYTES = 4096  # grows when a frame needs more; 10,000 idle sockets stay small
TEXT = WSMsgType.TEXT
CLOSE = WSMsgType.CLOSE


def raise_fd_limit() -> int:
    """Soft fd limit up to the hard one; returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def listen_overflows() -> int:
    """The machine's TcpExt ListenOverflows so far (connections its accept queues refused)."""
    try:
        with open("/proc/net/netstat") as netstat:
            lines = netstat.read().splitlines()
    except OSError:
        return 0
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:], strict=False))
            return int(table.get("ListenOverflows", 0))
    return 0


def rss_bytes() -> int:
    """This process's resident set size."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def percentiles(samples: list[float]) -> dict[str, float | int | None]:
    """p50, p90, p99 and max in milliseconds (nearest rank) of latencies in seconds."""
    if not samples:
        return {"n": 0, "p50_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None}
    ordered = sorted(samples)

    def rank(fraction: float) -> float:
        return round(ordered[max(0, int(fraction * len(ordered) + 0.999999) - 1)] * 1000, 3)

    return {
        "n": len(ordered),
        "p50_ms": rank(0.50),
        "p90_ms": rank(0.90),
        "p99_ms": rank(0.99),
        "max_ms": round(ordered[-1] * 1000, 3),
    }


class ClosedBeforeReady(Exception):
    """The server closed a connection before its first frame (the snapshot)."""


class Tally:
    """What one group's sockets received: frames counted by kind, latencies of the sampled."""

    def __init__(self) -> None:
        self.chat = 0
        self.playback = 0
        self.other = 0
        self.last_at = 0.0  # perf_counter of the last frame a sampled socket timed
        self.latency: dict[tuple[str, str], list[float]] = {}

    def reset_latency(self) -> None:
        """Forget the samples (a new step begins)."""
        self.latency = {}


class Member:
    """One socket of a group: its address, its state, and the listener of its connection."""

    def __init__(self, group: Group, url: str, label: str, sampled: bool) -> None:
        self.group = group
        self.url = url
        self.label = label
        self.sampled = sampled
        self.transport: WSTransport | None = None
        self.ready: asyncio.Future[None] | None = None
        self.ready_epoch = -1
        self.reconnect_after_ms: int | None = None
        self.attempts = 0
        self.reconnecting = False

    def send(self, payload: bytes) -> bool:
        """Write one text frame if connected; False otherwise."""
        transport = self.transport
        if transport is None or transport.is_close_frame_sent or transport.is_disconnected:
            return False
        transport.send(TEXT, payload)
        return True


class Receiver(WSListener):
    """The picows listener of one connection: counts (or times) frames, records the close."""

    def __init__(self, member: Member) -> None:
        super().__init__()
        self.member = member
        self.tally = member.group.tally
        self.sampled = member.sampled
        self.close_code: int | None = None
        self.first = True

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.member.transport = transport
        if not self.member.group.expect_first_frame:
            self._ready()

    def _ready(self) -> None:
        self.first = False
        member = self.member
        member.ready_epoch = member.group.epoch
        member.attempts = 0
        if member.ready is not None and not member.ready.done():
            member.ready.set_result(None)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is TEXT:
            data = frame.get_payload_as_bytes()
            # Unsampled sockets only count: no clock read, no parsing.
            if MARK in data:
                self.tally.chat += 1
                if self.sampled:
                    self._time_chat(data)
            elif data.startswith(PLAYBACK_PREFIX):
                self.tally.playback += 1
                if self.sampled:
                    self._time_seek(data)
            else:
                self.tally.other += 1
                if self.first:
                    self._ready()  # the first frame of a connection: the snapshot
                elif data.startswith(SHUTDOWN_PREFIX):
                    found = RECONNECT_AFTER.search(data)
                    self.member.reconnect_after_ms = int(found.group(1)) if found else None
        elif kind is CLOSE:
            self.close_code = _code_value(frame.get_close_code())

    def _time_chat(self, data: bytes) -> None:
        now = time.perf_counter()
        start = data.find(MARK) + len(MARK)
        fields = data[start : start + 40].split(b":", 2)
        self._sample("chat", now - float(fields[1]))

    def _time_seek(self, data: bytes) -> None:
        now = time.perf_counter()
        found = POSITION.search(data)
        if found is None:
            return
        sent = self.member.group.seeks_sent.get(float(found.group(1)))
        if sent is not None:
            self._sample("seek", now - sent)

    def _sample(self, kind: str, seconds: float) -> None:
        self.tally.last_at = time.perf_counter()
        key = (kind, self.member.label)
        samples = self.tally.latency.get(key)
        if samples is None:
            samples = self.tally.latency[key] = []
        samples.append(seconds)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        member = self.member
        code = self.close_code
        if code is None and transport.close_handshake is not None:
            received = transport.close_handshake.recv
            code = _code_value(received.code) if received is not None else None
        code = ABNORMAL if code is None else code
        member.transport = None
        if member.ready is not None and not member.ready.done():
            member.ready.set_exception(ClosedBeforeReady(f"closed with {code} before a frame"))
        member.group.lost(member, code)


def _code_value(code: Any) -> int:
    """A picows close code (enum member or plain int) as an int."""
    return int(getattr(code, "value", code))


class Group:
    """Sockets opened together, with one tally, and their close codes."""

    def __init__(self, name: str, spec: dict[str, Any]) -> None:
        self.name = name
        self.tally = Tally()
        self.expect_first_frame = bool(spec.get("expect_first_frame", True))
        self.reconnect = bool(spec.get("reconnect", False))
        self.epoch = 0
        self.closes: dict[str, int] = {}
        self.closing = False
        self.overflows_at_mark = listen_overflows()
        self.seeks_sent: dict[float, float] = {}
        # Handshakes in flight, below the servers' listen backlog (twisted's is 50): past it
        # the accept queue overflows, the kernel drops SYNs and a socket waits out TCP's
        # 1 s, 3 s, ... retransmits, which measures TCP rather than the server.
        self.handshakes = asyncio.Semaphore(int(spec.get("handshake_concurrency", 32)))
        urls = spec["urls"]
        every = max(1, int(spec.get("sample_every", 10)))
        offset = int(spec.get("sample_offset", 0))
        sampled = set(spec.get("sampled") or range(offset % every, len(urls), every))
        labels = spec.get("labels") or ["all"] * len(urls)
        self.members = [
            Member(self, url, label, number in sampled)
            for number, (url, label) in enumerate(zip(urls, labels, strict=True))
        ]

    def lost(self, member: Member, code: int) -> None:
        """A connection ended: count its close code, reconnect it when the group does."""
        if self.closing:
            return
        self.closes[str(code)] = self.closes.get(str(code), 0) + 1
        if self.reconnect and code in RECONNECT_CODES and not member.reconnecting:
            asyncio.get_running_loop().create_task(reconnect(member))

    def connected(self) -> int:
        """Sockets open now."""
        return sum(1 for member in self.members if member.transport is not None)


async def connect_member(member: Member, wait_secs: float) -> str | None:
    """Open one connection and wait for its first frame; None when ready, else the failure."""
    loop = asyncio.get_running_loop()
    member.ready = loop.create_future()
    try:
        async with asyncio.timeout(wait_secs):
            async with member.group.handshakes:
                await ws_connect(
                    lambda: Receiver(member),
                    member.url,
                    websocket_handshake_timeout=wait_secs,
                    max_frame_size=1 << 24,
                    read_buffer_init_size=READ_BUFFER_BYTES,
                )
            await member.ready
    except Exception as exc:  # any failure to open is counted and reported, not raised
        if member.transport is not None:
            member.transport.disconnect()
        return f"{type(exc).__name__}: {exc}"[:300]
    return None


async def reconnect(member: Member) -> None:
    """Reconnect as a client should (SPEC §4): after the server's hint, else with backoff."""
    member.reconnecting = True
    try:
        while not member.group.closing:
            member.attempts += 1
            hint = member.reconnect_after_ms
            if hint is not None and member.attempts == 1:
                delay = hint / 1000
            else:
                delay = min(4.0, 0.25 * 2 ** min(member.attempts - 1, 5)) * random.uniform(0.5, 1)
            member.reconnect_after_ms = None
            await asyncio.sleep(delay)
            if await connect_member(member, 30.0) is None:
                return
    finally:
        member.reconnecting = False


class LoadGenerator:
    """The groups, and the commands the harness sends."""

    def __init__(self) -> None:
        self.groups: dict[str, Group] = {}
        self.seq = 0

    async def open(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Open a group's sockets, `batch` at a time, each batch once the last got its frames."""
        group = Group(spec["group"], spec)
        self.groups[group.name] = group
        batch = max(1, int(spec.get("batch", 100)))
        timeout = float(spec.get("timeout", 30.0))
        failures: list[str] = []
        cpu = cpu_seconds()
        overflows = listen_overflows()
        started_at = time.perf_counter()
        # No new wave after this: a slow server must not stretch a run past its budget.
        deadline = started_at + float(spec.get("deadline_secs", 1e9))
        waves: list[float] = []
        not_tried = 0
        for first in range(0, len(group.members), batch):
            wave = group.members[first : first + batch]
            if time.perf_counter() > deadline:
                not_tried = len(group.members) - first
                break
            wave_started = time.perf_counter()
            results = await asyncio.gather(*(connect_member(m, timeout) for m in wave))
            failures.extend(result for result in results if result is not None)
            waves.append(round(time.perf_counter() - wave_started, 3))
        elapsed = time.perf_counter() - started_at
        return {
            "opened": len(group.members) - len(failures) - not_tried,
            "failed": len(failures),
            "not_tried": not_tried,
            "connected_mask": "".join(
                "1" if member.transport is not None else "0" for member in group.members
            ),
            "failures": failures[:5],
            "seconds": round(elapsed, 3),
            "wave_seconds": waves,
            "listen_overflows": listen_overflows() - overflows,
            "closes": dict(group.closes),
            "loadgen_cpu_pct": round((cpu_seconds() - cpu) / elapsed * 100, 1),
            "loadgen_rss_bytes": rss_bytes(),
        }

    async def run(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Send every stream at its rate for `seconds`, then drain; counts, latencies, CPU."""
        group = self.groups[spec["group"]]
        tally = group.tally
        seconds = float(spec["seconds"])
        streams = spec["streams"]
        tally.reset_latency()
        group.seeks_sent = {}
        before = (tally.chat, tally.playback)
        sent = [0] * len(streams)
        failed_sends = [0] * len(streams)
        cpu = cpu_seconds()
        started = time.perf_counter()
        deadline = started + seconds
        now = started
        while True:
            for number, stream in enumerate(streams):
                # Frame i is due at started + i / rate: ceil(rate x seconds) in the window.
                due = min(
                    int(stream["rate"] * (now - started)) + 1,
                    math.ceil(stream["rate"] * seconds),
                )
                for _ in range(due - sent[number]):
                    if not self._send(group, stream, sent[number]):
                        failed_sends[number] += 1
                    sent[number] += 1
            if now >= deadline:
                break
            await asyncio.sleep(min(TICK_SECS, max(0.0, deadline - now)))
            now = time.perf_counter()
        window = time.perf_counter() - started
        window_cpu = cpu_seconds() - cpu
        in_window = (tally.chat - before[0], tally.playback - before[1])
        expected = [0, 0]
        for number, stream in enumerate(streams):
            expected[1 if stream["kind"] == "seek" else 0] += (
                sent[number] - failed_sends[number]
            ) * int(stream["fanout"])
        drain_started = time.perf_counter()
        await self._drain(tally, before, expected, float(spec.get("drain_timeout", 15.0)))
        drained = (tally.chat - before[0], tally.playback - before[1])
        return {
            "seconds": round(window, 3),
            "sent": sent,
            "failed_sends": failed_sends,
            "expected": {"chat": expected[0], "playback": expected[1]},
            "received_in_window": {"chat": in_window[0], "playback": in_window[1]},
            "received": {"chat": drained[0], "playback": drained[1]},
            "drain_seconds": round(time.perf_counter() - drain_started, 3),
            # From the first send to the last frame a sampled socket received.
            "delivery_seconds": round(max(tally.last_at - started, window), 3),
            "latency": {
                f"{kind}/{label}": percentiles(samples)
                for (kind, label), samples in sorted(tally.latency.items())
            },
            "latency_all": {
                kind: percentiles(
                    [s for (k, _), samples in tally.latency.items() if k == kind for s in samples]
                )
                for kind in sorted({k for k, _ in tally.latency})
            },
            "loadgen_cpu_pct": round(window_cpu / window * 100, 1),
            "connected": group.connected(),
            "closes": dict(group.closes),
        }

    def _send(self, group: Group, stream: dict[str, Any], number: int) -> bool:
        """One frame of a stream, from its next sender in turn."""
        senders = stream["senders"]
        member = group.members[senders[number % len(senders)]]
        self.seq += 1
        if stream["kind"] == "seek":
            position = self.seq + 0.25
            group.seeks_sent[position] = time.perf_counter()
            payload = b'{"type":"seek","position":%.2f}' % position
        else:
            head = b'{"type":"chat","text":"bench:%d:%.6f:' % (self.seq, time.perf_counter())
            padding = max(1, CHAT_FRAME_BYTES - len(head) - 2)
            payload = head + b"x" * padding + b'"}'
        return member.send(payload)

    async def _drain(
        self, tally: Tally, before: tuple[int, int], expected: list[int], wait_secs: float
    ) -> None:
        """Wait until every expected frame arrived, nothing arrived for a while, or timeout."""
        deadline = time.perf_counter() + wait_secs
        last = (-1, -1)
        quiet_since = time.perf_counter()
        while time.perf_counter() < deadline:
            got = (tally.chat - before[0], tally.playback - before[1])
            if got[0] >= expected[0] and got[1] >= expected[1]:
                return
            if got != last:
                last, quiet_since = got, time.perf_counter()
            elif time.perf_counter() - quiet_since > DRAIN_IDLE_SECS:
                return
            await asyncio.sleep(0.02)

    def mark(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Start a new epoch: `wait_ready` then waits for a fresh first frame on every socket."""
        group = self.groups[spec["group"]]
        group.epoch += 1
        group.closes = {}
        group.overflows_at_mark = listen_overflows()
        return {"epoch": group.epoch}

    async def wait_ready(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Wait until every socket got a first frame in this epoch (or `timeout`)."""
        group = self.groups[spec["group"]]
        deadline = time.perf_counter() + float(spec.get("timeout", 120.0))
        while time.perf_counter() < deadline:
            if all(member.ready_epoch == group.epoch for member in group.members):
                break
            await asyncio.sleep(0.02)
        return self.stats(spec)

    def stats(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Open sockets, sockets ready in this epoch, close codes, frames counted."""
        group = self.groups[spec["group"]]
        return {
            "members": len(group.members),
            "connected": group.connected(),
            "ready": sum(1 for m in group.members if m.ready_epoch == group.epoch),
            "listen_overflows_since_mark": listen_overflows() - group.overflows_at_mark,
            "closes": dict(group.closes),
            "frames": {
                "chat": group.tally.chat,
                "playback": group.tally.playback,
                "other": group.tally.other,
            },
            "loadgen_rss_bytes": rss_bytes(),
        }

    async def close(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Close a group's sockets and forget the group."""
        group = self.groups.pop(spec["group"])
        group.closing = True
        transports = [m.transport for m in group.members if m.transport is not None]
        for transport in transports:
            transport.send_close()
            transport.disconnect()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await asyncio.gather(*(t.wait_disconnected() for t in transports))
        return {"closed": len(transports)}


async def serve(commands: asyncio.StreamReader) -> None:
    """Answer commands until `quit` or the end of stdin."""
    generator = LoadGenerator()
    handlers = {
        "open": generator.open,
        "run": generator.run,
        "wait_ready": generator.wait_ready,
        "close": generator.close,
    }
    plain = {
        "mark": generator.mark,
        "stats": generator.stats,
        "memory": lambda _spec: {"loadgen_rss_bytes": rss_bytes()},
    }
    while line := await commands.readline():
        spec = json.loads(line)
        command = spec.get("cmd")
        if command == "quit":
            break
        try:
            if command in handlers:
                answer = await handlers[command](spec)
            elif command in plain:
                answer = plain[command](spec)
            else:
                answer = {"error": f"unknown command {command!r}"}
        except Exception as exc:  # the harness gets the failure; the generator keeps going
            answer = {"error": f"{command}: {type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


async def main() -> None:
    """Read commands from stdin (one JSON object a line); say hello first."""
    limit = raise_fd_limit()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=STDIN_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print(
        json.dumps(
            {"hello": "loadgen", "pid": os.getpid(), "fd_limit": limit, "loop": loop_name()}
        ),
        flush=True,
    )
    await serve(reader)


def loop_name() -> str:
    """The event loop's class name (uvloop when installed)."""
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


if __name__ == "__main__":
    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())

"""A TCP proxy on 127.0.0.1 that a test cuts and heals: a network partition between one
node and Redis while the other nodes keep their direct link.

`cut()` behaves like a partition, not like a dead server: open connections stay open but
nothing more crosses them (bytes are dropped, as lost packets), and new connections are
accepted and then left silent, so the client sees timeouts, never a reset. `heal()` closes
every connection that lived through the cut (their state is lost on both sides) and forwards
new ones again. `latency` slows every chunk down instead. The proxy runs its own event loop in a thread and stops in `close()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator

import pytest

from tests.support.servers import HOST

START_TIMEOUT = 5.0
CHUNK = 65536


class PartitionProxy:
    """Forwards 127.0.0.1:`port` to `target_port` until cut."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.cut_off = False
        self.latency = 0.0  # seconds added to every chunk forwarded (a slow link)
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()
        self._stale: set[asyncio.StreamWriter] = set()  # connections that saw a cut
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        """The Redis URL a node behind the proxy uses."""
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> PartitionProxy:
        """Listen on a free port and forward."""
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        self.port = future.result(START_TIMEOUT)
        return self

    def cut(self) -> None:
        """Partition: nothing crosses from now on, in either direction."""
        self._call(self._cut)

    def heal(self) -> None:
        """End the partition: drop the connections it broke, forward new ones."""
        self._call(self._heal)

    def close(self) -> None:
        """Stop listening, close every connection and the thread."""
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(START_TIMEOUT)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(START_TIMEOUT)

    def _call(self, action: Callable[[], None]) -> None:
        async def run() -> None:
            action()

        asyncio.run_coroutine_threadsafe(run(), self._loop).result(START_TIMEOUT)

    def _cut(self) -> None:
        self.cut_off = True
        self._stale.update(self._links)

    def _heal(self) -> None:
        self.cut_off = False
        for writer in self._stale:
            writer.close()
        self._stale.clear()

    async def _listen(self) -> int:
        self._server = await asyncio.start_server(self._accept, HOST, 0)
        return self._server.sockets[0].getsockname()[1]

    async def _accept(self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter):
        self._links.add(client_out)
        if self.cut_off:
            self._stale.add(client_out)
        try:
            server_in, server_out = await asyncio.open_connection(HOST, self.target_port)
        except OSError:
            client_out.close()
            self._links.discard(client_out)
            return
        self._links.add(server_out)
        if client_out in self._stale:
            self._stale.add(server_out)
        await asyncio.gather(
            self._pump(client_in, server_out, client_out),
            self._pump(server_in, client_out, server_out),
            return_exceptions=True,
        )
        for writer in (client_out, server_out):
            writer.close()
            self._links.discard(writer)
            self._stale.discard(writer)

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, own: asyncio.StreamWriter
    ) -> None:
        while data := await source.read(CHUNK):
            if self.cut_off or own in self._stale or sink in self._stale:
                continue  # lost on the wire
            if self.latency:
                await asyncio.sleep(self.latency)
            sink.write(data)
            await sink.drain()
        sink.close()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._links):
            writer.close()
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)


@pytest.fixture
def partition_proxy() -> Iterator[type[PartitionProxy]]:
    """Factory of started proxies: `partition_proxy(target_port)`; all closed after the test."""
    made: list[PartitionProxy] = []

    class Started(PartitionProxy):
        def __init__(self, target_port: int) -> None:
            super().__init__(target_port)
            made.append(self)
            self.start()

    yield Started
    for proxy in made:
        proxy.close()

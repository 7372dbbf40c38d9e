"""The harness's side of the load generator: start bench/loadgen.py pinned, send commands.

One JSON object a line each way (bench/loadgen.py lists the commands). The process is
stopped by pid when the harness is done with it, also on errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any, BinaryIO

from bench.common import BenchmarkError
from bench.procs import REPO_ROOT, pinned

LOADGEN = REPO_ROOT / "bench" / "loadgen.py"
PIPE_LIMIT = 64 << 20
COMMAND_TIMEOUT = 600.0


class LoadGen:
    """A running bench/loadgen.py."""

    def __init__(self, cpus: str, log_path: Path) -> None:
        self.cpus = cpus
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None
        self.hello: dict[str, Any] = {}

    @property
    def pid(self) -> int:
        """The load generator's pid."""
        if self.process is None:
            raise BenchmarkError("the load generator was never started")
        return self.process.pid

    async def start(self) -> LoadGen:
        """Launch it on its CPUs and read its hello line."""
        with self._log() as log:
            self.process = await asyncio.create_subprocess_exec(
                *pinned([sys.executable, str(LOADGEN)], self.cpus),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                cwd=REPO_ROOT,
                limit=PIPE_LIMIT,
            )
        self.hello = await self._answer(30.0)
        return self

    def _log(self) -> BinaryIO:
        return open(self.log_path, "ab")  # noqa: SIM115  (closed by the caller's with)

    def move_to(self, cpus: set[int]) -> None:
        """Run it on other CPUs from now on (scenario e shares both cores with the nodes)."""
        os.sched_setaffinity(self.pid, cpus)

    async def call(self, command: str, wait_secs: float = COMMAND_TIMEOUT, **fields: Any) -> dict:
        """Send one command and return its answer; an `error` answer raises BenchmarkError."""
        if self.process is None or self.process.stdin is None:
            raise BenchmarkError("the load generator is not running")
        self.process.stdin.write(json.dumps({"cmd": command, **fields}).encode() + b"\n")
        await self.process.stdin.drain()
        answer = await self._answer(wait_secs)
        if "error" in answer:
            raise BenchmarkError(f"load generator: {answer['error']}")
        return answer

    async def _answer(self, wait_secs: float) -> dict[str, Any]:
        assert self.process is not None and self.process.stdout is not None
        try:
            async with asyncio.timeout(wait_secs):
                line = await self.process.stdout.readline()
        except TimeoutError:
            raise BenchmarkError(f"the load generator did not answer in {wait_secs:.0f}s") from None
        if not line:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise BenchmarkError(f"the load generator exited; its log:\n{tail}")
        return json.loads(line)

    async def stop(self) -> None:
        """Ask it to quit; kill it by pid if it has not within 5 s."""
        if self.process is None or self.process.returncode is not None:
            return
        with contextlib.suppress(OSError, ConnectionError):
            if self.process.stdin is not None:
                self.process.stdin.write(b'{"cmd": "quit"}\n')
                await self.process.stdin.drain()
                self.process.stdin.close()
        try:
            async with asyncio.timeout(5):
                await self.process.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()

#!/usr/bin/env python
"""Seek latency: how long a `seek` sent by client A takes to reach client B as `playback`.

Starts its own `manage.py serve` on a free port (embedded SQLite in a temporary folder, or
--database-url), or measures a running server (--url). Signs up two users, creates a room,
connects A and B, sends the seeks one at a time (each waits until B has seen it) and reports
p50/p90/p99/max in milliseconds and the throughput; the last line is a JSON summary.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import httpx  # noqa: E402

from bench.common import (  # noqa: E402
    UNLIMITED,
    BenchmarkError,
    ensure_postgres_database,
    make_room,
    open_client,
    run_manage,
    sign_up,
    time_seeks,
)
from tests.support.servers import ProcessFailed, ServeProcess  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--url", help="measure a running server (http://host:port)")
    target.add_argument(
        "--database-url",
        help="start a server on this database (postgresql://...; created and migrated if "
        "needed); default: embedded SQLite in a temporary folder",
    )
    parser.add_argument("--seeks", type=int, default=500, help="measured seeks (default 500)")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured seeks first (20)")
    parser.add_argument(
        "--pace-ms",
        type=float,
        default=0.0,
        help="pause between seeks; a --url server limits each socket to "
        "websocket.rate_limit_per_sec (20/s by default), so use about 60 there",
    )
    parser.add_argument("--keep-temp", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    if args.seeks < 1 or args.warmup < 0 or args.pace_ms < 0:
        parser.error("--seeks must be at least 1; --warmup and --pace-ms at least 0")
    return args


# --- the server under test ------------------------------------------------------------


def start_server(database_url: str | None, workdir: Path) -> tuple[ServeProcess, str]:
    """Migrate the database, then start `manage.py serve` on a free port; (node, database kind)."""
    if database_url is None:
        database_url = f"sqlite:///{workdir / 'synctv.sqlite3'}"
    kind = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    if kind == "postgresql":
        ensure_postgres_database(database_url)
    env = {
        "SYNCTV__DATABASE__URL": database_url,
        "SYNCTV__SERVER__SECRET_KEY": secrets.token_urlsafe(32),
        "SYNCTV__LOGGING__LEVEL": "WARNING",
        **UNLIMITED,
    }
    run_manage(["migrate", "--no-input", "-v", "0"], env)
    node = ServeProcess(env, workdir, node_id=f"bench-{secrets.token_hex(3)}")
    return node.start(), kind


# --- measuring ---------------------------------------------------------------------------


async def measure(base_url: str, seeks: int, warmup: int, pace_ms: float) -> dict[str, Any]:
    """Sign up A and B, make a room, run the seeks and return the figures."""
    ws_url = "ws" + base_url.removeprefix("http")
    tag = secrets.token_hex(4)
    async with httpx.AsyncClient(base_url=base_url, timeout=30.0) as http:
        token_a = await sign_up(http, f"bench-a-{tag}")
        token_b = await sign_up(http, f"bench-b-{tag}")
        room_id = await make_room(http, token_a)
    a = await open_client(ws_url, room_id, token_a, "A")
    b = await open_client(ws_url, room_id, token_b, "B")
    try:
        return await time_seeks(a, b, seeks, warmup, pace_ms)
    finally:
        await a.close()
        await b.close()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 on success, 1 when it could not measure."""
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="synctv-bench-"))
    node: ServeProcess | None = None
    try:
        if args.url:
            base_url, database = args.url.rstrip("/"), "external"
        else:
            node, database = start_server(args.database_url, workdir)
            base_url = node.base_url
            print(f"started {node.describe()} (pid {node.pid}, {database}); log {node.log_path}")
        figures = asyncio.run(measure(base_url, args.seeks, args.warmup, args.pace_ms))
    except (BenchmarkError, ProcessFailed, OSError, httpx.HTTPError, TimeoutError) as exc:
        print(f"seek_latency: {exc or type(exc).__name__}", file=sys.stderr)
        if node is not None:
            print(node.log_tail(20), file=sys.stderr)
        return 1
    finally:
        if node is not None:
            node.stop()
        if not args.keep_temp:
            shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"{figures['seeks']} seeks A -> B ({database}, after {figures['warmup']} warm-up): "
        f"p50 {figures['p50_ms']:.2f} ms, p90 {figures['p90_ms']:.2f} ms, "
        f"p99 {figures['p99_ms']:.2f} ms, max {figures['max_ms']:.2f} ms; "
        f"{figures['throughput_per_s']:.0f} seeks/s one at a time"
    )
    print(
        json.dumps(
            {"benchmark": "seek_latency", "target": base_url, "database": database, **figures}
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

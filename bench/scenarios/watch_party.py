"""Scenario (d), a watch party: `d_guests` distinct guests (2,000) open one room, `d_batch`
(100) at a time, each wave once the last one holds its snapshots; they stay a while; then the
node restarts (SIGTERM: `shutdown` and 1012 to every socket, then a new process on the same
port) and every guest reconnects as SPEC §4 says a client does (after the server's
`reconnect_after_ms`, then with backoff while the port refuses), all at about once.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.context import Run, say
from bench.procs import cpu_seconds, rss_bytes

HOLD_SECS = 5.0


def split_closes(closes: dict[str, int]) -> dict[str, int]:
    """Close codes counted as 1013 (could not keep up) and every other code."""
    slow = closes.get("1013", 0)
    return {"1013": slow, "other": sum(closes.values()) - slow, "by_code": dict(closes)}


async def watch_party(run: Run) -> dict[str, Any]:
    """(d): the join, the hold, the restart and the reconnect; times and close codes."""
    guests, batch = run.sizes.d_guests, run.sizes.d_batch
    target = run.node()
    port = target.port
    try:
        await run.people.ensure_guests(target.base_url, guests)
        (room,) = await run.people.ensure_rooms(target.base_url, "d", [0])
        urls = [target.room_url(room, token) for token in run.people.tokens[:guests]]
        cpu_before = cpu_seconds(target.pid)
        opened = await run.loadgen.call(
            "open",
            group="d",
            urls=urls,
            batch=batch,
            reconnect=True,
            sample_every=10**9,
            timeout=60,
            deadline_secs=run.sizes.open_deadline_secs,
        )
        say(f"{opened['opened']:,} of {guests:,} joined in {opened['seconds']:.1f} s")
        join_cpu = cpu_seconds(target.pid) - cpu_before
        await asyncio.sleep(HOLD_SECS)
        held = await run.loadgen.call("stats", group="d")
        rss_mb = round(rss_bytes(target.pid) / 1e6, 1)

        await run.loadgen.call("mark", group="d")
        restarted = time.perf_counter()
        target.stop()
        stopped_s = time.perf_counter() - restarted
        target = run.node(port=port)
        up_s = time.perf_counter() - restarted
        say(f"node restarted in {up_s:.1f} s; waiting for the guests")
        back = await run.loadgen.call("wait_ready", group="d", timeout=run.sizes.d_back_secs)
        back_s = time.perf_counter() - restarted
        say(f"{back['ready']:,} back with a snapshot after {back_s:.1f} s")
        await asyncio.sleep(1.0)
        after = await run.loadgen.call("stats", group="d")
    finally:
        try:
            await run.loadgen.call("close", group="d")
        finally:
            target.stop()
    return {
        "guests": guests,
        "batch": batch,
        "join_s": opened["seconds"],
        "joined": opened["opened"],
        "join_failures": opened["failures"],
        "join_wave_s": opened["wave_seconds"],
        "join_not_tried": opened["not_tried"],
        "join_listen_overflows": opened["listen_overflows"],
        "join_server_cpu_pct": round(join_cpu / opened["seconds"] * 100, 1),
        "join_loadgen_cpu_pct": opened["loadgen_cpu_pct"],
        "held_s": HOLD_SECS,
        "held_connected": held["connected"],
        "join_closes": split_closes(held["closes"]),
        "server_rss_mb": rss_mb,
        "restart": {
            "old_node_stopped_s": round(stopped_s, 2),
            "new_node_up_s": round(up_s, 2),
            "all_back_s": round(back_s, 2),
            "all_back_after_up_s": round(back_s - up_s, 2),
            "back": back["ready"],
            "back_within_s": run.sizes.d_back_secs,
            "listen_overflows": back["listen_overflows_since_mark"],
            "connected_after": after["connected"],
            "closes": split_closes(after["closes"]),
        },
    }

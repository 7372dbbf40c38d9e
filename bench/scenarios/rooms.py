"""Scenarios (b) many small active rooms and (c) many idle sockets, on one SyncTV node.

(b) `b_rooms` rooms of `b_members` guests (1,000 x 10): each room's creator seeks, its
other members chat, every room in turn, at a total rate stepped upwards; the figure is the
command-to-delivery latency (seek sent -> `playback` received by a sampled member, one per
room) at 1,000 seeks/s in all.

(c) `c_sockets` sockets (10,000) that only sit there, on SyncTV (in the rooms of (b)) and on
each reference server: the server's resident memory per socket, after minus before. When
(b) runs too, SyncTV's figure is taken on (b)'s sockets before they become active: opening
10,000 SyncTV sockets is the slow part of both, and is done once.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bench.context import Run, say
from bench.procs import Target, cpu_seconds, rss_bytes
from bench.sweep import STOP_P99_MS, STOP_RATIO, Stream, measure_step

OPEN_BATCH = 200
IDLE_SECS = 5.0
WARMUP_SOCKETS = 20
REFERENCE_ROOMS = 1000


async def room_layout(run: Run, target: Target, sockets: int) -> list[str]:
    """Socket addresses of the (b) layout: room r holds guests r .. r+members-1 (mod rooms),
    guest r its creator and first socket; `sockets` of them, room after room."""
    rooms_count, members = run.sizes.b_rooms, run.sizes.b_members
    await run.people.ensure_guests(target.base_url, rooms_count)
    rooms = await run.people.ensure_rooms(target.base_url, "b", list(range(rooms_count)))
    tokens = run.people.tokens
    urls = [
        target.room_url(room, tokens[(number + k) % rooms_count])
        for number, room in enumerate(rooms)
        for k in range(members)
    ]
    return urls[:sockets]


async def open_idle(
    run: Run, target: Target, group: str, urls: list[str], **spec: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Open `urls` on `target` as `group` and let them sit; (idle figures, open answer).
    The group stays open: the caller closes it."""
    synctv = target.is_synctv
    await run.loadgen.call(
        "open", group=f"{group}-warm", urls=urls[:WARMUP_SOCKETS], expect_first_frame=synctv
    )
    await run.loadgen.call("close", group=f"{group}-warm")
    await asyncio.sleep(1.0)
    before = rss_bytes(target.pid)
    loadgen_before = (await run.loadgen.call("memory"))["loadgen_rss_bytes"]
    opened = await run.loadgen.call(
        "open",
        group=group,
        urls=urls,
        batch=OPEN_BATCH,
        expect_first_frame=synctv,
        deadline_secs=run.sizes.open_deadline_secs,
        **{"sample_every": 10**9, **spec},
    )
    say(
        f"{target.label}: {opened['opened']:,} of {len(urls):,} sockets open in "
        f"{opened['seconds']:.1f} s ({opened['failed']} failed, {opened['not_tried']} not "
        f"tried in the {run.sizes.open_deadline_secs:.0f} s allowed)"
    )
    cpu_before = cpu_seconds(target.pid)
    await asyncio.sleep(IDLE_SECS)
    idle_cpu = cpu_seconds(target.pid) - cpu_before
    after = rss_bytes(target.pid)
    stats = await run.loadgen.call("stats", group=group)
    count = max(1, stats["connected"])
    figures = {
        "server": target.label,
        "sockets": stats["connected"],
        "asked": len(urls),
        "failed": opened["failed"],
        "not_tried": opened["not_tried"],
        "open_s": opened["seconds"],
        "open_per_s": round(opened["opened"] / opened["seconds"], 1) if opened["seconds"] else None,
        "listen_overflows": opened["listen_overflows"],
        "server_rss_before_mb": round(before / 1e6, 1),
        "server_rss_after_mb": round(after / 1e6, 1),
        "server_kib_per_socket": round((after - before) / count / 1024, 1),
        "server_idle_cpu_pct": round(idle_cpu / IDLE_SECS * 100, 1),
        "loadgen_kib_per_socket": round(
            (stats["loadgen_rss_bytes"] - loadgen_before) / count / 1024, 1
        ),
        "closes": stats["closes"],
    }
    return figures, opened


async def many_rooms(run: Run) -> dict[str, Any]:
    """(b): seeks and chat in every room at stepped rates; latency and deliveries."""
    sizes = run.sizes
    rooms, members = sizes.b_rooms, sizes.b_members
    async with run.serving(run.node()) as target:
        urls = await room_layout(run, target, rooms * members)
        try:
            idle, opened = await open_idle(
                run, target, "b", urls, sample_every=members, sample_offset=members // 2
            )
            idle["note"] = "measured on the sockets of (b), before they were active"
            run.shared["c_synctv"] = idle
            mask = opened["connected_mask"]
            complete = [r for r in range(rooms) if "0" not in mask[r * members : (r + 1) * members]]
            if not complete:
                raise RuntimeError("(b): no room has all its members connected")
            seekers = [r * members for r in complete]
            chatters = [r * members + k for k in range(1, members) for r in complete]
            steps, stopped = await active_steps(run, target, seekers, chatters, members)
        finally:
            await run.loadgen.call("close", group="b")
    at_target = min(steps, key=lambda step: abs(step["kinds"]["seek"]["sends_per_s"] - 1000))
    return {
        "rooms": len(complete),
        "rooms_asked": rooms,
        "members": members,
        "open_s": opened["seconds"],
        "chat_share": sizes.b_chat_share,
        "steps": steps,
        "stopped": stopped,
        "at_1000_seeks": {
            "seeks_per_s": at_target["kinds"]["seek"]["sends_per_s"],
            "seek_p50_ms": at_target["kinds"]["seek"]["p50_ms"],
            "seek_p99_ms": at_target["kinds"]["seek"]["p99_ms"],
            "chat_p99_ms": at_target["kinds"]["chat"]["p99_ms"],
            "delivered_ratio": at_target["kinds"]["seek"]["delivered_ratio"],
            "valid": at_target["valid"],
        },
    }


async def active_steps(
    run: Run, target: Target, seekers: list[int], chatters: list[int], members: int
) -> tuple[list[dict[str, Any]], str]:
    """The rate steps of (b) until one falls behind; (steps, why the last was the last)."""
    sizes = run.sizes
    steps: list[dict[str, Any]] = []
    for rate in sizes.b_seek_rates:
        streams = [
            Stream("seek", rate, seekers, members),
            Stream("chat", rate * sizes.b_chat_share, chatters, members),
        ]
        step = await measure_step(run.loadgen, "b", streams, sizes.b_step_secs, [target.pid])
        steps.append(step)
        seek = step["kinds"]["seek"]
        say(
            f"{rate:g} seeks/s: delivered {seek['delivered_ratio']:.2f} of offered, seek p99 "
            f"{seek['p99_ms']} ms, loadgen CPU {step['loadgen_cpu_pct']:.0f} %"
        )
        if not step["valid"]:
            return steps, f"load generator at {step['loadgen_cpu_pct']:.0f} % CPU"
        if (seek["delivered_ratio"] or 0) < STOP_RATIO:
            return steps, f"seeks delivered {seek['delivered_ratio'] * 100:.0f} % of offered"
        if (seek["p99_ms"] or 0) > STOP_P99_MS:
            return steps, f"seek p99 {seek['p99_ms']:.0f} ms"
    return steps, "every rate was delivered"


async def idle_sockets(run: Run) -> dict[str, Any]:
    """(c): idle sockets on SyncTV (or (b)'s figures) and on each reference server."""
    count = run.sizes.c_sockets
    lines = []
    if "c_synctv" in run.shared:
        lines.append(run.shared["c_synctv"])
    else:
        async with run.serving(run.node()) as target:
            urls = await room_layout(run, target, count)
            try:
                lines.append((await open_idle(run, target, "c", urls))[0])
            finally:
                await run.loadgen.call("close", group="c")
    references = [("stock_channels", server) for server in run.reference_servers]
    for name, server in [*references, ("ws_broadcast", "daphne")]:
        async with run.serving(run.reference(name, server)) as target:
            urls = [target.room_url(f"idle-{n % REFERENCE_ROOMS}") for n in range(count)]
            try:
                lines.append((await open_idle(run, target, "c", urls))[0])
            finally:
                await run.loadgen.call("close", group="c")
    return {"sockets": count, "lines": lines}

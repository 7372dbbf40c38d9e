"""Scenarios (a) one room of many members, on every server, and (e) that room over two nodes.

(a) One room, `a_members` sockets, ten of them sending chat at a rate swept upwards; every
frame goes to every member. Run on SyncTV (each `--synctv-server`), the stock Channels app
and the plain `websockets` server, one after the other, each alone on the server core.

(e) The same room in cluster mode: a redis-server, node 1 on CPU 0 and node 2 on CPU 1, the
members alternating between them, the senders on node 1 (so half of every delivery crosses
Redis), the load generator moved onto both cores (it shares them with the nodes). Then all
members on node 1 of the same cluster, for the one-node figure.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from bench.context import LOADGEN_CPU, Run, say
from bench.cross_node import redis_is_ok
from bench.procs import Target, rss_bytes
from bench.sweep import nearest_step, sweep
from tests.support.redis_servers import RedisServer

SENDERS = 10
SETTLE_SECS = 1.5  # presence after the fill is coalesced over 500 ms windows
READY_TIMEOUT = 30.0


async def fill(run: Run, group: str, urls: list[str], synctv: bool, **spec: Any) -> dict:
    """Open the room's sockets (50 at a time), failing the scenario if any did not open."""
    answer = await run.loadgen.call(
        "open",
        group=group,
        urls=urls,
        expect_first_frame=synctv,
        batch=50,
        deadline_secs=run.sizes.open_deadline_secs,
        **spec,
    )
    if answer["failed"] or answer["not_tried"]:
        raise RuntimeError(
            f"{answer['failed'] + answer['not_tried']} of {len(urls)} sockets did not open "
            f"within {run.sizes.open_deadline_secs:.0f} s: {answer['failures']}"
        )
    say(f"{len(urls)} sockets open in {answer['seconds']:.1f} s")
    await asyncio.sleep(SETTLE_SECS if synctv else 0.2)
    return answer


async def sweep_room(run: Run, target: Target) -> dict[str, Any]:
    """Fill one room on `target` and sweep its chat rate; the figures."""
    members = run.sizes.a_members
    if target.is_synctv:
        await run.people.ensure_guests(target.base_url, members)
        (room,) = await run.people.ensure_rooms(target.base_url, "a", [0])
        urls = [target.room_url(room, token) for token in run.people.tokens[:members]]
    else:
        urls = [target.room_url("big-room")] * members
    group = f"a-{target.name}-{target.port}"
    say(f"{target.label}: {members} members")
    opened = await fill(run, group, urls, target.is_synctv)
    rss = target_rss(target)
    try:
        result = await sweep(
            run.loadgen,
            group,
            list(run.sizes.a_rates),
            list(range(SENDERS)),
            members,
            run.sizes.step_secs,
            [target.pid],
        )
    finally:
        await run.loadgen.call("close", group=group)
    return {
        "server": target.label,
        "members": members,
        "join_s": opened["seconds"],
        "server_rss_mb": rss,
        **result,
    }


def target_rss(target: Target) -> float:
    """The server's resident memory in MB."""
    return round(rss_bytes(target.pid) / 1e6, 1)


async def big_room(run: Run) -> dict[str, Any]:
    """(a): the sweep on every server; ratios of SyncTV's saturation to the references'."""
    lines: list[dict[str, Any]] = []
    for server in run.synctv_servers:
        async with run.serving(run.node(server)) as target:
            lines.append(await sweep_room(run, target))
    for server in run.reference_servers:
        async with run.serving(run.reference("stock_channels", server)) as target:
            lines.append(await sweep_room(run, target))
    async with run.serving(run.reference("ws_broadcast")) as target:
        lines.append(await sweep_room(run, target))
    synctv = lines[0]["saturation_per_s"]
    by_server = {line["server"]: line for line in lines}
    stock = next(line for line in lines if line["server"].startswith("stock Channels"))
    plain = by_server["websockets.broadcast"]
    return {
        "lines": lines,
        "ratio_to_stock_channels": round(synctv / stock["saturation_per_s"], 2),
        "ratio_to_websockets": round(synctv / plain["saturation_per_s"], 2),
    }


async def two_nodes(run: Run) -> dict[str, Any]:
    """(e): the room split over two cluster nodes on two cores, then on one node of them."""
    tag = secrets.token_hex(3)
    redis = RedisServer(run.workdir / f"redis-{tag}").start()
    nodes: list[Target] = []
    run.loadgen.move_to({0, 1})
    try:
        env = {
            "SYNCTV__REDIS__URL": redis.url,
            "SYNCTV__REDIS__KEY_PREFIX": f"synctv-bench-{tag}:",
        }
        for number, cpus in ((1, "0"), (2, "1")):
            nodes.append(run.node(cpus=cpus, env=env, node_id=f"bench{number}-{tag}"))
        for node in nodes:
            node.process.wait_until(
                lambda n=node: redis_is_ok(n.process), READY_TIMEOUT, "/ready with Redis ok"
            )
        split = await cluster_sweep(run, nodes, spread=True)
        single = await cluster_sweep(run, nodes, spread=False)
    finally:
        for node in reversed(nodes):
            node.stop()
        redis.stop()
        run.loadgen.move_to({int(LOADGEN_CPU)})
    near = nearest_step(split["steps"], "chat")["latency_by_label"]
    return {
        "two_nodes": split,
        "one_node": single,
        "cross_node_p50_ms": near.get("chat/node2", {}).get("p50_ms"),
        "same_node_p50_ms": near.get("chat/node1", {}).get("p50_ms"),
        "two_over_one": round(split["saturation_per_s"] / single["saturation_per_s"], 2),
    }


async def cluster_sweep(run: Run, nodes: list[Target], spread: bool) -> dict[str, Any]:
    """The room's members alternating over `nodes` (or all on node 1); the sweep's figures."""
    members = run.sizes.e_members
    first = nodes[0]
    await run.people.ensure_guests(first.base_url, members)
    layout = "e-split" if spread else "e-one"
    (room,) = await run.people.ensure_rooms(first.base_url, layout, [0])
    placement = [nodes[n % 2] if spread else first for n in range(members)]
    urls = [node.room_url(room, run.people.tokens[n]) for n, node in enumerate(placement)]
    labels = [f"node{nodes.index(node) + 1}" for node in placement]
    # Every fifth socket is sampled: as many on node 2 as on node 1 when spread.
    sampled = list(range(0, members, 5))
    group = f"e-{layout}"
    opened = await fill(run, group, urls, True, labels=labels, sampled=sampled)
    senders = [n for n, node in enumerate(placement) if node is first][:SENDERS]
    try:
        result = await sweep(
            run.loadgen,
            group,
            list(run.sizes.a_rates),
            senders,
            members,
            run.sizes.step_secs,
            [node.pid for node in nodes],
        )
    finally:
        await run.loadgen.call("close", group=group)
    return {
        "placement": {label: labels.count(label) for label in sorted(set(labels))},
        "join_s": opened["seconds"],
        **result,
    }

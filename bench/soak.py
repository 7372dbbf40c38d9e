#!/usr/bin/env python
"""The soak with faults (issue 8, point 3; docs/soak.md): three `manage.py serve` nodes in
cluster mode (the third reaching Redis through a TCP proxy that can cut it off alone), one
`runworker synctv.jobs`, one redis-server and PostgreSQL; `--clients` guests over `--rooms`
rooms seek, change rate, play, pause, pick movies, chat, and (each room's creator) edit the
playlist over HTTP, at human rates, while a chaos loop kills, freezes and partitions Redis
and kills and drains nodes. At the end, after a quiet period and with every client connected
again, every client's state is compared with PostgreSQL and every acknowledged command looked
up there. Prints a table and saves JSON under bench/results/soak-<timestamp>.json.

    make soak                                  # 10 minutes, 300 clients, 30 rooms
    .venv/bin/python bench/soak.py --duration 60 --clients 60 --rooms 6
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import httpx  # noqa: E402
import psycopg  # noqa: E402

from bench.common import BenchmarkError  # noqa: E402
from bench.soak_chaos import ChaosLog, ChaosLoop, FaultCounts  # noqa: E402
from bench.soak_checks import (  # noqa: E402
    StalenessMonitor,
    client_mismatches,
    memory_figures,
    playback_versions,
    read_truth,
    tally_commands,
)
from bench.soak_clients import Identity, Ledger, SoakClient, Switches  # noqa: E402
from bench.soak_cluster import NodeSlot, SoakCluster, monotonic  # noqa: E402
from bench.soak_report import print_report, save_report  # noqa: E402

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/synctv_soak"
SETUP_CONCURRENCY = 16
WARM_UP = 5.0
CHAOS_TAIL = 5.0
SAMPLE_EVERY = 1.0
RSS_EVERY = 2.0


@dataclass
class SoakConfig:
    """One run's sizes and timings."""

    duration: float = 600.0
    clients: int = 300
    rooms: int = 30
    movies_per_room: int = 3
    think: tuple[float, float] = (3.0, 8.0)
    session: tuple[float, float] = (60.0, 240.0)
    quiet: float = 10.0
    reconnect_deadline: float = 60.0
    faults: FaultCounts | None = None
    seed: int | None = None
    database_url: str = DEFAULT_DATABASE_URL
    prepare_database: bool = True
    workdir: Path | None = None


async def run_soak(config: SoakConfig) -> dict[str, Any]:
    """Run one soak; the report (see `bench/soak_report.py` for its keys)."""
    seed = config.seed if config.seed is not None else random.randrange(2**32)
    rng = random.Random(seed)
    faults = config.faults or FaultCounts.for_duration(config.duration)
    with contextlib.ExitStack() as stack:
        workdir = config.workdir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="synctv-soak-"))
        )
        cluster = SoakCluster(workdir, config.database_url)
        if config.prepare_database:
            cluster.prepare_database()
        try:
            await cluster.start()
            report = await _run(cluster, config, faults, rng)
        except BaseException:
            print(cluster.log_tails(), file=sys.stderr)
            raise
        finally:
            cluster.stop()
    report["config"] = {
        **{key: value for key, value in dataclasses.asdict(config).items() if key != "workdir"},
        "faults": dataclasses.asdict(faults),
        "seed": seed,
    }
    return report


async def _run(
    cluster: SoakCluster, config: SoakConfig, faults: FaultCounts, rng: random.Random
) -> dict[str, Any]:
    identities = await _make_guests_and_rooms(cluster.nodes, config)
    ledger = Ledger()
    switches = Switches()
    clients = [
        SoakClient(
            identity,
            cluster.nodes,
            number // config.rooms,  # a room's members spread over every node
            ledger,
            switches,
            config.think,
            config.session,
            random.Random(rng.random()),
        )
        for number, identity in enumerate(identities)
    ]
    tasks = [asyncio.create_task(client.run(), name=client.label) for client in clients]
    db = await psycopg.AsyncConnection.connect(config.database_url, autocommit=True)
    try:
        await _all_connected(clients, config.reconnect_deadline)
        started = monotonic()
        log = ChaosLog(started)
        staleness = StalenessMonitor(ledger)
        room_ids = sorted({identity.room_id for identity in identities})
        sampler = asyncio.create_task(_sample(cluster, db, room_ids, clients, staleness))
        switches.acting.set()
        chaos = ChaosLoop(cluster, log, rng, faults.schedule(rng))
        await asyncio.sleep(WARM_UP)  # traffic before the first fault
        await chaos.run(config.duration - WARM_UP - CHAOS_TAIL)
        await asyncio.sleep(max(0.0, started + config.duration - monotonic()))
        switches.acting.clear()
        acting_ended = log.now()
        await chaos.restore()
        await asyncio.sleep(config.quiet)  # the quiet period: no commands, no faults
        connected = await _all_connected(clients, config.reconnect_deadline)
        truth = await read_truth(db, room_ids)
        checked_at = log.now()
        sampler.cancel()
        await asyncio.gather(sampler, return_exceptions=True)
        staleness.finish(monotonic())
        mismatches = {
            client.label: problems
            for client in clients
            if (problems := client_mismatches(client, truth[client.identity.room_id]))
        }
        report = _report(
            clients, ledger, truth, log, staleness, cluster.nodes, started, mismatches, connected
        )
        report["timeline"] = {"commands_stopped_s": acting_ended, "checked_s": checked_at}
        report["worker_starts"] = cluster.worker_starts
        return report
    finally:
        switches.stopping.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await db.close()


async def _make_guests_and_rooms(nodes: list[NodeSlot], config: SoakConfig) -> list[Identity]:
    """`config.clients` guests (HTTP, spread over the nodes); the first of each room creates
    it and adds its movies."""
    limit = asyncio.Semaphore(SETUP_CONCURRENCY)

    async def call(number: int, method: str, path: str, body: Any, token: str | None = None):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        base_url = nodes[number % len(nodes)].base_url
        async with limit, httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            answer = await http.request(method, path, json=body, headers=headers)
        if answer.status_code >= 300:
            raise BenchmarkError(f"{method} {path}: {answer.status_code} {answer.text}")
        return answer.json()

    async def guest(number: int) -> dict[str, Any]:
        return await call(number, "POST", "/api/auth/guest", {"name": f"soak {number}"})

    guests = await asyncio.gather(*(guest(number) for number in range(config.clients)))

    async def room(index: int) -> str:
        creator = guests[index]["token"]
        made = await call(index, "POST", "/api/rooms", {"name": f"soak {index}"}, creator)
        room_id = made["room"]["id"]
        for movie in range(config.movies_per_room):
            url = f"https://example.invalid/film-{index}-{movie}.mp4"
            body = {"url": url, "title": f"Film {movie}"}
            await call(index + movie, "POST", f"/api/rooms/{room_id}/movies", body, creator)
        return room_id

    room_ids = await asyncio.gather(*(room(index) for index in range(config.rooms)))
    return [
        Identity(
            label=f"c{number:03d}",
            user_id=guests[number]["user"]["id"],
            token=guests[number]["token"],
            room_id=room_ids[number % config.rooms],
            is_creator=number < config.rooms,
        )
        for number in range(config.clients)
    ]


async def _all_connected(clients: list[SoakClient], within: float) -> bool:
    """Wait until every client holds a connection with its snapshot; False after `within` s."""
    changed = clients[0].switches.connections_changed if clients else asyncio.Condition()
    try:
        async with asyncio.timeout(within), changed:
            await changed.wait_for(lambda: all(client.current is not None for client in clients))
    except TimeoutError:
        return False
    return True


async def _sample(cluster, db, room_ids, clients, staleness: StalenessMonitor) -> None:
    """Every second: the staleness sample; every two: the nodes' RSS."""
    next_rss = 0.0
    while True:
        now = monotonic()
        with contextlib.suppress(psycopg.Error):
            versions = await playback_versions(db, room_ids)
            staleness.sample(monotonic(), versions, clients)
        if now >= next_rss:
            cluster.sample_rss()
            next_rss = now + RSS_EVERY
        await asyncio.sleep(max(0.0, now + SAMPLE_EVERY - monotonic()))


def _report(clients, ledger, truth, log, staleness, nodes, started, mismatches, connected):
    tally = tally_commands(ledger, truth)
    duplicates = []
    close_codes: Counter[str] = Counter()
    for client in clients:
        for connection in client.connections:
            if connection.close_code is not None:
                close_codes[str(connection.close_code)] += 1
            for chat_id, at in connection.duplicates:
                at_s = round(at - started, 2)
                fault = log.last_before(at_s)
                duplicates.append(
                    {
                        "client": client.label,
                        "connection": connection.number,
                        "node": connection.node,
                        "chat_id": chat_id,
                        "at_s": at_s,
                        "after_fault": fault.as_dict() if fault else None,
                    }
                )
    unexpected = [
        {"client": client.label, "at_s": round(at - started, 2), "code": code}
        for client in clients
        for at, code in client.unexpected_closes
    ]
    failed_faults = [record.as_dict() for record in log.faults if record.error]
    invariants = {
        "every_client_connected_at_the_end": connected,
        "every_client_equals_the_database": not mismatches,
        "no_acknowledged_command_lost": not tally.lost,
        "no_chat_delivered_twice": not duplicates,
        "every_fault_recovered": not failed_faults,
    }
    return {
        "passed": all(invariants.values()),
        "invariants": invariants,
        "faults": [record.as_dict() for record in log.faults],
        "faults_survived": log.survived(),
        "commands": {
            "sent": tally.sent,
            "acknowledged": tally.acknowledged,
            "lost": len(tally.lost),
            "lost_examples": tally.lost[:20],
            "errors": tally.errors,
            "unanswered": tally.unanswered,
            "by_kind": tally.by_kind,
        },
        "duplicates": {"count": len(duplicates), "examples": duplicates[:50]},
        "clients": {
            "count": len(clients),
            "mismatched": len(mismatches),
            "mismatch_examples": dict(list(mismatches.items())[:20]),
        },
        "connections": {
            "reconnects": sum(len(client.connections) for client in clients) - len(clients),
            "viewers_left_and_came_back": sum(
                connection.left for client in clients for connection in client.connections
            ),
            "failed_connects": sum(client.failed_connects for client in clients),
            "close_codes": dict(close_codes),
            "unexpected_closes": len(unexpected),
            "unexpected_examples": unexpected[:20],
        },
        "staleness": staleness.figures(started),
        "memory": memory_figures(nodes, started),
    }


def parse_arguments(argv: list[str] | None = None) -> tuple[SoakConfig, Path]:
    """The command line: sizes, timings, fault counts, the database and the results folder."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of traffic")
    parser.add_argument("--clients", type=int, default=300)
    parser.add_argument("--rooms", type=int, default=30)
    parser.add_argument("--movies", type=int, default=3, help="movies per room at the start")
    parser.add_argument("--think-min", type=float, default=3.0, help="seconds between commands")
    parser.add_argument("--think-max", type=float, default=8.0)
    parser.add_argument(
        "--session-min", type=float, default=60.0, help="seconds a viewer stays before leaving"
    )
    parser.add_argument("--session-max", type=float, default=240.0)
    parser.add_argument("--quiet", type=float, default=10.0, help="seconds before the checks")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--results", type=Path, default=REPO_ROOT / "bench" / "results")
    defaults = FaultCounts.for_duration(600)
    for kind in ("redis_kill", "redis_pause", "partition", "node_kill", "node_drain"):
        parser.add_argument(
            f"--{kind.replace('_', '-')}s",
            dest=kind,
            type=int,
            default=None,
            help=f"faults of this kind (default: {getattr(defaults, kind)} per 10 minutes)",
        )
    arguments = parser.parse_args(argv)
    faults = FaultCounts.for_duration(arguments.duration)
    for kind in dataclasses.asdict(faults):
        if getattr(arguments, kind) is not None:
            setattr(faults, kind, getattr(arguments, kind))
    config = SoakConfig(
        duration=arguments.duration,
        clients=arguments.clients,
        rooms=arguments.rooms,
        movies_per_room=arguments.movies,
        think=(arguments.think_min, arguments.think_max),
        session=(arguments.session_min, arguments.session_max),
        quiet=arguments.quiet,
        faults=faults,
        seed=arguments.seed,
        database_url=arguments.database_url,
    )
    return config, arguments.results


def main(argv: list[str] | None = None) -> int:
    """Run the soak, print the table, save the JSON; exit 1 when an invariant failed."""
    config, results = parse_arguments(argv)
    began = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    report = asyncio.run(run_soak(config))
    report["started_utc"] = began
    print_report(report)
    path = save_report(report, results / f"soak-{began}.json")
    print(f"saved {path}")
    print(json.dumps({"passed": report["passed"], **report["invariants"]}))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())

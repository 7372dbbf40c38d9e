#!/usr/bin/env python
"""The benchmark harness (issue 7): SyncTV against stock Channels and a plain `websockets`
server, the server on CPU 0 and the load generator (bench/loadgen.py, picows) on CPU 1.

Scenarios: (a) 1 room x 500 members, chat rate swept until under 90 % is delivered, on every
server; (b) 1,000 rooms x 10 members, seeks and chat; (c) 10,000 idle sockets, memory; (d) a
watch party of 2,000 guests and a node restart; (e) two nodes + Redis on two cores.
`make bench` runs all (under 15 minutes), `make bench-smoke` a small (a) (under 3 minutes).
Prints the tables and the targets; writes JSON and a PNG to bench/results/. See
bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import shutil
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.common import ensure_postgres_database, run_manage  # noqa: E402
from bench.context import FULL, LOADGEN_CPU, SERVER_CPU, SMOKE, Run, synctv_env  # noqa: E402
from bench.driver import LoadGen  # noqa: E402
from bench.procs import REFERENCE_SERVERS, SYNCTV_SERVERS, raise_fd_limit  # noqa: E402
from bench.report import describe, write  # noqa: E402
from bench.scenarios.fanout import big_room, two_nodes  # noqa: E402
from bench.scenarios.rooms import idle_sockets, many_rooms  # noqa: E402
from bench.scenarios.watch_party import watch_party  # noqa: E402
from bench.sweep import LOADGEN_CPU_LIMIT  # noqa: E402

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/synctv_bench"
SCENARIOS = {
    "a": big_room,
    "b": many_rooms,
    "c": idle_sockets,
    "d": watch_party,
    "e": two_nodes,
}


def names(allowed: tuple[str, ...]) -> Any:
    """An argparse type: a comma-separated list of names out of `allowed`."""

    def parse(text: str) -> list[str]:
        chosen = [name.strip() for name in text.split(",") if name.strip()]
        wrong = [name for name in chosen if name not in allowed]
        if not chosen or wrong:
            raise argparse.ArgumentTypeError(
                f"{text!r}: expected a comma-separated list out of {', '.join(allowed)}"
            )
        return chosen

    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--smoke", action="store_true", help="small and quick: (a) only, 200 members, 2 s steps"
    )
    parser.add_argument(
        "--only",
        type=names(tuple(SCENARIOS)),
        help="scenarios to run, e.g. a,c (default: all; with --smoke: a)",
    )
    parser.add_argument(
        "--synctv-server",
        type=names(SYNCTV_SERVERS),
        default=["daphne"],
        help="server(s) of SyncTV: daphne (manage.py serve), uvicorn, granian; several, "
        "comma-separated, are all measured in (a), the first one elsewhere (default daphne)",
    )
    parser.add_argument(
        "--ref-server",
        type=names(REFERENCE_SERVERS),
        default=["daphne"],
        help="server(s) of the stock Channels reference: daphne, uvicorn (default daphne)",
    )
    parser.add_argument(
        "--database-url",
        default=DEFAULT_DATABASE_URL,
        help=f"SyncTV's database, created and migrated if needed (default {DEFAULT_DATABASE_URL};"
        " 'sqlite' for a SQLite file in the temporary folder; (e) needs PostgreSQL)",
    )
    parser.add_argument("--keep-temp", action="store_true", help="keep the servers' logs")
    args = parser.parse_args(argv)
    args.scenarios = args.only or (["a"] if args.smoke else list(SCENARIOS))
    return args


def prepare_database(url: str, workdir: Path) -> str:
    """The database URL of the run, created and migrated."""
    if url == "sqlite":
        url = f"sqlite:///{workdir / 'synctv.sqlite3'}"
    elif url.startswith(("postgres://", "postgresql://", "pgsql://")):
        ensure_postgres_database(url)
    run_manage(
        ["migrate", "--no-input", "-v", "0"],
        {"SYNCTV__DATABASE__URL": url, "SYNCTV__SERVER__SECRET_KEY": "migrate-only"},
    )
    return url


def machine(fd_limit: tuple[int, int], loadgen: LoadGen) -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "fd_limit": {
            "harness": fd_limit[0],
            "hard": fd_limit[1],
            "loadgen": loadgen.hello.get("fd_limit"),
        },  # fmt: skip
        "loadgen_loop": loadgen.hello.get("loop"),
        "pinning": f"servers on CPU {SERVER_CPU}, load generator on CPU {LOADGEN_CPU} "
        "(in (e): node 1 on CPU 0, node 2 on CPU 1, load generator on both); PostgreSQL "
        "and Redis are not pinned",
        "loadgen_cpu_limit_pct": LOADGEN_CPU_LIMIT,
    }


async def run_all(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Every scenario asked for, in order; a failed scenario is recorded and the next runs."""
    fd_limit = raise_fd_limit()
    started_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    database_url = prepare_database(args.database_url, workdir)
    loadgen = await LoadGen(LOADGEN_CPU, workdir / "loadgen.log").start()
    run = Run(
        sizes=SMOKE if args.smoke else FULL,
        workdir=workdir,
        loadgen=loadgen,
        synctv_env=synctv_env(database_url, secrets.token_urlsafe(32)),
        synctv_servers=args.synctv_server,
        reference_servers=args.ref_server,
    )
    results: dict[str, Any] = {
        "mode": "smoke" if args.smoke else "full",
        "started_at": started_at,
        "database": database_url.split("@")[-1],
        "machine": machine(fd_limit, loadgen),
        "sizes": run.sizes.__dict__,
        "scenarios": {},
        "durations_s": {},
        "errors": {},
    }
    try:
        for name in args.scenarios:
            began = time.perf_counter()
            print(f"scenario ({name}) ...", flush=True)
            try:
                results["scenarios"][name] = await SCENARIOS[name](run)
            except Exception as exc:  # the other scenarios still run; the error is reported
                results["errors"][name] = f"{type(exc).__name__}: {exc}"
                traceback.print_exc()
            results["durations_s"][name] = round(time.perf_counter() - began, 1)
            print(f"scenario ({name}) took {results['durations_s'][name]:.0f} s", flush=True)
    finally:
        await loadgen.stop()
    results["guests_made"] = len(run.people.tokens)
    results["guests_s"] = round(run.people.seconds, 1)
    return results


def main(argv: list[str] | None = None) -> int:
    """Run, print, write; 0 when every scenario measured, 1 otherwise."""
    args = parse_args(argv)
    if (os.cpu_count() or 1) < 2 or not shutil.which("taskset"):
        print("harness: needs 2 CPUs and taskset (util-linux)", file=sys.stderr)
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="synctv-harness-"))
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    began = time.perf_counter()
    try:
        results = asyncio.run(run_all(args, workdir))
    finally:
        if args.keep_temp:
            print(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    results["total_s"] = round(time.perf_counter() - began, 1)
    print(describe(results))
    for name, error in results["errors"].items():
        print(f"scenario ({name}) FAILED: {error}")
    for path in write(results, stamp):
        print(f"wrote {path.relative_to(REPO_ROOT)}")
    print(f"total {results['total_s']:.0f} s")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())

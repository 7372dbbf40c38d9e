"""A real Prometheus server for tests: Debian's `prometheus`, fed the project's own config.

The config is generated from deploy/prometheus/prometheus.yml: the same global settings and
rule files (deploy/prometheus/alerts.yml), only the scrape and evaluation intervals shortened
and the scrape targets replaced by the test's nodes on 127.0.0.1. `scrape(targets)` rewrites
it and reloads the running server (`--web.enable-lifecycle`), so one server serves a whole
module. Its storage is under the test's temporary directory; it is stopped by pid.

    from tests.support.prometheus import prometheus  # noqa: F401
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.servers import HOST, REPO_ROOT, ManagedProcess, free_port

PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
SCRAPE_INTERVAL = "1s"
START_TIMEOUT = 30.0
WAIT_TIMEOUT = 15.0
Sample = dict[str, Any]


def config_for(targets: Sequence[str]) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml with 1 s intervals and `targets` in every scrape job."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"].update(
        scrape_interval=SCRAPE_INTERVAL,
        scrape_timeout=SCRAPE_INTERVAL,
        evaluation_interval=SCRAPE_INTERVAL,
    )
    config["rule_files"] = [str(PROMETHEUS_DIR / name) for name in config["rule_files"]]
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": list(targets)}]
    return config


class PrometheusServer(ManagedProcess):
    """One Prometheus on a free loopback port whose targets a test sets with `scrape()`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.config_path = directory / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config_for([])))
        super().__init__(
            [
                PROMETHEUS,
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address={HOST}:{self.port}",
                "--web.enable-lifecycle",
                "--log.level=warn",
            ],
            directory / "prometheus.log",
        )

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT`."""
        return f"http://{HOST}:{self.port}"

    def start(self, timeout: float = START_TIMEOUT) -> PrometheusServer:  # type: ignore[override]
        """Launch it and wait until /-/ready answers 200."""
        super().start()
        self.wait_until(self._ready, timeout, "GET /-/ready answering 200")
        return self

    def _ready(self) -> bool:
        try:
            return httpx.get(f"{self.base_url}/-/ready", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def scrape(self, targets: Sequence[str]) -> None:
        """Scrape exactly `targets` (host:port) from now on; returns once each is up."""
        self.config_path.write_text(yaml.safe_dump(config_for(targets)))
        answer = httpx.post(f"{self.base_url}/-/reload", timeout=WAIT_TIMEOUT)
        assert answer.status_code == 200, answer.text
        wanted = set(targets)

        def all_up() -> bool:
            active = self.api("targets", state="active")["activeTargets"]
            up = {t["labels"]["instance"] for t in active if t["health"] == "up"}
            return up == wanted and len(active) == len(wanted)

        self.wait_until(all_up, WAIT_TIMEOUT, f"targets {sorted(wanted)} up")

    def api(self, path: str, **params: Any) -> Any:
        """GET /api/v1/<path>; its `data` (fails unless the status is success)."""
        answer = httpx.get(f"{self.base_url}/api/v1/{path}", params=params, timeout=WAIT_TIMEOUT)
        body = answer.json()
        assert body.get("status") == "success", f"{path} {params}: {answer.text}"
        return body["data"]

    async def query(self, expr: str) -> list[Sample]:
        """The instant vector of `expr` now: [{metric: {...}, value: [t, "v"]}, ...]."""
        async with httpx.AsyncClient(base_url=self.base_url, timeout=WAIT_TIMEOUT) as http:
            answer = await http.get("/api/v1/query", params={"query": expr})
        body = answer.json()
        assert body.get("status") == "success", f"{expr}: {answer.text}"
        assert body["data"]["resultType"] == "vector", body
        return body["data"]["result"]

    async def value(self, expr: str) -> float | None:
        """The value of a one-sample `expr` (None when the vector is empty)."""
        result = await self.query(expr)
        assert len(result) <= 1, f"{expr} has {len(result)} samples: {result}"
        return float(result[0]["value"][1]) if result else None

    async def wait_for(
        self, expr: str, condition: Callable[[list[Sample]], Any], what: str
    ) -> list[Sample]:
        """Poll `expr` until `condition(result)` holds; its result (fail after WAIT_TIMEOUT)."""
        deadline = time.monotonic() + WAIT_TIMEOUT
        while True:
            result = await self.query(expr)
            if condition(result):
                return result
            if time.monotonic() >= deadline:
                raise AssertionError(f"no {what} within {WAIT_TIMEOUT:g}s: {expr} = {result}")
            await asyncio.sleep(0.2)

    async def wait_value(self, expr: str, condition: Callable[[float], bool], what: str) -> float:
        """Poll a one-sample `expr` until its value meets `condition`; that value."""
        result = await self.wait_for(
            expr, lambda r: len(r) == 1 and condition(float(r[0]["value"][1])), what
        )
        return float(result[0]["value"][1])

    async def wait_absent(self, expr: str, what: str) -> None:
        """Poll until `expr` returns no sample (a series gone stale)."""
        await self.wait_for(expr, lambda result: not result, what)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """One Prometheus for the test module; each test points it at its nodes with `scrape()`."""
    server = PrometheusServer(tmp_path_factory.mktemp("prometheus"))
    try:
        yield server.start()
    finally:
        server.stop()
        print(f"--- prometheus (last lines of {server.log_path}) ---")
        print(server.log_tail(20))

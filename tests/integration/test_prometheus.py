"""Prometheus for real: Debian's server scrapes real nodes with deploy/prometheus/'s config.

Every SPEC §5 metric is checked through Prometheus's HTTP API: present with its labels, and
moving when its event happens. The alert rules are loaded and evaluated against the real
series, unit-tested with promtool, and every panel of deploy/grafana/synctv.json gets data.
One Prometheus serves the module (tests/support/prometheus.py).
"""

from __future__ import annotations

import json
import math
import re
import subprocess
from typing import Any

import pytest
import yaml

from tests.integration.test_fast_lane import UNLIMITED, open_stalled_socket
from tests.support.clients import (
    as_guest,
    close_code_of,
    create_room,
    http_client,
    metric_value,
    open_socket,
    room_client,
)
from tests.support.cluster import cluster, cluster_env  # noqa: F401
from tests.support.prometheus import (  # noqa: F401
    PROMETHEUS_DIR,
    PROMTOOL,
    PrometheusServer,
    prometheus,
)
from tests.support.redis_servers import RedisServer, redis_server  # noqa: F401
from tests.support.servers import REPO_ROOT, ServeProcess, serve_node  # noqa: F401

pytestmark = pytest.mark.serve

DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "synctv.json"
# SPEC §5: each metric and the labels its series carry (Prometheus adds job and instance).
SPEC_METRICS = {
    "synctv_connections_total": {"node"},
    "synctv_connections_per_room": {"room", "node"},
    "synctv_connections_per_user": {"user", "node"},
    "synctv_events_published_total": {"room", "type"},
    "synctv_events_received_total": {"node"},
    "synctv_events_deduplicated_total": {"node"},
    "synctv_redis_pubsub_messages_total": {"channel"},
    "synctv_redis_connection_errors_total": {"node"},
    "synctv_event_publish_duration_seconds_bucket": {"le"},
    "synctv_event_delivery_duration_seconds_bucket": {"le"},
    # Beyond SPEC (docs/monitoring.md): what the alerts on limits and slow clients read.
    "synctv_connection_refusals_total": {"node", "reason"},
    "synctv_connection_closes_total": {"node", "code"},
}
TARGET_LABELS = {"__name__", "job", "instance"}
# Grafana's variables as the dashboard's "All" would fill them.
DASHBOARD_VARIABLES = {"$__rate_interval": "1m", "$instance": ".*"}
LIMITED = {"SYNCTV__CLUSTER__CONNECTION_LIMITS__PER_USER": "1"}


def instance(node: ServeProcess) -> str:
    return f"{node.host}:{node.port}"


def selector(target: ServeProcess, **labels: str) -> str:
    """`{instance="…", node="…", …}` for one node's own series."""
    pairs = {"instance": instance(target), **labels}
    return "{" + ", ".join(f'{key}="{value}"' for key, value in pairs.items()) + "}"


async def total(prom: PrometheusServer, expr: str) -> float:
    """`sum(expr)`: 0 when there is no series yet."""
    return await prom.value(f"sum({expr})") or 0.0


async def rises(prom: PrometheusServer, expr: str, above: float, what: str) -> float:
    return await prom.wait_value(f"sum({expr})", lambda value: value > above, what)


def label_sets(prom: PrometheusServer, metric: str, nodes: list[ServeProcess]) -> list[set[str]]:
    """The label names of each series of `metric` scraped from `nodes` (series API)."""
    # A regex inside a PromQL string: its backslashes escaped once more.
    instances = "|".join(re.escape(instance(node)) for node in nodes).replace("\\", "\\\\")
    series = prom.api("series", **{"match[]": f'{metric}{{instance=~"{instances}"}}'})
    return [set(labels) for labels in series]


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL with the dashboard's variables filled in) for every target."""
    queries = []
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in DASHBOARD_VARIABLES.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, f"{panel['title']}: unknown variable in {expr}"
            queries.append((panel["title"], expr))
    return queries


async def assert_every_panel_has_data(prom: PrometheusServer) -> None:
    for title, expr in panel_queries(json.loads(DASHBOARD.read_text())):
        result = await prom.query(expr)
        assert result, f"panel {title!r}: no data for {expr}"
        values = [float(sample["value"][1]) for sample in result]
        assert not any(math.isnan(value) for value in values), f"{title!r}: {expr} = {result}"


def rule_states(prom: PrometheusServer) -> dict[str, dict[str, Any]]:
    groups = prom.api("rules")["groups"]
    return {rule["name"]: rule for group in groups for rule in group["rules"]}


async def test_spec_metrics_move_with_their_events_and_every_dashboard_panel_has_data(
    cluster,  # noqa: F811
    redis_server: RedisServer,  # noqa: F811
    prometheus: PrometheusServer,  # noqa: F811
):
    a, b = cluster(2, env=LIMITED)
    prometheus.scrape([instance(a), instance(b)])
    async with http_client(a) as http:
        alice = await as_guest(http, "Alice")
        bob = await as_guest(http, "Bob")
        room = await create_room(http, alice)
    room_id = room["id"]
    a_node, b_node = {"node": a.node_id}, {"node": b.node_id}
    async with room_client(a, room_id, alice, "alice@a") as on_a:
        async with room_client(b, room_id, bob, "bob@b") as on_b:
            await on_a.wait_for("presence", lambda frame: frame["viewer_count"] == 2)
            # Gauges: one socket on each node, in its room and for its user.
            for node, client in ((a, on_a), (b, on_b)):
                user_id = client.snapshot["me"]["user"]["id"]
                for gauge in (
                    f"synctv_connections_total{selector(node, node=node.node_id)}",
                    f"synctv_connections_per_room{selector(node, room=room_id)}",
                    f"synctv_connections_per_user{selector(node, user=str(user_id))}",
                ):
                    await prometheus.wait_value(gauge, lambda v: v == 1, f"{gauge} at 1")

            # Counters and histograms move with a seek and a chat published on a.
            published = f'synctv_events_published_total{{room="{room_id}"}}'
            received_b = f"synctv_events_received_total{selector(b, **b_node)}"
            dedup_a = f"synctv_events_deduplicated_total{selector(a, **a_node)}"
            pubsub = (
                f'synctv_redis_pubsub_messages_total{{instance="{instance(b)}", channel="room:*"}}'
            )
            publish_count = f"synctv_event_publish_duration_seconds_count{selector(a)}"
            delivery_count = f"synctv_event_delivery_duration_seconds_count{selector(b)}"
            counters = [published, received_b, dedup_a, pubsub, publish_count, delivery_count]
            before = {expr: await total(prometheus, expr) for expr in counters}
            seek = await on_a.request({"type": "seek", "position": 12.0})
            await on_b.wait_for_version(seek["version"])
            assert (await on_a.request({"type": "chat", "text": "hello"}))["type"] == "ack"
            await on_b.wait_for("chat", lambda frame: frame["message"]["text"] == "hello")
            for expr in counters:
                await rises(prometheus, expr, before[expr], f"{expr} rising")
            for kind in ("playback", "chat"):
                await prometheus.wait_value(
                    f'sum(synctv_events_published_total{{room="{room_id}", type="{kind}"}})',
                    lambda v: v >= 1,
                    f"{kind} events published",
                )

            # A second socket of alice's is refused (per_user 1): 4029, a refusal and a close.
            async with open_socket(a, room_id, alice) as refused:
                assert await close_code_of(refused) == 4029
            await prometheus.wait_value(
                f"synctv_connection_refusals_total{selector(a, reason='per_user', **a_node)}",
                lambda v: v == 1,
                "the per_user refusal",
            )
            await prometheus.wait_value(
                f"synctv_connection_closes_total{selector(a, code='4029', **a_node)}",
                lambda v: v == 1,
                "the 4029 close",
            )

            # Redis killed: both nodes count connection errors; the alert goes pending.
            redis_server.kill()
            for node in (a, b):
                await rises(
                    prometheus,
                    f"synctv_redis_connection_errors_total{selector(node, node=node.node_id)}",
                    1,
                    f"Redis errors on {node.node_id}",
                )
            await prometheus.wait_for(
                'ALERTS{alertname="SyncTVRedisDegraded", alertstate="pending"}',
                lambda result: {s["metric"]["node"] for s in result} == {a.node_id, b.node_id},
                "SyncTVRedisDegraded pending for both nodes",
            )
            redis_server.restart()

            # Every SPEC §5 metric is there with its labels, from both nodes.
            for metric, labels in SPEC_METRICS.items():
                found = label_sets(prometheus, metric, [a, b])
                assert found, f"no series of {metric}"
                for names in found:
                    assert names - TARGET_LABELS == labels, f"{metric}: {names}"
            assert label_sets(prometheus, "django_http_requests_total_by_method_total", [a, b])
            rules = rule_states(prometheus)
            assert {rule["health"] for rule in rules.values()} == {"ok"}, rules
            await assert_every_panel_has_data(prometheus)

        # bob's socket closed: b's room and user series go stale, a's stay.
        await prometheus.wait_absent(
            f"synctv_connections_per_room{selector(b)}", "b's room series gone"
        )
        await prometheus.wait_absent(
            f"synctv_connections_per_user{selector(b)}", "b's user series gone"
        )
        assert await prometheus.value(f"synctv_connections_total{selector(b)}") == 0
        assert await prometheus.value(f"synctv_connections_per_room{selector(a)}") == 1


async def test_label_switches_drop_the_per_room_and_per_user_series(
    serve_node,  # noqa: F811
    prometheus: PrometheusServer,  # noqa: F811
):
    node = serve_node(
        env={
            "SYNCTV__METRICS__PER_ROOM_LABELS": "false",
            "SYNCTV__METRICS__PER_USER_LABELS": "false",
        }
    )
    prometheus.scrape([instance(node)])
    async with http_client(node) as http:
        alice = await as_guest(http, "Alice")
        room = await create_room(http, alice)
    async with room_client(node, room["id"], alice) as client:
        assert (await client.request({"type": "chat", "text": "hi"}))["type"] == "ack"
        # One scrape sees the socket and the chat; the same scrape has no per-room series.
        await prometheus.wait_value(
            f"synctv_connections_total{selector(node)}", lambda v: v == 1, "the socket"
        )
        await prometheus.wait_value(
            f'synctv_events_published_total{{instance="{instance(node)}", room="*", type="chat"}}',
            lambda v: v == 1,
            "the chat counted under room *",
        )
        own = f'{{instance="{instance(node)}"}}'
        assert await prometheus.query(f"synctv_connections_per_room{own}") == []
        assert await prometheus.query(f"synctv_connections_per_user{own}") == []
        series = prometheus.api(
            "series", **{"match[]": f'{{__name__=~"synctv_.+", instance="{instance(node)}"}}'}
        )
        assert series
        assert {labels.get("room", "*") for labels in series} == {"*"}, series
        assert not [labels for labels in series if "user" in labels], series


async def test_a_client_too_slow_for_its_room_is_counted_as_a_1013_close(
    serve_node,  # noqa: F811
    prometheus: PrometheusServer,  # noqa: F811
):
    node = serve_node(
        env={
            **UNLIMITED,
            "SYNCTV__WEBSOCKET__TRANSPORT_BUFFER_BYTES": "1024",
            "SYNCTV__WEBSOCKET__SEND_BACKLOG_BYTES": "1024",
        }
    )
    prometheus.scrape([instance(node)])
    slow_closes = f"synctv_connection_closes_total{selector(node, code='1013')}"
    closed_1013 = f'code="1013",node="{node.node_id}"'
    assert await prometheus.wait_value(slow_closes, lambda v: True, "the 1013 series") == 0
    async with http_client(node) as http:
        owner = await as_guest(http, "Olga")
        stalled_token = await as_guest(http, "Stan")
        room = await create_room(http, owner)
    big = "€" * 4000  # about 24 KB a chat frame, once escaped in JSON
    async with http_client(node) as http, room_client(node, room["id"], owner, "owner") as sender:
        stalled = await open_stalled_socket(node, room["id"], stalled_token)
        try:
            await sender.wait_for("presence", lambda frame: frame["viewer_count"] == 2)
            for _ in range(100):  # at most ~12 MB: far more than the kernel buffers hold
                for _ in range(5):
                    await sender.send({"type": "chat", "text": big})
                page = (await http.get("/metrics")).text
                if metric_value(page, "synctv_connection_closes_total", closed_1013):
                    break
            await prometheus.wait_value(slow_closes, lambda v: v == 1, "one 1013 close")
        finally:
            stalled.close()


def promtool(*args: str) -> str:
    """Run promtool in deploy/prometheus/; its output (fails on a non-zero exit)."""
    done = subprocess.run(
        [PROMTOOL, *args], cwd=PROMETHEUS_DIR, capture_output=True, text=True, timeout=60
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def alert_names() -> list[str]:
    groups = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())["groups"]
    return [rule["alert"] for group in groups for rule in group["rules"]]


def test_config_and_alert_rules_pass_promtool_checks_and_unit_tests():
    names = alert_names()
    assert f"SUCCESS: {len(names)} rules found" in promtool("check", "rules", "alerts.yml")
    assert "SUCCESS: 1 rule files found" in promtool("check", "config", "prometheus.yml")
    assert "SUCCESS" in promtool("test", "rules", "alerts_test.yml")


def test_every_alert_rule_has_a_unit_test():
    tests_text = (PROMETHEUS_DIR / "alerts_test.yml").read_text()
    untested = [name for name in alert_names() if f"alertname: {name}\n" not in tests_text]
    assert alert_names() and not untested, untested

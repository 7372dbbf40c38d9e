"""The real-Redis fixtures: faults on one server, Sentinel failover, Cluster pub/sub, cleanup."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
from redis.sentinel import Sentinel

from tests.support.redis_servers import (  # noqa: F401
    MASTER_NAME,
    RedisClusterSetup,
    RedisSentinelSetup,
    RedisServer,
    redis_cluster,
    redis_sentinel,
    redis_server,
    shared_redis_cluster,
)

MESSAGE_TIMEOUT = 5.0


def is_redis_process(pid):
    """True while `pid` is a live (not reaped) redis process."""
    try:
        return b"redis" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def accepts_connections(address):
    """True when something listens on `address`."""
    try:
        with socket.create_connection(address, timeout=0.5):
            return True
    except OSError:
        return False


def next_message(pubsub, kind):
    """The next pub/sub message of type `kind` (`subscribe`, `message`), within a deadline."""
    deadline = time.monotonic() + MESSAGE_TIMEOUT
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.1)
        if message is not None and message["type"] == kind:
            return message
    raise AssertionError(f"no {kind} message within {MESSAGE_TIMEOUT}s")


def test_killed_server_restarts_on_the_same_port_and_answers(redis_server):  # noqa: F811
    port, first_pid = redis_server.port, redis_server.pid

    redis_server.kill()
    refused = not accepts_connections(redis_server.address)
    redis_server.restart()

    assert refused
    assert not is_redis_process(first_pid)
    assert redis_server.port == port
    assert redis_server.pid != first_pid
    assert redis_server.url == f"redis://127.0.0.1:{port}/0"
    with redis_server.client() as client:
        assert client.ping() is True


def test_paused_server_times_out_and_answers_after_resume(redis_server):  # noqa: F811
    client = redis_server.client(socket_timeout=0.5)
    assert client.ping() is True

    redis_server.pause()
    with pytest.raises(redis.TimeoutError):
        client.ping()
    redis_server.resume()

    assert client.ping() is True
    client.close()


def test_sentinel_url_names_every_sentinel_and_leads_to_the_master(redis_sentinel):  # noqa: F811
    parts = urlsplit(redis_sentinel.url)
    addresses = [
        (host, int(port))
        for host, port in (entry.rsplit(":", 1) for entry in parts.netloc.split(","))
    ]

    found = Sentinel(addresses, socket_timeout=1.0).discover_master(MASTER_NAME)

    assert parts.scheme == "redis+sentinel"
    assert parts.path == f"/{MASTER_NAME}"
    assert addresses == redis_sentinel.sentinel_addresses
    assert len(addresses) == 3
    assert found == redis_sentinel.master.address


def test_sentinel_failover_promotes_the_replica(redis_sentinel):  # noqa: F811
    old_master, replica = redis_sentinel.master, redis_sentinel.replica
    assert redis_sentinel.current_master() == old_master.address

    promoted = redis_sentinel.fail_over_by_killing_master()

    assert promoted is replica
    assert redis_sentinel.current_master() == replica.address != old_master.address
    with replica.client() as client:
        assert client.set("written-after-failover", "yes") is True


def test_publish_on_one_cluster_node_reaches_subscribers_on_the_others(redis_cluster):  # noqa: F811
    publisher_node, *subscriber_nodes = redis_cluster.nodes
    subscribers = [node.client(socket_timeout=MESSAGE_TIMEOUT) for node in subscriber_nodes]
    pubsubs = [client.pubsub() for client in subscribers]
    for pubsub in pubsubs:
        pubsub.subscribe("synctv:room:fixture")
        next_message(pubsub, "subscribe")

    with publisher_node.client() as publisher:
        publisher.publish("synctv:room:fixture", "seek 42")

    for pubsub in pubsubs:
        assert next_message(pubsub, "message")["data"] == "seek 42"
        pubsub.close()
    for client in subscribers:
        client.close()


def test_killed_cluster_node_restarts_into_a_healthy_cluster(redis_cluster):  # noqa: F811
    node = redis_cluster.nodes[1]
    port = node.port

    node.kill()
    node.restart()

    assert node.port == port
    assert node.cluster_state() == "ok"
    assert redis_cluster.is_healthy()
    assert redis_cluster.url == f"redis://127.0.0.1:{redis_cluster.nodes[0].port}/0"


def test_every_process_is_gone_once_the_setups_stop(tmp_path):
    with RedisServer(tmp_path / "single").start() as server:
        server.kill()
        server.restart()
        server.pause()  # stopping a paused server must not hang or leave it behind
    with RedisSentinelSetup(tmp_path / "sentinel").start() as sentinel:
        pass
    with RedisClusterSetup(tmp_path / "cluster").start() as cluster:
        pass
    servers = [server, *sentinel.servers, *cluster.servers]

    pids = [pid for process in servers for pid in process.pid_history]

    assert len(pids) == 2 + 5 + 3  # the single server ran twice
    assert [pid for pid in pids if is_redis_process(pid)] == []
    assert [s.address for s in servers if accepts_connections(s.address)] == []

"""Daphne's passes over the connections, a slice at a time (synctv_project/rounds.py)."""

import asyncio
from types import SimpleNamespace

from synctv_project.rounds import Rounds, check_application


def test_a_round_visits_every_connection_once_in_bounded_slices():
    rounds = Rounds(slices=4)
    connections = {n: None for n in range(10)}

    slices = [rounds.next_slice(connections) for _ in range(4)]

    assert sorted(n for part in slices for n in part) == list(range(10))
    assert max(len(part) for part in slices) == 3


def test_connections_made_during_a_round_wait_for_the_next():
    rounds = Rounds(slices=2)
    connections = {"a": None, "b": None}
    first = rounds.next_slice(connections)
    connections["c"] = None

    second = rounds.next_slice(connections)
    third = rounds.next_slice(connections)

    assert sorted(first + second) == ["a", "b"]
    assert "c" in third


def server_with(details: dict) -> SimpleNamespace:
    protocol = object()
    return SimpleNamespace(
        connections={protocol: details}, application_close_timeout=10, protocol=protocol
    )


async def test_a_finished_application_of_a_closed_socket_is_forgotten():
    done = asyncio.get_running_loop().create_future()
    done.set_result(None)
    server = server_with({"application_instance": done, "disconnected": 1.0})

    check_application(server, server.protocol)

    assert server.connections == {}


async def test_an_application_outliving_its_socket_is_cancelled():
    running = asyncio.get_running_loop().create_future()
    server = server_with({"application_instance": running, "disconnected": 1.0})

    check_application(server, server.protocol)

    assert running.cancelled()


async def test_a_running_application_of_an_open_socket_is_left_alone():
    running = asyncio.get_running_loop().create_future()
    server = server_with({"application_instance": running})

    check_application(server, server.protocol)

    assert not running.done() and server.protocol in server.connections

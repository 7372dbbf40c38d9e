"""SocketInput, a socket's ASGI input queue under manage.py serve."""

import asyncio

from synctv_project.server import SocketInput


async def test_events_come_out_in_the_order_they_were_put():
    received = SocketInput()
    for n in range(3):
        received.put_nowait({"n": n})

    assert [(await received.get())["n"] for _ in range(3)] == [0, 1, 2]


async def test_a_waiting_get_wakes_when_an_event_is_put():
    received = SocketInput()
    waiting = asyncio.ensure_future(received.get())
    await asyncio.sleep(0)

    received.put_nowait({"type": "websocket.connect"})

    assert await asyncio.wait_for(waiting, 1) == {"type": "websocket.connect"}


async def test_a_cancelled_get_loses_nothing():
    received = SocketInput()
    waiting = asyncio.ensure_future(received.get())
    await asyncio.sleep(0)
    received.put_nowait({"n": 1})
    waiting.cancel()

    assert await asyncio.wait_for(received.get(), 1) == {"n": 1}

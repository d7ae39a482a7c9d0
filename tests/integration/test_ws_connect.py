"""Reading what trio-websocket already holds, without a schedule point per message."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

from collector.session.websocket import (
    PINNED_VERSION,
    PutWithoutYield,
    Target,
    fast_queue_note,
    open_websocket,
    queued_count,
    queued_message,
    quick_put_installed,
)


async def _serve(nursery: trio.Nursery, messages: list[str], close: trio.Event) -> int:
    async def handler(request: WebSocketRequest) -> None:
        ws = await request.accept()
        for message in messages:
            await ws.send_message(message)
        await close.wait()
        await ws.aclose()

    server = await nursery.start(serve_websocket, handler, "127.0.0.1", 0, None)
    return int(server.port)


async def test_queued_messages_come_in_order_without_a_schedule_point() -> None:
    close = trio.Event()
    async with trio.open_nursery() as nursery:
        port = await _serve(nursery, ["one", "two", "three"], close)
        ws = await open_websocket(nursery, Target(f"ws://127.0.0.1:{port}/ws", timeout=10))
        assert not isinstance(ws, str), ws
        with trio.fail_after(10):
            assert await ws.get_message() == "one"
            while queued_count(ws) < 2:  # both in
                await trio.sleep(0.01)
        with trio.testing.assert_no_checkpoints():
            assert [queued_message(ws), queued_message(ws), queued_message(ws)] == [
                "two",
                "three",
                None,
            ]
        assert queued_count(ws) == 0
        close.set()
        await ws.aclose()
        with pytest.raises(ConnectionClosed):
            queued_message(ws)
        nursery.cancel_scope.cancel()


async def test_a_connection_closed_by_the_server_raises_once_drained() -> None:
    close = trio.Event()
    close.set()  # the server says one thing and closes
    async with trio.open_nursery() as nursery:
        port = await _serve(nursery, ["last words"], close)
        ws = await open_websocket(nursery, Target(f"ws://127.0.0.1:{port}/ws", timeout=10))
        assert not isinstance(ws, str), ws
        with trio.fail_after(10):
            while ws.closed is None:
                await trio.sleep(0.01)
        assert queued_message(ws) == "last words"  # what came before the close is kept
        with pytest.raises(ConnectionClosed):
            queued_message(ws)
        nursery.cancel_scope.cancel()


async def test_the_reader_puts_without_a_yield_while_there_is_room_and_waits_when_full() -> None:
    send, receive = trio.open_memory_channel[str | bytes](2)
    put = PutWithoutYield(send)
    with trio.testing.assert_no_checkpoints():
        await put.send("a")
        await put.send("b")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(put.send, "c")  # the queue is full: this one waits
        await trio.testing.wait_all_tasks_blocked()
        assert receive.statistics().tasks_waiting_send == 1
        assert [receive.receive_nowait(), receive.receive_nowait()] == ["a", "b"]
    assert receive.receive_nowait() == "c"
    await put.aclose()
    with pytest.raises(trio.EndOfChannel):
        receive.receive_nowait()


async def test_a_session_connection_has_the_quick_put_installed() -> None:
    close = trio.Event()
    async with trio.open_nursery() as nursery:
        port = await _serve(nursery, [], close)
        ws = await open_websocket(nursery, Target(f"ws://127.0.0.1:{port}/ws", timeout=10))
        assert not isinstance(ws, str), ws
        assert quick_put_installed(ws)
        close.set()
        await ws.aclose()
        nursery.cancel_scope.cancel()


def test_the_private_queue_is_used_only_on_the_pinned_version() -> None:
    note = fast_queue_note()
    assert note["pinned"] == PINNED_VERSION == "0.12.2"
    assert note["fast_queue"] is (note["trio_websocket"] == PINNED_VERSION)
    assert note["fast_queue"] is True  # the installed version is the pinned one

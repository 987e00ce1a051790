"""The outbox: never blocks its caller, keeps order across a stall, bounds what waits."""

from __future__ import annotations

import asyncio

from realtime.sockets.outbox import Outbox


class Server:
    """An ASGI-like `send` that holds sends back while `writable` is clear, as uvicorn does."""

    def __init__(self) -> None:
        self.writable = asyncio.Event()
        self.writable.set()
        self.written: list[str] = []

    async def send(self, text: str) -> None:
        await self.writable.wait()
        if text == "boom":
            raise ConnectionResetError("client went away")
        self.written.append(text)


async def test_frames_go_out_at_once_while_the_client_keeps_up():
    server = Server()
    outbox = Outbox(server.send, limit=100, on_overflow=lambda: None)

    for text in ("a", "b", "c"):
        outbox.push(text)

    assert server.written == ["a", "b", "c"]  # no await needed: written synchronously


async def test_a_stalled_send_does_not_block_the_caller_and_order_is_kept():
    server = Server()
    outbox = Outbox(server.send, limit=100, on_overflow=lambda: None)
    outbox.push("a")
    server.writable.clear()

    # when: the client stops reading; the caller goes on pushing without waiting
    for text in ("b", "c", "d"):
        outbox.push(text)
    assert server.written == ["a"]
    assert outbox.backlog_bytes == 2  # "c" and "d"; "b" is the send in progress
    await asyncio.sleep(0.01)  # the stall lasts: the outbox waits for the server meanwhile

    # then: once it reads again, everything arrives in order
    server.writable.set()
    await outbox.flush()
    assert server.written == ["a", "b", "c", "d"]
    outbox.push("e")
    assert server.written[-1] == "e"  # back on the direct path


async def test_a_backlog_over_the_limit_drops_it_and_reports_once():
    server = Server()
    overflows: list[int] = []
    outbox = Outbox(server.send, limit=10, on_overflow=lambda: overflows.append(1))
    server.writable.clear()

    for _ in range(20):
        outbox.push("12345")

    assert overflows == [1]
    assert outbox.dead
    assert outbox.backlog_bytes == 0
    server.writable.set()
    await asyncio.sleep(0.01)
    assert server.written == []  # nothing sent after the client was given up on


async def test_a_failed_send_stops_the_outbox_without_raising():
    server = Server()
    outbox = Outbox(server.send, limit=100, on_overflow=lambda: None)

    outbox.push("boom")
    outbox.push("after")

    assert outbox.dead
    assert server.written == []


async def test_a_send_failing_after_a_stall_is_contained_too():
    server = Server()
    outbox = Outbox(server.send, limit=100, on_overflow=lambda: None)
    server.writable.clear()
    outbox.push("boom")
    outbox.push("after")

    server.writable.set()
    await outbox.flush()

    assert outbox.dead
    assert server.written == []


class FutureServer:
    """A `send` that answers with a future rather than a coroutine, as granian's does: done at
    once while the client keeps up, pending while it does not."""

    def __init__(self) -> None:
        self.stalled: list[tuple[str, asyncio.Future[None]]] = []
        self.written: list[str] = []
        self.writable = True

    def send(self, text: str) -> asyncio.Future[None]:
        future = asyncio.get_running_loop().create_future()
        if self.writable:
            self.written.append(text)
            future.set_result(None)
        else:
            self.stalled.append((text, future))
        return future

    def drain(self) -> None:
        self.writable = True
        for text, future in self.stalled:
            self.written.append(text)
            future.set_result(None)
        self.stalled.clear()


async def test_a_send_answered_with_a_future_keeps_order_across_a_stall():
    server = FutureServer()
    outbox = Outbox(server.send, limit=100, on_overflow=lambda: None)
    outbox.push("a")
    assert server.written == ["a"]  # a future already done: written, nothing waits

    # when: the client stops reading while more frames come
    server.writable = False
    for text in ("b", "c"):
        outbox.push(text)
    await asyncio.sleep(0.01)
    assert server.written == ["a"]

    # then: once it reads again, the rest follows in order
    server.drain()
    await outbox.flush()
    assert server.written == ["a", "b", "c"]
    assert not outbox.dead


async def test_a_send_future_that_failed_stops_the_outbox():
    loop = asyncio.get_running_loop()

    def failed(text: str) -> asyncio.Future[None]:
        future = loop.create_future()
        future.set_exception(ConnectionResetError("client went away"))
        return future

    outbox = Outbox(failed, limit=100, on_overflow=lambda: None)
    outbox.push("a")

    assert outbox.dead

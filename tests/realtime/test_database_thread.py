"""The sockets' database calls (`realtime.sockets.database.on_database_thread`)."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import Any

import pytest
from django.db import connection

from realtime.kernel import broadcast
from realtime.sockets.database import on_database_thread

# The thread's connection outlives each test, and Django checks it around every call.
pytestmark = pytest.mark.django_db(transaction=True)

WHO = contextvars.ContextVar("WHO", default="nobody")


@on_database_thread
def where(n: int, *, also: int = 0) -> tuple[int, int, str]:
    return threading.get_ident(), n + also, WHO.get()


async def test_calls_run_in_order_on_one_thread_off_the_loop_with_the_callers_context():
    WHO.set("alice")

    answers = await asyncio.gather(*(where(n, also=1) for n in range(20)))

    threads = {thread for thread, _, _ in answers}
    assert len(threads) == 1
    assert threading.get_ident() not in threads
    assert [n for _, n, _ in answers] == list(range(1, 21))
    assert {who for _, _, who in answers} == {"alice"}


async def test_an_exception_reaches_the_caller_and_the_thread_goes_on():
    @on_database_thread
    def fails() -> None:
        raise LookupError("no such room")

    with pytest.raises(LookupError, match="no such room"):
        await fails()
    assert (await where(1))[1] == 1


async def test_a_cancelled_caller_leaves_the_thread_serving_others():
    started, release = threading.Event(), threading.Event()

    @on_database_thread
    def slow() -> str:
        started.set()
        release.wait(5)
        return "late"

    waiting = asyncio.ensure_future(slow())
    await asyncio.to_thread(started.wait, 5)
    waiting.cancel()
    release.set()

    assert (await where(2))[1] == 2
    assert waiting.cancelled()


async def test_what_a_call_commits_is_sent_by_the_calling_loop_after_it(monkeypatch):
    sent: list[tuple[Any, int]] = []

    class RecordingLayer:
        async def group_send(self, group: str, event: dict[str, Any]) -> None:
            loop = asyncio.get_running_loop()
            sent.extend((loop, one["n"]) for one in broadcast.unbatched(event))

    monkeypatch.setattr(broadcast, "get_channel_layer", RecordingLayer)

    @on_database_thread
    def commit() -> list[Any]:
        for n in (1, 2):
            broadcast.publish_now("room.lobby", {"type": "room.message", "n": n})
        return list(sent)

    # then: nothing was sent from the database thread while it ran; this loop sent both after
    assert await commit() == []
    await asyncio.sleep(0.05)
    assert sent == [(asyncio.get_running_loop(), 1), (asyncio.get_running_loop(), 2)]


async def test_a_call_uses_the_database_on_its_own_connection():
    @on_database_thread
    def select() -> tuple[Any, int]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone()[0], id(connection.connection)

    one, used = await select()

    assert one == 1
    assert used != id(connection.connection)  # not the test thread's

"""Publishing after commit: in commit order, and never with the database thread waiting on Redis."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from realtime.kernel import broadcast


class StalledLayer:
    """A channel layer whose sends wait until the test lets Redis answer."""

    def __init__(self) -> None:
        self.answering = asyncio.Event()
        self.asked: list[int] = []
        self.sent: list[int] = []
        self.loops: set[asyncio.AbstractEventLoop] = set()  # where the sends ran
        self.sends = 0

    async def group_send(self, group: str, event: dict[str, Any]) -> None:
        self.loops.add(asyncio.get_running_loop())
        self.sends += 1
        numbers = [one["n"] for one in broadcast.unbatched(event)]
        self.asked += numbers
        await self.answering.wait()
        self.sent += numbers


@pytest.fixture
def layer(monkeypatch: pytest.MonkeyPatch) -> StalledLayer:
    stalled = StalledLayer()
    monkeypatch.setattr(broadcast, "get_channel_layer", lambda: stalled)
    return stalled


async def commit_from_this_loop(numbers: range) -> None:
    """Publish events numbered `numbers` from sync code run from this loop (as a socket's
    database call is)."""

    def commit() -> None:
        for n in numbers:
            broadcast.publish_now("room.lobby", {"type": "room.message", "n": n})

    await sync_to_async(commit, thread_sensitive=True)()


async def until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_database_thread_goes_on_while_redis_is_slow_and_events_keep_their_order(
    layer, caplog
):
    def commit_three() -> list[int]:
        for n in (1, 2, 3):
            broadcast.publish_now("room.lobby", {"type": "room.message", "n": n})
        return list(layer.sent)

    # when: sync code run from this loop (as a socket's database call is) publishes while
    # Redis does not answer (the layer answers only once the test says so, below)
    sent_when_it_returned = await sync_to_async(commit_three, thread_sensitive=True)()

    # then: it returned with nothing sent, so it never waited for Redis (a publish that
    # waits gives up after PUBLISH_TIMEOUT and logs the failure, which did not happen);
    # this loop sends the events, in order, once Redis answers
    assert sent_when_it_returned == []
    layer.answering.set()
    await until(lambda: layer.sent == [1, 2, 3])
    assert layer.loops == {asyncio.get_running_loop()}
    assert "broadcast to" not in caplog.text


async def test_events_that_wait_for_redis_go_out_together(layer):
    # when: three more events are committed while the first is stuck with Redis
    await commit_from_this_loop(range(1, 2))
    await until(lambda: layer.asked == [1])
    await commit_from_this_loop(range(2, 5))
    await asyncio.sleep(0.05)
    layer.answering.set()

    # then: those three go out in one message of the channel layer, in order
    await until(lambda: layer.sent == [1, 2, 3, 4])
    assert layer.sends == 2


async def test_a_full_backlog_drops_the_oldest_events(layer, monkeypatch, caplog):
    monkeypatch.setattr(broadcast, "MAX_PENDING", 3)  # this test's loop has a new publisher

    # when: the first event is stuck with Redis while six more are committed
    await commit_from_this_loop(range(1, 2))
    await until(lambda: layer.asked == [1])
    await commit_from_this_loop(range(2, 8))
    await asyncio.sleep(0.05)
    layer.answering.set()

    # then: the one in flight and the newest three go out; receivers repair the gap by seq
    await until(lambda: len(layer.sent) == 4)
    assert layer.sent == [1, 5, 6, 7]
    assert caplog.text.count("dropping the oldest events") == 1


def test_code_outside_any_event_loop_returns_once_the_event_is_sent(layer):
    layer.answering.set()  # an asyncio.Event may be set from here before the loop uses it

    broadcast.publish_now("room.lobby", {"type": "room.message", "n": 1})

    assert layer.sent == [1]


class SlowFirstLayer:
    """A channel layer whose first send takes a while (a slow round trip), the others none."""

    def __init__(self) -> None:
        self.sent: list[int] = []

    async def group_send(self, group: str, event: dict[str, Any]) -> None:
        numbers = [one["n"] for one in broadcast.unbatched(event)]
        if not self.sent and 1 in numbers:
            await asyncio.sleep(0.2)
        self.sent += numbers


def test_an_event_sent_from_a_thread_goes_out_after_what_publish_soon_queued_before_it(
    monkeypatch,
):
    layer = SlowFirstLayer()
    monkeypatch.setattr(broadcast, "get_channel_layer", lambda: layer)

    # given: a worker's output writer handed a round's events to the publishing loop
    broadcast.publish_soon([("job.1", {"type": "job.output", "n": n}) for n in (1, 2, 3)])
    # when: the job's final state is published from another thread right after
    broadcast.publish_now("job.1", {"type": "job.update", "n": 4})

    # then: it returned once all four were sent, and the final state went out last
    assert layer.sent == [1, 2, 3, 4]

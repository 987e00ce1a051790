"""The hub notices lost deliveries, and has its feeds catch up once deliveries resume.

A layer that reports its lost connections (the RabbitMQ one) is believed even when no
heartbeat went missing: RabbitMQ may be back before the next one, but the queue that held
this process's events went with the connection.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from realtime.sockets import hub as hub_module
from realtime.sockets.feed import CHECK, Feed
from realtime.sockets.hub import HEARTBEAT, Hub


class MemoryLayer:
    """Groups in this process. While not `delivering` what is sent is dropped; `lost` counts
    connections lost, as the RabbitMQ layer's `lost_connections` does."""

    def __init__(self) -> None:
        self.groups: defaultdict[str, set[str]] = defaultdict(set)
        self.queues: dict[str, asyncio.Queue[dict[str, Any]]] = {}
        self.delivering = True
        self.lost = 0
        self.heartbeats = 0

    async def new_channel(self, prefix: str = "") -> str:
        name = f"{prefix}{len(self.queues)}"
        self.queues[name] = asyncio.Queue()
        return name

    async def group_add(self, group: str, channel: str) -> None:
        self.groups[group].add(channel)

    async def group_discard(self, group: str, channel: str) -> None:
        self.groups[group].discard(channel)

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        self.heartbeats += message.get("type") == HEARTBEAT
        if self.delivering:
            for channel in self.groups[group]:
                self.queues[channel].put_nowait(message)

    async def receive(self, channel: str) -> dict[str, Any]:
        return await self.queues[channel].get()

    def lost_connections(self) -> int:
        return self.lost


class RecordingFeed(Feed[object]):
    """Keeps the type of each event it handles."""

    def __init__(self, group: str) -> None:
        super().__init__(group)
        self.handled: list[str] = []

    @classmethod
    async def open(cls, group: str) -> RecordingFeed:
        return cls(group)

    async def handle(self, event: dict[str, Any]) -> None:
        self.handled.append(event["type"])


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


@pytest.fixture
def layer(settings, monkeypatch: pytest.MonkeyPatch) -> MemoryLayer:
    settings.SWITCHBOARD_HEARTBEAT = 0.02
    settings.SWITCHBOARD_PRESENCE_REFRESH = 3600
    memory = MemoryLayer()
    monkeypatch.setattr(hub_module, "get_channel_layer", lambda: memory)
    return memory


@pytest.fixture
async def feed(layer: MemoryLayer) -> AsyncIterator[RecordingFeed]:
    """The feed of a group the hub is in, with its heartbeats flowing."""
    hub = Hub()
    await hub.join("room.lobby", object(), RecordingFeed.open)
    joined = hub.feeds["room.lobby"]
    assert isinstance(joined, RecordingFeed)
    await until(lambda: hub.heard >= 2)
    yield joined
    joined.stop()
    for task in hub._tasks:
        task.cancel()
    await asyncio.gather(*hub._tasks, joined.task, return_exceptions=True)


async def test_a_connection_lost_between_two_heartbeats_has_the_feeds_catch_up(layer, feed):
    # when: the layer reports a lost connection, though every heartbeat came back
    layer.lost += 1

    # then: the feed is told to re-read what it may have missed, once
    await until(lambda: CHECK in feed.handled)
    await until(lambda: layer.heartbeats >= 10)
    assert feed.handled.count(CHECK) == 1


async def test_the_feeds_catch_up_only_once_deliveries_resume(layer, feed):
    # given: the connection is lost and deliveries stay down for several heartbeats
    layer.delivering = False
    layer.lost += 1
    sent = layer.heartbeats
    await until(lambda: layer.heartbeats >= sent + 5)
    assert CHECK not in feed.handled  # a catch-up now would miss what is still being lost

    # when: deliveries resume
    layer.delivering = True

    # then: one catch-up, after a heartbeat came back
    await until(lambda: CHECK in feed.handled)
    await until(lambda: layer.heartbeats >= sent + 15)
    assert feed.handled.count(CHECK) == 1

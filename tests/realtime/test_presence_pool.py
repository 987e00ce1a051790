"""A burst of sockets joining rooms shares a few Redis connections instead of opening one each."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from redis import Redis

from chat import presence
from config.redis_server import PrivateRedis


async def test_a_burst_of_presence_writes_waits_for_the_bounded_pool(settings, tmp_path: Path):
    # given: a Redis of this test's own, so every connection it counts is presence's
    redis = PrivateRedis(tmp_path / "redis").start()
    try:
        settings.REDIS_URL = redis.url
        settings.SWITCHBOARD_REDIS_CONNECTIONS = 5
        counter: Any = Redis.from_url(redis.url)

        # when: a hundred sockets enter rooms at the same moment
        await asyncio.gather(
            *(presence.enter(f"room-{n % 3}", f"hub.{n}", None) for n in range(100))
        )

        # then: at most 5 connections were opened (plus the counter's own), and every entry
        # was written (each anonymous socket counts once)
        assert int(counter.info("clients")["connected_clients"]) <= 5 + 1
        rooms = [await presence.snapshot(f"room-{n}") for n in range(3)]
        assert [room.anonymous for room in rooms] == [34, 33, 33]
        await presence.redis_client().aclose()
        counter.close()
    finally:
        redis.stop()

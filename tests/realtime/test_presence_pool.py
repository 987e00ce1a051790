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

        # then: every entry is written, over at most 5 connections (plus the counter's own)
        assert sum([(await presence.snapshot(f"room-{n}")).count for n in range(3)]) == 100
        assert int(counter.info("clients")["connected_clients"]) <= 5 + 1
        await presence.redis_client().aclose()
        counter.close()
    finally:
        redis.stop()

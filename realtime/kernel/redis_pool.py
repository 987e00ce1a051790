"""One bounded Redis client per event loop, for presence and socket accounting."""

from __future__ import annotations

import asyncio

from django.conf import settings
from redis.asyncio import BlockingConnectionPool, Redis

_clients: dict[asyncio.AbstractEventLoop, Redis] = {}


def redis_client() -> Redis:
    """This event loop's Redis client (presence and socket accounting share it)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        # A bounded pool: a thousand sockets joining at once queue for a few dozen connections
        # instead of each opening (and the pool then keeping) one of its own.
        pool = BlockingConnectionPool.from_url(
            settings.REDIS_URL, max_connections=settings.SWITCHBOARD_REDIS_CONNECTIONS, timeout=5
        )
        client = _clients[loop] = Redis(connection_pool=pool)
    return client

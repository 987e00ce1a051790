"""Redis for the app's own reads and writes: one bounded client per event loop (presence and
socket accounting), and one connection per thread for the sync reads of REST requests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from redis import ConnectionPool
from redis.asyncio import BlockingConnectionPool, Redis
from redis.connection import ConnectionInterface
from redis.exceptions import ConnectionError as RedisConnectionError

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


# Sync reads: a REST request's thread keeps a connection of its own.
SYNC_TIMEOUT = 2.0
_threads = threading.local()


def thread_commands(commands: Sequence[tuple[Any, ...]], *, url: str | None = None) -> list[Any]:
    """Run `commands` (`("ZRANGEBYSCORE", key, low, high)`, ...) in one round trip on this
    thread's own connection to `url` (REDIS_URL by default); their replies, in order, as Redis
    sends them (bytes, no parsing by command).

        A client of redis-py takes a connection from its pool and gives it back for each call:
        about 40 µs of CPU here around a 50 µs round trip, paid by each REST read of presence.
        A request's thread keeps one connection instead (at most SWITCHBOARD_HTTP_THREADS per
        process). A connection that went stale (Redis restarted) is reconnected once; any other
        failure raises `RedisError` with the connection dropped, to be made again next time.
    """
    connection = _thread_connection(url or settings.REDIS_URL)
    packed = connection.pack_commands(commands)
    for attempt in (1, 2):
        try:
            connection.send_packed_command(packed)
            return [connection.read_response() for _ in commands]
        except RedisConnectionError:
            connection.disconnect()
            if attempt == 2:
                raise
        except BaseException:
            connection.disconnect()  # a reply may be left unread: never reuse it
            raise
    raise AssertionError("unreachable")


def _thread_connection(url: str) -> ConnectionInterface:
    connections: dict[str, ConnectionInterface] | None = getattr(_threads, "connections", None)
    if connections is None:
        connections = _threads.connections = {}
    connection = connections.get(url)
    if connection is None:
        pool = ConnectionPool.from_url(
            url, socket_timeout=SYNC_TIMEOUT, socket_connect_timeout=SYNC_TIMEOUT
        )
        connection = connections[url] = pool.make_connection()
    return connection

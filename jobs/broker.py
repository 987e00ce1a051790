"""A fix for the Redis broker transport, so a worker outlives a Redis restart.

Celery 5.7 closes the broker connection as soon as it is lost. Closing a Redis channel puts
its unacknowledged messages back, which needs a connection again: kombu 5.7 then reads the
settings of a connection it has already let go (`None`) and raises AttributeError, which is
not a connection error, so the worker stops with "Unrecoverable error" instead of
reconnecting. Raising a connection error there instead lets the close finish and the worker
reconnect. The messages that could not be put back stay in Redis's unacknowledged set (the
visibility timeout restores them) or were lost with Redis; either way the job rows still say
`scheduled`/`queued`, and the dispatcher sends them again (`JOBS_REDISPATCH_AFTER`).
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError

_original_connparams = getattr(kombu_redis.Channel, "_connparams")  # noqa: B009 - untyped


def _connparams(self: Any, asynchronous: bool = False) -> Any:
    if self.connection.client is None:
        raise RedisConnectionError("The broker connection is closed.")
    return _original_connparams(self, asynchronous)


def redis_transport_patch() -> None:
    """Install the fix (idempotent); called when the jobs app is ready."""
    setattr(kombu_redis.Channel, "_connparams", _connparams)  # noqa: B010 - untyped

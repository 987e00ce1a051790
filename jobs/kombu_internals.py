"""A fix for kombu's Redis broker transport, so a worker outlives a Redis restart.

The only module that touches kombu's private names. Celery 5.7 closes the broker connection
as soon as it is lost. Closing a Redis channel puts its unacknowledged messages back, which
needs a connection again: kombu 5.7 then reads the settings of a connection it has already
let go (`None`) and raises AttributeError, which is not a connection error, so the worker
stops with "Unrecoverable error" instead of reconnecting. Raising a connection error there
instead lets the close finish and the worker reconnect. The messages that could not be put
back stay in Redis's unacknowledged set (the visibility timeout restores them) or were lost
with Redis; either way the job rows still say `scheduled`/`queued`, and the dispatcher sends
them again (`JOBS_REDISPATCH_AFTER`).

It relies on the private `kombu.transport.redis.Channel._connparams(self, asynchronous)`,
where each new Redis connection of a channel reads its settings from
`self.connection.client`: the kombu `Connection`, which kombu sets to `None` when it lets
the connection go. A `redis.exceptions.ConnectionError` is one of the transport's
`connection_errors`, which the worker recovers from.

Checked against kombu 5.7.0 (with Celery 5.7). The jobs app runs `check()`, then
`install_redis_reconnect_fix()`, when it is ready.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError

from realtime.kernel.dependency_checks import Reliance

RELIANCE = Reliance("kombu", "worker-reconnect fix (jobs.kombu_internals)", "5.7.x")
WHERE = "kombu.transport.redis.Channel"

_installed: list[Callable[..., Any]] = []  # the replacement, once installed


def _kombu_connparams() -> Callable[..., Any]:
    """kombu's own `Channel._connparams` (the one the fix wraps, once installed)."""
    channel = RELIANCE.attribute(kombu_redis, "Channel", "kombu.transport.redis")
    method: Callable[..., Any] = RELIANCE.attribute(channel, "_connparams", WHERE)
    return inspect.unwrap(method) if method in _installed else method


def check() -> None:
    """Raise `DependencyChanged` unless kombu's Redis channel still works as the fix expects."""
    connparams = _kombu_connparams()
    RELIANCE.parameters(connparams, ("self", "asynchronous"), f"{WHERE}._connparams")
    RELIANCE.uses(connparams, ("connection", "client"), f"{WHERE}._connparams")
    transport = RELIANCE.attribute(kombu_redis, "Transport", "kombu.transport.redis")
    errors = RELIANCE.attribute(transport, "connection_errors", "kombu.transport.redis.Transport")
    if not any(issubclass(RedisConnectionError, error) for error in errors):
        raise RELIANCE.changed(
            "redis.exceptions.ConnectionError is not among"
            " kombu.transport.redis.Transport.connection_errors"
        )


def install_redis_reconnect_fix() -> None:
    """Wrap `Channel._connparams` (once per process; later calls do nothing)."""
    if _installed:
        return
    original = _kombu_connparams()

    @functools.wraps(original)
    def connparams(self: Any, asynchronous: bool = False) -> Any:
        if self.connection.client is None:
            raise RedisConnectionError("The broker connection is closed.")
        return original(self, asynchronous)

    _installed.append(connparams)
    setattr(kombu_redis.Channel, "_connparams", connparams)  # noqa: B010 - not in the stubs

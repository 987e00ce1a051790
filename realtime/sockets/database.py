"""The sockets' database calls: one thread of the process runs them, reached without asgiref.

Channels' `database_sync_to_async` goes through asgiref's `SyncToAsync`: a
`concurrent.futures.Future` (with its condition and lock), an executor chosen for the
calling context, a future chained back onto the loop. That costs about 60 µs of CPU per
call here, against 16 µs for a queue and `call_soon_threadsafe`, on the path of every
handshake, subscribe and replay. `on_database_thread` keeps what `database_sync_to_async`
does around each call (Django's `close_old_connections` before and after, the caller's
context variables) and runs the calls, in the order they come, on one thread with its own
database connection, as asgiref's thread-sensitive executor did.

What a call commits is announced by the calling loop when the call comes back, after
everything the loop sent before (`broadcast.held`): the database thread never waits on Redis.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import os
import queue
import threading
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from django.db import close_old_connections

from realtime.kernel import broadcast

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

Call = tuple[
    Callable[..., Any],
    tuple[Any, ...],
    dict[str, Any],
    contextvars.Context,
    asyncio.AbstractEventLoop,
    asyncio.Future[Any],
]


def on_database_thread(function: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """`function`, awaited from an event loop, run on the process's database thread."""

    @functools.wraps(function)
    async def call(*args: P.args, **kwargs: P.kwargs) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        _calls().put((function, args, kwargs, contextvars.copy_context(), loop, future))
        return await future

    return call


_lock = threading.Lock()
_queue: queue.SimpleQueue[Call] | None = None


def _calls() -> queue.SimpleQueue[Call]:
    """The database thread's queue, the thread started with the first call."""
    global _queue
    if _queue is None:
        with _lock:
            if _queue is None:
                calls: queue.SimpleQueue[Call] = queue.SimpleQueue()
                threading.Thread(
                    target=_serve, args=(calls,), name="socket-database", daemon=True
                ).start()
                _queue = calls
    return _queue


def _forget_after_fork() -> None:
    global _queue
    _queue = None  # the thread did not survive the fork; the next call starts one


os.register_at_fork(after_in_child=_forget_after_fork)


def _serve(calls: queue.SimpleQueue[Call]) -> None:
    while True:
        function, args, kwargs, context, loop, future = calls.get()
        result: Any = None
        error: BaseException | None = None
        with broadcast.held() as events:
            try:
                close_old_connections()
                result = context.run(function, *args, **kwargs)
            except BaseException as exc:  # handed to the caller, as asgiref does
                error = exc
            finally:
                try:
                    close_old_connections()
                except Exception:  # the next call's check closes it again; the thread goes on
                    logger.exception("closing the database thread's old connections failed")
        try:
            loop.call_soon_threadsafe(_settle, future, result, error, events)
        except RuntimeError:  # the caller's loop has closed: no one is waiting
            logger.debug("database call answered after its loop closed")


def _settle(
    future: asyncio.Future[Any],
    result: Any,
    error: BaseException | None,
    events: list[tuple[str, dict[str, Any]]],
) -> None:
    """On the caller's loop: announce what the call committed, then answer the caller."""
    broadcast.publish_from_loop(events)
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)

"""The sockets' posts, written in batches: posts that arrive together commit together.

A `chat.send` used to be its own trip to the database thread and its own transaction, so a
burst of posts queued one by one behind that thread, each paying for a transaction of its
own. Here posts wait in one queue; a writer lane takes everything waiting (up to
`MAX_BATCH`) and hands it to `chat.services.messages_post`, which writes it in one
transaction. While a lane writes, new posts gather for the next batch: group commit.

SQLite has one writer at a time, so it gets one lane (a second would only wait for the
lock); PostgreSQL locks per room, so posts to different rooms commit in parallel on
`SWITCHBOARD_POST_LANES` lanes. Each lane is a thread with its own database connection,
apart from the thread that serves the sockets' reads. A lane's messages are announced by
the loop when the batch comes back, after its commit, in commit order.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import queue
import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from django.conf import settings
from django.db import connection

from chat.errors import ChatError
from chat.services import Post, PostResult, messages_post
from realtime.kernel import broadcast

logger = logging.getLogger(__name__)

# Posts in one transaction at most: a batch stays a few milliseconds of work.
MAX_BATCH = 64

R = TypeVar("R")


Outcomes = list[PostResult | ChatError]
Events = list[tuple[str, dict[str, Any]]]


def _write(posts: list[Post]) -> tuple[Outcomes, Events]:
    """In a lane: write the batch; its outcomes, and the events its commit announces."""
    _keep_connection_if_sound()
    with broadcast.held() as events:
        return messages_post(posts), events


def _keep_connection_if_sound() -> None:
    """A lane keeps its connection from batch to batch (on PostgreSQL, one of the pool's)
    unless a batch failed on it and it no longer answers; then the next one connects anew.

    Unlike requests, which give theirs back after each one (CONN_MAX_AGE): a lane is a
    writer for the life of the process, and fetching and checking a pooled connection for
    every batch cost more than many a batch.
    """
    if connection.connection is not None and connection.errors_occurred:
        if not connection.is_usable():
            connection.close()
        connection.errors_occurred = False


class PostQueue:
    """One event loop's posts, written by at most `lanes` batches at a time."""

    def __init__(self, lanes: Lanes) -> None:
        self.lanes = lanes
        self.waiting: deque[tuple[Post, asyncio.Future[PostResult | ChatError]]] = deque()
        self.writing = 0

    async def post(self, post: Post) -> PostResult | ChatError:
        """Write `post` with whatever else is waiting: its result or the rule that refused it."""
        future: asyncio.Future[PostResult | ChatError] = asyncio.get_running_loop().create_future()
        self.waiting.append((post, future))
        if self.writing < self.lanes.count:
            self._start_batch()
        return await future

    def _start_batch(self) -> None:
        batch = [self.waiting.popleft() for _ in range(min(MAX_BATCH, len(self.waiting)))]
        self.writing += 1
        # Straight to a lane (no sync_to_async, no executor: one queue put, one callback back
        # onto this loop); the lane keeps what its commit announces, and this loop sends it.
        self.lanes.run(
            _write,
            [post for post, _ in batch],
            lambda written, error: self._finished(batch, written, error),
        )

    def _finished(
        self,
        batch: list[tuple[Post, asyncio.Future[PostResult | ChatError]]],
        written: tuple[Outcomes, Events] | None,
        error: BaseException | None,
    ) -> None:
        self.writing -= 1
        outcomes: list[PostResult | ChatError | BaseException]
        if error is None:
            assert written is not None  # a lane answers with its result or its error
            results, events = written
            broadcast.publish_from_loop(events)
            outcomes = list(results)
        else:  # the database failed the whole batch: each post gets the error
            outcomes = [error] * len(batch)
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():  # its socket went away meanwhile
                continue
            if isinstance(outcome, ChatError) or not isinstance(outcome, BaseException):
                future.set_result(outcome)
            else:
                future.set_exception(outcome)
        if self.waiting and self.writing < self.lanes.count:
            self._start_batch()


Done = Callable[[Any, BaseException | None], None]
Work = tuple[Callable[[Any], Any], Any, asyncio.AbstractEventLoop, Done]


class Lanes:
    """The process's post lanes: `count` threads that take work from one queue, each with its
    own database connection, and answer on the loop that gave it.

    A `ThreadPoolExecutor` reached by `run_in_executor` cost a post about 20% of its event
    loop time (a `concurrent.futures.Future` with its condition, chained to an asyncio future);
    this is a queue put one way and `call_soon_threadsafe` the other, as the sockets' database
    thread does (`realtime.sockets.database`).
    """

    def __init__(self, count: int) -> None:
        self.count = count
        self._work: queue.SimpleQueue[Work] = queue.SimpleQueue()
        for number in range(count):
            threading.Thread(target=self._serve, name=f"posts_{number}", daemon=True).start()

    def run(self, function: Callable[[Any], Any], argument: Any, done: Done) -> None:
        """`function(argument)` on a lane; then `done(result, error)` on the calling loop."""
        self._work.put((function, argument, asyncio.get_running_loop(), done))

    async def call(self, function: Callable[[], R]) -> R:
        """`function()` on a lane, awaited (tests use it to reach a lane's connection)."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self.run(lambda _: function(), None, functools.partial(_answer, future))
        return await future

    def _serve(self) -> None:
        while True:
            function, argument, loop, done = self._work.get()
            result: Any = None
            error: BaseException | None = None
            try:
                result = function(argument)
            except BaseException as exc:  # handed to the loop: each post of the batch gets it
                error = exc
            try:
                loop.call_soon_threadsafe(done, result, error)
            except RuntimeError:  # the caller's loop has closed: no one is waiting
                logger.debug("post batch answered after its loop closed")


def _answer(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


_queue: tuple[asyncio.AbstractEventLoop, PostQueue] | None = None
_queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, PostQueue] = (
    weakref.WeakKeyDictionary()
)
_lanes: dict[str, object] = {}
_lanes_lock = threading.Lock()


def post_queue() -> PostQueue:
    """The running loop's post queue, made on first use; the lanes are the process's."""
    global _queue
    loop = asyncio.get_running_loop()
    if _queue is not None and _queue[0] is loop:  # a server process runs one loop
        return _queue[1]
    found = _queues.get(loop)
    if found is None:
        found = _queues[loop] = PostQueue(post_lanes())
    _queue = (loop, found)
    return found


def post_lanes() -> Lanes:
    """The process's post lanes, started on first use (and again in a forked child)."""
    with _lanes_lock:
        if _lanes.get("pid") != os.getpid():  # none yet, or inherited across a fork
            count = 1 if settings.SQLITE else settings.SWITCHBOARD_POST_LANES
            _lanes.update(pid=os.getpid(), lanes=Lanes(count))
        lanes = _lanes["lanes"]
        assert isinstance(lanes, Lanes)
        return lanes

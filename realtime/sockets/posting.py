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
import logging
import os
import threading
import weakref
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.db import connection

from chat.errors import ChatError
from chat.services import Post, PostResult, messages_post
from realtime.kernel import broadcast

logger = logging.getLogger(__name__)

# Posts in one transaction at most: a batch stays a few milliseconds of work.
MAX_BATCH = 64


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

    def __init__(self, lanes: int, executor: ThreadPoolExecutor) -> None:
        self.lanes = lanes
        self.executor = executor
        self.waiting: deque[tuple[Post, asyncio.Future[PostResult | ChatError]]] = deque()
        self.writing = 0

    async def post(self, post: Post) -> PostResult | ChatError:
        """Write `post` with whatever else is waiting: its result or the rule that refused it."""
        future: asyncio.Future[PostResult | ChatError] = asyncio.get_running_loop().create_future()
        self.waiting.append((post, future))
        if self.writing < self.lanes:
            self._start_batch()
        return await future

    def _start_batch(self) -> None:
        batch = [self.waiting.popleft() for _ in range(min(MAX_BATCH, len(self.waiting)))]
        self.writing += 1
        # Straight to the lane (no sync_to_async: one hand-over each way, no context copy);
        # the lane keeps what its commit announces, and this loop sends it on return.
        written = asyncio.get_running_loop().run_in_executor(
            self.executor, _write, [post for post, _ in batch]
        )
        written.add_done_callback(lambda done: self._finished(batch, done))

    def _finished(
        self,
        batch: list[tuple[Post, asyncio.Future[PostResult | ChatError]]],
        done: asyncio.Future[tuple[Outcomes, Events]],
    ) -> None:
        self.writing -= 1
        error = asyncio.CancelledError() if done.cancelled() else done.exception()
        outcomes: list[PostResult | ChatError | BaseException]
        if error is None:
            written, events = done.result()
            broadcast.publish_from_loop(events)
            outcomes = list(written)
        else:  # the database failed the whole batch: each post gets the error
            outcomes = [error] * len(batch)
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():  # its socket went away meanwhile
                continue
            if isinstance(outcome, ChatError) or not isinstance(outcome, BaseException):
                future.set_result(outcome)
            else:
                future.set_exception(outcome)
        if self.waiting and self.writing < self.lanes:
            self._start_batch()


_queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, PostQueue] = (
    weakref.WeakKeyDictionary()
)
_lanes: dict[str, object] = {}
_lanes_lock = threading.Lock()


def post_queue() -> PostQueue:
    """The running loop's post queue, made on first use; the lanes are the process's."""
    loop = asyncio.get_running_loop()
    queue = _queues.get(loop)
    if queue is None:
        queue = _queues[loop] = PostQueue(_lane_count(), post_lanes())
    return queue


def _lane_count() -> int:
    return 1 if settings.SQLITE else settings.SWITCHBOARD_POST_LANES


def post_lanes() -> ThreadPoolExecutor:
    """The process's post lanes: threads that write batches, each with its own connection."""
    lanes = _lane_count()
    with _lanes_lock:
        if _lanes.get("pid") != os.getpid():  # none yet, or inherited across a fork
            executor = ThreadPoolExecutor(max_workers=lanes, thread_name_prefix="posts")
            _lanes.update(pid=os.getpid(), executor=executor)
        lane_executor = _lanes["executor"]
        assert isinstance(lane_executor, ThreadPoolExecutor)
        return lane_executor

"""Log files followed in this process (`log:<name>`): one tailer per file, however many sockets.

The first socket to subscribe to a log starts its feed, a task that reads what was appended to
the file every `SWITCHBOARD_TAIL_POLL` seconds (in a thread: the event loop never waits on the
file system) and sends the lines to every subscriber; the last one to leave stops it, and the
file is closed. No channel layer is involved: each server process follows the file itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.conf import settings

from realtime.logs.selectors import LogFile
from realtime.logs.tail import Line, LogTail, Step

from .subscription import Subscription, deliver

logger = logging.getLogger(__name__)

# A frame carries at most this many lines, and stops taking more past this many characters.
FRAME_LINES = 200
FRAME_CHARS = 64 * 1024
# Threads of a server process that read log files, shared by all its feeds.
TAIL_THREADS = 2

Result = TypeVar("Result")


def log_lines_frames(channel: str, lines: list[Line]) -> list[str]:
    """The `log.lines` frames (as text) that carry these lines, in order."""
    frames: list[str] = []
    batch: list[dict[str, Any]] = []
    size = 0
    for line in lines:
        batch.append({"text": line.text, "offset": line.offset, "cut": line.cut})
        size += len(line.text)
        if len(batch) >= FRAME_LINES or size >= FRAME_CHARS:
            frames.append(_frame(channel, batch))
            batch, size = [], 0
    if batch:
        frames.append(_frame(channel, batch))
    return frames


def _frame(channel: str, lines: list[dict[str, Any]]) -> str:
    return json.dumps({"type": "log.lines", "channel": channel, "lines": lines})


def lines_after(step: Step, offset: int) -> tuple[list[Line], int | None]:
    """A step's lines that end past `offset`, and the offset still to skip through, if any.

    Offsets of lines from a new file (`step.reset_at` on) are not comparable: all are new.
    """
    old = step.lines if step.reset_at is None else step.lines[: step.reset_at]
    kept = [line for line in old if line.offset > offset]
    if step.reset_at is not None:
        return kept + step.lines[step.reset_at :], None
    return kept, None if kept else offset


class LogFeed:
    """One log file in this process, for every socket subscribed to it."""

    def __init__(self, log: LogFile) -> None:
        self.name = log.name
        self.channel = log.channel
        self.tail = LogTail(log.path, line_max=settings.SWITCHBOARD_TAIL_LINE_MAX)
        self.subscriptions: set[Subscription] = set()  # joined, or joining
        # Those that get the lines read, each with the offset up to which it has them already.
        self.receiving: dict[Subscription, int | None] = {}
        self.joining: deque[tuple[Subscription, int | None, asyncio.Future[int]]] = deque()
        self.wake = asyncio.Event()
        self.failure: str | None = None
        self.task = asyncio.create_task(self._run(), name=f"log-feed:{log.name}")

    async def join(self, subscription: Subscription, since: int | None) -> int:
        """The lines after `since` (else those appended from now on) go to `subscription`.

        They wait in it until it goes live. Returns the offset they start from (the `seq` of
        `subscribed`).
        """
        joined: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.subscriptions.add(subscription)
        self.joining.append((subscription, since, joined))
        self.wake.set()
        return await joined

    def leave(self, subscription: Subscription) -> None:
        self.subscriptions.discard(subscription)
        self.receiving.pop(subscription, None)

    def stop(self) -> None:
        """The last subscriber left: stop reading (the file is closed)."""
        self.task.cancel()

    async def _run(self) -> None:
        try:
            while True:
                self.wake.clear()
                step = await self._step()
                if step.lines:
                    self._fan_out(step)
                # Between two steps, so that a newcomer's older lines and the new ones meet.
                while self.joining:
                    await self._admit(*self.joining.popleft())
                if step.more:
                    continue
                with contextlib.suppress(TimeoutError):  # nothing asked: time to look again
                    await asyncio.wait_for(self.wake.wait(), settings.SWITCHBOARD_TAIL_POLL)
        finally:
            self.tail.close()

    async def _step(self) -> Step:
        try:
            step = await _in_thread(self.tail.step)
        except OSError as exc:  # unreadable for now (permissions, not a file): tried again
            if str(exc) != self.failure:
                logger.warning("log %s cannot be read: %s", self.name, exc)
            self.failure = str(exc)
            return Step()
        except Exception:
            logger.exception("log %s: reading failed", self.name)
            return Step()
        if self.failure is not None:
            logger.warning("log %s can be read again", self.name)
            self.failure = None
        return step

    async def _admit(
        self, subscription: Subscription, since: int | None, joined: asyncio.Future[int]
    ) -> None:
        if subscription not in self.subscriptions or joined.done():
            joined.cancel()  # its socket went away before it was admitted
            return
        try:
            resume = await _in_thread(self.tail.resume, since, settings.SWITCHBOARD_TAIL_REPLAY)
        except Exception as exc:
            joined.set_exception(exc)
            return
        if subscription not in self.subscriptions:
            joined.cancel()
            return
        for text in log_lines_frames(self.channel, resume.lines):
            deliver(subscription, None, text)
        self.receiving[subscription] = resume.skip_through
        joined.set_result(resume.start)

    def _fan_out(self, step: Step) -> None:
        frames: list[str] | None = None  # encoded once for all who had none of these lines
        for subscription, offset in list(self.receiving.items()):
            if offset is None:
                if frames is None:
                    frames = log_lines_frames(self.channel, step.lines)
                texts = frames
            else:
                lines, self.receiving[subscription] = lines_after(step, offset)
                texts = log_lines_frames(self.channel, lines)
            for text in texts:
                deliver(subscription, None, text)


class LogFeeds:
    """This process's log feeds, by name: the first subscriber starts one, the last stops it."""

    def __init__(self) -> None:
        self.feeds: dict[str, LogFeed] = {}

    async def join(self, log: LogFile, subscription: Subscription, since: int | None) -> int:
        """Subscribe to a log's lines (see `LogFeed.join`)."""
        feed = self.feeds.get(log.name)
        if feed is None:
            feed = self.feeds[log.name] = LogFeed(log)
        try:
            return await feed.join(subscription, since)
        except BaseException:
            self.leave(log.name, subscription)
            raise

    def leave(self, name: str, subscription: Subscription) -> None:
        feed = self.feeds.get(name)
        if feed is None:
            return
        feed.leave(subscription)
        if not feed.subscriptions:
            del self.feeds[name]
            feed.stop()


_feeds: dict[asyncio.AbstractEventLoop, LogFeeds] = {}


def get_log_feeds() -> LogFeeds:
    """The log feeds of the running event loop (one set per server process)."""
    loop = asyncio.get_running_loop()
    feeds = _feeds.get(loop)
    if feeds is None:
        feeds = _feeds[loop] = LogFeeds()
    return feeds


_threads: dict[int, ThreadPoolExecutor] = {}  # by process id: a forked child makes its own
_threads_lock = threading.Lock()


def _in_thread(function: Callable[..., Result], *args: Any) -> asyncio.Future[Result]:
    with _threads_lock:
        executor = _threads.get(os.getpid())
        if executor is None:
            executor = _threads[os.getpid()] = ThreadPoolExecutor(
                max_workers=TAIL_THREADS, thread_name_prefix="tail"
            )
    return asyncio.get_running_loop().run_in_executor(executor, function, *args)

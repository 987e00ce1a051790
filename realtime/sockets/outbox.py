"""A socket's outgoing frames: written at once while the client keeps up, queued while it doesn't.

A room's feed hands each message to every local socket in turn, so a send that waits (the
ASGI server holds it back while the client is not reading: uvicorn stops at its write buffer's
high-water mark) must not make the feed wait: one client that never reads would stall the
room for everybody. `Outbox.push` therefore never blocks. It starts the server's `send` and,
when that finishes without suspending (the normal case, and always on Daphne), that is all.
When it suspends, the rest of that send and every later frame move to a backlog drained by a
task of the socket's own; a backlog above its byte limit means the client cannot keep up and
`on_overflow` is called once (the socket is then closed and leaves its rooms; it can
reconnect and catch up by `seq`). A server whose `send` answers with a future instead of a
coroutine (granian) is served the same way: a future already done was written; a pending one
is waited for by the backlog's task.

Python 3.12's eager tasks do the first part for any coroutine; this is the same idea for the
one coroutine on the hot path, on 3.11.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from realtime.kernel.metrics import FRAMES_OUT_TALLY

from .asyncio_internals import release_yielded_future

logger = logging.getLogger(__name__)

# The ASGI server's `send`: a coroutine (uvicorn, Daphne) or a future (granian).
Send = Callable[[str], Awaitable[None]]


class Outbox:
    __slots__ = ("_backlog", "_backlog_bytes", "_drainer", "_send", "dead", "limit", "on_overflow")

    def __init__(self, send: Send, *, limit: int, on_overflow: Callable[[], None]) -> None:
        self._send = send
        self._backlog: deque[str] | None = None  # made when a send first has to wait
        self._backlog_bytes = 0
        self._drainer: asyncio.Task[None] | None = None
        self.limit = limit  # most characters waiting before the client counts as too slow
        self.on_overflow = on_overflow
        self.dead = False  # overflowed or the connection failed: frames are dropped

    @property
    def backlog_bytes(self) -> int:
        return self._backlog_bytes

    def push(self, text: str) -> None:
        """Send `text` after everything pushed before it; never waits."""
        if self.dead:
            return
        if self._backlog is not None:
            self._backlog.append(text)
            self._backlog_bytes += len(text)
            if self._backlog_bytes > self.limit:
                self._overflow()
            return
        FRAMES_OUT_TALLY.count += 1
        sending = self._send(text)
        if asyncio.isfuture(sending):  # a server whose `send` answers with a future (granian)
            if sending.done():
                if sending.cancelled() or sending.exception() is not None:
                    self._fail()
                return  # written without waiting
            rest: Callable[[], Awaitable[None]] = functools.partial(_settled, sending)
        elif not asyncio.iscoroutine(sending):
            rest = functools.partial(_awaited, sending)
        else:
            try:
                waiting = sending.send(None)
            except StopIteration:
                return  # written without waiting
            except Exception:
                self._fail()
                return
            rest = functools.partial(_finish, sending, waiting)
        self._backlog = deque()
        self._drainer = asyncio.ensure_future(self._drain(rest))

    async def flush(self) -> None:
        """Wait until every pushed frame has been handed to the server (or dropped)."""
        while self._drainer is not None:
            await asyncio.wait({self._drainer})

    def close(self) -> None:
        """Drop what is waiting and stop sending (the socket is going away)."""
        self.dead = True
        self._backlog = None
        self._backlog_bytes = 0
        if self._drainer is not None:
            self._drainer.cancel()

    async def _drain(self, rest: Callable[[], Awaitable[None]]) -> None:
        try:
            await rest()  # the send that had to wait
            while self._backlog:
                text = self._backlog.popleft()
                self._backlog_bytes -= len(text)
                FRAMES_OUT_TALLY.count += 1
                await self._send(text)
        except asyncio.CancelledError:
            pass
        except Exception:
            self._fail()
        finally:
            self._drainer = None
            self._backlog = None

    def _overflow(self) -> None:
        self.close()
        try:
            self.on_overflow()
        except Exception:
            logger.exception("slow-client handler failed")

    def _fail(self) -> None:
        logger.debug("socket send failed; dropping its frames", exc_info=True)
        self.close()


async def _done(future: Any) -> None:
    """Wait for a future-like object a coroutine yielded, as a Task does: by its done callback.

    Not by awaiting it again: an ASGI server's own awaitable (granian's) may yield only once.
    """
    woken = asyncio.get_running_loop().create_future()

    def wake(_: Any) -> None:
        if not woken.done():
            woken.set_result(None)

    future.add_done_callback(wake)
    try:
        await woken
    except asyncio.CancelledError:
        future.cancel()
        raise


async def _awaited(sending: Awaitable[None]) -> None:
    await sending


async def _settled(future: Any) -> None:
    """Wait for a send that the server answered with a future; raise what it failed with."""
    await _done(future)
    future.result()


async def _finish(started: Coroutine[Any, Any, None], waiting: Any) -> None:
    """Run a coroutine that already ran up to its first suspension (what a Task would do)."""
    try:
        while True:
            try:
                if waiting is None:  # a bare `yield` (asyncio.sleep(0)): just let others run
                    await asyncio.sleep(0)
                else:
                    # The future was yielded to us, not to a Task: take it over as one would.
                    release_yielded_future(waiting)
                    await _done(waiting)
            except BaseException as exc:
                waiting = started.throw(exc)
            else:
                waiting = started.send(None)
    except StopIteration:
        return
    finally:
        started.close()

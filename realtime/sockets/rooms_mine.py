"""A socket's `rooms:mine`: the user's rooms as a snapshot, then each room's state as it
changes, at most once a CHAT_READ_WINDOW per room (the latest state wins).

The states come through the user's account group (`AccountFeed`), in every server process:
the chat domain reads them once per change and room (a Celery task, paced per room), never
per socket.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable
from typing import Any

from .subscription import Push


class RoomsMine:
    """One socket's `rooms:mine`: paces each room's `room.state` frames, coalescing them.

    Frames that arrive before the snapshot is sent wait for it (`go_live`). Memory is bounded
    by the user's rooms: one time and at most one waiting frame per room.
    """

    def __init__(
        self, push: Push, *, window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.push = push
        self.window = window
        self.clock = clock
        self.sent_at: dict[str, float] = {}  # room -> when its last state went out
        self.due: dict[str, str] = {}  # room -> its latest state, waiting for its window
        self.timers: dict[str, asyncio.TimerHandle] = {}
        self.pending: list[tuple[str, str, bool]] | None = []  # before the snapshot

    def state(self, slug: str, text: str) -> None:
        """A room's new state: out now, or when its window ends (replacing any waiting)."""
        if self.pending is not None:
            self.pending.append((slug, text, False))
            return
        wait = self.sent_at.get(slug, -math.inf) + self.window - self.clock()
        if wait <= 0 and slug not in self.timers:
            self._send(slug, text)
            return
        self.due[slug] = text
        if slug not in self.timers:
            loop = asyncio.get_running_loop()
            self.timers[slug] = loop.call_later(max(wait, 0), self._flush, slug)

    def removed(self, slug: str, text: str) -> None:
        """A room is no longer the user's: said at once, and nothing waiting for it follows."""
        if self.pending is not None:
            self.pending.append((slug, text, True))
            return
        timer = self.timers.pop(slug, None)
        if timer is not None:
            timer.cancel()
        self.due.pop(slug, None)
        self.sent_at.pop(slug, None)
        self.push(text)

    def go_live(self) -> None:
        """The snapshot is sent: what came meanwhile follows, paced."""
        pending, self.pending = self.pending or [], None
        for slug, text, removal in pending:
            (self.removed if removal else self.state)(slug, text)

    def close(self) -> None:
        for timer in self.timers.values():
            timer.cancel()
        self.timers.clear()
        self.due.clear()

    def _flush(self, slug: str) -> None:
        self.timers.pop(slug, None)
        text = self.due.pop(slug, None)
        if text is not None:
            self._send(slug, text)

    def _send(self, slug: str, text: str) -> None:
        self.sent_at[slug] = self.clock()
        self.push(text)


def state_text(event: dict[str, Any]) -> str:
    """The `room.state` frame of a room event of the account group, as text."""
    return json.dumps(event["frame"])

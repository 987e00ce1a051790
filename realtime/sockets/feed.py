"""What every feed is: a channel-layer group's events in this process, for its local members."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Generic, TypeVar

from realtime.kernel import metrics

logger = logging.getLogger(__name__)

# Not from the layer: the hub asks each feed to re-read what the layer may have lost.
CHECK = "feed.check"

Member = TypeVar("Member")


class Feed(Generic[Member]):
    """A group's events, handled one at a time and in arrival order by the feed's own task.

    The hub makes a feed when the first local member joins its group and stops it when the
    last one leaves; `open` (a classmethod of each kind) makes one.
    """

    name = "feed"  # of the task, in asyncio's debug output

    def __init__(self, group: str) -> None:
        self.group = group
        self.subscriptions: set[Member] = set()
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task = asyncio.create_task(self._run(), name=f"{self.name}:{group}")

    def put(self, event: dict[str, Any]) -> None:
        """Queue an event for the feed's task (the hub's reader never waits on a feed)."""
        self.queue.put_nowait(event)

    async def _run(self) -> None:
        while True:
            event = await self.queue.get()
            try:
                await self.handle(event)
                lag = metrics.elapsed_since(event.get("at"))
                if lag is not None:
                    metrics.FANOUT_LAG.observe(lag)
            except Exception:
                logger.exception("%s %s failed on %s", self.name, self.group, event.get("type"))
            finally:
                self.queue.task_done()

    async def handle(self, event: dict[str, Any]) -> None:
        """Act on one event of the group, or on a `CHECK`."""
        raise NotImplementedError

    async def maintain(self) -> None:
        """Periodic upkeep, run by the hub's maintenance task (nothing, unless a kind needs it)."""

    def stop(self) -> None:
        """The last member left: stop handling events."""
        self.task.cancel()

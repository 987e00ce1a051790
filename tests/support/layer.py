"""A member of channel-layer groups on the real layer: what a server process would receive."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from channels.layers import get_channel_layer

from realtime.kernel.broadcast import unbatched
from tests.support.processes import wait_until

Event = dict[str, Any]


class LayerListener:
    """Joins groups on a channel of its own and keeps every event sent to them, in order.

    It runs on an event loop in a thread of its own, so sync tests (whose publications go out
    through the kernel's publisher) can use it as they are.
    """

    def __init__(self, layer: Any = None) -> None:
        self.events: list[Event] = []
        self._groups: list[str] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="layer-listener")
        self._thread.start()
        self._layer = layer if layer is not None else get_channel_layer()
        self._channel: str = self._call(self._layer.new_channel("listener."))
        self._receiving = asyncio.run_coroutine_threadsafe(self._receive(), self._loop)

    def _call(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    async def _receive(self) -> None:
        while True:
            event = await self._layer.receive(self._channel)
            with self._lock:
                self.events.extend(unbatched(event))

    def join(self, group: str) -> None:
        """Receive what is sent to `group` from now on."""
        self._call(self._layer.group_add(group, self._channel))
        self._groups.append(group)

    def hold(self, until: threading.Event) -> None:
        """Keep its event loop busy (reading nothing) until `until` is set, as a server process
        fanning a big message out to thousands of sockets is."""
        self._loop.call_soon_threadsafe(until.wait, 60)

    def received(self, since: int = 0) -> list[Event]:
        """The events received so far, from the `since`-th on."""
        with self._lock:
            return list(self.events[since:])

    def wait_for(self, done: Callable[[list[Event]], bool], since: int = 0) -> list[Event]:
        """The events from the `since`-th on, once `done` says they are all there."""
        wait_until(lambda: done(self.received(since)))
        return self.received(since)

    def close(self) -> None:
        # Leaves its groups only: a flush would empty the whole layer of the run on Redis.
        for group in self._groups:
            self._call(self._layer.group_discard(group, self._channel))
        self._receiving.cancel()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

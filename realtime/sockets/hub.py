"""One hub per server process: its single reader of the channel layer, shared by all its sockets.

The hub is in each group (a room, a job, an owner's jobs, an account) that at least one of its
sockets follows, once, and hands each event to that group's feed, which fans it out. It also
keeps that membership alive: heartbeats through the layer, rejoins, presence and caps upkeep.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

from channels.layers import get_channel_layer
from django.conf import settings

from realtime.kernel import metrics
from realtime.kernel.broadcast import unbatched
from realtime.kernel.names import room_group

from . import accounts
from .feed import CHECK, Feed

logger = logging.getLogger(__name__)

GROUP_REJOIN_INTERVAL = 3600.0  # channels-redis forgets group members after a day
HEARTBEAT = "hub.heartbeat"

Params = ParamSpec("Params")
Member = TypeVar("Member")


class Hub:
    """This process's single reader of the channel layer, shared by all its sockets."""

    def __init__(self) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.layer = get_channel_layer()
        self.channel: str | None = None
        self.feeds: dict[str, Feed[Any]] = {}  # by channel-layer group
        self.admitted: dict[str, set[str]] = {}  # this process's sockets, by account
        self.heard = 0  # the last heartbeat this hub received back
        self.heartbeat_group = f"hub.{self.id}"
        self._connections = 0
        # One lock per group, held while its feed is made or torn down (Redis calls): joins
        # and leaves of other groups never queue behind them.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._start_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []

    def new_connection_id(self) -> str:
        """A name for a new socket of this process, unique across processes."""
        self._connections += 1
        return f"{self.id}.{self._connections}"

    async def join(
        self,
        group: str,
        member: Member,
        open_feed: Callable[Concatenate[str, Params], Awaitable[Feed[Member]]],
        /,
        *args: Params.args,
        **kwargs: Params.kwargs,
    ) -> None:
        """Add a member to a group's feed, opened with `open_feed` if it is the group's first.

        Once this returns, every later event of the group reaches the member.
        """
        async with self._lock(group):
            feed = self.feeds.get(group)
            if feed is None:
                channel = await self._start()
                # First: a failure leaves no feed that hears nothing.
                await self.layer.group_add(group, channel)
                feed = self.feeds[group] = await open_feed(group, *args, **kwargs)
            feed.subscriptions.add(member)

    async def leave(self, group: str, member: object) -> None:
        """Take a member out of a group's feed; the last one out stops it and leaves the group."""
        async with self._lock(group):
            feed = self.feeds.get(group)
            if feed is None:
                return
            feed.subscriptions.discard(member)
            if not feed.subscriptions:
                del self.feeds[group]
                feed.stop()
                if self.channel is not None:
                    await self.layer.group_discard(group, self.channel)

    async def admit(self, account: str, conn_id: str) -> bool:
        """Count a socket against its account's cap (across processes); False: over the cap.

        With no cap for the account nothing is counted (and nothing is written to Redis).
        """
        cap = accounts.connection_cap(account)
        if not cap:
            return True
        await self._start()  # the maintenance task keeps admitted sockets counted
        if not await accounts.admit(account, conn_id, cap):
            return False
        self.admitted.setdefault(account, set()).add(conn_id)
        return True

    async def release(self, account: str, conn_id: str) -> None:
        """Stop counting a socket against its account's cap (nothing if it was not counted)."""
        conn_ids = self.admitted.get(account)
        if conn_ids is None or conn_id not in conn_ids:
            return  # never counted
        conn_ids.discard(conn_id)
        if not conn_ids:
            del self.admitted[account]
        await accounts.release(account, conn_id)

    async def _start(self) -> str:
        async with self._start_lock:
            if self.channel is None:
                channel = await self.layer.new_channel("hub.")
                await self.layer.group_add(self.heartbeat_group, channel)
                self.channel = channel
                self._tasks = [
                    asyncio.create_task(self._read(), name="hub-reader"),
                    asyncio.create_task(self._maintain(), name="hub-maintenance"),
                    asyncio.create_task(self._heartbeat(), name="hub-heartbeat"),
                    asyncio.create_task(self._report(), name="hub-metrics"),
                ]
            return self.channel

    def _lock(self, key: str) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    async def _read(self) -> None:
        assert self.channel is not None
        backoff = 0.1
        while True:
            try:
                event = await self.layer.receive(self.channel)
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("channel layer receive failed; retrying", exc_info=True)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if event.get("type") == HEARTBEAT:
                self.heard = max(self.heard, int(event["n"]))
                continue
            # Published events name their group; a presence announcement names its room.
            group = event.get("group") or room_group(event.get("room", ""))
            feed = self.feeds.get(group)
            if feed is not None:
                for one in unbatched(event):
                    feed.put(one)

    async def _heartbeat(self) -> None:
        """Notice when the layer stops delivering to this process, and repair what it lost.

        Every SWITCHBOARD_HEARTBEAT seconds the hub sends itself an event through the layer.
        One that does not come back means deliveries are being lost (Redis restarted or
        flushed, a subscription dropped), and so does a connection the layer reports lost
        (RabbitMQ's went with this process's queue, even if it was back before the next
        heartbeat): the hub joins its groups again until heartbeats return, then every feed
        catches up from the database, so sockets stay open and miss nothing.
        """
        group = self.heartbeat_group
        sent, healthy, lost = 0, True, self._lost_connections()
        needed = 0  # the heartbeat that must come back before the feeds catch up
        while True:
            interval = settings.SWITCHBOARD_HEARTBEAT
            await asyncio.sleep(interval)
            if self._lost_connections() != lost:
                lost = self._lost_connections()
                needed = sent + 1  # only one sent from now on shows that deliveries resumed
            try:
                # A layer call that hangs is a fault too; a slow one under load is not.
                async with asyncio.timeout(max(2 * interval, 5.0)):
                    if self.heard < max(sent, needed):
                        if healthy:
                            logger.warning("channel layer lost deliveries; rejoining")
                        healthy = False
                        await self._rejoin([group, *self.feeds])
                    elif not healthy:
                        healthy = True
                        logger.warning("channel layer delivers again; feeds catch up")
                        for feed in list(self.feeds.values()):
                            feed.put({"type": CHECK})
                    sent += 1
                    await self.layer.group_send(group, {"type": HEARTBEAT, "n": sent})
            except Exception as exc:  # the next tick sees the heartbeat missing, and repairs
                logger.warning("channel layer heartbeat failed: %r", exc)
                logger.debug("heartbeat failure", exc_info=True)

    def _lost_connections(self) -> int:
        """Connections the layer has lost so far, if it can tell (the RabbitMQ one can)."""
        lost = getattr(type(self.layer), "lost_connections", None)
        return int(lost(self.layer)) if lost is not None else 0

    async def _rejoin(self, groups: list[str]) -> None:
        assert self.channel is not None
        for group in groups:
            await self.layer.group_add(group, self.channel)

    async def _report(self) -> None:
        """Every second: the frames counted meanwhile into their metric, and the subscriptions
        this process's sockets hold, by channel kind (a group's name starts with its kind,
        `realtime.kernel.names`; the sockets' own account feeds are not subscriptions)."""
        kinds: set[str] = set()
        while True:
            await asyncio.sleep(metrics.FLUSH_INTERVAL)
            metrics.flush_tallies()
            counts: dict[str, int] = dict.fromkeys(kinds, 0)
            for group, feed in list(self.feeds.items()):
                kind = group.split(".", 1)[0]
                if kind != "account":
                    counts[kind] = counts.get(kind, 0) + len(feed.subscriptions)
            for kind, count in counts.items():
                metrics.SUBSCRIPTIONS.labels(kind).set(count)
            kinds |= set(counts)

    async def _maintain(self) -> None:
        since_rejoin = 0.0
        while True:
            interval = settings.SWITCHBOARD_PRESENCE_REFRESH
            await asyncio.sleep(interval)
            since_rejoin += interval
            try:
                for feed in list(self.feeds.values()):
                    await feed.maintain()
                for account, conn_ids in list(self.admitted.items()):
                    await accounts.refresh(account, list(conn_ids))
                if since_rejoin >= GROUP_REJOIN_INTERVAL:
                    await self._rejoin([self.heartbeat_group, *self.feeds])
                    since_rejoin = 0.0
            except Exception:
                logger.warning("hub maintenance failed", exc_info=True)


_hubs: dict[asyncio.AbstractEventLoop, Hub] = {}


def get_hub() -> Hub:
    """The hub of the running event loop (one per server process)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = Hub()
    return hub

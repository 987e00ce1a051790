"""One hub per server process: one channel-layer membership per room, fan-out to local sockets.

A room's messages reach each process once (not once per socket), are encoded once per frame
format, and are delivered in `seq` order: a gap (the layer is at-most-once) is filled from the
database before anything later is sent, and a repeat is dropped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
import weakref
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import timezone

from chat import presence
from chat.models import Message, Room
from chat.services import message_frame
from jobs.models import Job
from jobs.selectors import jobs_changed_since
from jobs.services import job_update_event
from realtime.kernel import events
from realtime.kernel.names import ACCOUNT_REVOKED, account_group, room_channel, room_group

from . import accounts

logger = logging.getLogger(__name__)

GATEWAY = "gateway"
TUTORIAL = "tutorial"
# Presence changes within this window go out as one snapshot: a thousand sockets joining a
# room cost each process a few snapshots, not a thousand times a thousand frames.
PRESENCE_DEBOUNCE = 0.25
GROUP_REJOIN_INTERVAL = 3600.0  # channels-redis forgets group members after a day
HEARTBEAT = "hub.heartbeat"
CHECK = "feed.check"  # not from the layer: a feed re-reads what it may have missed

Push = Callable[[str], None]


def encode(fmt: str, frame: dict[str, Any]) -> str:
    """The text of a `chat.message` frame in a socket's format."""
    if fmt == TUTORIAL:
        return json.dumps({"message": frame["body"]})
    return json.dumps(frame)


class Subscription:
    """One socket's interest in one room; holds live messages back until its replay is sent.

    `push` hands a frame to the socket's outbox and never waits, so feeds deliver to all
    their sockets in one synchronous pass.
    """

    __slots__ = ("conn_id", "fmt", "last_seq", "log_after", "pending", "push", "user")

    def __init__(self, push: Push, fmt: str, conn_id: str, user: events.UserRef | None) -> None:
        self.push = push
        self.fmt = fmt
        self.conn_id = conn_id
        self.user = user
        self.last_seq = 0
        self.log_after = 0  # job log lines up to this number are already known to the client
        self.pending: list[tuple[int | None, str]] | None = []

    def deliver(self, seq: int | None, text: str) -> None:
        """Send a frame (`seq` None: not a message, e.g. presence) unless already sent."""
        if self.pending is not None:
            self.pending.append((seq, text))
        elif seq is None:
            self.push(text)
        elif seq > self.last_seq:
            self.last_seq = seq
            self.push(text)

    def go_live(self, last_seq: int) -> None:
        """After the replay up to `last_seq`: send what arrived meanwhile, then stream."""
        self.last_seq = last_seq
        pending, self.pending = self.pending or [], None
        for seq, text in pending:
            self.deliver(seq, text)


class RoomFeed:
    """A room's stream in this process: ordered, de-duplicated, gap-repaired."""

    def __init__(self, slug: str, room_id: int, last_seq: int) -> None:
        self.slug = slug
        self.room_id = room_id
        self.last_seq = last_seq
        self.presence_version = 0
        self.presence_due: asyncio.Task[None] | None = None
        self.subscriptions: set[Subscription] = set()
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task = asyncio.create_task(self._run(), name=f"room-feed:{slug}")

    async def _run(self) -> None:
        while True:
            event = await self.queue.get()
            try:
                if event["type"] == "room.message":
                    await self._message(int(event["seq"]), event["frame"])
                elif event["type"] == CHECK:
                    await self._catch_up()
                elif event["type"] == "presence.changed" and self.presence_due is None:
                    self.presence_due = asyncio.create_task(self._presence_later())
            except Exception:
                logger.exception("room feed %s failed on %s", self.slug, event.get("type"))

    async def _message(self, seq: int, frame: dict[str, Any]) -> None:
        if seq <= self.last_seq:
            return
        if seq > self.last_seq + 1:
            # A later message is committed, so every earlier one is too (seq order is commit
            # order): fetch the missed ones instead of losing them.
            for missed_seq, missed in await load_frames(
                self.room_id, self.slug, self.last_seq, seq - 1
            ):
                self._fan_out(missed_seq, missed)
        self._fan_out(seq, frame)

    async def _catch_up(self) -> None:
        """Send what was committed but never arrived (the layer lost it, or Redis was away).

        Presence changes may have been lost the same way: a fresh snapshot follows.
        """
        if self.presence_due is None:
            self.presence_due = asyncio.create_task(self._presence_later())
        last = await room_last_seq(self.room_id)
        if last > self.last_seq:
            logger.info("room %s: repairing %d missed messages", self.slug, last - self.last_seq)
            for seq, frame in await load_frames(self.room_id, self.slug, self.last_seq, last):
                self._fan_out(seq, frame)

    def _fan_out(self, seq: int, frame: dict[str, Any]) -> None:
        self.last_seq = seq
        texts: dict[str, str] = {}
        for subscription in list(self.subscriptions):
            text = texts.get(subscription.fmt)
            if text is None:
                text = texts[subscription.fmt] = encode(subscription.fmt, frame)
            _deliver(subscription, seq, text)

    async def _presence_later(self) -> None:
        await asyncio.sleep(PRESENCE_DEBOUNCE)
        self.presence_due = None  # a change from now on schedules another snapshot
        try:
            snapshot = await presence.snapshot(self.slug)
        except Exception:
            logger.warning("presence snapshot of %s failed", self.slug, exc_info=True)
            return
        if snapshot.version <= self.presence_version:
            return
        self.presence_version = snapshot.version
        text = json.dumps(presence_frame(self.slug, snapshot))
        for subscription in list(self.subscriptions):
            if subscription.fmt == GATEWAY:
                _deliver(subscription, None, text)


@database_sync_to_async
def load_frames(room_id: int, slug: str, after: int, upto: int) -> list[tuple[int, dict[str, Any]]]:
    messages = Message.objects.filter(room_id=room_id, seq__gt=after, seq__lte=upto).order_by("seq")
    return [(m.seq, message_frame(m, slug)) for m in messages]


@database_sync_to_async
def room_last_seq(room_id: int) -> int:
    return int(Room.objects.values_list("last_seq", flat=True).get(pk=room_id))


class Hub:
    """This process's single reader of the channel layer, shared by all its sockets."""

    def __init__(self) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.layer = get_channel_layer()
        self.channel: str | None = None
        self.feeds: dict[str, RoomFeed] = {}  # by room slug
        self.group_feeds: dict[str, JobFeed | AccountFeed] = {}  # by channel-layer group
        self.admitted: dict[str, set[str]] = {}  # this process's sockets, by account
        self.heard = 0  # the last heartbeat this hub received back
        self.heartbeat_group = f"hub.{self.id}"
        self._connections = 0
        # One lock per room or group, held while its feed is made or torn down (Redis calls):
        # joins and leaves of other rooms never queue behind them.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._start_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []

    def new_connection_id(self) -> str:
        self._connections += 1
        return f"{self.id}.{self._connections}"

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
            feed = self.group_feeds.get(event.get("group", "")) or self.feeds.get(
                event.get("room", "")
            )
            if feed is not None:
                feed.queue.put_nowait(event)

    async def _heartbeat(self) -> None:
        """Notice when the layer stops delivering to this process, and repair what it lost.

        Every SWITCHBOARD_HEARTBEAT seconds the hub sends itself an event through Redis. One
        that does not come back means deliveries are being lost (Redis restarted or flushed,
        a subscription dropped): the hub joins its groups again until heartbeats return,
        then every feed catches up from the database, so sockets stay open and miss nothing.
        """
        group = self.heartbeat_group
        sent, healthy = 0, True
        while True:
            interval = settings.SWITCHBOARD_HEARTBEAT
            await asyncio.sleep(interval)
            try:
                # A Redis call that hangs is a fault too; a slow one under load is not.
                async with asyncio.timeout(max(2 * interval, 5.0)):
                    if self.heard < sent:
                        if healthy:
                            logger.warning("channel layer lost a heartbeat; rejoining")
                        healthy = False
                        await self._rejoin(group)
                    elif not healthy:
                        healthy = True
                        logger.warning("channel layer delivers again; feeds catch up")
                        for feed in [*self.feeds.values(), *self.group_feeds.values()]:
                            feed.queue.put_nowait({"type": CHECK})
                    sent += 1
                    await self.layer.group_send(group, {"type": HEARTBEAT, "n": sent})
            except Exception as exc:  # the next tick sees the heartbeat missing, and repairs
                logger.warning("channel layer heartbeat failed: %r", exc)
                logger.debug("heartbeat failure", exc_info=True)

    async def _rejoin(self, heartbeat_group: str) -> None:
        assert self.channel is not None
        groups = [heartbeat_group, *(room_group(slug) for slug in self.feeds), *self.group_feeds]
        for group in groups:
            await self.layer.group_add(group, self.channel)

    async def _maintain(self) -> None:
        since_rejoin = 0.0
        while True:
            interval = settings.SWITCHBOARD_PRESENCE_REFRESH
            await asyncio.sleep(interval)
            since_rejoin += interval
            try:
                for feed in list(self.feeds.values()):
                    members = [presence.member(s.conn_id, s.user) for s in feed.subscriptions]
                    restored = await presence.refresh(feed.slug, members)
                    if await presence.purge_expired(feed.slug) or restored:
                        announce_presence(feed.slug)
                    if since_rejoin >= GROUP_REJOIN_INTERVAL:
                        await self.layer.group_add(room_group(feed.slug), self.channel)
                for account, conn_ids in list(self.admitted.items()):
                    await accounts.refresh(account, list(conn_ids))
                if since_rejoin >= GROUP_REJOIN_INTERVAL:
                    for group in list(self.group_feeds):
                        await self.layer.group_add(group, self.channel)
                    since_rejoin = 0.0
            except Exception:
                logger.warning("hub maintenance failed", exc_info=True)

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
        conn_ids = self.admitted.get(account)
        if conn_ids is None or conn_id not in conn_ids:
            return  # never counted
        conn_ids.discard(conn_id)
        if not conn_ids:
            del self.admitted[account]
        await accounts.release(account, conn_id)

    async def join(self, slug: str, room_id: int, subscription: Subscription) -> None:
        """Add a socket to a room; once this returns, every later message will reach it."""
        async with self._lock(slug):
            feed = self.feeds.get(slug)
            if feed is None:
                channel = await self._start()
                await self.layer.group_add(room_group(slug), channel)
                feed = RoomFeed(slug, room_id, await room_last_seq(room_id))
                self.feeds[slug] = feed
            feed.subscriptions.add(subscription)

    async def leave(self, slug: str, subscription: Subscription) -> None:
        async with self._lock(slug):
            feed = self.feeds.get(slug)
            if feed is None:
                return
            feed.subscriptions.discard(subscription)
            if not feed.subscriptions:
                del self.feeds[slug]
                feed.task.cancel()
                if feed.presence_due is not None:
                    feed.presence_due.cancel()
                if self.channel is not None:
                    await self.layer.group_discard(room_group(slug), self.channel)

    async def join_group(
        self,
        group: str,
        subscription: Subscription,
        *,
        job_id: str | None,
        owner_id: int | None = None,
    ) -> None:
        """Add a socket to one job's group (`job_id`) or an owner's (`owner_id`); events follow."""
        async with self._lock(group):
            feed = self.group_feeds.get(group)
            if feed is None:
                await self._add_group(group)  # first: a failure leaves no feed that hears nothing
                feed = self.group_feeds[group] = JobFeed(group, job_id=job_id, owner_id=owner_id)
            assert isinstance(feed, JobFeed)
            feed.subscriptions.add(subscription)

    async def join_account(self, user_id: int, socket: AccountSocket) -> None:
        """Let the user's credential revocations reach this socket."""
        group = account_group(user_id)
        async with self._lock(group):
            feed = self.group_feeds.get(group)
            if feed is None:
                await self._add_group(group)
                feed = self.group_feeds[group] = AccountFeed(group)
            assert isinstance(feed, AccountFeed)
            feed.subscriptions.add(socket)

    async def _add_group(self, group: str) -> None:
        channel = await self._start()
        await self.layer.group_add(group, channel)

    async def leave_group(self, group: str, member: Subscription | AccountSocket) -> None:
        async with self._lock(group):
            feed = self.group_feeds.get(group)
            if feed is None:
                return
            feed.subscriptions.discard(member)
            if not feed.subscriptions:
                del self.group_feeds[group]
                feed.task.cancel()
                if self.channel is not None:
                    await self.layer.group_discard(group, self.channel)


class AccountSocket(Protocol):
    """What an account's feed needs of a socket."""

    credential: str | None  # fingerprint of the session or token it was opened with

    def revoked(self) -> None: ...


class AccountFeed:
    """A user's sockets in this process; closes those whose session or token has ended."""

    def __init__(self, group: str) -> None:
        self.group = group
        self.subscriptions: set[AccountSocket] = set()
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task = asyncio.create_task(self._run(), name=f"account-feed:{group}")

    async def _run(self) -> None:
        while True:
            event = await self.queue.get()
            if event.get("type") != ACCOUNT_REVOKED:
                continue
            ended = set(event.get("credentials", ()))
            for socket in list(self.subscriptions):
                if socket.credential in ended:
                    try:
                        socket.revoked()
                    except Exception:
                        logger.exception("closing a signed-out socket failed")


class JobFeed:
    """Job events in this process: each update once and never older than one already sent.

    An update carries the job's whole state, so a missed one is superseded by the next; log
    lines a client already has (counted in its snapshot) are not sent again. After an outage of
    the layer, a job's feed re-reads its job; an owner's feed (`owner_id`) re-reads the owner's
    jobs that changed since it last heard from the layer before the outage.
    """

    # An owner's catch-up re-reads at most this many jobs, newest first: an outage during which
    # more of them changed leaves the older ones to their next update (or to REST).
    CATCH_UP_LIMIT = 500
    # Changes are stamped by other machines' clocks, and commit a little after their stamp.
    CATCH_UP_MARGIN = timedelta(minutes=1)
    # The last `seq` is kept for this many jobs, the most recently updated: an owner's feed
    # lives as long as the owner has a tab open, and must not grow with every job they run.
    REMEMBERED_JOBS = 1000

    def __init__(self, group: str, *, job_id: str | None, owner_id: int | None = None) -> None:
        self.group = group
        self.job_id = job_id  # one job: its `seq` orders it; else many jobs, ordered each
        self.owner_id = owner_id
        self.single = job_id is not None
        self.subscriptions: set[Subscription] = set()
        self.last_seq: dict[str, int] = {}
        # When the layer delivered to this feed: the times within the last `recovery_window()`
        # (one a second at most), and the latest before them. Its sockets joined after the
        # feed was made, so nothing earlier concerns them.
        self.heard_lately: deque[datetime] = deque()
        self.heard_before = timezone.now()
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task = asyncio.create_task(self._run(), name=f"job-feed:{group}")

    async def _run(self) -> None:
        while True:
            event = await self.queue.get()
            try:
                await self._event(event)
            except Exception:
                logger.exception("job feed %s failed on %s", self.group, event.get("type"))

    async def _event(self, event: dict[str, Any]) -> None:
        if event["type"] == CHECK:
            await self._catch_up()
        else:
            self._heard(timezone.now())
            self._relay(event)

    async def _catch_up(self) -> None:
        """Deliveries resumed after an outage: send what changed meanwhile, in its current state.

        An owner's feed cannot go by the jobs it has relayed: one created, or first changed,
        during the outage is not among them.
        """
        now = timezone.now()
        if self.owner_id is None:
            known = {*self.last_seq, *([self.job_id] if self.job_id else [])}
            updates = await job_updates(sorted(known))
        else:
            since = self._heard_before(now) - self.CATCH_UP_MARGIN
            updates = await owner_job_updates(self.owner_id, since, self.CATCH_UP_LIMIT)
            if len(updates) >= self.CATCH_UP_LIMIT:
                logger.warning(
                    "%s: catch-up stopped at the newest %d jobs", self.group, len(updates)
                )
        for update in reversed(updates):  # oldest job first
            self._relay(update)

    def _heard(self, now: datetime) -> None:
        """Note that the layer delivered to this feed at `now`."""
        if not self.heard_lately or now - self.heard_lately[-1] >= timedelta(seconds=1):
            self.heard_lately.append(now)
        self._heard_before(now)

    def _heard_before(self, now: datetime) -> datetime:
        """The last time the layer delivered to this feed, `recovery_window()` before `now`.

        At a check, that is before the outage that just ended: deliveries may have resumed up
        to that window before the check, so what came within it may have come after the outage.
        """
        window = self.recovery_window()
        while self.heard_lately and self.heard_lately[0] < now - window:
            self.heard_before = self.heard_lately.popleft()
        return self.heard_before

    @staticmethod
    def recovery_window() -> timedelta:
        """How long after deliveries resume the hub may take to send its check, at the most.

        Once this process receives again, the heartbeat tick under way ends (within its
        timeout), the next sends a heartbeat, the one after sees it back and sends the check.
        The window is generous: too long a one only makes a catch-up read more.
        """
        interval = settings.SWITCHBOARD_HEARTBEAT
        return timedelta(seconds=3 * (interval + max(2 * interval, 5.0)))

    def _relay(self, event: dict[str, Any]) -> None:
        if event["type"] == "job.update":
            seq, job = int(event["seq"]), str(event["job"])
            if seq <= self.last_seq.get(job, 0):
                return
            self.last_seq.pop(job, None)
            self.last_seq[job] = seq  # the most recently updated job last
            if len(self.last_seq) > self.REMEMBERED_JOBS:
                del self.last_seq[next(iter(self.last_seq))]
            text = json.dumps(event["frame"])
            for subscription in list(self.subscriptions):
                _deliver(subscription, seq if self.single else None, text)
        elif event["type"] == "job.log":
            number = int(event["frame"]["number"])
            text = json.dumps(event["frame"])
            for subscription in list(self.subscriptions):
                if number > subscription.log_after:
                    _deliver(subscription, None, text)


@database_sync_to_async
def job_updates(job_ids: list[str]) -> list[dict[str, Any]]:
    """`job.update` events with the current state of these jobs (to repair missed ones)."""
    return [job_update_event(job) for job in Job.objects.filter(pk__in=job_ids)]


@database_sync_to_async
def owner_job_updates(owner_id: int, since: datetime, limit: int) -> list[dict[str, Any]]:
    """`job.update` events of the owner's jobs that changed since `since`, newest first."""
    jobs = jobs_changed_since(owner_id=owner_id, since=since, limit=limit)
    return [job_update_event(job) for job in jobs]


def _deliver(subscription: Subscription, seq: int | None, text: str) -> None:
    try:
        subscription.deliver(seq, text)
    except Exception:  # a socket that went away must not stop the others
        logger.debug("delivery to %s failed", subscription.conn_id, exc_info=True)


ANNOUNCE_DELAY = 0.05
_announcing: dict[str, asyncio.Task[None]] = {}  # rooms with an announcement about to go out


def announce_presence(slug: str) -> None:
    """Tell every process, soon, that the room's presence changed; each reads it when due.

    Changes within ANNOUNCE_DELAY go out as one announcement (readers debounce anyway):
    a thousand sockets joining at once cost Redis a few dozen publishes, not a thousand.
    """
    if slug not in _announcing:
        _announcing[slug] = asyncio.create_task(_announce_later(slug))


async def _announce_later(slug: str) -> None:
    try:
        await asyncio.sleep(ANNOUNCE_DELAY)
    finally:
        del _announcing[slug]  # a change from now on is announced again
    try:
        await get_channel_layer().group_send(
            room_group(slug), {"type": "presence.changed", "room": slug}
        )
    except Exception:
        logger.warning("presence announcement for %s failed", slug, exc_info=True)


def presence_frame(slug: str, snapshot: presence.Snapshot) -> dict[str, Any]:
    return events.dump(
        events.PresenceFrame(
            channel=room_channel(slug),
            users=[events.UserRef(id=uid, username=name) for uid, name in snapshot.users],
            anonymous=snapshot.anonymous,
            count=snapshot.count,
            version=snapshot.version,
        )
    )


_hubs: dict[asyncio.AbstractEventLoop, Hub] = {}


def get_hub() -> Hub:
    """The hub of the running event loop (one per server process)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = Hub()
    return hub

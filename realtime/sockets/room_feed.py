"""A room's stream in this process: ordered by `seq`, de-duplicated, gap-repaired, with presence
and who is typing.

A room's messages and their changes (edits, deletions: each has a `seq` of its own) reach each
process once (not once per socket), are encoded once per frame format, and are delivered in
`seq` order: a gap (the layer is at-most-once) is filled from the database before anything
later is sent, and a repeat is dropped.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Self

from chat.selectors import message_frames_between, room_last_seq, room_readers
from realtime.kernel import metrics
from realtime.kernel.names import (
    PRESENCE_CHANGED,
    ROOM_ACCESS_ENDED,
    ROOM_CHANGE,
    ROOM_MESSAGE,
    ROOM_TYPING,
)

from . import presence
from .database import on_database_thread
from .feed import CHECK, Feed
from .subscription import GATEWAY, Subscription, deliver, encode

logger = logging.getLogger(__name__)

read_last_seq = on_database_thread(room_last_seq)
read_frames_between = on_database_thread(message_frames_between)
read_room_readers = on_database_thread(room_readers)


class RoomFeed(Feed[Subscription]):
    """A room's messages, presence snapshots and typing for this process's sockets in it."""

    name = "room-feed"

    def __init__(self, group: str, *, slug: str, room_id: int, last_seq: int) -> None:
        super().__init__(group)
        self.slug = slug
        self.room_id = room_id
        self.last_seq = last_seq
        self.presence_version = 0
        self.presence_due: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, group: str, /, *, slug: str, room_id: int) -> Self:
        """The feed of a room, going on from its latest message."""
        return cls(group, slug=slug, room_id=room_id, last_seq=await read_last_seq(room_id=room_id))

    async def handle(self, event: dict[str, Any]) -> None:
        if event["type"] in (ROOM_MESSAGE, ROOM_CHANGE):  # alike: the next of the room's seqs
            await self._message(int(event["seq"]), event["frame"])
        elif event["type"] == ROOM_TYPING:
            # Not to the typist's own sockets, any tab: it is about them.
            self._to_gateway(json.dumps(event["frame"]), except_user=int(event["user_id"]))
        elif event["type"] == ROOM_ACCESS_ENDED:
            user_id = event["user_id"]
            self._end_for(None if user_id is None else {int(user_id)}, str(event["reason"]))
        elif event["type"] == CHECK:
            await self._catch_up()
        elif event["type"] == PRESENCE_CHANGED and self.presence_due is None:
            self.presence_due = asyncio.create_task(self._presence_later())

    async def maintain(self) -> None:
        """Keep this process's sockets in the room's presence, and drop dead processes' ones."""
        await presence.keep(self.slug, self.subscriptions)

    def stop(self) -> None:
        super().stop()
        if self.presence_due is not None:
            self.presence_due.cancel()

    async def _message(self, seq: int, frame: dict[str, Any]) -> None:
        if seq <= self.last_seq:
            return
        if seq > self.last_seq + 1:
            # A later message is committed, so every earlier one is too (seq order is commit
            # order): fetch the missed ones instead of losing them.
            await self._send_between(self.last_seq, seq - 1)
        self._fan_out(seq, frame)

    def _end_for(self, user_ids: set[int] | None, reason: str) -> None:
        """These users (None: everyone, the room is gone) may no longer read the room: their
        subscriptions end here, at once (nothing more of the room reaches them), and their
        sockets are told why."""
        for subscription in list(self.subscriptions):
            user = subscription.user
            if user_ids is None or (user is not None and user.id in user_ids):
                self.subscriptions.discard(subscription)
                try:
                    subscription.end(reason)
                except Exception:
                    logger.exception("ending a subscription to %s failed", self.slug)

    async def _catch_up(self) -> None:
        """Send what was committed but never arrived (the layer lost it, or Redis was away).

        Presence changes may have been lost the same way: a fresh snapshot follows. So may a
        member's removal: whoever may no longer read the room is let go first.
        """
        if self.presence_due is None:
            self.presence_due = asyncio.create_task(self._presence_later())
        users = sorted({s.user.id for s in self.subscriptions if s.user is not None})
        if users:
            readers = await read_room_readers(room_id=self.room_id, user_ids=users)
            self._end_for(set(users) - readers, "removed")
        last = await read_last_seq(room_id=self.room_id)
        if last > self.last_seq:
            logger.info("room %s: repairing %d missed messages", self.slug, last - self.last_seq)
            metrics.GAPS_REPAIRED.labels("room").inc(last - self.last_seq)
            await self._send_between(self.last_seq, last)

    async def _send_between(self, after: int, upto: int) -> None:
        frames = await read_frames_between(
            room_id=self.room_id, slug=self.slug, after=after, upto=upto
        )
        for frame in frames:
            self._fan_out(int(frame["seq"]), frame)

    def _fan_out(self, seq: int, frame: dict[str, Any]) -> None:
        self.last_seq = seq
        texts: dict[str, str | None] = {}
        for subscription in list(self.subscriptions):
            if subscription.fmt in texts:
                text = texts[subscription.fmt]
            else:
                text = texts[subscription.fmt] = encode(subscription.fmt, frame)
            deliver(subscription, seq, text)

    async def _presence_later(self) -> None:
        await asyncio.sleep(presence.debounce(len(self.subscriptions)))
        self.presence_due = None  # a change from now on schedules another snapshot
        try:
            snapshot = await presence.current(self.slug)
        except Exception:
            logger.warning("presence snapshot of %s failed", self.slug, exc_info=True)
            return
        if snapshot.version <= self.presence_version:
            return
        self.presence_version = snapshot.version
        self._to_gateway(json.dumps(presence.frame(self.slug, snapshot)))

    def _to_gateway(self, text: str, *, except_user: int | None = None) -> None:
        """A frame that is not a message to the room's `/ws/` sockets (the tutorial's route
        speaks only messages), but those of `except_user`."""
        for subscription in list(self.subscriptions):
            user = subscription.user
            if subscription.fmt == GATEWAY and (user is None or user.id != except_user):
                deliver(subscription, None, text)

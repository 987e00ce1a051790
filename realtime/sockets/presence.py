"""Presence, socket side: record sockets entering and leaving, announce changes, build frames.

Who is in a room is stored in Redis by `chat.presence`; this module tells every process that
a room's presence changed, and each process's room feed reads a snapshot when due.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from channels.layers import get_channel_layer

from chat import presence as store
from realtime.kernel import events
from realtime.kernel.names import PRESENCE_CHANGED, room_channel, room_group

from .subscription import Subscription

logger = logging.getLogger(__name__)

ANNOUNCE_DELAY = 0.05
# Presence changes within this window go out as one snapshot: a thousand sockets joining a
# room cost each process a few snapshots, not a thousand times a thousand frames.
DEBOUNCE = 0.25
# ...and a big room's snapshots come less often: each goes to every socket of the room, so a
# process sends at most about this many presence frames a second per room (10,000 sockets in
# one room: a snapshot every 5 s while they come and go).
SNAPSHOT_FRAMES_PER_SECOND = 2000


def debounce(sockets: int) -> float:
    """Seconds a room with this many of the process's sockets waits before a snapshot."""
    return max(DEBOUNCE, sockets / SNAPSHOT_FRAMES_PER_SECOND)


_announcing: dict[str, asyncio.Task[None]] = {}  # rooms with an announcement about to go out


async def enter(slug: str, conn_id: str, user: events.UserRef | None) -> None:
    """Count a socket in the room and announce it; best effort, a failure is only logged."""
    try:
        await store.enter(slug, conn_id, user)
        announce(slug)
    except Exception:  # presence is best effort; the subscription itself stands
        logger.warning("presence enter failed for %s", slug, exc_info=True)


async def leave(slug: str, conn_id: str, user: events.UserRef | None) -> None:
    """Take a socket out of the room and announce it; best effort, a failure is only logged."""
    try:
        await store.leave(slug, conn_id, user)
        announce(slug)
    except Exception:
        logger.warning("presence leave failed for %s", slug, exc_info=True)


async def keep(slug: str, subscriptions: Iterable[Subscription]) -> None:
    """Refresh this process's sockets in the room, purge those of dead processes, announce."""
    members = [store.member(s.conn_id, s.user) for s in subscriptions]
    restored = await store.refresh(slug, members)
    if await store.purge_expired(slug) or restored:
        announce(slug)


def announce(slug: str) -> None:
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
            room_group(slug), {"type": PRESENCE_CHANGED, "room": slug}
        )
    except Exception:
        logger.warning("presence announcement for %s failed", slug, exc_info=True)


async def current(slug: str) -> store.Snapshot:
    """Who is in the room now, with the version that orders snapshots."""
    return await store.snapshot(slug)


def frame(slug: str, snapshot: store.Snapshot) -> dict[str, Any]:
    """The `presence` frame of a room's snapshot."""
    return events.dump(
        events.PresenceFrame(
            channel=room_channel(slug),
            users=[events.UserRef(id=uid, username=name) for uid, name in snapshot.users],
            anonymous=snapshot.anonymous,
            count=snapshot.count,
            version=snapshot.version,
        )
    )

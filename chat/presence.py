"""Who is in which room, kept in Redis with expiry so a crashed process's sockets vanish.

A room is a sorted set of `conn_id|user_id|username` scored by expiry time; the process that
holds a socket refreshes its score, and anyone may purge the expired. A version counter
orders snapshots, so a late one never overwrites a newer one at the client.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from realtime.kernel import events
from realtime.kernel.redis_pool import redis_client, thread_commands


def _expiry() -> float:
    """When an entry written now lapses unless its process refreshes it."""
    return time.time() + settings.SWITCHBOARD_PRESENCE_TTL


# The version only grows, even across a Redis restart or flush that loses the counter: it
# never falls below the clock in milliseconds, so a snapshot taken after the loss still
# outranks every one sent before it.
_BUMP = """
local v = redis.call('INCR', KEYS[1])
local floor = tonumber(ARGV[1])
if v < floor then
  redis.call('SET', KEYS[1], floor)
  v = floor
end
return v
"""


def _bump(client: Any, key: str) -> Any:
    """Raise the room's presence version (a command, or queued when `client` is a pipeline)."""
    return client.eval(_BUMP, 1, f"{key}:v", int(time.time() * 1000))


def _key(slug: str) -> str:
    return f"{settings.REDIS_KEY_PREFIX}:presence:{slug}"


def member(conn_id: str, user: events.UserRef | None) -> str:
    if user is None:
        return f"{conn_id}||"
    return f"{conn_id}|{user.id}|{user.username}"


@dataclass(frozen=True)
class Snapshot:
    users: list[tuple[int, str]]  # (id, username), each user once, by username
    anonymous: int
    version: int

    @property
    def count(self) -> int:
        return len(self.users) + self.anonymous


def _parse(members: list[bytes], version: int) -> Snapshot:
    users: dict[int, str] = {}
    anonymous = 0
    for raw in members:
        _conn, user_id, username = raw.decode().split("|", 2)
        if user_id:
            users[int(user_id)] = username
        else:
            anonymous += 1
    ordered = sorted(users.items(), key=lambda item: (item[1].lower(), item[0]))
    return Snapshot(users=ordered, anonymous=anonymous, version=version)


async def enter(slug: str, conn_id: str, user: events.UserRef | None) -> None:
    await _write(slug, member(conn_id, user), entering=True)


async def leave(slug: str, conn_id: str, user: events.UserRef | None) -> None:
    await _write(slug, member(conn_id, user), entering=False)


class _Writes:
    """A loop's presence writes that came in one turn of the loop, written as one transaction.

    A socket's enter or leave was a Redis transaction of its own: 22% of a socket's connect
    and subscribe (py-spy, 3,000 sockets). When many come at once (a reconnect storm) they
    share one: every entry, then each room's version raised once.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.entries: list[tuple[str, str, bool]] = []  # (key, member, entering)
        self.done: asyncio.Future[None] = loop.create_future()


_writes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Writes] = weakref.WeakKeyDictionary()


async def _write(slug: str, entry: str, *, entering: bool) -> None:
    """Add or remove a socket's entry with whatever else this turn of the loop writes."""
    loop = asyncio.get_running_loop()
    writes = _writes.get(loop)
    if writes is None:
        writes = _writes[loop] = _Writes(loop)
        loop.call_soon(lambda: loop.create_task(_flush(loop, writes)))
    writes.entries.append((_key(slug), entry, entering))
    await asyncio.shield(writes.done)  # a cancelled caller leaves the others' write alone


async def _flush(loop: asyncio.AbstractEventLoop, writes: _Writes) -> None:
    if _writes.get(loop) is writes:
        del _writes[loop]
    try:
        expiry = _expiry()
        async with redis_client().pipeline(transaction=True) as pipe:
            for key, entry, entering in writes.entries:
                if entering:
                    pipe.zadd(key, {entry: expiry})
                else:
                    pipe.zrem(key, entry)
            for key in dict.fromkeys(key for key, _, _ in writes.entries):
                _bump(pipe, key)
            await pipe.execute()
    except Exception as error:  # every writer of this turn hears of it
        writes.done.set_exception(error)
        writes.done.exception()  # retrieved: no "never retrieved" warning when none waits
    else:
        writes.done.set_result(None)


async def refresh(slug: str, members: list[str]) -> int:
    """Extend the expiry of this process's sockets in a room (`members` as from `member`).

    Entries that had vanished (Redis restarted or flushed) are written again; returns how
    many, and bumps the version then, so the room hears of them.
    """
    if not members:
        return 0
    key = _key(slug)
    restored = int(await redis_client().zadd(key, dict.fromkeys(members, _expiry())))
    if restored:
        await _bump(redis_client(), key)
    return restored


async def purge_expired(slug: str) -> int:
    """Drop sockets whose process stopped refreshing them; returns how many went."""
    key = _key(slug)
    async with redis_client().pipeline(transaction=True) as pipe:
        pipe.zremrangebyscore(key, "-inf", time.time())
        removed = (await pipe.execute())[0]
    if removed:
        await _bump(redis_client(), key)
    return int(removed)


async def snapshot(slug: str) -> Snapshot:
    key = _key(slug)
    async with redis_client().pipeline(transaction=True) as pipe:
        pipe.zrangebyscore(key, time.time(), "+inf")
        pipe.get(f"{key}:v")
        members, version = await pipe.execute()
    return _parse(members, int(version or 0))


def online_counts(slugs: list[str]) -> dict[str, int]:
    """Sync read for REST: how many are in each room now (users once, anonymous sockets)."""
    if not slugs:
        return {}
    now = time.time()
    found = thread_commands([("ZRANGEBYSCORE", _key(slug), now, "+inf") for slug in slugs])
    return {slug: _parse(members, 0).count for slug, members in zip(slugs, found, strict=True)}

"""Who is in a room, on the real Redis: users once, anonymous sockets each, expiry, versions."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis
import redis.asyncio
from asgiref.sync import sync_to_async

from chat import presence
from config.redis_server import free_port
from realtime.kernel.events import UserRef

ALICE = UserRef(id=1, username="alice")
BOB = UserRef(id=2, username="Bob")
CAROL = UserRef(id=3, username="carol")


@pytest.fixture
async def slug() -> AsyncIterator[str]:
    """A room name no other test uses; this loop's Redis client is closed afterwards."""
    yield f"presence-{uuid.uuid4().hex[:12]}"
    await presence.redis_client().aclose()


async def test_an_empty_room_has_nobody(slug):
    snapshot = await presence.snapshot(slug)

    assert (snapshot.users, snapshot.anonymous, snapshot.count) == ([], 0, 0)


async def test_users_count_once_by_name_and_anonymous_sockets_each(slug):
    # given: alice in two tabs, Bob and carol once, two anonymous sockets
    for conn, user in [("c1", CAROL), ("c2", ALICE), ("c3", ALICE), ("c4", BOB)]:
        await presence.enter(slug, conn, user)
    await presence.enter(slug, "c5", None)
    await presence.enter(slug, "c6", None)

    # when
    snapshot = await presence.snapshot(slug)

    # then: sorted by name regardless of case
    assert snapshot.users == [(1, "alice"), (2, "Bob"), (3, "carol")]
    assert snapshot.anonymous == 2
    assert snapshot.count == 5


async def test_a_user_stays_while_one_of_their_tabs_is_open(slug):
    await presence.enter(slug, "tab1", ALICE)
    await presence.enter(slug, "tab2", ALICE)

    await presence.leave(slug, "tab1", ALICE)
    still = await presence.snapshot(slug)
    await presence.leave(slug, "tab2", ALICE)
    gone = await presence.snapshot(slug)

    assert still.users == [(1, "alice")]
    assert gone.users == []


async def test_every_change_raises_the_version(slug):
    versions = []
    for change in (
        presence.enter(slug, "c1", ALICE),
        presence.enter(slug, "c2", None),
        presence.leave(slug, "c1", ALICE),
    ):
        await change
        versions.append((await presence.snapshot(slug)).version)

    assert versions == sorted(set(versions))
    assert versions[0] > 0


async def test_entries_lapse_unless_refreshed_and_purging_drops_them(slug, settings):
    # given: sockets whose expiry is already past (their process stopped refreshing them)
    settings.SWITCHBOARD_PRESENCE_TTL = -1
    await presence.enter(slug, "gone1", ALICE)
    await presence.enter(slug, "gone2", None)
    settings.SWITCHBOARD_PRESENCE_TTL = 45
    await presence.enter(slug, "live", BOB)
    before = await presence.snapshot(slug)

    # when
    purged = await presence.purge_expired(slug)
    again = await presence.purge_expired(slug)

    # then: lapsed entries are never counted; purging removes them once, and says so
    assert before.users == [(2, "Bob")]
    assert before.anonymous == 0
    assert (purged, again) == (2, 0)
    after = await presence.snapshot(slug)
    assert after.users == [(2, "Bob")]
    assert after.version > before.version


async def test_refresh_keeps_entries_alive_and_restores_vanished_ones(slug, settings):
    # given: one entry lapsed, one removed (as a Redis restart would lose it)
    lapsed, lost = presence.member("c1", ALICE), presence.member("c2", BOB)
    settings.SWITCHBOARD_PRESENCE_TTL = -1
    await presence.enter(slug, "c1", ALICE)
    settings.SWITCHBOARD_PRESENCE_TTL = 45
    await presence.enter(slug, "c2", BOB)
    await presence.leave(slug, "c2", BOB)
    before = await presence.snapshot(slug)

    # when: the process that holds both sockets refreshes them
    restored = await presence.refresh(slug, [lapsed, lost])

    # then: both count again; only the vanished one was written anew (and bumps the version)
    after = await presence.snapshot(slug)
    assert before.users == []
    assert restored == 1
    assert after.users == [(1, "alice"), (2, "Bob")]
    assert after.version > before.version
    assert await presence.refresh(slug, []) == 0


async def test_online_counts_for_rest_reads_each_room(slug):
    other = f"{slug}-other"
    await presence.enter(slug, "c1", ALICE)
    await presence.enter(slug, "c2", ALICE)
    await presence.enter(slug, "c3", None)

    counts = await sync_to_async(presence.online_counts)([slug, other])

    assert counts == {slug: 2, other: 0}
    assert await sync_to_async(presence.online_counts)([]) == {}


async def test_sockets_entering_and_leaving_together_share_one_transaction(slug, monkeypatch):
    # given: a count of the transactions this loop's client opens
    client = presence.redis_client()
    opened: list[object] = []
    real_pipeline = client.pipeline

    def counting_pipeline(*args, **kwargs):
        opened.append(args)
        return real_pipeline(*args, **kwargs)

    monkeypatch.setattr(client, "pipeline", counting_pipeline)
    other = f"{slug}-other"

    # when: twenty sockets enter two rooms at once, and one of them leaves in the same turn
    await asyncio.gather(
        *(presence.enter(slug if n % 2 else other, f"c{n}", None) for n in range(20)),
        presence.leave(slug, "c1", None),
    )

    # then: one transaction, every entry written in order (c1 entered, then left)
    assert len(opened) == 1
    assert (await presence.snapshot(slug)).anonymous == 9
    assert (await presence.snapshot(other)).anonymous == 10


async def test_a_failed_transaction_reaches_every_socket_that_shared_it(slug, monkeypatch):
    dead = redis.asyncio.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.setattr(presence, "redis_client", lambda: dead)

    results = await asyncio.gather(
        *(presence.enter(slug, f"c{n}", None) for n in range(3)), return_exceptions=True
    )

    assert [type(result) for result in results] == [redis.ConnectionError] * 3

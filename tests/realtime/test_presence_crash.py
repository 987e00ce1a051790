"""Presence across processes when one of them dies: its sockets leave the room within a TTL."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from channels.db import database_sync_to_async

from tests.factories import RoomFactory
from tests.support.processes import Service, daphne
from tests.support.ws import WsClient

pytestmark = pytest.mark.django_db(transaction=True)

FAST_PRESENCE = {"SWITCHBOARD_PRESENCE_REFRESH": "0.5", "SWITCHBOARD_PRESENCE_TTL": "2"}


@pytest.fixture
def two_servers(shared_env: dict[str, str], log_dir: Path) -> Iterator[list[tuple[Service, str]]]:
    servers = [daphne(dict(shared_env, **FAST_PRESENCE), log_dir) for _ in range(2)]
    yield servers
    for service, _ in servers:
        service.stop()


async def test_a_killed_servers_sockets_leave_the_room(two_servers):
    # given: one socket on each server, in the same room
    room = await database_sync_to_async(RoomFactory.create)()
    (_, survivor_url), (doomed, doomed_url) = two_servers
    watcher = await WsClient.open(survivor_url)
    await watcher.request(type="subscribe", channel=f"room:{room.slug}")
    ghost = await WsClient.open(doomed_url)
    await ghost.request(type="subscribe", channel=f"room:{room.slug}")
    await watcher.expect(lambda f: f["type"] == "presence" and f["count"] == 2)

    # when: the ghost's server dies without a chance to say goodbye
    doomed.stop(signal.SIGKILL)

    # then: the surviving process notices the lapsed entry and tells the room
    after = await watcher.expect(lambda f: f["type"] == "presence" and f["count"] == 1, timeout=15)
    assert after["anonymous"] == 1
    await watcher.close()

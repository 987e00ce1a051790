"""The channel layer sharded over two Redis servers (CHANNEL_LAYER_HOSTS): each room lives on
one of them, and messages still reach every subscriber on every server process."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest
import redis
from asgiref.sync import sync_to_async
from channels_redis.utils import _consistent_hash

from config.redis_server import PrivateRedis
from tests.factories import RoomFactory
from tests.support.processes import daphne
from tests.support.ws import WsClient

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis_layer]


def shard_of(slug: str, prefix: str) -> int:
    return _consistent_hash(f"{prefix}__group__room.{slug}", 2)


async def test_rooms_on_either_shard_reach_sockets_on_both_servers(
    tmp_path: Path, shared_env, log_dir, settings
):
    second = PrivateRedis(tmp_path / "redis").start()
    hosts = [settings.REDIS_URL, second.url]
    env = {**shared_env, "CHANNEL_LAYER_HOSTS": ",".join(hosts)}
    servers = [daphne(env, log_dir) for _ in range(2)]
    try:
        prefix = settings.REDIS_KEY_PREFIX
        # Rooms until each shard has two of them.
        rooms, by_shard = [], {0: 0, 1: 0}
        while min(by_shard.values()) < 2:
            room = await sync_to_async(RoomFactory.create)()
            if by_shard[shard_of(room.slug, prefix)] < 2:
                by_shard[shard_of(room.slug, prefix)] += 1
                rooms.append(room)
        (_, first_url), (_, second_url) = servers
        readers = [await WsClient.open(first_url) for _ in rooms]
        writer = await WsClient.open(second_url)
        for reader, room in zip(readers, rooms, strict=True):
            await reader.request(type="subscribe", channel=f"room:{room.slug}")
            await writer.request(type="subscribe", channel=f"room:{room.slug}")
        listening = [_channels(url, f"{prefix}*") for url in hosts]

        for room in rooms:
            await writer.request(type="chat.send", room=room.slug, body=f"to {room.slug}")

        for reader, room in zip(readers, rooms, strict=True):
            message = await reader.expect("chat.message")
            assert (message["room"], message["body"]) == (room.slug, f"to {room.slug}")
        for client in (*readers, writer):
            await client.close()
    finally:
        for service, _ in servers:
            service.stop()
        second.stop()

    # Each room's group is subscribed on the shard its name hashes to, and only there.
    names = {room.slug: f"{prefix}__group__room.{room.slug}" for room in rooms}
    for shard, channels in enumerate(listening):
        mine = {names[slug] for slug in names if shard_of(slug, prefix) == shard}
        assert mine <= channels
        assert not (set(names.values()) - mine) & channels


def _channels(url: str, pattern: str) -> set[str]:
    found = cast(list[bytes], redis.Redis.from_url(url).pubsub_channels(pattern))
    return {channel.decode() for channel in found}

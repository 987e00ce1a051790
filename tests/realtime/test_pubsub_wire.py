"""The publisher's own PUBLISH connection: the layer's subscribers get its messages, in order."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest
import redis
from channels.layers import get_channel_layer
from django.conf import settings

from realtime.kernel import broadcast
from realtime.kernel.pubsub_wire import CLIENT_NAME, PubSubWire

# About the Redis pub/sub layer's own wire: not run again with RabbitMQ as the channel layer.
pytestmark = pytest.mark.redis_layer


@pytest.fixture
async def layer():
    channel_layer = get_channel_layer()
    if PubSubWire.for_layer(channel_layer) is None:
        pytest.skip("the configured channel layer is not Redis pub/sub on one host")
    yield channel_layer
    await channel_layer.flush()


def wire_for(layer) -> PubSubWire:
    wire = PubSubWire.for_layer(layer)
    assert wire is not None
    return wire


async def receive_all(layer, channel: str, count: int) -> list[dict]:
    return [await asyncio.wait_for(layer.receive(channel), 5) for _ in range(count)]


async def test_the_layers_subscribers_get_what_the_wire_publishes_in_order(layer):
    # given: a subscriber of two groups, through the layer itself (as the hub subscribes)
    channel = await layer.new_channel()
    await layer.group_add("room.a", channel)
    await layer.group_add("room.b", channel)
    wire = wire_for(layer)

    # when: one round publishes to both groups
    await wire.publish(
        [
            ("room.a", {"type": "room.message", "n": 1}),
            ("room.b", {"type": "room.message", "n": 2}),
            ("room.a", {"type": "room.message", "n": 3}),
        ]
    )

    # then: the same channel names, database and serializer as the layer's own group_send
    assert [m["n"] for m in await receive_all(layer, channel, 3)] == [1, 2, 3]
    wire.close()


async def test_the_wire_reconnects_after_redis_closed_its_connection(layer):
    channel = await layer.new_channel()
    await layer.group_add("room.a", channel)
    wire = wire_for(layer)
    await wire.publish([("room.a", {"type": "room.message", "n": 1})])

    # when: Redis drops the wire's connection (as a restart would), then another event
    admin = redis.Redis.from_url(settings.REDIS_URL)
    clients = cast(list[dict[str, str]], admin.client_list())
    mine = [c for c in clients if c["name"] == CLIENT_NAME.decode()]
    (host,) = wire.hosts
    assert host.writer is not None
    wire_port = host.writer.get_extra_info("sockname")[1]
    killed = [c for c in mine if c["addr"].endswith(f":{wire_port}")]
    assert len(killed) == 1
    admin.client_kill_filter(_id=killed[0]["id"])
    await asyncio.sleep(0.2)
    await wire.publish([("room.a", {"type": "room.message", "n": 2})])

    # then: nothing lost, nothing doubled
    assert [m["n"] for m in await receive_all(layer, channel, 2)] == [1, 2]
    wire.close()


async def test_a_dead_redis_fails_the_round_and_the_publisher_logs_it(layer, caplog):
    # given: a wire to a port where no Redis listens
    wire = PubSubWire(layer, ["redis://127.0.0.1:9/0"])

    # when / then: the round raises, and the loop's publisher logs and drops it
    with pytest.raises(ConnectionRefusedError):
        await wire.publish([("room.a", {"type": "room.message", "n": 1})])
    publisher = broadcast._Publisher()
    publisher.wires[layer] = wire
    await publisher._send(layer, [("room.a", {"type": "room.message", "n": 1})])
    assert "broadcast to room.a failed" in caplog.text

"""RabbitMQ as the channel layer: one connection per loop, bursts held, a restart repaired.

All but the URL tests run in the RabbitMQ channel-layer pass (`TEST_CHANNEL_LAYER=rabbitmq`,
the Makefile's third run); the restart test runs a RabbitMQ node of its own, since the
machine's is shared.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from health_check.exceptions import ServiceUnavailable
from rest_framework.authtoken.models import Token

from api.health import readiness_checks
from config.rabbitmq_server import PrivateRabbitMQ, rabbitmq_server_script
from config.redis_server import free_port
from jobs.models import Job
from jobs.services import job_enqueue
from realtime.kernel import broadcast
from realtime.kernel.rabbitmq_layer import RabbitMQChannelLayer, carehare_url
from tests.conftest import skip_or_fail
from tests.factories import RoomFactory, UserFactory
from tests.support.layer import LayerListener
from tests.support.processes import Service, child_env, daphne, http_json, wait_until
from tests.support.ws import WsClient


@pytest.mark.parametrize(
    ("given", "read"),
    [
        ("amqp://guest:guest@127.0.0.1:5672//", "amqp://guest:guest@127.0.0.1:5672"),
        ("amqp://guest:guest@127.0.0.1:5672/", "amqp://guest:guest@127.0.0.1:5672"),
        ("amqp://guest:guest@127.0.0.1:5672", "amqp://guest:guest@127.0.0.1:5672"),
        ("pyamqp://u:p@mq:5672/%2F", "amqp://u:p@mq:5672"),
        ("amqps://u:p@mq/switchboard", "amqps://u:p@mq/switchboard"),
        ("amqp://u:p@mq/a%2Fb", "amqp://u:p@mq/a%2Fb"),
    ],
)
def test_broker_urls_are_read_as_carehare_reads_them(given: str, read: str):
    assert carehare_url(given) == read


def test_a_url_of_another_kind_is_refused():
    with pytest.raises(ValueError, match="not an AMQP URL"):
        carehare_url("redis://127.0.0.1:6379/0")


@pytest.fixture
def rabbitmq_layer_run() -> None:
    if settings.CHANNEL_LAYER != "rabbitmq":
        pytest.skip("RabbitMQ channel layer only: the TEST_CHANNEL_LAYER=rabbitmq pass runs it")


def group_name() -> str:
    return f"test.rabbitmq.{uuid.uuid4().hex[:12]}"


@pytest.fixture
def listener() -> Iterator[LayerListener]:
    member = LayerListener()
    yield member
    member.close()


@pytest.mark.usefixtures("rabbitmq_layer_run")
def test_sync_code_publishes_on_one_long_lived_connection(listener: LayerListener):
    # given: a member of a group, in another loop of this process (as a server's hub is)
    group = group_name()
    listener.join(group)
    layer: Any = get_channel_layer()

    # when: code outside any event loop publishes, as a Celery worker's threads do
    broadcast.publish_now(group, {"type": "test.event", "n": 0})
    first = layer._loops[broadcast._loop()]

    def publish(numbers: range) -> None:
        for n in numbers:
            broadcast.publish_now(group, {"type": "test.event", "n": n})

    threads = [threading.Thread(target=publish, args=(range(k, 100, 2),)) for k in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    # then: every event arrived, each thread's in its order, all through the layer that the
    # first publish made on the publishing loop, still connected
    events = listener.wait_for(lambda got: len(got) == 100)
    numbers = [event["n"] for event in events]
    assert sorted(numbers) == list(range(100))
    for k in (1, 2):
        assert [n for n in numbers if n and n % 2 == k % 2] == list(range(k, 100, 2))
    assert layer._loops[broadcast._loop()] is first
    assert first.lost == 0


async def send_burst(layer: RabbitMQChannelLayer, group: str, count: int) -> None:
    await asyncio.gather(
        *(layer.group_send(group, {"type": "test.event", "n": n}) for n in range(count))
    )


def burst_received(layer: RabbitMQChannelLayer, count: int) -> list[int]:
    """A group member whose loop is busy while `count` messages are sent to the group; the
    numbers it receives once free again, after a last message that says nothing more comes."""
    group = group_name()
    member = LayerListener(layer)
    try:
        member.join(group)
        busy = threading.Event()
        member.hold(busy)
        asyncio.run(send_burst(layer, group, count))  # each send confirmed by RabbitMQ
        busy.set()

        def heard_the_end() -> bool:
            # The queue may still be full for a moment: the end is sent until it gets in.
            asyncio.run(layer.group_send(group, {"type": "test.event", "n": -1}))
            return any(event["n"] == -1 for event in member.received())

        wait_until(heard_the_end, timeout=30, interval=0.5)
        return [event["n"] for event in member.received() if event["n"] >= 0]
    finally:
        member.close()


@pytest.mark.usefixtures("rabbitmq_layer_run")
def test_a_burst_while_the_reader_is_busy_is_held_not_dropped():
    # given: the layer as configured (settings: remote_capacity, local_capacity)
    config = cast(dict[str, Any], settings.CHANNEL_LAYERS["default"]["CONFIG"])
    layer = RabbitMQChannelLayer(**config)

    # when: 2,000 messages reach a process whose event loop is busy meanwhile
    received = burst_received(layer, 2000)

    # then: every one of them arrives (once)
    assert sorted(received) == list(range(2000))


@pytest.mark.usefixtures("rabbitmq_layer_run")
def test_with_channels_rabbitmqs_own_capacities_the_same_burst_loses_most():
    # given: the layer with channels-rabbitmq's defaults (100 queued, 100 prefetched)
    config = cast(dict[str, Any], settings.CHANNEL_LAYERS["default"]["CONFIG"])
    layer = RabbitMQChannelLayer(config["host"], groups_exchange=config["groups_exchange"])

    # when
    received = burst_received(layer, 2000)

    # then: what did not fit (100 prefetched by the busy process, 100 in its queue) was
    # refused by RabbitMQ, and the senders were not told (at-most-once)
    assert len(received) <= 200, len(received)


# ---------------------------------------------------------------- a RabbitMQ restart


@pytest.fixture
def node(tmp_path: Path, rabbitmq_layer_run: None) -> Iterator[PrivateRabbitMQ]:
    """A RabbitMQ node of this test's own, which it may stop and start."""
    if rabbitmq_server_script() is None:
        skip_or_fail("rabbitmq-server is not installed: the RabbitMQ restart test needs it")
    node = PrivateRabbitMQ(tmp_path / "rabbitmq")
    try:
        node.start()
    except (RuntimeError, TimeoutError) as error:
        node.stop()
        skip_or_fail(f"a private RabbitMQ node did not start: {error}")
    yield node
    node.stop()


@pytest.fixture
def servers(
    node: PrivateRabbitMQ, shared_env: dict[str, str], log_dir: Path
) -> Iterator[list[tuple[Service, str]]]:
    """Two Daphne processes whose channel layer is that node, with a short heartbeat: each
    with its address."""
    overrides = {
        "CHANNEL_LAYER": "rabbitmq",
        "CHANNEL_LAYER_URL": node.url,
        "CHANNEL_LAYER_PREFIX": f"restart-{uuid.uuid4().hex[:8]}",
        "SWITCHBOARD_HEARTBEAT": "0.5",
    }
    env = child_env(**{**shared_env, **overrides})
    started: list[tuple[Service, str]] = []
    try:
        for name in ("a", "b"):
            started.append(daphne(env, log_dir / f"rabbitmq-restart-{name}"))
        yield started
    finally:
        for service, _ in started:
            service.stop()


async def post(url: str, slug: str, body: str) -> int:
    status, reply, _ = await sync_to_async(http_json)(
        f"{url}/api/rooms/{slug}/messages/", method="POST", body={"body": body}, timeout=30
    )
    assert status == 201, reply
    return int(reply["seq"])


async def cancel(url: str, job: str, token: str) -> None:
    status, reply, _ = await sync_to_async(http_json)(
        f"{url}/api/jobs/{job}/cancel/",
        method="POST",
        headers={"Authorization": f"Token {token}"},
        timeout=30,
    )
    assert status == 200, reply


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(240)
async def test_a_rabbitmq_restart_under_a_live_room_loses_nothing(node, servers):
    # given: a socket on server A follows a room and a job; posts and changes go through
    # server B, so each event crosses RabbitMQ
    (_, a), (_, b) = servers

    def make() -> tuple[str, Job, str]:
        owner = UserFactory.create()
        job, _ = job_enqueue(owner=owner, kind="demo.sleep", params={"steps": 1}, countdown=3600)
        return RoomFactory.create().slug, job, str(Token.objects.create(user=owner).key)

    slug, job, token = await sync_to_async(make)()
    client = await WsClient.open(a, additional_headers={"Authorization": f"Token {token}"})
    await client.request(type="subscribe", channel=f"room:{slug}")
    await client.request(type="subscribe", channel=f"job:{job.pk}")
    assert (await client.expect("job.update"))["job"]["status"] == "scheduled"
    first = await post(b, slug, "before")
    assert (await client.expect("chat.message"))["seq"] == first

    # when: RabbitMQ stops (its queues go with it), messages are posted and the job is
    # cancelled meanwhile, and it starts again empty
    await sync_to_async(node.stop)()
    during = [await post(b, slug, f"during {n}") for n in range(3)]
    await cancel(b, str(job.pk), token)
    await sync_to_async(node.start)()

    # then: the socket, still open, gets what happened meanwhile from the database, in order,
    # then live messages again
    for seq in during:
        assert (await client.expect("chat.message", timeout=60))["seq"] == seq
    assert (await client.expect("job.update", timeout=60))["job"]["status"] == "cancelled"
    after = await post(b, slug, "after")
    assert (await client.expect("chat.message", timeout=20))["seq"] == after
    assert [m["seq"] for m in client.messages()] == [1, 2, 3, 4, 5]
    assert all(service.running for service, _ in servers)
    await client.close()


# ---------------------------------------------------------------- readiness


async def test_readiness_checks_the_layers_rabbitmq(settings):
    # given: the RabbitMQ layer, at an address where nothing listens
    settings.CHANNEL_LAYER = "rabbitmq"
    settings.CHANNEL_LAYER_URL = f"amqp://guest:guest@127.0.0.1:{free_port()}"

    # when
    check = readiness_checks()["channel_layer"]
    result = await check.get_result()

    # then
    assert isinstance(result.error, ServiceUnavailable)


@pytest.mark.usefixtures("rabbitmq_layer_run")
@pytest.mark.django_db(transaction=True)
def test_readiness_reports_the_layers_rabbitmq_ok(live_server_url, worker):
    status, body, _ = http_json(f"{live_server_url}/api/health/ready/")

    assert status == 200, body
    assert body["checks"]["channel_layer"]["ok"] is True

"""Redis restarted or flushed under a live server: sockets stay up and miss nothing.

Each test runs its own Redis (so stopping or flushing it touches nothing else) and a
Daphne process on it, with a short heartbeat so that a lost delivery is noticed quickly.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone
from redis import Redis
from rest_framework.authtoken.models import Token

from config.redis_server import PrivateRedis
from jobs.models import Job, JobStatus
from jobs.services import job_cancel, job_enqueue
from tests.factories import RoomFactory, UserFactory
from tests.support.processes import Service, child_env, daphne, http_json
from tests.support.ws import WsClient

# These choose a Redis layer themselves (pub/sub and lists) and restart or flush its Redis:
# the RabbitMQ layer's run leaves them out, and has its own restart test
# (test_rabbitmq_layer.py).
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis_layer]


@dataclass
class Faulty:
    redis: PrivateRedis
    server: Service
    url: str


def make_faulty(
    shared_env: dict[str, str], log_dir: Path, tmp_path: Path, layer: str
) -> tuple[PrivateRedis, Service, str]:
    redis = PrivateRedis(tmp_path / "redis").start()
    overrides = {
        "REDIS_URL": redis.url,
        # Celery keeps the run's broker: only the channel layer, presence and cache move.
        "CELERY_BROKER_URL": shared_env.get("CELERY_BROKER_URL", shared_env["REDIS_URL"]),
        "CHANNEL_LAYER": layer,
        "CHANNEL_LAYER_PREFIX": f"fault-{uuid.uuid4().hex[:8]}",
        "SWITCHBOARD_HEARTBEAT": "0.5",
        "SWITCHBOARD_PRESENCE_REFRESH": "1",
    }
    server, url = daphne(child_env(**{**shared_env, **overrides}), log_dir / f"fault-{layer}")
    return redis, server, url


def redis_of(faulty: Faulty) -> Redis:
    return Redis.from_url(faulty.redis.url)


@pytest.fixture(params=["pubsub", "core"])
def faulty(
    request: pytest.FixtureRequest, shared_env: dict[str, str], log_dir: Path, tmp_path: Path
) -> Iterator[Faulty]:
    redis, server, url = make_faulty(shared_env, log_dir, tmp_path, request.param)
    yield Faulty(redis, server, url)
    server.stop()
    redis.stop()


async def post(url: str, slug: str, body: str) -> int:
    status, reply, _ = await sync_to_async(http_json)(
        f"{url}/api/rooms/{slug}/messages/", method="POST", body={"body": body}, timeout=30
    )
    assert status == 201, reply
    return int(reply["seq"])


async def test_redis_restarted_mid_conversation_loses_nothing(faulty):
    room = await sync_to_async(RoomFactory.create)()
    client = await WsClient.open(faulty.url)
    await client.request(type="subscribe", channel=f"room:{room.slug}")
    await post(faulty.url, room.slug, "before")
    await client.expect("chat.message")

    # when: Redis goes away, messages are posted meanwhile, and it comes back empty
    faulty.redis.stop()
    during = [await post(faulty.url, room.slug, f"during {n}") for n in range(3)]
    faulty.redis.start()

    # then: the socket is still open and gets what was posted meanwhile, then live ones
    for seq in during:
        assert (await client.expect("chat.message", timeout=20))["seq"] == seq
    after = await post(faulty.url, room.slug, "after")
    assert (await client.expect("chat.message", timeout=10))["seq"] == after
    assert [m["seq"] for m in client.messages()] == [1, 2, 3, 4, 5]
    assert faulty.server.running
    await client.close()


async def test_edits_and_deletions_made_while_redis_was_away_arrive_in_seq_order(faulty):
    # given: alice's message in a room, a socket following it
    room = await sync_to_async(RoomFactory.create)()
    alice = await sync_to_async(UserFactory.create)()
    token = await sync_to_async(lambda: str(Token.objects.create(user=alice).key))()
    signed: dict[str, str] = {"Authorization": f"Token {token}"}
    client = await WsClient.open(faulty.url)
    await client.request(type="subscribe", channel=f"room:{room.slug}")
    status, message, _ = await sync_to_async(http_json)(
        f"{faulty.url}/api/rooms/{room.slug}/messages/",
        method="POST",
        body={"body": "before"},
        headers=signed,
    )
    assert status == 201
    await client.expect("chat.message")

    # when: Redis goes away, the message is edited and deleted over REST, and Redis comes back
    faulty.redis.stop()
    path = f"{faulty.url}/api/rooms/{room.slug}/messages/{message['id']}/"
    edited = await sync_to_async(http_json)(
        path, method="PATCH", body={"body": "during"}, headers=signed, timeout=30
    )
    deleted = await sync_to_async(http_json)(path, method="DELETE", headers=signed, timeout=30)
    assert (edited[0], deleted[0]) == (200, 204)
    faulty.redis.start()

    # then: both changes arrive, repaired from the database, in seq order
    assert (await client.expect("message.edited", timeout=20))["seq"] == 2
    assert (await client.expect("message.deleted", timeout=20))["seq"] == 3
    assert faulty.server.running
    await client.close()


async def test_redis_flushed_under_a_live_room_loses_nothing(faulty):
    room = await sync_to_async(RoomFactory.create)()
    client = await WsClient.open(faulty.url)
    await client.request(type="subscribe", channel=f"room:{room.slug}")
    await client.expect(lambda f: f.get("type") == "presence" and f["count"] == 1)

    # when: everything in Redis is gone (group memberships, presence), then a message
    assert redis_of(faulty).flushall()
    seq = await post(faulty.url, room.slug, "after the flush")

    # then: the message arrives (repaired within a heartbeat or two) and presence is back
    assert (await client.expect("chat.message", timeout=10))["seq"] == seq
    await client.expect(lambda f: f.get("type") == "presence" and f["count"] == 1)
    assert (await client.request(type="ping"))["type"] == "pong"
    await client.close()


async def test_a_job_update_lost_while_redis_was_away_arrives_after_it_returns(faulty):
    # given: the owner follows a job waiting out a long countdown
    def make() -> tuple[Job, str]:
        owner = UserFactory.create()
        job, _ = job_enqueue(owner=owner, kind="demo.sleep", params={"steps": 1}, countdown=3600)
        return job, str(Token.objects.create(user=owner).key)

    job, token = await sync_to_async(make)()
    client = await WsClient.open(faulty.url, additional_headers={"Authorization": f"Token {token}"})
    await client.request(type="subscribe", channel=f"job:{job.pk}")
    assert (await client.expect("job.update"))["job"]["status"] == "scheduled"

    # when: the job is cancelled while this server's Redis is away (its event never comes)
    faulty.redis.stop()
    await sync_to_async(job_cancel)(job=job)
    faulty.redis.start()

    # then: the job feed re-reads the job once the layer delivers again
    update = await client.expect("job.update", timeout=20)
    assert update["job"]["status"] == "cancelled"
    await client.close()


async def enqueue(url: str, headers: dict[str, str]) -> str:
    """A job enqueued over REST (its countdown keeps it waiting); its id."""
    status, reply, _ = await sync_to_async(http_json)(
        f"{url}/api/jobs/",
        method="POST",
        body={"kind": "demo.sleep", "params": {"steps": 1}, "countdown": 3600},
        headers=headers,
        timeout=30,
    )
    assert status == 202, reply
    return str(reply["id"])


async def test_jobs_mine_gets_each_job_changed_while_redis_was_away_once(faulty):
    # given: the owner follows all their jobs; one waits out a countdown (its creation came
    # before the subscription), one finished long ago
    def make() -> tuple[Job, str]:
        owner = UserFactory.create()
        hour_ago = timezone.now() - timedelta(hours=1)
        old = Job.objects.create(
            owner=owner,
            kind="demo.sleep",
            status=JobStatus.SUCCEEDED,
            created_at=hour_ago - timedelta(minutes=5),
            run_at=hour_ago - timedelta(minutes=5),
            started_at=hour_ago - timedelta(minutes=4),
            finished_at=hour_ago,
            seq=3,
        )
        return old, str(Token.objects.create(user=owner).key)

    old, token = await sync_to_async(make)()
    headers = {"Authorization": f"Token {token}"}
    waiting = await enqueue(faulty.url, headers)
    client = await WsClient.open(faulty.url, additional_headers=headers)
    assert (await client.request(type="subscribe", channel="jobs:mine"))["type"] == "subscribed"

    # when: while this server's Redis is away (the events it publishes are lost), a job is
    # enqueued and the waiting one is cancelled, over its REST API
    faulty.redis.stop()
    created = await enqueue(faulty.url, headers)
    status, reply, _ = await sync_to_async(http_json)(
        f"{faulty.url}/api/jobs/{waiting}/cancel/", method="POST", headers=headers, timeout=30
    )
    assert status == 200, reply
    faulty.redis.start()

    # then: once the layer delivers again, each arrives in its current state; a job enqueued
    # afterwards arrives live, after them, and nothing else came (the old job is not resent)
    updates: dict[str, tuple[str, int]] = {}
    for _ in range(2):
        update = (await client.expect("job.update", timeout=20))["job"]
        updates[update["id"]] = (update["status"], update["seq"])
    assert updates == {created: ("scheduled", 1), waiting: ("cancelled", 3)}
    after = await enqueue(faulty.url, headers)
    live = (await client.expect("job.update", timeout=10))["job"]
    assert (live["id"], live["seq"]) == (after, 1)
    relayed = [f["job"]["id"] for f in client.frames if f["type"] == "job.update"]
    assert relayed == [*updates, after]
    assert str(old.pk) not in relayed
    await client.close()


async def test_a_subscribe_while_redis_is_away_is_refused_cleanly_and_can_be_sent_again(
    faulty, request
):
    # given: a signed-in socket, open before Redis goes away
    def make() -> tuple[str, str]:
        owner = UserFactory.create()
        return RoomFactory.create().slug, str(Token.objects.create(user=owner).key)

    slug, token = await sync_to_async(make)()
    headers = {"Authorization": f"Token {token}"}
    client = await WsClient.open(faulty.url, additional_headers=headers)
    channels = [f"room:{slug}", "jobs:mine"]

    # when: it subscribes while Redis is away
    faulty.redis.stop()
    refused = []
    for channel in channels:
        reply = await client.request(type="subscribe", channel=channel, timeout=30)

        # then: refused as unavailable (not as a server bug), or taken: the pub/sub layer
        # may accept a group it has not yet found Redis gone for, and re-subscribes later
        if reply["type"] != "subscribed":
            assert (reply["type"], reply["code"]) == ("error", "unavailable"), reply
            refused.append(channel)
    if request.node.callspec.params["faulty"] == "core":
        assert refused == channels  # joining a group is a Redis write there

    # when: Redis is back, the refused requests again
    faulty.redis.start()
    for channel in refused:
        reply = await client.request(type="subscribe", channel=channel, timeout=30)
        assert reply["type"] == "subscribed", reply  # nothing half-joined was left behind

    # then: the subscriptions are live
    seq = await post(faulty.url, slug, "after")
    assert (await client.expect("chat.message", timeout=20))["seq"] == seq
    job_id = await enqueue(faulty.url, headers)
    assert (await client.expect("job.update", timeout=20))["job"]["id"] == job_id
    await client.close()
